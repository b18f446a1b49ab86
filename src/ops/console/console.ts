// The ops console (DESIGN §4.8), served by the gateway under /console: server-rendered pages over
// the same operations as the CLI and the ops API, for the people on call. Who is acting comes
// from a login with a user's token (a session cookie: HttpOnly, SameSite=Strict, the session
// stored hashed) or from `Authorization: Bearer <token>`. Every action is a POST that carries the
// session's CSRF token (and, when the browser sends one, an Origin of this host); a viewer's POST
// is refused with 403. Pages show metadata only (MsgId, type, bydel, HER-ids, codes, states);
// a body is shown only on an explicit, audited request by a user with payload access.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sql } from 'kysely';
import { DateTime } from 'luxon';
import type { Logger } from '../../observability/log.js';
import { BYDELER, bydelName, isBydelCode } from '../../routing/bydeler.js';
import { loadPeriodLedger, type OvertidRow, overtidReport } from '../../tracking/overtid.js';
import { openExpectations } from '../../tracking/pending.js';
import type { Store } from '../../tracking/store.js';
import type { WorkingCalendar } from '../../tracking/workingTime.js';
import type { ApiDeps } from '../api.js';
import { Authenticator } from '../auth.js';
import { type DeadLetterService, deadLetterSummary } from '../deadLetters/service.js';
import type { Readiness } from '../http.js';
import { toHtmlReport } from '../overtidHtml.js';
import type { Actor, OpsResult } from '../result.js';
import { opsKysely } from '../schema.js';
import { opsSnapshot } from '../snapshot.js';
import { can, type Permission, type Principal, SESSION_TTL_MS } from '../users.js';
import { type Html, html, type PageContext, page, postForm, raw, STYLE, table } from './html.js';

export interface ConsoleDeps {
  auth: Authenticator;
  log: Logger;
  store: Store;
  deadLetters: DeadLetterService;
  route: ApiDeps['route'];
  release: ApiDeps['release'];
  /** queue depths at the last ops check */
  queues: () => Promise<{ queue: string; messages: number; consumers: number }[]>;
  /** how times are shown (tracking.workingTime.timeZone) */
  timeZone: string;
  /** the listener serves TLS: the session cookie is Secure */
  secureCookie?: boolean;
  /** for the overtid report: working time, and the bydel of a receiver the EPJ addressed itself */
  calendar: WorkingCalendar;
  bydelOfHerId: (herId: string) => string | undefined;
}

export type ConsoleHandler = (req: IncomingMessage, res: ServerResponse, readiness: () => Promise<Readiness>) => Promise<void>;

type Reply = { status: number; body: string; contentType?: string; csp?: string } | { status: 303; location: string; cookie?: string };

/** The overtid report page draws its charts with Chart.js inlined in the page: scripts allowed there, and only there. */
const REPORT_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const COOKIE = 'plo_session';
const MAX_FORM = 64 * 1024;
const STATUS = { 'not-found': 404, conflict: 409, unavailable: 503, invalid: 400 } as const;

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  // not no-referrer: under it a browser sends `Origin: null` with a form, and the origin check refuses it
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What the pages read, shared by everyone looking for MEMO_MS: fifty people polling the overview
 * cost the store one set of queries, not fifty (`npm run bench:console`). Any action clears it, so
 * the page after an action shows its effect.
 */
const MEMO_MS = 2000;

class Memo {
  private readonly entries = new Map<string, { until: number; value: Promise<unknown> }>();
  constructor(private readonly ttlMs: number) {}
  get<T>(key: string, load: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return hit.value as Promise<T>;
    const value = load();
    this.entries.set(key, { until: now + this.ttlMs, value });
    value.catch(() => this.entries.delete(key));
    if (this.entries.size > 200) for (const [k, e] of this.entries) if (e.until <= now) this.entries.delete(k);
    return value;
  }
  clear(): void {
    this.entries.clear();
  }
}

type Deps = ConsoleDeps & { memo: Memo };

export function consoleHandler(consoleDeps: ConsoleDeps): ConsoleHandler {
  const deps: Deps = { ...consoleDeps, memo: new Memo(MEMO_MS) };
  return async (req, res, readiness) => {
    const reply = await handle(deps, req, readiness).catch((e: Error): Reply => {
      if (e instanceof Refused)
        return {
          status: e.status,
          body: page(
            e.status === 403 ? 'Not allowed' : 'Refused',
            undefined,
            html`<p role="alert" class="bad">${e.message}</p><p><a href="/console">Back to the console</a></p>`,
          ),
        };
      deps.log.error({ reason: e.message, path: req.url?.split('?')[0] }, 'ops console request failed');
      return { status: 500, body: page('Internal error', undefined, html`<p role="alert">The request failed; the gateway's log has the reason.</p>`) };
    });
    if ('location' in reply) {
      res.writeHead(303, { location: reply.location, ...SECURITY_HEADERS, ...(reply.cookie ? { 'set-cookie': reply.cookie } : {}) });
      res.end();
      return;
    }
    res.writeHead(reply.status, {
      'content-type': reply.contentType ?? 'text/html; charset=utf-8',
      ...SECURITY_HEADERS,
      ...(reply.csp ? { 'content-security-policy': reply.csp } : {}),
    });
    res.end(reply.body);
  };
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

const sameString = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new Refused(415, 'a console form is sent as application/x-www-form-urlencoded');
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM) throw new Refused(413, 'the form is too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** A POST from a page of another site is refused before anything else (login CSRF included). */
function checkOrigin(req: IncomingMessage): void {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    host = undefined;
  }
  if (host !== req.headers.host) throw new Refused(403, 'forbidden: the form was not sent from this console');
}

