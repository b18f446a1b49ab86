// The AR client and the live register against a stand-in AR (a real HTTP server answering in the
// shape of the official samples) and a real SQLite store: what AR answers wins over the snapshot,
// answers are cached and shared, AR not answering is tolerated and remembered; an announced EDI
// address takes effect on its date, and during a rollover every certificate AR lists counts.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { verifySender } from '../../src/inbound/authenticity.js';
import { parseInbound, parseMessage } from '../../src/mapping/parse.js';
import { createLogger } from '../../src/observability/log.js';
import { readCertificate } from '../../src/outbound/certificates.js';
import { payloadProtectionFor } from '../../src/outbound/protection.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { AddressRegisterClient, ArUnavailable } from '../../src/routing/ar/client.js';
import { LiveRegister } from '../../src/routing/ar/liveRegister.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { ArStandIn, type StandInParty } from '../support/arStandIn.js';
import { type Received, SimulatedBydel } from '../support/bydel.js';
import { DAY, makeSigner } from '../support/certificates.js';
import { testConfig } from '../support/harness.js';
import { ADDRESS_REGISTER } from '../support/paths.js';
import { readSample } from '../support/samples.js';

const DEMO_CERT = readFileSync('config/demo-keys/bydel-encryption-cert.pem', 'utf8');
const SIGNING_CERT = readFileSync('config/demo-keys/signing-cert.pem', 'utf8');
const FROGNER = '9910005';
const log = createLogger('silent');

/** Frogner as AR knows it: its old KD0501 service closed, a new one open, its KP02 as in the snapshot. */
const frognerInAr = (): StandInParty[] => [
  { herId: '9900000', name: 'Oslo kommune', type: 'Organization', municipality: '0301' },
  { herId: FROGNER, name: 'Oslo kommune, Bydel Frogner (AR)', type: 'Organization', municipality: '0301', encryptionCertificate: DEMO_CERT },
  {
    herId: '9920005',
    name: 'Saksbehandling (lukket)',
    type: 'Service',
    parentHerId: FROGNER,
    serviceCode: 'KD0501',
    active: false,
    encryptionCertificate: DEMO_CERT,
  },
  {
    herId: '9920105',
    name: 'Saksbehandling (ny)',
    type: 'Service',
    parentHerId: FROGNER,
    serviceCode: 'KD0501',
    encryptionCertificate: DEMO_CERT,
    signingCertificate: SIGNING_CERT,
  },
  { herId: '9930005', name: 'Sykepleietjeneste', type: 'Service', parentHerId: FROGNER, serviceCode: 'KP02', encryptionCertificate: DEMO_CERT },
];

const normalised = (pem: string) => pem.replace(/\s+/g, '');

