// certificate-expiring: the gateway's own certificates and those of partners it used lately,
// evaluated against a real SQLite store; firing within the warning period, resolved on renewal.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { certificateExpiryConditions } from '../../src/ops/certificateExpiry.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { DAY, makeSigner, pemFiles } from '../support/certificates.js';
import { testConfig } from '../support/harness.js';
import { seedMessage } from '../support/seed.js';

describe('certificate-expiring (SQLite)', function () {
  this.timeout(20000);

  it("fires for the gateway's own certificate and a used partner's within 30 days, once per certificate use, and not after renewal", async () => {
    const ownSoon = pemFiles(await makeSigner('gateway-soon', { notAfter: new Date(Date.now() + 10 * DAY) }));
    const partnerSoon = await makeSigner('frogner-soon', { notAfter: new Date(Date.now() + 3 * DAY) });
    const partnerLater = await makeSigner('grorud-later');
    const config = testConfig((c) => {
      c.signing.certFile = ownSoon.certFile;
      c.signing.keyFile = ownSoon.keyFile;
      c.encryption.keys = [];
    });
    const store = new Store(await openDatabase(config.database.url));
    const party = (herId: string, encryptionCertificate: string) => ({ herId, name: 'T', type: 'Service' as const, active: true, encryptionCertificate });
    const register = new AddressRegister([
      party('9920005', partnerSoon.certPem),
      party('9920010', partnerSoon.certPem),
      party('9920003', partnerLater.certPem),
    ]);
    // messages to Frogner and St. Hanshaugen's neighbour lately; Grorud never
    for (const to of ['9920005', '9920003']) {
      await seedMessage(store, {
        message: { msg_id: randomUUID(), direction: 'out', sender_her_id: '90998', msg_type: 'LOG_INNLAGT', state: 'published', receiver_l2_her_id: to },
      });
    }
    const byFiring = async () =>
      (await certificateExpiryConditions(config, store, register, new Date())).filter((c) => c.firing).map((c) => [c.subject, c.severity]);
    expect(await byFiring()).to.deep.equal([
      ['own:signing', 'warning'],
      ['partner:9920005:encryption', 'critical'],
    ]);
    const [frogner] = (await certificateExpiryConditions(config, store, register, new Date())).filter((c) => c.subject === 'partner:9920005:encryption');
    expect(frogner.text).to.match(/^the encryption certificate of HER-id 9920005 \(serial [0-9a-f]+\) expires in 2 day\(s\), on /);

    register.replace([party('9920005', partnerLater.certPem), party('9920003', partnerLater.certPem)]);
    expect(await byFiring()).to.deep.equal([['own:signing', 'warning']]);
    await store.close();
  });

  it('during a rollover only the certificate messages are encrypted to now counts: the older one expiring is no alert', async () => {
    const older = await makeSigner('frogner-enc-2025', {
      extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }],
      notBefore: new Date(Date.now() - 300 * DAY),
      notAfter: new Date(Date.now() + 3 * DAY),
    });
    const newer = await makeSigner('frogner-enc-2026', {
      extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }],
      notBefore: new Date(Date.now() - DAY),
    });
    const config = testConfig((c) => {
      c.encryption.keys = [];
    });
    const store = new Store(await openDatabase(config.database.url));
    await seedMessage(store, {
      message: { msg_id: randomUUID(), direction: 'out', sender_her_id: '90998', msg_type: 'LOG_INNLAGT', state: 'published', receiver_l2_her_id: '9920005' },
    });
    const frogner = { herId: '9920005', name: 'T', type: 'Service' as const, active: true, encryptionCertificate: older.certPem };
    const firingFor = async (register: AddressRegister) =>
      (await certificateExpiryConditions(config, store, register, new Date())).filter((c) => c.firing && c.subject === 'partner:9920005:encryption');
    expect(await firingFor(new AddressRegister([frogner])), 'the only one: it fires').to.have.length(1);
    expect(
      await firingFor(new AddressRegister([{ ...frogner, encryptionCertificates: [older.certPem, newer.certPem] }])),
      'AR lists a newer one',
    ).to.have.length(0);
    await store.close();
  });
});
