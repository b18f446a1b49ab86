// The ops API as a client sees it: a bearer token or nothing, POST for every action, a reason to
// discard, an audit row for every action and for every payload read.
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createLogger } from '../../src/observability/log.js';
import { apiHandler, tokenMatches } from '../../src/ops/api.js';
import { classifyDeadLetter } from '../../src/ops/deadLetters/classify.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { DeadLetterService } from '../../src/ops/deadLetters/service.js';
import { startHttpServer } from '../../src/ops/http.js';
import { fail } from '../../src/ops/result.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { testConfig } from '../support/harness.js';

const TOKEN = 'ops-secret-token';
const log = createLogger('silent');

describe('ops HTTP API', function () {
  this.timeout(30000);
  let store: Store;
  let repo: DeadLetterRepository;
  let server: Server;
  let disabled: Server;
  let deadLetterId: number;
  const url = (s: Server, path: string) => `http://127.0.0.1:${(s.address() as AddressInfo).port}${path}`;
  const call = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const { token = TOKEN, ...rest } = init;
    return fetch(url(server, path), { ...rest, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
  };
  const auditActions = async () =>
    (await store.db.kysely.selectFrom('audit').select(['action', 'actor', 'reason']).orderBy('id').execute()).map(
      (a) => `${a.action}:${a.actor}:${a.reason ?? ''}`,
    );

  /** what each route call was asked for (resend or not) */
  const routeOptions: { resend?: boolean }[] = [];

  before(async () => {
    store = new Store(await openDatabase(testConfig().database.url));
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
    const route = async (_msgId?: string, _bydel?: string, _by?: unknown, options?: { resend?: boolean }) => {
      routeOptions.push(options ?? {});
      return fail('not-found', 'no outgoing message with that MsgId');
    };
    const release = async () => fail('not-found', 'no outgoing message with that MsgId');
    server = await startHttpServer(0, [], { api: apiHandler({ token: TOKEN, log, deadLetters, route, release }) });
    disabled = await startHttpServer(0, [], { api: apiHandler({ token: undefined, log, deadLetters, route, release }) });
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    await new Promise((r) => disabled?.close(r));
    await store?.close();
  });

  it('without a configured token the API is disabled (503), never open', async () => {
    const r = await fetch(url(disabled, '/api/dlq'), { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).to.equal(503);
    expect((await r.json()).error).to.match(/API disabled/);
  });

  it('401 without a token and with a wrong one', async () => {
    expect((await call('/api/dlq', { token: null })).status).to.equal(401);
    const wrong = await call('/api/dlq', { token: 'ops-secret-tokem' });
    expect(wrong.status).to.equal(401);
    expect(wrong.headers.get('www-authenticate')).to.match(/^Bearer/);
    expect(tokenMatches('a', 'a much longer token')).to.equal(false);
  });

  it('lists and shows dead letters; the payload only on request, and that read is audited', async () => {
    const list = await (await call('/api/dlq')).json();
    expect(list).to.have.length(1);
    expect(list[0]).to.include({ id: deadLetterId, code: 'T02', msgId: 'm-1', sourceQueue: 'epj.outbound', state: 'open' });
    const plain = await (await call(`/api/dlq/${deadLetterId}`)).json();
    expect(plain).to.not.have.property('payload');
    expect(await auditActions()).to.deep.equal([]);
    const withPayload = await (await call(`/api/dlq/${deadLetterId}?withPayload=true`)).json();
    expect(withPayload.payload.body).to.equal('<MsgHead/>');
    expect(await auditActions()).to.deep.equal(['dlq.show-payload:api:']);
  });

  it('nothing side-effecting on GET: replay and discard answer 405 to GET', async () => {
    expect((await call(`/api/dlq/${deadLetterId}/replay`)).status).to.equal(405);
    expect((await call(`/api/dlq/${deadLetterId}/discard`)).status).to.equal(405);
    expect((await repo.get(deadLetterId))?.state).to.equal('open');
  });

  it('a replay without a broker is 503; a discard needs a reason, then is audited with actor and reason', async () => {
    expect((await call(`/api/dlq/${deadLetterId}/replay`, { method: 'POST', body: '{}' })).status).to.equal(503);
    expect((await call(`/api/dlq/${deadLetterId}/discard`, { method: 'POST', body: '{}' })).status).to.equal(400);
    const r = await call(`/api/dlq/${deadLetterId}/discard`, { method: 'POST', body: JSON.stringify({ reason: 'sent again by the EPJ', actor: 'kari' }) });
    expect(r.status).to.equal(200);
    expect((await repo.get(deadLetterId))?.state).to.equal('discarded');
    expect((await auditActions()).at(-1)).to.equal('dlq.discard:kari:sent again by the EPJ');
    expect((await call(`/api/dlq/${deadLetterId}/discard`, { method: 'POST', body: JSON.stringify({ reason: 'again' }) })).status).to.equal(409);
  });

  it('unknown paths are 404, unknown messages to route are 404, bad bodies 400', async () => {
    expect((await call('/api/nothing')).status).to.equal(404);
    expect((await call('/api/messages/abc/route', { method: 'POST', body: JSON.stringify({ bydel: '030101' }) })).status).to.equal(404);
    expect((await call('/api/messages/abc/route', { method: 'POST', body: 'not json' })).status).to.equal(400);
  });

  it('POST /api/messages/:msgId/route with resend sends a delivered message elsewhere; resend must be a boolean', async () => {
    routeOptions.length = 0;
    await call('/api/messages/abc/route', { method: 'POST', body: JSON.stringify({ bydel: '030103', resend: true, reason: 'feil adressat' }) });
    await call('/api/messages/abc/route', { method: 'POST', body: JSON.stringify({ bydel: '030103' }) });
    expect(routeOptions).to.deep.equal([{ resend: true }, { resend: false }]);
    expect((await call('/api/messages/abc/route', { method: 'POST', body: JSON.stringify({ bydel: '030103', resend: 'yes' }) })).status).to.equal(400);
  });
});
