// The ops API (DESIGN §3 D): the CLI's dead-letter and routing operations over HTTP, behind a
// bearer token (GATEWAY_API_TOKEN). Without a configured token the API is disabled (503), never
// open. Reads are GET and change nothing (reading a payload only writes its audit row); every
// action is a POST and is audited by the operation it calls.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/log.js';
import { type BatchResult, type DeadLetterService, deadLetterSummary } from './deadLetters/service.js';
import type { Routed } from './manualRoute.js';
import type { Actor, OpsResult } from './result.js';

export interface ApiDeps {
  token?: string;
  log: Logger;
  deadLetters: DeadLetterService;
  /** a held message to a bydel; with `resend`, a delivered one sent again to another bydel */
  route: (msgId: string, bydel: string, by: Actor, options?: { resend?: boolean }) => Promise<OpsResult<Routed>>;
  /** a message held for its receiver's encryption certificate, tried again now */
  release: (msgId: string, by: Actor) => Promise<OpsResult<Routed>>;
}

export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

type Json = Record<string, unknown>;
type Reply = { status: number; body: unknown };

interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  run: (match: string[], query: URLSearchParams, body: Json) => Promise<Reply>;
}

const STATUS = { 'not-found': 404, conflict: 409, unavailable: 503, invalid: 400 } as const;
const MAX_BODY = 64 * 1024;

const ok = (body: unknown): Reply => ({ status: 200, body });
const bad = (error: string): Reply => ({ status: 400, body: { error } });
const fromResult = <T>(r: OpsResult<T>, view: (v: T) => unknown): Reply => (r.ok ? ok(view(r.value)) : { status: STATUS[r.status], body: { error: r.reason } });

/** Tokens compared as fixed-length digests, in constant time: neither content nor length leaks. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** `actor` and `reason` from the request body; the token identifies a client, not a person. */
function actorOf(body: Json): Actor {
  const actor = typeof body.actor === 'string' && /^[\w.@-]{1,64}$/.test(body.actor) ? body.actor : 'api';
  return { actor, via: 'api', reason: typeof body.reason === 'string' && body.reason.trim() ? body.reason.trim() : undefined };
}

export function apiHandler(deps: ApiDeps): ApiHandler {
  const { deadLetters } = deps;
  const routes: Route[] = [
    {
      method: 'GET',
      pattern: /^\/api\/dlq$/,
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
      // a GET has no body: who reads a payload, and why, come as ?actor=&reason=
      run: async ([id], q) =>
        fromResult(await deadLetters.show(Number(id), q.get('withPayload') === 'true', actorOf(Object.fromEntries(q))), (v) => ({
          ...deadLetterSummary(v.row, new Date()),
          headers: v.headers,
          ...(v.payload ? { payload: v.payload } : {}),
        })),
    },
    {
      method: 'POST',
      pattern: /^\/api\/dlq\/(\d+)\/replay$/,
      run: async ([id], _q, body) =>
        fromResult(await deadLetters.replay(Number(id), actorOf(body), { skipDedupe: body.skipDedupe === true }), (r) => ({
          id: r.id,
          state: r.state,
          sourceQueue: r.source_queue,
        })),
    },
    {
      method: 'POST',
      pattern: /^\/api\/dlq\/(\d+)\/discard$/,
      run: async ([id], _q, body) => {
        const by = actorOf(body);
        if (!by.reason) return bad('a reason is required to discard a dead letter');
        return fromResult(await deadLetters.discard(Number(id), { ...by, reason: by.reason }), (r) => ({ id: r.id, state: r.state }));
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/dlq\/replay$/,
      run: async (_m, _q, body) => {
        if (typeof body.code !== 'string' || !body.code) return bad('a batch replay needs a code (e.g. {"code":"T02"})');
        const result: BatchResult = await deadLetters.replayBatch(
          { code: body.code, limit: typeof body.limit === 'number' ? body.limit : undefined },
          actorOf(body),
          { skipDedupe: body.skipDedupe === true },
        );
        return { status: result.failed ? 503 : 200, body: result };
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/dlq\/pause$/,
      run: async (_m, _q, body) => {
        await deadLetters.pause(actorOf(body));
        return ok({ paused: true });
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/dlq\/resume$/,
      run: async (_m, _q, body) => {
        await deadLetters.resume(actorOf(body));
        return ok({ paused: false });
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/messages\/([^/]+)\/route$/,
      run: async ([msgId], _q, body) => {
        if (typeof body.bydel !== 'string') return bad('bydel is required (030101–030117)');
        if (body.resend !== undefined && typeof body.resend !== 'boolean') return bad('resend must be true or false');
        return fromResult(await deps.route(decodeURIComponent(msgId), body.bydel, actorOf(body), { resend: body.resend === true }), (r) => r);
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/messages\/([^/]+)\/release$/,
      run: async ([msgId], _q, body) => fromResult(await deps.release(decodeURIComponent(msgId), actorOf(body)), (r) => r),
    },
  ];

  return async (req, res) => {
    const reply = await answer(req, routes, deps.token).catch((e: Error): Reply => {
      deps.log.error({ reason: e.message, path: req.url?.split('?')[0] }, 'ops API request failed');
      return { status: 500, body: { error: 'internal error' } };
    });
    res.writeHead(reply.status, {
      'content-type': 'application/json',
      ...(reply.status === 401 ? { 'www-authenticate': 'Bearer realm="plo-gateway"' } : {}),
    });
    res.end(JSON.stringify(reply.body));
  };
}

async function answer(req: IncomingMessage, routes: Route[], token: string | undefined): Promise<Reply> {
  if (!token) return { status: 503, body: { error: 'API disabled: no GATEWAY_API_TOKEN is configured' } };
  const auth = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (!tokenMatches(auth, token)) return { status: 401, body: { error: 'unauthorized' } };

  const url = new URL(req.url ?? '/', 'http://localhost');
  const matching = routes.filter((r) => r.pattern.test(url.pathname));
  if (matching.length === 0) return { status: 404, body: { error: 'not found' } };
  const route = matching.find((r) => r.method === req.method);
  if (!route) return { status: 405, body: { error: `method not allowed; use ${matching.map((r) => r.method).join(', ')}` } };
  const match = route.pattern.exec(url.pathname)?.slice(1) ?? [];
  const body = route.method === 'POST' ? await readJson(req) : {};
  if (body === undefined) return bad('the body must be a JSON object');
  return route.run(match, url.searchParams, body);
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
