// The ops API (DESIGN §3 D, §4.8): the CLI's dead-letter and routing operations over HTTP, behind
// a user's bearer token (src/ops/users.ts) or the break-glass GATEWAY_API_TOKEN. With neither the
// API is disabled (503), never open. The audit actor is the token's user; a request that names
// an actor is refused. Reads are GET and change nothing (reading a payload only writes its audit
// row, and needs payload access); every action is a POST, needs the role operator or admin, and
// is audited by the operation it calls.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/log.js';
import { Authenticator } from './auth.js';
import { type BatchResult, type DeadLetterService, deadLetterSummary } from './deadLetters/service.js';
import type { Routed } from './manualRoute.js';
import type { Actor, OpsResult } from './result.js';
import { can, type Permission, type Principal } from './users.js';

export { tokenMatches } from './auth.js';

export interface ApiDeps {
  /** users' tokens and the break-glass GATEWAY_API_TOKEN */
  auth: Authenticator;
  log: Logger;
  deadLetters: DeadLetterService;
  /** a held message to a bydel; with `resend`, a delivered one sent again to another bydel */
  route: (msgId: string, bydel: string, by: Actor, options?: { resend?: boolean }) => Promise<OpsResult<Routed>>;
  /** a message held for its receiver's encryption certificate, tried again now */
  release: (msgId: string, by: Actor) => Promise<OpsResult<Routed>>;
}

export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

type Json = Record<string, unknown>;
type Reply = { status: number; body: unknown; retryAfter?: number };

interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  /** what the caller must be allowed; a GET that reads a payload asks for more in `run` */
  need: Permission;
  run: (match: string[], query: URLSearchParams, body: Json, by: Actor, who: Principal) => Promise<Reply>;
}

const STATUS = { 'not-found': 404, conflict: 409, unavailable: 503, invalid: 400 } as const;
const MAX_BODY = 64 * 1024;

const ok = (body: unknown): Reply => ({ status: 200, body });
const bad = (error: string): Reply => ({ status: 400, body: { error } });
const fromResult = <T>(r: OpsResult<T>, view: (v: T) => unknown): Reply => (r.ok ? ok(view(r.value)) : { status: STATUS[r.status], body: { error: r.reason } });

const forbidden = (who: Principal, what: string): Reply => ({ status: 403, body: { error: `forbidden: ${who.name} (${who.role}) may not ${what}` } });
const WHAT: Record<Permission, string> = {
  read: 'read',
  act: 'act (replay, discard, pause, resume, route, release): that needs the role operator or admin',
  'read-payload': 'read payloads: that needs payload access (users add --payload-access)',
};

/** The authenticated user acts; the reason comes from the body (on GET: `?reason=`). */
function actorOf(who: Principal, source: Json): Actor {
  return { actor: who.name, via: 'api', reason: typeof source.reason === 'string' && source.reason.trim() ? source.reason.trim() : undefined };
}

