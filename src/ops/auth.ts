// Who is asking, for the ops API and the console: a user's token (src/ops/users.ts), or the
// configured GATEWAY_API_TOKEN as break-glass admin (logged each time it is used). Failed logins
// are counted per client address and refused for a while once there are too many; they are
// logged with the address and path, never the token.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { BREAK_GLASS_ACTOR, type Principal, type UserStore } from './users.js';

/** Tokens compared as fixed-length digests, in constant time: neither content nor length leaks. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export type AuthOutcome = { ok: true; principal: Principal } | { ok: false; status: 401 | 429 | 503; error: string; retryAfterSeconds?: number };

export interface AuthOptions {
  users: UserStore;
  /** GATEWAY_API_TOKEN: break-glass admin */
  breakGlassToken?: string;
  log: Logger;
  /** failed logins per client address within `failureWindowMs` before it is refused (default 10) */
  maxFailures?: number;
  failureWindowMs?: number;
  clock?: () => number;
}

export class Authenticator {
  private readonly failures = new Map<string, number[]>();
  private readonly maxFailures: number;
  private readonly windowMs: number;
  private readonly clock: () => number;

  constructor(private readonly o: AuthOptions) {
    this.maxFailures = o.maxFailures ?? 10;
    this.windowMs = o.failureWindowMs ?? 60_000;
    this.clock = o.clock ?? Date.now;
  }

  get users(): UserStore {
    return this.o.users;
  }

  /** The bearer token of the request, if it sent one. */
  static bearer(req: IncomingMessage): string | undefined {
    return /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  }

  /** The address failures are counted under. */
  static client(req: IncomingMessage): string {
    return req.socket.remoteAddress ?? 'unknown';
  }

  /** Seconds until this client may try again, when it has failed too often. */
  throttled(client: string): number | undefined {
    const now = this.clock();
    const recent = (this.failures.get(client) ?? []).filter((t) => t > now - this.windowMs);
    if (recent.length === 0) this.failures.delete(client);
    else this.failures.set(client, recent);
    if (recent.length < this.maxFailures) return undefined;
    return Math.max(1, Math.ceil((recent[0] + this.windowMs - now) / 1000));
  }

  /** Checks a token (from a bearer header or the console's login form). */
  async check(token: string | undefined, client: string, path: string): Promise<AuthOutcome> {
    const wait = this.throttled(client);
    if (wait !== undefined) {
      this.o.log.warn({ event: EVENTS.loginThrottled, client, path }, 'ops login refused: too many failed attempts from this address');
      return { ok: false, status: 429, error: `too many failed logins; try again in ${wait} s`, retryAfterSeconds: wait };
    }
    if (token !== undefined) {
      const user = await this.o.users.authenticate(token);
      if (user) return { ok: true, principal: user };
      if (this.o.breakGlassToken && tokenMatches(token, this.o.breakGlassToken)) {
        this.o.log.warn({ event: EVENTS.breakGlassUsed, client, path }, 'ops access with the break-glass GATEWAY_API_TOKEN');
        return { ok: true, principal: { name: BREAK_GLASS_ACTOR, role: 'admin', payloadAccess: true, kind: 'break-glass' } };
      }
    }
    if (!this.o.breakGlassToken && (await this.o.users.activeCount()) === 0)
      return { ok: false, status: 503, error: 'API disabled: no users (plo-gateway users add) and no GATEWAY_API_TOKEN are configured' };
    this.fail(client);
    this.o.log.warn({ event: EVENTS.loginFailed, client, path, tokenGiven: token !== undefined }, 'ops login failed');
    return { ok: false, status: 401, error: token === undefined ? 'unauthorized: send Authorization: Bearer <token>' : 'unauthorized' };
  }

  private fail(client: string): void {
    const now = this.clock();
    const list = this.failures.get(client) ?? [];
    list.push(now);
    this.failures.set(client, list);
    // many addresses that never come back must not grow the map for ever
    if (this.failures.size > 10_000) for (const [c, times] of this.failures) if ((times.at(-1) ?? 0) <= now - this.windowMs) this.failures.delete(c);
  }
}
