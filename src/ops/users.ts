// The people who use the ops API and console (DESIGN §4.8, migration 014_users): each has a
// personal token, shown once and stored only as its SHA-256, and a role. The audit actor of an
// API or console action is the token's user, never a name the request claims. Revoking a user
// ends its token and its console sessions at once (every request looks the token up).
import { createHash, randomBytes } from 'node:crypto';
import type { Generated, Kysely, Selectable } from 'kysely';
import type { Db, Schema } from '../tracking/db.js';
import { insertAudit } from '../tracking/tables/audit.js';
import { fail, type OpsResult } from './result.js';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a request may do: `read` metadata (lists, timelines, headers); `act` (replay, discard,
 * pause, resume, route, release); `read-payload`, its own grant (`users add --payload-access`),
 * because a body carries personal data.
 */
export type Permission = 'read' | 'act' | 'read-payload';

/** Who a request comes from: a user, or the configured GATEWAY_API_TOKEN used as break-glass admin. */
export interface Principal {
  name: string;
  role: Role;
  payloadAccess: boolean;
  kind: 'user' | 'break-glass';
}

/** The audit actor of the break-glass token; no user may take this name. */
export const BREAK_GLASS_ACTOR = 'break-glass';

export function can(p: Principal, permission: Permission): boolean {
  if (permission === 'read') return true;
  if (permission === 'act') return p.role === 'operator' || p.role === 'admin';
  return p.payloadAccess;
}

export interface UsersTable {
  id: Generated<number>;
  name: string;
  role: Role;
  /** 1: may read message and dead-letter bodies (audited each time) */
  payload_access: Generated<number>;
  /** SHA-256 (hex) of the token */
  token_hash: string;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
  revoked_by: string | null;
}

export interface UserSessionsTable {
  /** SHA-256 (hex) of the session id in the console's cookie */
  id_hash: string;
  user_id: number;
  /** the token every console form carries back (double submit against cross-site requests) */
  csrf: string;
  created_at: string;
  expires_at: string;
}

type UserTables = { users: UsersTable; user_sessions: UserSessionsTable };
export type UserRow = Selectable<UsersTable>;

/** What `users list` shows: never the hash. */
export interface UserView {
  name: string;
  role: Role;
  payloadAccess: boolean;
  state: 'active' | 'revoked';
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
  revokedBy: string | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** Console sessions last a working shift. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

export const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const secret = (prefix: string) => `${prefix}${randomBytes(32).toString('base64url')}`;

/** Why a name cannot be a user's, or undefined when it can. */
export function nameProblem(name: string): string | undefined {
  if (!NAME.test(name)) return 'a user name is 1–64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit';
  if (name.toLowerCase() === BREAK_GLASS_ACTOR) return `"${BREAK_GLASS_ACTOR}" is the audit name of GATEWAY_API_TOKEN and cannot be a user`;
  return undefined;
}

export function parseRole(role: string): Role | undefined {
  return (ROLES as readonly string[]).includes(role) ? (role as Role) : undefined;
}

export class UserStore {
  private readonly kysely: Kysely<Schema & UserTables>;

  constructor(
    db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.kysely = db.kysely.withTables<UserTables>();
  }