async function handle(deps: Deps, req: IncomingMessage, readiness: () => Promise<Readiness>): Promise<Reply> {
  const url = new URL(req.url ?? '/console', 'http://localhost');
  const path = url.pathname.replace(/\/+$/, '') || '/console';
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'POST') throw new Refused(405, 'method not allowed: the console uses GET and POST');

  if (path === '/console/style.css' && method === 'GET') return { status: 200, body: STYLE, contentType: 'text/css; charset=utf-8' };
  if (path === '/console/login') return login(deps, req, method, url);

  // who is asking: a bearer token (scripts; nothing a browser sends by itself), else the session cookie
  const client = Authenticator.client(req);
  let ctx: PageContext;
  const bearer = Authenticator.bearer(req);
  if (bearer !== undefined) {
    const who = await deps.auth.check(bearer, client, path);
    if (!who.ok) throw new Refused(who.status, who.error);
    ctx = { who: who.principal };
  } else {
    const sid = cookieOf(req, COOKIE);
    const session = sid ? await deps.auth.users.session(sid) : undefined;
    if (!session) {
      if (method === 'GET') return { status: 303, location: `/console/login?next=${encodeURIComponent(url.pathname + url.search)}` };
      throw new Refused(403, 'forbidden: not logged in');
    }
    ctx = { who: session.principal, csrf: session.csrf };
  }

  if (method === 'POST') {
    checkOrigin(req);
    const form = await readForm(req);
    deps.memo.clear();
    if (ctx.csrf !== undefined && !sameString(form.get('_csrf') ?? '', ctx.csrf))
      throw new Refused(403, 'forbidden: the form has no valid CSRF token; reload the page and try again');
    return post(deps, ctx, path, form, req);
  }
  return get(deps, ctx, path, url.searchParams, readiness);
}

async function login(deps: Deps, req: IncomingMessage, method: string, url: URL): Promise<Reply> {
  const next = safeNext(url.searchParams.get('next'));
  const form = (error?: string) =>
    page(
      'Log in',
      undefined,
      html`${error ? html`<p role="alert" class="bad">${error}</p>` : ''}
<p>Log in with your personal token (from <code>plo-gateway users add</code>). It identifies you in the audit trail.</p>
<form method="post" action="/console/login?next=${encodeURIComponent(next)}"><label>Token <input type="password" name="token" autocomplete="off" required autofocus></label><button type="submit">Log in</button></form>`,
    );
  if (method === 'GET') return { status: 200, body: form() };
  checkOrigin(req);
  const token = (await readForm(req)).get('token')?.trim() ?? '';
  const who = await deps.auth.check(token || undefined, Authenticator.client(req), '/console/login');
  if (!who.ok) return { status: who.status, body: form(who.status === 401 ? 'That token is not valid (or its user was revoked).' : who.error) };
  if (who.principal.kind !== 'user')
    return { status: 403, body: form('The break-glass GATEWAY_API_TOKEN opens no console session: send it as Authorization: Bearer, or log in as a user.') };
  const session = await deps.auth.users.openSession(token);
  if (!session) return { status: 401, body: form('That token is not valid (or its user was revoked).') };
  const cookie = `${COOKIE}=${session.sessionId}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}${deps.secureCookie ? '; Secure' : ''}`;
  return { status: 303, location: next, cookie };
}

/** Only a console path: a login link cannot send anyone elsewhere. */
function safeNext(next: string | null): string {
  return next && /^\/console(\/|\?|$)/.test(next) && !next.includes('//') ? next : '/console';
}

const need = (ctx: PageContext, permission: Permission, what: string) => {
  if (!can(ctx.who, permission)) throw new Refused(403, `forbidden: ${ctx.who.name} (${ctx.who.role}) may not ${what}`);
};

const actor = (who: Principal, form: URLSearchParams): Actor => {
  const reason = form.get('reason')?.trim();
  return { actor: who.name, via: 'console', reason: reason ? reason.slice(0, 500) : undefined };
};

function result<T>(ctx: PageContext, title: string, r: OpsResult<T>, ok: (v: T) => Html, back: string): Reply {
  const body = r.ok
    ? html`<p role="status" class="result">${ok(r.value)}</p><p><a href="${back}">Back</a></p>`
    : html`<p role="alert" class="result failed">${r.reason}</p><p><a href="${back}">Back</a></p>`;
  return { status: r.ok ? 200 : STATUS[r.status], body: page(title, ctx, body) };
}