describe('the address register, live (stand-in AR over HTTP, SQLite cache)', function () {
  this.timeout(20000);
  let ar: ArStandIn;
  let config: GatewayConfig;
  let db: Db;
  let now: Date;

  const live = () => new LiveRegister({ config, db, register: AddressRegister.load(ADDRESS_REGISTER), log, now: () => now });

  beforeEach(async () => {
    ar = await ArStandIn.start(frognerInAr());
    config = testConfig((c) => {
      c.addressRegister = {
        ...c.addressRegister,
        url: ar.url,
        user: ar.credentials.user,
        password: ar.credentials.password,
        cacheTtl: 'PT1H',
        timeout: 'PT1S',
      };
      c.addressRegister.bydelOrganisations = { '030105': FROGNER };
    });
    db = await openDatabase(`sqlite:${join(mkdtempSync(join(tmpdir(), 'gw-ar-')), 'gateway.db')}`);
    now = new Date();
  });
  afterEach(async () => {
    await ar.stop();
    await db.kysely.destroy();
  });

  describe('the client', () => {
    const client = (o: Partial<{ password: string; timeoutMs: number }> = {}) =>
      new AddressRegisterClient({
        url: ar.url,
        user: ar.credentials.user,
        password: o.password ?? ar.credentials.password,
        timeoutMs: o.timeoutMs ?? 1000,
        bydelOf: (p) => (p.herId === FROGNER ? '030105' : undefined),
      });

    it('reads an organisation with its services, the bydel from the table, and certificates as PEM', async () => {
      const parties = await client().partyDetails(FROGNER);
      expect(parties?.map(({ party: p }) => [p.herId, p.type, p.serviceCode, p.active, p.bydel])).to.deep.equal([
        [FROGNER, 'Organization', undefined, true, '030105'],
        ['9920005', 'Service', 'KD0501', false, '030105'],
        ['9920105', 'Service', 'KD0501', true, '030105'],
        ['9930005', 'Service', 'KP02', true, '030105'],
      ]);
      expect(parties?.[2].party).to.include({ parentHerId: FROGNER, municipality: '0301', ediAddress: '9920105@edi.test.nhn.no' });
      // the E_DS lists the service's two certificates (decimal serials); a service searches by its parent's organisation number
      expect(parties?.[2].certificateSerials).to.have.length(2);
      expect(parties?.[2].certificateSerials[0]).to.equal(BigInt(`0x${readCertificate(DEMO_CERT).serialNumber}`).toString(10));
      expect(parties?.[2].organisationNumber)
        .to.equal(parties?.[0].organisationNumber)
        .and.match(/^\d{9}$/);
      expect(normalised((await client().encryptionCertificate('9920105')) ?? '')).to.equal(normalised(DEMO_CERT));
      expect(await client().signingCertificate('9930005')).to.equal(undefined);
      expect(await client().partyDetails('4242424'), 'InvalidHerIdSupplied: no such party').to.equal(undefined);
      expect(await client().ping()).to.equal('pong');
    });

    it('wrong credentials, a stopped AR and a slow one are ArUnavailable, with one sentence', async () => {
      const refused = await client({ password: 'wrong' })
        .partyDetails(FROGNER)
        .catch((e) => e);
      expect(refused).to.be.instanceOf(ArUnavailable).with.property('message', 'AR GetCommunicationPartyDetails: HTTP 401');
      ar.delayMs = 500;
      const slow = await client({ timeoutMs: 100 })
        .partyDetails(FROGNER)
        .catch((e) => e);
      expect(slow).to.be.instanceOf(ArUnavailable).with.property('message', 'AR GetCommunicationPartyDetails: no answer within 100 ms');
      await ar.stop();
      const down = await client()
        .partyDetails(FROGNER)
        .catch((e) => e);
      expect(down).to.be.instanceOf(ArUnavailable).with.property('message', 'AR GetCommunicationPartyDetails: it cannot be reached');
    });
  });

  describe('the register the flows read', () => {
    it("AR's answer wins over the snapshot: the closed service is not routed to, the new one is", async () => {
      const register = live();
      expect(register.register.bydelService('030105', 'KD0501')?.service.herId, 'the snapshot').to.equal('9920005');
      await register.refreshDue();
      expect(register.register.bydelService('030105', 'KD0501')?.service.herId).to.equal('9920105');
      expect(register.register.get('9920005')?.active).to.equal(false);
      // what AR has not answered for still comes from the snapshot
      expect(register.register.bydelService('030101', 'KD0501')?.service.herId).to.equal('9920001');
      expect(register.sourceOf('9920105')).to.include({ from: 'ar', found: true });
      expect(register.sourceOf('9920001')).to.deep.equal({ from: 'snapshot' });
    });

    it('answers are cached in the store: within the TTL nothing is asked again, a restarted gateway asks nothing', async () => {
      const first = live();
      await first.refreshDue();
      const asked = ar.count();
      // Frogner's organisation and Oslo kommune's, then each party's two certificates
      expect(asked).to.equal(2 + 5 * 2);
      await first.refreshDue();
      await first.ensure(['9920105', '9930005', FROGNER]);
      expect(ar.count()).to.equal(asked);

      const restarted = live();
      await restarted.sync();
      expect(restarted.register.bydelService('030105', 'KD0501')?.service.herId).to.equal('9920105');
      await restarted.ensure(['9920105']);
      expect(ar.count(), 'served from the shared cache').to.equal(asked);

      now = new Date(now.getTime() + 61 * 60_000);
      await restarted.refreshDue();
      expect(ar.count('GetCommunicationPartyDetails', FROGNER), 'asked again once the TTL ran out').to.equal(2);
    });

    it('a party AR knows and the snapshot does not is fetched when a message names it; AR saying "no such party" removes one', async () => {
      ar.put({ herId: '7777001', name: 'Ny tjeneste', type: 'Service', parentHerId: FROGNER, serviceCode: 'KP02', encryptionCertificate: DEMO_CERT });
      const register = live();
      await register.ensure(['7777001', '9920002']);
      expect(register.register.isActive('7777001')).to.equal(true);
      // 9920002 is in the snapshot but AR has no such party
      expect(register.register.get('9920002')).to.equal(undefined);
    });

    it('AR down: what is known keeps serving, an unknown party waits (ArUnavailable), and AR answering again clears it', async () => {
      const register = live();
      await register.refreshDue();
      await ar.stop();
      now = new Date(now.getTime() + 2 * 60 * 60_000);
      await register.refreshDue();
      expect(register.availability()).to.include({ configured: true });
      expect(register.availability().unavailableSince).to.be.instanceOf(Date);
      await register.ensure(['9920105', '9920001']);
      expect(register.register.bydelService('030105', 'KD0501')?.service.herId, 'the stale answer serves').to.equal('9920105');
      const unknown = await register.ensure(['7777002']).catch((e) => e);
      expect(unknown).to.be.instanceOf(ArUnavailable).with.property('message', 'AR does not answer and nothing is known of HER-id 7777002');
      await ar.listen();
      await register.refreshDue();
      expect(register.availability().unavailableSince).to.equal(undefined);
    });

    it('invalidate drops a cached answer and fetches the party once more (HITS 1216 §2.1.4)', async () => {
      const register = live();
      await register.ensure(['9920105']);
      const renewed = readFileSync('config/demo-keys/gateway-encryption-cert.pem', 'utf8');
      ar.put({ ...frognerInAr()[3], signingCertificate: renewed });
      expect(normalised(register.register.get('9920105')?.signingCertificate ?? '')).to.equal(normalised(SIGNING_CERT));
      expect(await register.invalidate('9920105')).to.equal(true);
      expect(normalised(register.register.get('9920105')?.signingCertificate ?? '')).to.equal(normalised(renewed));
      expect(ar.count('GetCommunicationPartyDetails', '9920105')).to.equal(2);
    });
  });

  describe('announced EDI addresses and certificate rollovers', () => {
    const KP02 = '9930005';
    const kp02InAr = () => frognerInAr()[4];
    const forEncryption = (cn: string, notBefore: Date) =>
      makeSigner(cn, {
        notBefore,
        notAfter: new Date(notBefore.getTime() + 400 * DAY),
        extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }],
      });
    // as protection.ts reports it (node:crypto, upper-case hex)
    const serialOf = (pem: string | undefined) => (pem ? new X509Certificate(pem).serialNumber : undefined);
    const searches = () => ar.count('SearchCertificatesForEncryption') + ar.count('SearchCertificatesForValidatingSignature');

    it('a future E_EDI address takes effect on its ValidFrom (Oslo time), is cached, and a snapshot file may carry it', async () => {
      ar.put({ ...kp02InAr(), futureEdiAddresses: [{ address: 'ny-kp02@edi.test.nhn.no', validFrom: '2027-03-01T00:00:00' }] });
      now = new Date('2027-02-20T12:00:00Z');
      const register = live();
      await register.ensure([KP02]);
      // 1 March 00:00 in Oslo is 28 February 23:00 UTC
      expect(register.register.get(KP02)?.futureEdiAddresses).to.deep.equal([{ address: 'ny-kp02@edi.test.nhn.no', validFrom: '2027-02-28T23:00:00.000Z' }]);
      expect(register.register.ediAddressFor(KP02, new Date('2027-02-28T22:59:59Z'))).to.equal(`${KP02}@edi.test.nhn.no`);
      expect(register.register.ediAddressFor(KP02, new Date('2027-02-28T23:00:00Z'))).to.equal('ny-kp02@edi.test.nhn.no');

      const restarted = live();
      await restarted.sync();
      expect(restarted.register.ediAddressFor(KP02, new Date('2027-03-02T00:00:00Z')), 'from the shared cache').to.equal('ny-kp02@edi.test.nhn.no');
      const exported = AddressRegister.parse(JSON.stringify(restarted.register.parties));
      expect(exported.ediAddressFor(KP02, new Date('2027-03-02T00:00:00Z'))).to.equal('ny-kp02@edi.test.nhn.no');
      const undated = [{ herId: KP02, name: 'x', type: 'Service', active: true, futureEdiAddresses: [{ address: 'a@b', validFrom: '1. mars' }] }];
      expect(() => AddressRegister.parse(JSON.stringify(undated))).to.throw(/must be a date-time with its zone/);
    });

    it('an E_DS with one serial, or with the two AR answers for, costs no request beyond GetCertificateDetails', async () => {
      const register = live();
      await register.refreshDue();
      // 9930005 has one certificate (one serial), 9920105 the usual pair
      expect(searches()).to.equal(0);
      expect(ar.count()).to.equal(2 + 5 * 2);
      expect(register.register.get(KP02)?.encryptionCertificates).to.equal(undefined);
    });

    it('two signing certificates listed: signatures made with either are accepted', async () => {
      const [older, newer] = await Promise.all([
        makeSigner('frogner-kp-2026', { notBefore: new Date(now.getTime() - 300 * DAY) }),
        makeSigner('frogner-kp-2027', { notBefore: new Date(now.getTime() - DAY) }),
      ]);
      ar.put({ ...kp02InAr(), signingCertificate: newer.certPem, listedCertificates: [older.certPem] });
      const register = live();
      await register.ensure([KP02]);
      expect(searches(), 'one search per purpose, for the serial GetCertificateDetails did not give').to.equal(2);
      expect(
        ar.requests.flatMap((r) => r.sn ?? []),
        "by the organisation number of the service's parent, Frogner",
      ).to.deep.equal(['809910005', '809910005']);
      const party = register.register.get(KP02);
      expect(serialOf(party?.signingCertificate)).to.equal(serialOf(newer.certPem));
      expect(party?.previousSigningCertificates?.map(serialOf)).to.deep.equal([serialOf(older.certPem)]);

      for (const key of [older, newer]) {
        const kp = new SimulatedBydel({ name: 'Oslo kommune, Bydel Frogner', herId: FROGNER }, { name: 'Sykepleietjeneste', herId: KP02 }, key, 'rsa-sha256');
        const to = admission();
        const { xml } = kp.reply(readSample('plo-1.6/Innleggelsesrapport_v1-6_Ny.xml'), to);
        const packaged = kp.package(xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: '90998', conversationId: to.conversationId });
        const inbound = parseInbound(packaged.body, { contentType: packaged.contentType, maxBytes: 5_000_000 });
        if (!inbound.ok || inbound.value.kind === 'encrypted') throw new Error('a clear-text message was packaged');
        const verdict = verifySender({ body: packaged.body, contentType: packaged.contentType, fromHerId: KP02 }, inbound.value, register.register, '59', now);
        expect(verdict.ok, `signed with ${key === older ? 'the older' : 'the newer'} certificate`).to.equal(true);
      }
    });

    it('encryption goes to the newest listed certificate valid at the time, the older one until the newer begins; one the E_DS does not list is never used', async () => {
      const [older, newer, unlisted] = await Promise.all([
        forEncryption('frogner-kp-encryption-2026', new Date(now.getTime() - 300 * DAY)),
        forEncryption('frogner-kp-encryption-2027', new Date(now.getTime() + 2 * DAY)),
        forEncryption('frogner-other-unit', new Date(now.getTime() - DAY)),
      ]);
      ar.put({ ...kp02InAr(), encryptionCertificate: older.certPem, listedCertificates: [newer.certPem], unlistedCertificates: [unlisted.certPem] });
      const register = live();
      await register.ensure([KP02]);
      expect(register.register.get(KP02)?.encryptionCertificates?.map(serialOf).sort()).to.deep.equal([older, newer].map((k) => serialOf(k.certPem)).sort());
      expect(serialOf(register.register.encryptionCertificateFor(KP02, now)), 'the newer is not valid yet').to.equal(serialOf(older.certPem));
      const later = new Date(now.getTime() + 3 * DAY);
      expect(serialOf(register.register.encryptionCertificateFor(KP02, later))).to.equal(serialOf(newer.certPem));
      const protection = payloadProtectionFor(config, register.register, KP02, later);
      expect(protection).to.include({ mode: 'encrypted', certificateSerial: serialOf(newer.certPem) });
    });
  });
});

/** What Frogner received from the hospital (59/90998): the official admission sample. */
function admission(): Received {
  const xml = readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml');
  const parsed = parseMessage(Buffer.from(xml), { maxBytes: 5_000_000 });
  if (!parsed.ok || parsed.value.doc.kind !== 'msghead') throw new Error('the admission sample does not parse');
  return { model: parsed.value.doc, xml, ebxmlMessageId: 'a3c0a0d4-3b0e-4a8e-9f57-0e5c6c1d2b11', conversationId: parsed.value.doc.msgId, fromHerId: '90998' };
}
