// `plo-gateway users add|list|revoke` (DESIGN §4.8): the people who may use the ops API and the
// console. `add` prints the new token once, alone on its last line; the store keeps only its hash.
// Audited with --actor (default: the OS user), as every ops command.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { nameProblem, parseRole, ROLES, type Role, UserStore } from '../users.js';
import { printTable } from './common.js';
import { actorName, failed, printJson, withStore } from './opsContext.js';

const userName = (v: string) => {
  const problem = nameProblem(v);
  if (problem) throw new InvalidArgumentError(problem);
  return v;
};
const role = (v: string): Role => {
  const r = parseRole(v);
  if (!r) throw new InvalidArgumentError(`must be one of ${ROLES.join(', ')}`);
  return r;
};

export function registerUserCommands(program: Command): void {
  const users = program.command('users').description('people who may use the ops API and console, each with a personal token and a role');

  users
    .command('add')
    .description('add a user; prints the token once, alone on the last line (only its hash is stored)')
    .argument('<name>', 'the person, as the audit trail will name them', userName)
    .addOption(
      new Option('--role <role>', 'viewer: reads metadata; operator: also replays, discards, routes, releases; admin: all of it')
        .argParser(role)
        .makeOptionMandatory(),
    )
    .option('--payload-access', 'may also read message and dead-letter bodies (personal data; every read audited); operator or admin only')
    .option('--actor <name>', 'who adds the user, for the audit trail (default: the OS user)')
    .action((name: string, o: { role: Role; payloadAccess?: boolean; actor?: string }) =>
      withStore(async (ctx) => {
        const r = await new UserStore(ctx.store.db).add(name, o.role, { payloadAccess: o.payloadAccess === true }, { actor: actorName(o.actor), via: 'cli' });
        if (!r.ok) return failed(r, false);
        const u = r.value.user;
        console.log(`user ${u.name} added with role ${u.role}${u.payloadAccess ? ' and payload access' : ''}; the token is shown only now:`);
        console.log(r.value.token);
      }),
    );

  users
    .command('list')
    .description('every user, active and revoked (never a token or its hash)')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) =>
      withStore(async (ctx) => {
        const list = await new UserStore(ctx.store.db).list();
        if (o.json) return printJson(list);
        if (list.length === 0) return console.log('no users');
        printTable(
          list.map((u) => ({
            ...u,
            payload: u.payloadAccess ? 'yes' : 'no',
            created: `${u.createdAt} by ${u.createdBy}`,
            revoked: u.revokedAt ? `${u.revokedAt} by ${u.revokedBy}` : '',
          })),
          ['name', 'role', 'payload', 'state', 'created', 'revoked'],
        );
      }),
    );

  users
    .command('revoke')
    .description("end a user's token and console sessions at once")
    .argument('<name>', 'the user', userName)
    .option('--reason <text>', 'why (audited)')
    .option('--actor <name>', 'who revokes, for the audit trail (default: the OS user)')
    .action((name: string, o: { reason?: string; actor?: string }) =>
      withStore(async (ctx) => {
        const r = await new UserStore(ctx.store.db).revoke(name, { actor: actorName(o.actor), via: 'cli', reason: o.reason });
        if (!r.ok) return failed(r, false);
        console.log(`user ${name} revoked: its token no longer works`);
      }),
    );
}