export function apiHandler(deps: ApiDeps): ApiHandler {
  const { deadLetters } = deps;
  const routes: Route[] = [
    {
      method: 'GET',
      pattern: /^\/api\/dlq$/,
      need: 'read',
      run: async (_m, q) => {
        const state = q.get('state') ?? 'open';
        if (!['open', 'replayed', 'discarded', 'all'].includes(state)) return bad('state must be open, replayed, discarded or all');
        const rows = await deadLetters.list({ state: state as 'open', code: q.get('code') ?? undefined, limit: Number(q.get('limit') ?? 500) || 500 });
        const now = new Date();
        return ok(rows.map((r) => deadLetterSummary(r, now)));
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/dlq\/(\d+)$/,
      need: 'read',
      // a GET has no body: why a payload is read comes as ?reason=
      run: async ([id], q, _b, by, who) => {
        const withPayload = q.get('withPayload');
        if (withPayload !== null && withPayload !== 'true' && withPayload !== 'false') return bad('withPayload must be true or false');
        if (withPayload === 'true' && !can(who, 'read-payload')) return forbidden(who, WHAT['read-payload']);
        return fromResult(await deadLetters.show(Number(id), withPayload === 'true', by), (v) => ({
          ...deadLetterSummary(v.row, new Date()),
          headers: v.headers,
          ...(v.payload ? { payload: v.payload } : {}),
        }));
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/dlq\/(\d+)\/replay$/,
      run: async ([id], _q, body, by) =>
        fromResult(await deadLetters.replay(Number(id), by, { skipDedupe: body.skipDedupe === true }), (r) => ({
          id: r.id,
          state: r.state,
          sourceQueue: r.source_queue,
        })),
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/dlq\/(\d+)\/discard$/,
      run: async ([id], _q, _body, by) => {
        if (!by.reason) return bad('a reason is required to discard a dead letter');
        return fromResult(await deadLetters.discard(Number(id), { ...by, reason: by.reason }), (r) => ({ id: r.id, state: r.state }));
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/dlq\/replay$/,
      run: async (_m, _q, body, by) => {
        if (typeof body.code !== 'string' || !body.code) return bad('a batch replay needs a code (e.g. {"code":"T02"})');
        if (body.limit !== undefined && !(Number.isInteger(body.limit) && (body.limit as number) > 0)) return bad('limit must be a positive integer');
        const result: BatchResult = await deadLetters.replayBatch({ code: body.code, limit: body.limit as number | undefined }, by, {
          skipDedupe: body.skipDedupe === true,
        });
        return { status: result.failed ? 503 : 200, body: result };
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/dlq\/pause$/,
      run: async (_m, _q, _body, by) => {
        await deadLetters.pause(by);
        return ok({ paused: true });
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/dlq\/resume$/,
      run: async (_m, _q, _body, by) => {
        await deadLetters.resume(by);
        return ok({ paused: false });
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/messages\/([^/]+)\/route$/,
      run: async ([msgId], _q, body, by) => {
        if (typeof body.bydel !== 'string') return bad('bydel is required (030101–030117)');
        if (body.resend !== undefined && typeof body.resend !== 'boolean') return bad('resend must be true or false');
        return fromResult(await deps.route(decodeURIComponent(msgId), body.bydel, by, { resend: body.resend === true }), (r) => r);
      },
    },
    {
      method: 'POST',
      need: 'act',
      pattern: /^\/api\/messages\/([^/]+)\/release$/,
      run: async ([msgId], _q, _body, by) => fromResult(await deps.release(decodeURIComponent(msgId), by), (r) => r),
    },
  ];

  return async (req, res) => {
    const reply = await answer(req, routes, deps.auth).catch((e: Error): Reply => {
      deps.log.error({ reason: e.message, path: req.url?.split('?')[0] }, 'ops API request failed');
      return { status: 500, body: { error: 'internal error' } };
    });
    res.writeHead(reply.status, {
      'content-type': 'application/json',
      ...(reply.status === 401 ? { 'www-authenticate': 'Bearer realm="plo-gateway"' } : {}),
      ...(reply.retryAfter ? { 'retry-after': String(reply.retryAfter) } : {}),
    });
    res.end(JSON.stringify(reply.body));
  };
}

async function answer(req: IncomingMessage, routes: Route[], auth: Authenticator): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const who = await auth.check(Authenticator.bearer(req), Authenticator.client(req), url.pathname);
  if (!who.ok) return { status: who.status, body: { error: who.error }, retryAfter: who.retryAfterSeconds };

  const matching = routes.filter((r) => r.pattern.test(url.pathname));
  if (matching.length === 0) return { status: 404, body: { error: 'not found' } };
  const route = matching.find((r) => r.method === req.method);
  if (!route) return { status: 405, body: { error: `method not allowed; use ${matching.map((r) => r.method).join(', ')}` } };
  if (!can(who.principal, route.need)) return forbidden(who.principal, WHAT[route.need]);
  const match = route.pattern.exec(url.pathname)?.slice(1) ?? [];
  const body = route.method === 'POST' ? await readJson(req) : Object.fromEntries(url.searchParams);
  if (body === undefined) return bad('the body must be a JSON object');
  if ('actor' in body) return bad('"actor" is not accepted: the audit actor is the user of the token');
  return route.run(match, url.searchParams, body, actorOf(who.principal, body), who.principal);
}

async function readJson(req: IncomingMessage): Promise<Json | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}