  /** A new user and its token (shown once; only the hash is kept). Audited as `user.add`. */
  async add(
    name: string,
    role: Role,
    options: { payloadAccess?: boolean },
    by: { actor: string; via: string },
  ): Promise<OpsResult<{ user: UserView; token: string }>> {
    const problem = nameProblem(name);
    if (problem) return fail('invalid', problem);
    if (options.payloadAccess && role === 'viewer') return fail('invalid', 'a viewer reads metadata only: payload access needs the role operator or admin');
    const token = secret('plo_');
    const now = this.clock().toISOString();
    return this.kysely.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('users').select('id').where('name', '=', name).where('revoked_at', 'is', null).executeTakeFirst();
      if (existing) return fail('conflict', `user ${name} exists; revoke it first to issue a new token`);
      const row = await trx
        .insertInto('users')
        .values({ name, role, payload_access: options.payloadAccess ? 1 : 0, token_hash: sha256(token), created_at: now, created_by: by.actor })
        .returningAll()
        .executeTakeFirstOrThrow();
      await insertAudit(
        trx as unknown as Kysely<Schema>,
        { actor: by.actor, action: 'user.add', target: `user:${name}`, detail: { via: by.via, role, payloadAccess: options.payloadAccess === true } },
        now,
      );
      return { ok: true as const, value: { user: view(row), token } };
    });
  }

  /** Active users first, then revoked ones, each by name. */
  async list(): Promise<UserView[]> {
    const rows = await this.kysely.selectFrom('users').selectAll().orderBy('name').orderBy('id').execute();
    return rows.map(view).sort((a, b) => (a.state === b.state ? 0 : a.state === 'active' ? -1 : 1));
  }

  /** Ends the user's token and console sessions at once. Audited as `user.revoke`. */
  async revoke(name: string, by: { actor: string; via: string; reason?: string }): Promise<OpsResult<UserView>> {
    const now = this.clock().toISOString();
    return this.kysely.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('users').selectAll().where('name', '=', name).where('revoked_at', 'is', null).executeTakeFirst();
      if (!row) return fail('not-found', `no active user ${name}`);
      const revoked = await trx
        .updateTable('users')
        .set({ revoked_at: now, revoked_by: by.actor })
        .where('id', '=', row.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await trx.deleteFrom('user_sessions').where('user_id', '=', row.id).execute();
      await insertAudit(
        trx as unknown as Kysely<Schema>,
        { actor: by.actor, action: 'user.revoke', target: `user:${name}`, reason: by.reason, detail: { via: by.via } },
        now,
      );
      return { ok: true as const, value: view(revoked) };
    });
  }

  /** The active user whose token this is. */
  async authenticate(token: string): Promise<Principal | undefined> {
    const row = await this.kysely.selectFrom('users').selectAll().where('token_hash', '=', sha256(token)).where('revoked_at', 'is', null).executeTakeFirst();
    return row ? principal(row) : undefined;
  }

  async activeCount(): Promise<number> {
    const r = await this.kysely
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('revoked_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** A console session for the user of this token: the cookie's id and the forms' CSRF token. */
  async openSession(token: string): Promise<{ sessionId: string; csrf: string; principal: Principal } | undefined> {
    const row = await this.kysely.selectFrom('users').selectAll().where('token_hash', '=', sha256(token)).where('revoked_at', 'is', null).executeTakeFirst();
    if (!row) return undefined;
    const now = this.clock();
    const sessionId = secret('');
    const csrf = secret('');
    await this.kysely.deleteFrom('user_sessions').where('expires_at', '<=', now.toISOString()).execute();
    await this.kysely
      .insertInto('user_sessions')
      .values({
        id_hash: sha256(sessionId),
        user_id: row.id,
        csrf,
        created_at: now.toISOString(),
        expires_at: new Date(now.getTime() + SESSION_TTL_MS).toISOString(),
      })
      .execute();
    return { sessionId, csrf, principal: principal(row) };
  }

  /** The session's user and CSRF token, while the session has not expired and the user is not revoked. */
  async session(sessionId: string): Promise<{ principal: Principal; csrf: string } | undefined> {
    const row = await this.kysely
      .selectFrom('user_sessions')
      .innerJoin('users', 'users.id', 'user_sessions.user_id')
      .select(['users.name', 'users.role', 'users.payload_access', 'user_sessions.csrf'])
      .where('user_sessions.id_hash', '=', sha256(sessionId))
      .where('user_sessions.expires_at', '>', this.clock().toISOString())
      .where('users.revoked_at', 'is', null)
      .executeTakeFirst();
    return row ? { principal: { name: row.name, role: row.role, payloadAccess: row.payload_access === 1, kind: 'user' }, csrf: row.csrf } : undefined;
  }

  async closeSession(sessionId: string): Promise<void> {
    await this.kysely.deleteFrom('user_sessions').where('id_hash', '=', sha256(sessionId)).execute();
  }
}

const principal = (row: UserRow): Principal => ({ name: row.name, role: row.role, payloadAccess: row.payload_access === 1, kind: 'user' });

const view = (row: UserRow): UserView => ({
  name: row.name,
  role: row.role,
  payloadAccess: row.payload_access === 1,
  state: row.revoked_at ? 'revoked' : 'active',
  createdAt: row.created_at,
  createdBy: row.created_by,
  revokedAt: row.revoked_at,
  revokedBy: row.revoked_by,
});