async function post(deps: Deps, ctx: PageContext, path: string, form: URLSearchParams, req: IncomingMessage): Promise<Reply> {
  if (path === '/console/logout') {
    const sid = cookieOf(req, COOKIE);
    if (sid) await deps.auth.users.closeSession(sid);
    return { status: 303, location: '/console/login', cookie: `${COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0` };
  }
  let m = /^\/console\/dlq\/(\d+)\/(replay|discard|payload)$/.exec(path);
  if (m) {
    const id = Number(m[1]);
    const back = `/console/dlq/${id}`;
    const by = actor(ctx.who, form);
    if (m[2] === 'payload') {
      need(ctx, 'read-payload', 'read payloads: that needs payload access');
      if (!by.reason) throw new Refused(400, 'say why you read the payload (the reason is audited)');
      const r = await deps.deadLetters.show(id, true, by);
      if (!r.ok) return result(ctx, 'Payload', r, () => html``, back);
      const p = r.value.payload;
      const body =
        !p || 'expired' in p
          ? html`<p>The body has expired (payload retention).</p>`
          : html`<p>Content type ${p.contentType ?? 'unknown'}; this read is audited.</p><pre>${p.body}</pre>`;
      return { status: 200, body: page(`Dead letter #${id}: payload`, ctx, html`${body}<p><a href="${back}">Back</a></p>`) };
    }
    need(ctx, 'act', 'act on dead letters: that needs the role operator or admin');
    if (m[2] === 'replay') {
      const r = await deps.deadLetters.replay(id, by, { skipDedupe: form.get('skipDedupe') === 'on' });
      return result(ctx, `Dead letter #${id}`, r, (v) => html`Dead letter #${v.id} replayed to ${v.source_queue ?? ''}.`, back);
    }
    if (!by.reason) throw new Refused(400, 'a reason is required to discard a dead letter');
    const r = await deps.deadLetters.discard(id, { ...by, reason: by.reason });
    return result(ctx, `Dead letter #${id}`, r, (v) => html`Dead letter #${v.id} discarded.`, back);
  }
  if (path === '/console/dlq/replay') {
    need(ctx, 'act', 'replay dead letters: that needs the role operator or admin');
    const code = form.get('code')?.trim();
    if (!code) throw new Refused(400, 'a batch replay needs a code');
    const limitText = form.get('limit')?.trim();
    const limit = limitText ? Number(limitText) : undefined;
    if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new Refused(400, 'the limit must be a positive whole number');
    const r = await deps.deadLetters.replayBatch({ code, limit }, actor(ctx.who, form));
    const summary = html`Replayed ${r.replayed.length} of code ${code}${r.replayed.length ? html` (#${r.replayed.join(', #')})` : ''}.
${r.skipped.length ? html` Skipped: ${r.skipped.map((s) => `#${s.id} (${s.reason})`).join('; ')}.` : ''}
${r.paused ? html` Paused with ${r.remaining} left: resume, then replay the code again.` : ''}${r.failed ? html` Stopped at #${r.failed.id}: ${r.failed.reason}; ${r.remaining} left.` : ''}`;
    return {
      status: r.failed ? 503 : 200,
      body: page('Batch replay', ctx, html`<p role="status" class="result${r.failed ? ' failed' : ''}">${summary}</p><p><a href="/console/dlq">Back</a></p>`),
    };
  }
  if (path === '/console/dlq/pause' || path === '/console/dlq/resume') {
    need(ctx, 'act', 'pause or resume batch replays: that needs the role operator or admin');
    const pause = path.endsWith('pause');
    await (pause ? deps.deadLetters.pause(actor(ctx.who, form)) : deps.deadLetters.resume(actor(ctx.who, form)));
    return {
      status: 200,
      body: page(
        'Batch replays',
        ctx,
        html`<p role="status" class="result">Batch replays ${pause ? 'paused' : 'resumed'}.</p><p><a href="/console/dlq">Back</a></p>`,
      ),
    };
  }
  m = /^\/console\/messages\/([^/]+)\/(route|release|payload)$/.exec(path);
  if (m) {
    const msgId = decodeURIComponent(m[1]);
    const back = `/console/messages/${encodeURIComponent(msgId)}`;
    const by = actor(ctx.who, form);
    if (m[2] === 'payload') return messagePayload(deps, ctx, msgId, by, back);
    need(ctx, 'act', 'route or release messages: that needs the role operator or admin');
    if (m[2] === 'release') {
      const r = await deps.release(msgId, by);
      return result(ctx, `Message ${msgId}`, r, (v) => html`Released: ${publishedText(v)}`, back);
    }
    const bydel = form.get('bydel') ?? '';
    if (!isBydelCode(bydel)) throw new Refused(400, 'choose a bydel (030101–030117)');
    const r = await deps.route(msgId, bydel, by, { resend: form.get('resend') === 'on' });
    return result(ctx, `Message ${msgId}`, r, (v) => html`Routed: ${publishedText(v)}`, back);
  }
  throw new Refused(404, 'no such console action');
}

const publishedText = (v: { bydel: string; toHerId: string; published: boolean }) =>
  `to ${bydelName(v.bydel)} (${v.bydel}), HER-id ${v.toHerId}; ${v.published ? 'delivered to the broker' : 'stored, the outbox relay publishes it'}.`;

async function messagePayload(deps: Deps, ctx: PageContext, msgId: string, by: Actor, back: string): Promise<Reply> {
  need(ctx, 'read-payload', 'read payloads: that needs payload access');
  if (!by.reason) throw new Refused(400, 'say why you read the payload (the reason is audited)');
  const entries = await deps.store.timeline(msgId);
  if (entries.length === 0) throw new Refused(404, `no message with MsgId ${msgId}`);
  // as `messages show --with-payload` does: audited before anything is shown
  await deps.store.audit({
    actor: by.actor,
    action: 'messages.show.with-payload',
    target: msgId,
    reason: by.reason,
    detail: { via: 'console', messages: entries.map((e) => e.message.id) },
  });
  const parts: Html[] = [];
  for (const e of entries)
    for (const p of await deps.store.payloads(e.message.id))
      parts.push(html`<h2>${p.kind} (${p.content_type}), message ${e.message.direction}</h2><pre>${Buffer.from(p.body).toString('utf8')}</pre>`);
  return {
    status: 200,
    body: page(
      `Message ${msgId}: payload`,
      ctx,
      html`<p>This read is audited.</p>${parts.length ? parts : html`<p>No stored body (payload retention may have expired it).</p>`}<p><a href="${back}">Back</a></p>`,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// pages

async function get(deps: Deps, ctx: PageContext, path: string, q: URLSearchParams, readiness: () => Promise<Readiness>): Promise<Reply> {
  const ok = (title: string, body: Html, current: string): Reply => ({ status: 200, body: page(title, ctx, body, current) });
  if (path === '/console') return ok('Overview', await overview(deps, readiness), '/console');
  if (path === '/console/dlq') return ok('Dead letters', await deadLetterList(deps, ctx, q), '/console/dlq');
  let m = /^\/console\/dlq\/(\d+)$/.exec(path);
  if (m) return ok(`Dead letter #${m[1]}`, await deadLetterPage(deps, ctx, Number(m[1])), '/console/dlq');
  if (path === '/console/held') return ok('Held messages', await heldList(deps, ctx), '/console/held');
  if (path === '/console/waiting') return ok('Waiting for the kommune', await waiting(deps, q), '/console/waiting');
  if (path === '/console/overtid') return ok('Overtid and indicators', await overtid(deps, q), '/console/overtid');
  if (path === '/console/overtid/report') {
    const { from, to } = period(deps, q);
    const ledger = await loadPeriodLedger(deps.store, deps.calendar, { from, to, now: new Date(), bydelOfHerId: deps.bydelOfHerId });
    return { status: 200, body: toHtmlReport(overtidReport(ledger.entries, ledger.carriedOver).map(named), ledger, from, to), csp: REPORT_CSP };
  }
  m = /^\/console\/messages\/([^/]+)$/.exec(path);
  if (m) return ok(`Message ${decodeURIComponent(m[1])}`, await messagePage(deps, ctx, decodeURIComponent(m[1])), '');
  throw new Refused(404, 'no such console page');
}

const time = (deps: Deps, iso: string | null | undefined) => (iso ? DateTime.fromISO(iso, { zone: deps.timeZone }).toFormat('yyyy-MM-dd HH:mm:ss') : '');
const msgLink = (msgId: string | null) => (msgId ? html`<a href="/console/messages/${encodeURIComponent(msgId)}">${msgId}</a>` : '');
const bydelText = (code: string | null) => (code ? `${code} ${bydelName(code)}` : '');

async function overview(deps: Deps, readiness: () => Promise<Readiness>): Promise<Html> {
  const now = new Date();
  const [ready, snapshot, queues, hourly, firing] = await deps.memo.get('overview', () =>
    Promise.all([
      readiness(),
      opsSnapshot(deps.store.db, now),
      deps.queues(),
      perHour(deps, now),
      opsKysely(deps.store.db).selectFrom('ops_alerts').selectAll().where('state', '=', 'firing').orderBy('changed_at').execute(),
    ]),
  );
  const checks = ['broker', 'database', 'schemas', 'running'];
  const transport = snapshot.oldestPendingSeconds.outbox;
  return html`<h2>Health</h2>
${table('Health', ['check', 'state'], checks, (c) => [c, ready.failing.includes(c) ? html`<span class="bad">failing: ${ready.reasons[c]}</span>` : html`<span class="ok">ok</span>`])}
<p>Transport: ${!transport ? html`<span class="ok">nothing waiting to be published</span>` : html`<span class="warn">the oldest unpublished outbox item has waited ${Math.round(transport)} s</span>`}.
Dead letters open: <a href="/console/dlq">${snapshot.deadLettersOpen}</a>. Held: <a href="/console/held">${(snapshot.expectationsOpen.routing ?? 0) + (snapshot.expectationsOpen.certificate ?? 0)}</a>.</p>
<h2>Queues</h2>
${table('Queue depths at the last ops check', ['queue', 'messages', 'consumers'], queues, (r) => [r.queue, r.messages, r.consumers], 'not checked yet')}
<h2>Alerts firing now</h2>
${table('Alerts firing', ['kind', 'count'], Object.entries(snapshot.alertsFiring), ([k, n]) => [k, n])}
${table('Ops conditions firing', ['kind', 'subject', 'since'], firing, (a) => [a.kind, a.subject, time(deps, a.changed_at)])}
<h2>Messages per hour</h2>
${table('Messages received per hour (last 12 hours)', ['hour', 'out (hospital → bydel)', 'in (bydel → hospital)'], hourly, (h) => [h.hour, h.out, h.in])}
<h2>Open expectations</h2>
${table('Open expectations by kind', ['kind', 'open'], Object.entries(snapshot.expectationsOpen), ([k, n]) => [k, html`<a href="/console/waiting?kind=${k}">${n}</a>`])}`;
}

async function perHour(deps: Deps, now: Date): Promise<{ hour: string; out: number; in: number }[]> {
  const since = new Date(now.getTime() - 12 * 3600_000);
  since.setUTCMinutes(0, 0, 0);
  const hourOf = sql<string>`substr(${sql.ref('created_at')}, 1, 13)`;
  const rows = await deps.store.db.kysely
    .selectFrom('messages')
    .select(['direction', hourOf.as('h'), sql<number | string>`count(*)`.as('n')])
    .where('created_at', '>=', since.toISOString())
    .groupBy(['direction', hourOf])
    .execute();
  const out: { hour: string; out: number; in: number }[] = [];
  for (let t = since.getTime(); t <= now.getTime(); t += 3600_000) {
    const h = new Date(t).toISOString().slice(0, 13);
    const n = (d: string) => Number(rows.find((r) => r.h === h && r.direction === d)?.n ?? 0);
    out.push({ hour: DateTime.fromMillis(t, { zone: deps.timeZone }).toFormat('yyyy-MM-dd HH:00'), out: n('out'), in: n('in') });
  }
  return out.reverse();
}

const AGE = /^(\d+)(m|h|d)$/;

async function deadLetterList(deps: Deps, ctx: PageContext, q: URLSearchParams): Promise<Html> {
  const state = q.get('state') || 'open';
  if (!['open', 'replayed', 'discarded', 'all'].includes(state)) throw new Refused(400, 'state must be open, replayed, discarded or all');
  const code = q.get('code')?.trim() || undefined;
  const queue = q.get('queue')?.trim() || undefined;
  const age = q.get('olderThan')?.trim() || '';
  const ageMatch = AGE.exec(age);
  if (age && !ageMatch) throw new Refused(400, 'older than is a number with m, h or d (e.g. 30m, 4h, 2d)');
  const now = new Date();
  const cutoff = ageMatch ? now.getTime() - Number(ageMatch[1]) * { m: 60_000, h: 3600_000, d: 86400_000 }[ageMatch[2] as 'm' | 'h' | 'd'] : undefined;
  const rows = (
    await deps.memo.get(`dlq|${state}|${code ?? ''}|${queue ?? ''}`, () =>
      deps.deadLetters.list({ state: state as 'open', code, sourceQueue: queue, limit: 500 }),
    )
  ).filter((r) => cutoff === undefined || Date.parse(r.received_at) <= cutoff);
  const codes = await deps.memo.get('dlq-codes', () => openCodes(deps));
  const paused = await deps.deadLetters.paused();
  const filter = html`<form method="get" action="/console/dlq" aria-label="Filter">
<label>State <select name="state">${['open', 'replayed', 'discarded', 'all'].map((s) => html`<option${raw(s === state ? ' selected' : '')}>${s}</option>`)}</select></label>
<label>Code <input name="code" value="${code ?? ''}" size="12"></label><label>Queue <input name="queue" value="${queue ?? ''}" size="16"></label>
<label>Older than <input name="olderThan" value="${age}" size="6" placeholder="4h"></label><button type="submit">Filter</button></form>`;
  const actions = can(ctx.who, 'act')
    ? html`<div class="actions"><h2>Batch replay</h2><p>Batch replays are ${paused ? html`<span class="warn">paused</span>` : 'allowed'}.</p>
${postForm('/console/dlq/replay', ctx.csrf, 'Replay every open one of this code', html`<label>Code <select name="code">${codes.map((c) => html`<option>${c}</option>`)}</select></label><label>Limit <input name="limit" size="5" inputmode="numeric"></label><label>Reason <input name="reason" size="30"></label>`)}
${paused ? postForm('/console/dlq/resume', ctx.csrf, 'Resume batch replays', html`<label>Reason <input name="reason" size="30"></label>`) : postForm('/console/dlq/pause', ctx.csrf, 'Pause batch replays', html`<label>Reason <input name="reason" size="30"></label>`)}</div>`
    : '';
  return html`${filter}
${table(
  `${rows.length} dead letter${rows.length === 1 ? '' : 's'} (${state})`,
  ['id', 'age', 'queue', 'code', 'reason', 'MsgId', 'type', 'bydel', 'state'],
  rows,
  (r) => {
    const s = deadLetterSummary(r, now);
    return [
      html`<a href="/console/dlq/${s.id}">#${s.id}</a>`,
      s.age,
      s.sourceQueue ?? '',
      s.code,
      s.reason,
      msgLink(s.msgId),
      s.type ?? '',
      bydelText(s.bydel),
      s.state,
    ];
  },
)}
${actions}`;
}

async function deadLetterPage(deps: Deps, ctx: PageContext, id: number): Promise<Html> {
  const r = await deps.deadLetters.show(id, false, { actor: ctx.who.name, via: 'console' });
  if (!r.ok) throw new Refused(404, r.reason);
  const s = deadLetterSummary(r.value.row, new Date());
  const fields: [string, unknown][] = [
    ['state', s.state],
    ['age', `${s.age} (received ${time(deps, s.receivedAt)})`],
    ['source queue', s.sourceQueue],
    ['code', s.code],
    ['reason', s.reason],
    ['stage', s.stage],
    ['MsgId', msgLink(s.msgId)],
    ['type', s.type],
    ['bydel', bydelText(s.bydel)],
    ['attempts', s.attempts],
    ['first failed', time(deps, s.firstFailedAt)],
    ...('resolvedAt' in s
      ? ([['resolved', `${time(deps, s.resolvedAt)} by ${s.resolvedBy ?? ''}${s.resolution ? `: ${s.resolution}` : ''}`]] as [string, unknown][])
      : []),
  ];
  const open = s.state === 'open';
  const actions = html`${
    open && can(ctx.who, 'act')
      ? html`<div class="actions"><h2>Actions</h2>
${postForm(`/console/dlq/${id}/replay`, ctx.csrf, 'Replay', html`<label>Reason <input name="reason" size="30"></label><label><span>Skip the MsgId dedupe</span><input type="checkbox" name="skipDedupe"></label>`)}
${postForm(`/console/dlq/${id}/discard`, ctx.csrf, 'Discard', html`<label>Reason (required) <input name="reason" size="30" required></label>`)}</div>`
      : ''
  }${can(ctx.who, 'read-payload') ? html`<div class="actions"><h2>Payload</h2>${postForm(`/console/dlq/${id}/payload`, ctx.csrf, 'Show the payload (audited)', html`<label>Why (audited) <input name="reason" size="30" required></label>`)}</div>` : ''}`;
  return html`<dl class="fields">${fields.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => html`<dt>${k}</dt><dd>${v as Html | string}</dd>`)}</dl>
