// The HTTP listener with http.tls: HTTPS with the configured key and certificate, and nothing in
// clear on that port; the console's session cookie is then Secure.

import type { Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createLogger } from '../../src/observability/log.js';
import { Authenticator } from '../../src/ops/auth.js';
import { consoleHandler } from '../../src/ops/console/console.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { DeadLetterService } from '../../src/ops/deadLetters/service.js';
import { startHttpServer } from '../../src/ops/http.js';
import { fail } from '../../src/ops/result.js';
import { UserStore } from '../../src/ops/users.js';
import { openDatabase } from '../../src/tracking/db.js';
import { workingCalendar } from '../../src/tracking/deadlines.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, pemFiles } from '../support/certificates.js';
import { testConfig } from '../support/harness.js';

describe('HTTP listener with TLS', function () {
  this.timeout(30000);
  let server: Server;
  let store: Store;
  let certPem: string;
  let token: string;
  const port = () => (server.address() as AddressInfo).port;
  const get = (path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port: port(), path, method: init.method ?? 'GET', headers: init.headers, ca: certPem, checkServerIdentity: () => undefined },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end(init.body);
    });

  before(async () => {
    const pair = await makeSigner('127.0.0.1');
    certPem = pair.certPem;
    const log = createLogger('silent');
    store = new Store(await openDatabase(testConfig().database.url));
    const users = new UserStore(store.db);
    const added = await users.add('ola', 'operator', {}, { actor: 'test', via: 'cli' });
    if (!added.ok) throw new Error(added.reason);
    token = added.value.token;
    const deadLetters = new DeadLetterService(new DeadLetterRepository(store.db), log);
    const none = async () => fail('not-found', 'none');
    server = await startHttpServer(
      0,
      [],
      {
        console: consoleHandler({
          auth: new Authenticator({ users, log }),
          log,
          store,
          deadLetters,
          route: none,
          release: none,
          queues: async () => [],
          timeZone: 'Europe/Oslo',
          calendar: workingCalendar(testConfig()),
          bydelOfHerId: () => undefined,
          secureCookie: true,
        }),
      },
      { tls: pemFiles(pair) },
    );
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    await store?.close();
  });

  it('answers over HTTPS with the configured certificate, and not in clear', async () => {
    const r = await get('/healthz');
    expect(r.status).to.equal(200);
    expect(JSON.parse(r.body)).to.deep.equal({ status: 'ok' });
    const clear = await fetch(`http://127.0.0.1:${port()}/healthz`).then(
      (x) => x.status,
      () => 'refused',
    );
    expect(clear).to.not.equal(200);
  });

  it("the console's session cookie is Secure over TLS", async () => {
    const r = await get('/console/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${encodeURIComponent(token)}`,
    });
    expect(r.status).to.equal(303);
    const cookie = String(r.headers['set-cookie']);
    expect(cookie).to.match(/^plo_session=[A-Za-z0-9_-]{43}; Path=\/console; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
  });
});
