// CRLs cached in the store (crl_cache), on both back ends, with an `openssl ca` CA and a real HTTP
// CRL server that counts its requests: a second checker on the same store (a replica, a restart)
// asks no HTTP; after nextUpdate the CRL is fetched again; a row not signed by the anchors is not
// trusted. And what a receiver's revoked encryption certificate means for payload protection.
import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { type GatewayConfig, loadConfig } from '../../src/config/config.js';
import { TrustStore } from '../../src/outbound/certificates.js';
import { payloadProtectionFor } from '../../src/outbound/protection.js';
import { RevocationChecker } from '../../src/outbound/revocation.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { issue, makeCa, revokeAndPublish, type TestCa } from '../support/certificates.js';
import { testBackends } from '../support/databases.js';

const HOUR = 3_600_000;
const ENCRYPTION = 'critical,keyEncipherment,dataEncipherment';

type CrlCacheTables = { crl_cache: { url: string; der: string; next_update: string } };

describe('revocation: CRLs cached in the store, receivers’ encryption certificates', function () {
  this.timeout(30000);
  let root: TestCa;
  let issuing: TestCa;
  let anchors: TrustStore;
  let server: Server;
  let requests = 0;
  let served: Buffer;
  let url: string;
  let good: ReturnType<typeof issue>;
  let revoked: ReturnType<typeof issue>;

  before(async () => {
    root = makeCa('Test Root CA');
    issuing = makeCa('Test Class 3 CA', root);
    anchors = TrustStore.fromFiles([root.certFile, issuing.certFile]);
    server = createServer((_req, res) => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(served);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/class3.crl`;
    good = issue(issuing, 'kryptering Frogner', { keyUsage: ENCRYPTION, crlUrl: url });
    revoked = issue(issuing, 'kryptering Ullern', { keyUsage: ENCRYPTION, crlUrl: url });
    served = revokeAndPublish(issuing, [revoked.certPem]);
  });
  after(() => new Promise((r) => server?.close(r)));

  for (const backend of testBackends()) {
    describe(`the store cache (${backend.dialect})`, () => {
      let db: Db;
      let now: Date;
      const checker = () => new RevocationChecker(anchors, 2000, { db, now: () => now });
      const table = () => db.kysely.withTables<CrlCacheTables>();

      beforeEach(async () => {
        served = revokeAndPublish(issuing, [], { hours: 2 });
        db = await openDatabase(await backend.create());
        now = new Date();
        requests = 0;
      });
      afterEach(() => db?.kysely.destroy());
      after(() => backend.removeAll());

      it('a second checker on the same store answers without asking the CRL server', async () => {
        const first = checker();
        expect(first.cachedStatus(good.certPem), 'nothing in memory yet').to.deep.include({ state: 'unknown' });
        expect(await first.status(good.certPem)).to.deep.equal({ state: 'good' });
        expect(requests).to.equal(1);

        const replica = checker();
        expect(replica.cachedStatus(revoked.certPem).state, 'its memory is its own').to.equal('unknown');
        const status = await replica.status(revoked.certPem);
        expect(status.state).to.equal('revoked');
        expect(requests, 'read from the store').to.equal(1);
        expect(replica.cachedStatus(revoked.certPem)).to.deep.equal(status);
        expect(replica.cachedStatus(good.certPem)).to.deep.equal({ state: 'good' });
        expect(replica.unavailable()).to.equal(undefined);
      });

      it('after nextUpdate the CRL is fetched again, and the store then serves the new one', async () => {
        const later = issue(issuing, 'kryptering Grorud', { keyUsage: ENCRYPTION, crlUrl: url });
        const first = checker();
        expect(await first.status(later.certPem)).to.deep.equal({ state: 'good' });
        expect(requests).to.equal(1);
        served = revokeAndPublish(issuing, [later.certPem]);
        now = new Date(now.getTime() + 3 * HOUR);

        expect(first.cachedStatus(later.certPem).state, 'out of date in memory').to.equal('unknown');
        expect((await first.status(later.certPem)).state, 'the new CRL').to.equal('revoked');
        expect(requests).to.equal(2);
        expect((await checker().status(later.certPem)).state).to.equal('revoked');
        expect(requests, 'the new CRL from the store').to.equal(2);
        const [row] = await table().selectFrom('crl_cache').selectAll().execute();
        expect(row.url).to.equal(url);
        expect(new Date(row.next_update).getTime()).to.be.greaterThan(now.getTime());
      });

      it('a row the anchors did not sign is not trusted: the CRL is fetched again', async () => {
        await checker().status(revoked.certPem);
        // a CRL under the issuing CA's name that lists nothing, signed by another key
        const impostor = makeCa('Test Class 3 CA');
        const forged = revokeAndPublish(impostor, []);
        await table()
          .updateTable('crl_cache')
          .set({ der: forged.toString('base64') })
          .where('url', '=', url)
          .execute();
        expect((await checker().status(revoked.certPem)).state).to.equal('revoked');
        expect(requests).to.equal(2);

        // a stored CRL altered byte-wise: its signature no longer verifies
        const [row] = await table().selectFrom('crl_cache').selectAll().execute();
        const der = Buffer.from(row.der, 'base64');
        der[der.length - 10] ^= 0x01;
        await table()
          .updateTable('crl_cache')
          .set({ der: der.toString('base64') })
          .where('url', '=', url)
          .execute();
        expect((await checker().status(revoked.certPem)).state).to.equal('revoked');
        expect(requests).to.equal(3);
        const [restored] = await table().selectFrom('crl_cache').selectAll().execute();
        expect(restored.der, 'replaced by what the server serves').to.equal(served.toString('base64'));
      });
    });
  }

  it("another trusted CA's CRL at the distribution point proves nothing: unknown, not good", async () => {
    served = revokeAndPublish(root, []);
    requests = 0;
    const status = await new RevocationChecker(anchors, 2000).status(revoked.certPem);
    expect(status.state, JSON.stringify(status)).to.equal('unknown');
    expect(requests).to.equal(1);
  });

  describe('payload protection for a receiver', () => {
    const party = (herId: string, encryptionCertificate: string) => ({ herId, name: 'T', type: 'Service' as const, active: true, encryptionCertificate });
    let register: AddressRegister;

    const configWith = (mode: 'soft-fail' | 'hard-fail'): GatewayConfig => {
      const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
      if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
      const c = structuredClone(loaded.config);
      c.trust = { anchors: [root.certFile, issuing.certFile], crl: { mode, timeout: 'PT2S' } };
      return c;
    };

    before(() => {
      served = revokeAndPublish(issuing);
      register = new AddressRegister([party('1', good.certPem), party('2', revoked.certPem)]);
    });

    it('a revoked encryption certificate is unusable, with the date; a good one encrypts', async () => {
      const revocation = new RevocationChecker(anchors, 2000);
      const status = await revocation.status(revoked.certPem);
      if (status.state !== 'revoked') throw new Error(`expected revoked, got ${status.state}`);
      const config = configWith('soft-fail');
      expect(payloadProtectionFor(config, register, '2', new Date(), { revocation })).to.deep.equal({
        mode: 'unusable',
        reason: `the encryption certificate of HER-id 2 was revoked on ${status.since.toISOString()}`,
      });
      expect(payloadProtectionFor(config, register, '1', new Date(), { revocation }).mode).to.equal('encrypted');
      expect(payloadProtectionFor(config, register, '2', new Date()).mode, 'without a checker: not checked').to.equal('encrypted');
    });

    it('revocation not known (no CRL in memory): encrypted on soft-fail, unusable on hard-fail', () => {
      const revocation = new RevocationChecker(anchors, 2000);
      expect(payloadProtectionFor(configWith('soft-fail'), register, '2', new Date(), { revocation }).mode).to.equal('encrypted');
      const hard = payloadProtectionFor(configWith('hard-fail'), register, '2', new Date(), { revocation });
      expect(hard).to.deep.include({ mode: 'unusable' });
      expect((hard as { reason: string }).reason).to.equal(
        `the revocation of the encryption certificate of HER-id 2 cannot be checked: no current CRL of ${url} is at hand`,
      );
    });
  });
});
