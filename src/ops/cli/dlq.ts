// `plo-gateway dlq list|show|replay|discard|pause|resume`: the dead letters the gateway recorded
// from gateway.dlq (DESIGN §4.1). Every action is audited with --actor (default: the OS user).
import { type Command, InvalidArgumentError, Option } from 'commander';
import { Publisher } from '../../broker/publisher.js';
import { type DeadLetterFilter, DeadLetterRepository } from '../deadLetters/repository.js';
import { type BatchResult, DeadLetterService, deadLetterSummary } from '../deadLetters/service.js';
import type { Actor } from '../result.js';
import { printTable } from './common.js';
import { actorName, connectBroker, failed, type OpsContext, printJson, withStore } from './opsContext.js';

const id = (v: string) => {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a dead letter id (a number)');
  return Number(v);
};
const positive = (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('must be a positive number');
  return Number(v);
};

interface Common {
  json?: boolean;
  actor?: string;
  reason?: string;
}

const by = (o: Common): Actor => ({ actor: actorName(o.actor), via: 'cli', reason: o.reason });

/** The service without a broker: for everything but replay. */
const service = (ctx: OpsContext) => new DeadLetterService(new DeadLetterRepository(ctx.store.db), ctx.log);

/** The service with a confirmed publisher, closed again after `run`. */
async function withPublisher(ctx: OpsContext, json: boolean, run: (s: DeadLetterService) => Promise<void>): Promise<void> {
  const broker = await connectBroker(ctx.config, ctx.log);
  if (!broker)
    return failed(
      { ok: false, status: 'unavailable', reason: `cannot connect to the message broker at ${ctx.config.broker.url.replace(/\/\/[^@]*@/, '//')}` },
      json,
    );
  const publisher = new Publisher(broker);
  try {
    await publisher.start();
    await run(new DeadLetterService(new DeadLetterRepository(ctx.store.db), ctx.log, (exchange, key, body, o) => publisher.publish(exchange, key, body, o)));
  } finally {
    await publisher.close();
    await broker.close();
  }
}

const common = (c: Command) => c.option('--json', 'machine-readable output').option('--actor <name>', 'who acts, for the audit trail (default: the OS user)');