${table('Headers', ['header', 'value'], Object.entries(r.value.headers), ([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])}
${actions}`;
}

interface Held {
  msgId: string;
  type: string | null;
  createdAt: string;
  waitingFor: 'routing' | 'certificate';
  verdicts: string[];
  target?: string;
}

async function heldMessages(deps: Deps, msgId?: string): Promise<Held[]> {
  let q = deps.store.db.kysely
    .selectFrom('messages as m')
    .innerJoin('expectations as e', 'e.message_id', 'm.id')
    .select(['m.id', 'm.msg_id', 'm.msg_type', 'm.created_at', 'e.kind'])
    .where('m.state', '=', 'held')
    .where('m.direction', '=', 'out')
    .where('e.state', '=', 'open')
    .where('e.kind', 'in', ['routing', 'certificate'])
    .orderBy('m.created_at')
    .limit(200);
  if (msgId) q = q.where('m.msg_id', '=', msgId);
  const rows = await q.execute();
  const out: Held[] = [];
  for (const r of rows) {
    const event = await deps.store.latestEvent(r.id, r.kind === 'routing' ? 'held-unroutable' : 'held-certificate');
    const detail = event?.detail ? (JSON.parse(event.detail) as { verdicts?: string[]; reason?: string; target?: { bydel?: string; toHerId?: string } }) : {};
    out.push({
      msgId: r.msg_id,
      type: r.msg_type,
      createdAt: r.created_at,
      waitingFor: r.kind as 'routing' | 'certificate',
      verdicts: detail.verdicts ?? (detail.reason ? [detail.reason] : []),
      target: detail.target?.toHerId ? `${detail.target.bydel ? `${bydelText(detail.target.bydel)}, ` : ''}HER-id ${detail.target.toHerId}` : undefined,
    });
  }
  return out;
}

function routeForm(ctx: PageContext, msgId: string, resend: boolean): Html {
  return postForm(
    `/console/messages/${encodeURIComponent(msgId)}/route`,
    ctx.csrf,
    resend ? 'Send to this bydel instead' : 'Route to this bydel',
    html`<label>Bydel <select name="bydel" required><option value="">choose…</option>${Object.entries(BYDELER)
      .filter(([code]) => code !== '030117')
      .map(
        ([code, name]) => html`<option value="${code}">${code} ${name}</option>`,
      )}</select></label>${resend ? html`<input type="hidden" name="resend" value="on">` : ''}<label>Reason <input name="reason" size="30"></label>`,
  );
}

async function heldList(deps: Deps, ctx: PageContext): Promise<Html> {
  const held = await deps.memo.get('held', () => heldMessages(deps));
  return html`<p>Messages the gateway would not send without a decision: whose bydel cannot be decided without guessing (routing), or whose receiver has no usable encryption certificate yet.</p>
${held.length === 0 ? html`<p class="empty">Nothing is held.</p>` : held.map((h) => heldItem(deps, ctx, h))}`;
}

function heldItem(deps: Deps, ctx: PageContext, h: Held): Html {
  return html`<section aria-label="${h.msgId}"><h2>${msgLink(h.msgId)} · ${h.type ?? ''} · held since ${time(deps, h.createdAt)}</h2>
<p>Waiting for: ${h.waitingFor === 'routing' ? 'a bydel (manual routing)' : `a usable encryption certificate of the receiver${h.target ? ` (${h.target})` : ''}`}</p>
${h.verdicts.length ? html`<p>Every rule's verdict:</p><ol class="verdicts">${h.verdicts.map((v) => html`<li>${v}</li>`)}</ol>` : ''}
${can(ctx.who, 'act') ? html`${routeForm(ctx, h.msgId, false)}${h.waitingFor === 'certificate' ? postForm(`/console/messages/${encodeURIComponent(h.msgId)}/release`, ctx.csrf, 'Try to release now', html`<label>Reason <input name="reason" size="30"></label>`) : ''}` : ''}</section>`;
}

const named = (r: OvertidRow) => ({ ...r, bydelName: r.bydel === 'alle' ? 'Alle bydeler' : bydelName(r.bydel) });

/** `from` and `to` (YYYY-MM-DD, local): by default the current month up to today. */
function period(deps: Deps, q: URLSearchParams): { from: string; to: string } {
  const today = DateTime.now().setZone(deps.timeZone);
  const from = q.get('from') || today.startOf('month').toISODate() || '';
  const to = q.get('to') || today.toISODate() || '';
  for (const [name, v] of [
    ['from', from],
    ['to', to],
  ])
    if (!/^\d{4}-\d{2}-\d{2}$/.test(v) || !DateTime.fromISO(v).isValid) throw new Refused(400, `${name} must be a date YYYY-MM-DD`);
  if (from > to) throw new Refused(400, 'from must not be after to');
  return { from, to };
}

async function overtid(deps: Deps, q: URLSearchParams): Promise<Html> {
  const { from, to } = period(deps, q);
  const rows = await deps.memo.get(`overtid|${from}|${to}`, async () => {
    const ledger = await loadPeriodLedger(deps.store, deps.calendar, { from, to, now: new Date(), bydelOfHerId: deps.bydelOfHerId });
    return overtidReport(ledger.entries, ledger.carriedOver).map(named);
  });
  const report = `/console/overtid/report?from=${from}&to=${to}`;
  return html`<form method="get" action="/console/overtid" aria-label="Period"><label>From <input type="date" name="from" value="${from}"></label><label>To <input type="date" name="to" value="${to}"></label><button type="submit">Filter</button></form>
<p>The utskrivningsklar notices of the period per bydel, as <code>plo-gateway report overtid</code> counts them (docs/deadlines-and-alerts.md). <a href="${report}">The report with its charts and the national figures</a>.</p>
${table(
  `Per bydel, ${from} – ${to}`,
  ['bydel', 'notices', 'answered within deadline', 'unanswered', 'candidate døgn', 'payable døgn', 'answered, not settled', 'median answer (working min)'],
  rows,
  (r) => [
    r.bydel === 'alle' ? html`<strong>${r.bydelName}</strong>` : html`<a href="/console/waiting?bydel=${r.bydel}">${r.bydel} ${r.bydelName}</a>`,
    r.notices,
    r.answeredWithinDeadline,
    r.unanswered,
    r.candidateDogn,
    r.payableDogn,
    r.unsettledDogn,
    r.medianAnswerWorkingMinutes ?? '',
  ],
)}`;
}

const WAITING_ROWS = 200;

/** Open expectations per bydel, due and overdue, counted by the store (not from the rows shown). */
async function waitingPerBydel(deps: Deps, now: Date, bydel?: string, kind?: string): Promise<{ bydel: string | null; waiting: number; overdue: number }[]> {
  let q = deps.store.db.kysely
    .selectFrom('expectations as e')
    .innerJoin('messages as m', 'm.id', 'e.message_id')
    .select([
      'm.bydel',
      sql<number | string>`count(*)`.as('n'),
      sql<number | string>`sum(case when ${sql.ref('e.due_at')} <= ${now.toISOString()} then 1 else 0 end)`.as('overdue'),
    ])
    .where('e.state', '=', 'open')
    .where('e.kind', 'not in', ['apprec-rejected', 'transport-error'])
    .groupBy('m.bydel')
    .orderBy('m.bydel');
  if (bydel) q = q.where('m.bydel', '=', bydel);
  if (kind) q = q.where('e.kind', '=', kind as 'answer');
  return (await q.execute()).map((r) => ({ bydel: r.bydel, overdue: Number(r.overdue), waiting: Number(r.n) - Number(r.overdue) }));
}

async function openCodes(deps: Deps): Promise<string[]> {
  const rows = await opsKysely(deps.store.db).selectFrom('dead_letters').select('code').distinct().where('state', '=', 'open').orderBy('code').execute();
  return rows.map((r) => r.code);
}

async function waiting(deps: Deps, q: URLSearchParams): Promise<Html> {
  const bydel = q.get('bydel') || undefined;
  if (bydel && !isBydelCode(bydel)) throw new Refused(400, 'bydel must be a bydel code 030101–030117');
  const kind = q.get('kind') || undefined;
  const kinds = ['transport-ack', 'apprec', 'answer', 'innleggelsesrapport', 'routing', 'certificate', 'redirect'] as const;
  if (kind && !(kinds as readonly string[]).includes(kind)) throw new Refused(400, `kind must be one of ${kinds.join(', ')}`);
  const now = new Date();
  const [items, counts] = await deps.memo.get(`waiting|${bydel ?? ''}|${kind ?? ''}`, () =>
    Promise.all([
      openExpectations(deps.store.db, { bydel, kind: kind as (typeof kinds)[number] | undefined, limit: WAITING_ROWS }),
      waitingPerBydel(deps, now, bydel, kind),
    ]),
  );
  const total = counts.reduce((a, c) => a + c.waiting + c.overdue, 0);
  const filter = html`<form method="get" action="/console/waiting" aria-label="Filter">
<label>Bydel <select name="bydel"><option value="">all</option>${Object.entries(BYDELER).map(([c, n]) => html`<option value="${c}"${raw(c === bydel ? ' selected' : '')}>${c} ${n}</option>`)}</select></label>
<label>Waiting for <select name="kind"><option value="">all</option>${kinds.map((k) => html`<option${raw(k === kind ? ' selected' : '')}>${k}</option>`)}</select></label><button type="submit">Filter</button></form>`;
  return html`${filter}
${table('Per bydel', ['bydel', 'waiting', 'overdue'], counts, (c) => [c.bydel ? html`<a href="/console/waiting?bydel=${c.bydel}">${bydelText(c.bydel)}</a>` : '(none yet)', c.waiting, c.overdue ? html`<span class="bad">${c.overdue}</span>` : 0])}
${table(
  `Open expectations, soonest due first${total > items.length ? ` (the first ${items.length} of ${total})` : ''}`,
  ['due', 'state', 'waiting for', 'type', 'bydel', 'receiver HER-id', 'MsgId'],
  items,
  (p) => {
    const overdue = new Date(p.dueAt) <= now;
    return [
      time(deps, p.dueAt),
      overdue ? html`<span class="bad">overdue${p.alertState === 'firing' ? `, alerted${p.reminders ? ` +${p.reminders}` : ''}` : ''}</span>` : 'waiting',
      p.kind,
      p.msgType ?? '',
      bydelText(p.bydel),
      p.receiverHerId ?? '',
      msgLink(p.msgId),
    ];
  },
)}`;
}

async function messagePage(deps: Deps, ctx: PageContext, msgId: string): Promise<Html> {
  const entries = await deps.store.timeline(msgId);
  if (entries.length === 0) throw new Refused(404, `no message with MsgId ${msgId}`);
  const held = await heldMessages(deps, msgId);
  const parts = entries.map((e) => {
    const m = e.message;
    const fields: [string, string | null][] = [
      ['direction', m.direction === 'out' ? 'hospital → bydel' : 'bydel → hospital'],
      ['type', m.msg_type],
      ['state', m.state],
      ['sender HER-id', m.sender_her_id],
      ['bydel', bydelText(m.bydel)],
      ['route rule', m.route_rule],
      ['receiver HER-ids', [m.receiver_l1_her_id, m.receiver_l2_her_id].filter(Boolean).join(' / ') || null],
      ['conversation', m.conversation_id],
      ['transport', m.transport_state ? `${m.transport_state} at ${time(deps, m.transport_at)}` : null],
      ['AppRec', m.apprec_status ? `${m.apprec_status} at ${time(deps, m.apprec_at)}${m.apprec_errors ? ` ${m.apprec_errors}` : ''}` : null],
      [
        'answer',
        m.answer_state ? `${m.answer_state}${m.answered_at ? ` at ${time(deps, m.answered_at)}` : ''}${m.answer_rule ? ` (${m.answer_rule})` : ''}` : null,
      ],
      ['error', m.error_code ? `${m.error_code}: ${m.error_reason}` : null],
      ['received', time(deps, m.created_at)],
    ];
    const resend = m.direction === 'out' && m.state === 'published' && can(ctx.who, 'act');
    return html`<section><dl class="fields">${fields.filter(([, v]) => v).map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
${table('Timeline', ['at', 'stage', 'event', 'detail'], e.events, (ev) => [time(deps, ev.at), ev.stage, ev.event, ev.detail ?? ''])}
${resend ? html`<details><summary>Sent to the wrong bydel? Send it to another</summary>${routeForm(ctx, m.msg_id, true)}</details>` : ''}</section>`;
  });
  const payload = can(ctx.who, 'read-payload')
    ? html`<div class="actions"><h2>Payload</h2>${postForm(`/console/messages/${encodeURIComponent(msgId)}/payload`, ctx.csrf, 'Show the stored bodies (audited)', html`<label>Why (audited) <input name="reason" size="30" required></label>`)}</div>`
    : '';
  return html`${held.map((h) => heldItem(deps, ctx, h))}${parts}${payload}`;
}
