// The ops API as a client sees it, on SQLite and PostgreSQL: a user's bearer token (or the
// break-glass GATEWAY_API_TOKEN) or nothing; what each role may do; POST for every action, a
// reason to discard; the audit actor is the token's user, never a name in the request; a revoked
// token stops at once; failed logins are refused for a while after too many, and never logged
// with the token.
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createLogger } from '../../src/observability/log.js';
import { apiHandler, tokenMatches } from '../../src/ops/api.js';
import { Authenticator } from '../../src/ops/auth.js';
import { classifyDeadLetter } from '../../src/ops/deadLetters/classify.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { DeadLetterService } from '../../src/ops/deadLetters/service.js';
import { startHttpServer } from '../../src/ops/http.js';
import { fail } from '../../src/ops/result.js';
import { sha256, UserStore } from '../../src/ops/users.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { type Backend, testBackends } from '../support/databases.js';
import { LogCapture } from '../support/harness.js';

const BREAK_GLASS = 'break-glass-secret-token';
const admin = { actor: 'root', via: 'cli' };

for (const backend of testBackends()) {
  describe(`ops HTTP API with personal tokens (${backend.dialect})`, function () {
    this.timeout(30000);
    let store: Store;
    let users: UserStore;
    let repo: DeadLetterRepository;
    let server: Server;
    let noBreakGlass: Server;
    let deadLetterId: number;
    const logs = new LogCapture();
    const log = createLogger('info', logs);
    const tokens: Record<string, string> = {};
    const url = (s: Server, path: string) => `http://127.0.0.1:${(s.address() as AddressInfo).port}${path}`;
    const call = (path: string, init: RequestInit & { as?: string | null; on?: Server } = {}) => {
      const { as = 'ola', on = server, ...rest } = init;
      const token = as === null ? undefined : (tokens[as] ?? as);
      return fetch(url(on, path), { ...rest, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
    };
    const post = (path: string, body: unknown, as = 'ola') => call(path, { method: 'POST', body: JSON.stringify(body), as });
    const auditActions = async () =>
      (await store.db.kysely.selectFrom('audit').select(['action', 'actor', 'reason']).where('action', 'like', 'dlq.%').orderBy('id').execute()).map(
        (a) => `${a.action}:${a.actor}:${a.reason ?? ''}`,
      );

    /** what each route call was asked for (resend or not), and by whom */
    const routeCalls: { resend?: boolean; actor: string }[] = [];

    before(async () => {
      store = new Store(await openDatabase(await backend.create()));
      users = new UserStore(store.db);
      repo = new DeadLetterRepository(store.db);
      deadLetterId = (await repo.record(
        classifyDeadLetter(
          { 'x-error-code': 'T02', 'x-error-reason': 'XSD-invalid.', 'x-source-queue': 'epj.outbound', 'msg-id': 'm-1' },
          randomUUID(),
          Buffer.from('<MsgHead/>'),
        ),
        Buffer.from('<MsgHead/>'),
        {},
      ))!;
      // no broker behind this service: replays answer 503
      const deadLetters = new DeadLetterService(repo, log);
      const route = async (_msgId: string, _bydel: string, by: { actor: string }, options?: { resend?: boolean }) => {
        routeCalls.push({ ...(options ?? {}), actor: by.actor });
        return fail('not-found', 'no outgoing message with that MsgId');
      };
      const release = async () => fail('not-found', 'no outgoing message with that MsgId');
      server = await startHttpServer(0, [], {
        api: apiHandler({ auth: new Authenticator({ users, breakGlassToken: BREAK_GLASS, log }), log, deadLetters, route, release }),
      });
      noBreakGlass = await startHttpServer(0, [], { api: apiHandler({ auth: new Authenticator({ users, log }), log, deadLetters, route, release }) });
    });
    after(async () => {
      await new Promise((r) => server?.close(r));
      await new Promise((r) => noBreakGlass?.close(r));
      await store?.close();
      await (backend as Backend).removeAll();
    });

    it('with no users and no GATEWAY_API_TOKEN the API is disabled (503), never open; a first user enables it', async () => {
      const r = await call('/api/dlq', { on: noBreakGlass, as: 'anything' });
      expect(r.status).to.equal(503);
      expect((await r.json()).error).to.match(/API disabled/);
      for (const [name, role, payloadAccess] of [
        ['vera', 'viewer', false],
        ['ola', 'operator', false],
        ['petra', 'operator', true],
        ['ada', 'admin', true],
      ] as const) {
        const added = await users.add(name, role, { payloadAccess }, admin);
        if (!added.ok) throw new Error(added.reason);
        tokens[name] = added.value.token;
      }
      expect((await call('/api/dlq', { on: noBreakGlass, as: null })).status).to.equal(401);
      expect((await call('/api/dlq', { on: noBreakGlass, as: 'vera' })).status).to.equal(200);
    });

    it('a token is stored only as its hash, shown once; names are checked, one active user per name', async () => {
      const rows = await store.db.kysely.withTables<{ users: { name: string; token_hash: string } }>().selectFrom('users').selectAll().execute();
      const dump = JSON.stringify(rows);
      for (const t of Object.values(tokens)) expect(dump).not.to.contain(t);
      expect(rows.find((r) => r.name === 'ola')?.token_hash).to.equal(sha256(tokens.ola));
      expect(tokens.ola).to.match(/^plo_[A-Za-z0-9_-]{43}$/);
      expect(await users.add('ola', 'admin', {}, admin)).to.deep.include({ ok: false, status: 'conflict' });
      expect(await users.add('no spaces', 'viewer', {}, admin)).to.deep.include({ ok: false, status: 'invalid' });
      expect(await users.add('break-glass', 'viewer', {}, admin)).to.deep.include({ ok: false, status: 'invalid' });
      expect(await users.add('vic', 'viewer', { payloadAccess: true }, admin)).to.deep.include({ ok: false, status: 'invalid' });
      const listed = await users.list();
      expect(listed.map((u) => `${u.name}:${u.role}:${u.payloadAccess}:${u.state}`)).to.deep.equal([
        'ada:admin:true:active',
        'ola:operator:false:active',
        'petra:operator:true:active',
        'vera:viewer:false:active',
      ]);
      expect(JSON.stringify(listed)).not.to.match(/token|hash/i);
    });

    it('401 without a token and with a wrong one', async () => {
      expect((await call('/api/dlq', { as: null })).status).to.equal(401);
      const wrong = await call('/api/dlq', { as: `${tokens.ola}x` });
      expect(wrong.status).to.equal(401);
      expect(wrong.headers.get('www-authenticate')).to.match(/^Bearer/);
      expect(tokenMatches('a', 'a much longer token')).to.equal(false);
    });

    it('a viewer lists and shows metadata; the payload needs payload access, and that read is audited with the user', async () => {
      const list = await (await call('/api/dlq', { as: 'vera' })).json();
      expect(list).to.have.length(1);
      expect(list[0]).to.include({ id: deadLetterId, code: 'T02', msgId: 'm-1', sourceQueue: 'epj.outbound', state: 'open' });
      const plain = await (await call(`/api/dlq/${deadLetterId}`, { as: 'vera' })).json();
      expect(plain).to.not.have.property('payload');
      for (const who of ['vera', 'ola']) {
        const refused = await call(`/api/dlq/${deadLetterId}?withPayload=true`, { as: who });
        expect(refused.status, who).to.equal(403);
        expect((await refused.json()).error).to.match(/payload access/);
      }
      expect((await call(`/api/dlq/${deadLetterId}?withPayload=yes`, { as: 'petra' })).status).to.equal(400);
      expect(await auditActions()).to.deep.equal([]);
      const withPayload = await (await call(`/api/dlq/${deadLetterId}?withPayload=true&reason=INC-1`, { as: 'petra' })).json();
      expect(withPayload.payload.body).to.equal('<MsgHead/>');
      expect(await auditActions()).to.deep.equal(['dlq.show-payload:petra:INC-1']);
    });

    it('nothing side-effecting on GET: replay and discard answer 405 to GET', async () => {
      expect((await call(`/api/dlq/${deadLetterId}/replay`)).status).to.equal(405);
      expect((await call(`/api/dlq/${deadLetterId}/discard`)).status).to.equal(405);
      expect((await repo.get(deadLetterId))?.state).to.equal('open');
    });

    it('a viewer may not act (403, nothing changes); a request naming an actor is refused', async () => {
      for (const path of [`/api/dlq/${deadLetterId}/discard`, `/api/dlq/${deadLetterId}/replay`, '/api/dlq/pause', '/api/messages/abc/route']) {
        const r = await post(path, { reason: 'x', bydel: '030101' }, 'vera');
        expect(r.status, path).to.equal(403);
        expect((await r.json()).error).to.match(/operator or admin/);
      }
      expect((await repo.get(deadLetterId))?.state).to.equal('open');
      const claimed = await post(`/api/dlq/${deadLetterId}/discard`, { reason: 'x', actor: 'kari' });
      expect(claimed.status).to.equal(400);
      expect((await claimed.json()).error).to.match(/actor/);
      expect((await call(`/api/dlq/${deadLetterId}?actor=kari`, { as: 'vera' })).status).to.equal(400);
      expect(await auditActions()).to.deep.equal(['dlq.show-payload:petra:INC-1']);
    });

    it('an operator: a replay without a broker is 503; a discard needs a reason, then is audited with the user', async () => {
      expect((await post(`/api/dlq/${deadLetterId}/replay`, {})).status).to.equal(503);
      expect((await post(`/api/dlq/${deadLetterId}/discard`, {})).status).to.equal(400);
      expect((await post('/api/dlq/replay', { code: 'T02', limit: -1 })).status).to.equal(400);
      const r = await post(`/api/dlq/${deadLetterId}/discard`, { reason: 'sent again by the EPJ' });
      expect(r.status).to.equal(200);
      expect((await repo.get(deadLetterId))?.state).to.equal('discarded');
      expect((await repo.get(deadLetterId))?.resolved_by).to.equal('ola');
      expect((await auditActions()).at(-1)).to.equal('dlq.discard:ola:sent again by the EPJ');
      expect((await post(`/api/dlq/${deadLetterId}/discard`, { reason: 'again' })).status).to.equal(409);
    });

    it('the break-glass GATEWAY_API_TOKEN acts as admin under the name break-glass, logged each time', async () => {
      const before = logs.lines.length;
      const r = await call('/api/dlq/pause', { method: 'POST', body: JSON.stringify({ reason: 'incident' }), as: BREAK_GLASS });
      expect(r.status).to.equal(200);
      expect((await auditActions()).at(-1)).to.equal('dlq.pause:break-glass:incident');
      const used = logs.lines.slice(before).map((l) => JSON.parse(l));
      expect(used.some((l) => l.event === 'GW-5303' && l.path === '/api/dlq/pause')).to.equal(true);
      expect(logs.text()).not.to.contain(BREAK_GLASS);
      expect((await post('/api/dlq/resume', {}, 'ada')).status).to.equal(200);
    });

    it('unknown paths are 404, unknown messages to route are 404, bad bodies 400', async () => {
      expect((await call('/api/nothing')).status).to.equal(404);
      expect((await post('/api/messages/abc/route', { bydel: '030101' })).status).to.equal(404);
      expect((await call('/api/messages/abc/route', { method: 'POST', body: 'not json' })).status).to.equal(400);
    });

    it('POST /api/messages/:msgId/route with resend sends a delivered message elsewhere, as the user; resend must be a boolean', async () => {
      routeCalls.length = 0;
      await post('/api/messages/abc/route', { bydel: '030103', resend: true, reason: 'feil adressat' });
      await post('/api/messages/abc/route', { bydel: '030103' }, 'ada');
      expect(routeCalls).to.deep.equal([
        { resend: true, actor: 'ola' },
        { resend: false, actor: 'ada' },
      ]);
      expect((await post('/api/messages/abc/route', { bydel: '030103', resend: 'yes' })).status).to.equal(400);
    });

    it('a revoked token stops working at once; the name can be given a new token', async () => {
      expect((await call('/api/dlq', { as: 'vera' })).status).to.equal(200);
      const r = await users.revoke('vera', { ...admin, reason: 'left the team' });
      expect(r.ok).to.equal(true);
      expect((await call('/api/dlq', { as: 'vera' })).status).to.equal(401);
      expect(await users.revoke('vera', admin)).to.deep.include({ ok: false, status: 'not-found' });
      const again = await users.add('vera', 'viewer', {}, admin);
      if (!again.ok) throw new Error(again.reason);
      expect((await call('/api/dlq', { as: again.value.token })).status).to.equal(200);
      expect((await call('/api/dlq', { as: 'vera' })).status, 'the old token stays revoked').to.equal(401);
      const audit = await store.db.kysely
        .selectFrom('audit')
        .select(['action', 'actor', 'target', 'reason'])
        .where('action', 'like', 'user.%')
        .orderBy('id')
        .execute();
      expect(audit.map((a) => `${a.action}:${a.actor}:${a.target}:${a.reason ?? ''}`).slice(-2)).to.deep.equal([
        'user.revoke:root:user:vera:left the team',
        'user.add:root:user:vera:',
      ]);
    });

    it('failed logins are refused for a while after too many (429, Retry-After), logged without the token', async () => {
      let now = 1_000_000;
      const throttledLogs = new LogCapture();
      const tlog = createLogger('info', throttledLogs);
      const auth = new Authenticator({ users, log: tlog, maxFailures: 3, failureWindowMs: 60_000, clock: () => now });
      const s = await startHttpServer(0, [], {
        api: apiHandler({
          auth,
          log: tlog,
          deadLetters: new DeadLetterService(repo, tlog),
          route: async () => fail('not-found', 'x'),
          release: async () => fail('not-found', 'x'),
        }),
      });
      try {
        for (let i = 0; i < 3; i++) expect((await call('/api/dlq', { on: s, as: `guess-${i}` })).status).to.equal(401);
        const refused = await call('/api/dlq', { on: s, as: 'ola' });
        expect(refused.status, 'even a good token waits').to.equal(429);
        expect(Number(refused.headers.get('retry-after'))).to.be.within(1, 60);
        now += 61_000;
        expect((await call('/api/dlq', { on: s, as: 'ola' })).status).to.equal(200);
        const lines = throttledLogs.lines.map((l) => JSON.parse(l));
        expect(lines.filter((l) => l.event === 'GW-5301')).to.have.length(3);
        expect(lines.filter((l) => l.event === 'GW-5302')).to.have.length(1);
        expect(throttledLogs.text()).not.to.contain('guess-');
        expect(throttledLogs.text()).not.to.contain(tokens.ola);
      } finally {
        await new Promise((r) => s.close(r));
      }
    });
  });
}