export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: messages the gateway or the broker could not deliver');

  common(
    dlq
      .command('list')
      .description('list dead letters (id, age, source queue, code, reason, MsgId, type, bydel); no personal data')
      .addOption(new Option('--state <state>', 'which ones').choices(['open', 'replayed', 'discarded', 'all']).default('open'))
      .option('--code <code>', 'only this error code (8221 or GW-…)')
      .option('--limit <n>', 'at most this many', positive, 500),
  ).action((o: Common & { state: DeadLetterFilter['state']; code?: string; limit: number }) =>
    withStore(async (ctx) => {
      const rows = await service(ctx).list({ state: o.state, code: o.code, limit: o.limit });
      const now = new Date();
      const views = rows.map((r) => deadLetterSummary(r, now));
      if (o.json) return printJson(views);
      if (views.length === 0) return console.log(o.state === 'all' ? 'no dead letters' : `no ${o.state} dead letters`);
      printTable(
        views.map((v) => ({ ...v, queue: v.sourceQueue, reason: v.reason.length > 70 ? `${v.reason.slice(0, 69)}…` : v.reason })),
        ['id', 'age', 'queue', 'code', 'reason', 'msgId', 'type', 'bydel'],
      );
    }),
  );

  common(
    dlq
      .command('show')
      .description('headers and metadata of one dead letter; the body only with --with-payload (audited)')
      .argument('<id>', 'dead letter id', id)
      .option('--with-payload', 'also print the body (personal data: the access is audited)')
      .option('--reason <text>', 'why you read the payload (audited)'),
  ).action((deadLetterId: number, o: Common & { withPayload?: boolean }) =>
    withStore(async (ctx) => {
      const r = await service(ctx).show(deadLetterId, o.withPayload === true, by(o));
      if (!r.ok) return failed(r, o.json === true);
      const view = { ...deadLetterSummary(r.value.row, new Date()), headers: r.value.headers, ...(r.value.payload ? { payload: r.value.payload } : {}) };
      if (o.json) return printJson(view);
      const { headers, payload, ...fields } = view;
      for (const [k, v] of Object.entries(fields)) if (v !== null && v !== undefined) console.log(`${k.padEnd(14)} ${v}`);
      console.log(`headers        ${JSON.stringify(headers, null, 2).replace(/\n/g, '\n               ')}`);
      if (payload)
        console.log(
          'expired' in payload ? '\npayload        (expired by retention)' : `\n--- payload (${payload.contentType ?? 'unknown type'}) ---\n${payload.body}`,
        );
    }),
  );

  common(
    dlq
      .command('replay')
      .description('republish to the queue it failed on (with broker confirm), then mark replayed; one id, or --all --code <code>')
      .argument('[id]', 'dead letter id', id)
      .option('--all', 'every open dead letter with --code (a batch: `dlq pause` stops it between items)')
      .option('--code <code>', 'with --all: the error code to replay (e.g. T02, GW-DELIVERY-LIMIT)')
      .option('--limit <n>', 'with --all: at most this many', positive)
      .option('--skip-dedupe', 'let the gateway process it even if its MsgId was processed before (audited)')
      .option('--reason <text>', 'why (audited)'),
  ).action((deadLetterId: number | undefined, o: Common & { all?: boolean; code?: string; limit?: number; skipDedupe?: boolean }, cmd: Command) => {
    if ((deadLetterId === undefined) === (o.all !== true)) cmd.error('give either a dead letter id or --all --code <code>', { exitCode: 2 });
    if (o.all && !o.code) cmd.error('--all needs --code <code>: a batch replays one kind of failure at a time', { exitCode: 2 });
    return withStore((ctx) =>
      withPublisher(ctx, o.json === true, async (s) => {
        const options = { skipDedupe: o.skipDedupe === true };
        if (deadLetterId !== undefined) {
          const r = await s.replay(deadLetterId, by(o), options);
          if (!r.ok) return failed(r, o.json === true);
          return o.json
            ? printJson({ id: r.value.id, state: r.value.state, sourceQueue: r.value.source_queue })
            : console.log(`dead letter #${r.value.id} replayed to ${r.value.source_queue}`);
        }
        reportBatch(await s.replayBatch({ code: o.code, limit: o.limit }, by(o), options), o.json === true);
      }),
    );
  });

  common(
    dlq
      .command('discard')
      .description('close a dead letter without replaying it')
      .argument('<id>', 'dead letter id', id)
      .requiredOption('--reason <text>', 'why it is discarded (audited)'),
  ).action((deadLetterId: number, o: Common & { reason: string }) =>
    withStore(async (ctx) => {
      const r = await service(ctx).discard(deadLetterId, { ...by(o), reason: o.reason });
      if (!r.ok) return failed(r, o.json === true);
      return o.json ? printJson({ id: r.value.id, state: r.value.state }) : console.log(`dead letter #${r.value.id} discarded`);
    }),
  );

  common(
    dlq.command('pause').description('stop running batch replays before their next item (until `dlq resume`)').option('--reason <text>', 'why (audited)'),
  ).action((o: Common) =>
    withStore(async (ctx) => {
      await service(ctx).pause(by(o));
      return o.json ? printJson({ paused: true }) : console.log('batch replays paused');
    }),
  );

  common(
    dlq.command('resume').description('allow batch replays again; run the batch command again to continue').option('--reason <text>', 'why (audited)'),
  ).action((o: Common) =>
    withStore(async (ctx) => {
      await service(ctx).resume(by(o));
      return o.json ? printJson({ paused: false }) : console.log('batch replays resumed');
    }),
  );
}

function reportBatch(r: BatchResult, json: boolean): void {
  if (r.failed) process.exitCode = 1;
  if (json) {
    printJson(r);
    return;
  }
  console.log(`replayed ${r.replayed.length}${r.replayed.length ? ` (#${r.replayed.join(', #')})` : ''}`);
  for (const s of r.skipped) console.error(`skipped #${s.id}: ${s.reason}`);
  if (r.paused) console.error(`paused: ${r.remaining} left; \`plo-gateway dlq resume\` and run the command again`);
  if (r.failed) console.error(`stopped at #${r.failed.id}: ${r.failed.reason}; ${r.remaining} left`);
}
