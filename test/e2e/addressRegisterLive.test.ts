// The gateway with NHN's Adresseregister configured (a stand-in AR over HTTP, real RabbitMQ and
// SQLite): what AR answers routes messages, the cache spares AR, AR down for 60 s under traffic
// rejects and dead-letters nothing and raises one alert, a renewed certificate is fetched once
// more before a signature is refused, a service AR lists two encryption certificates for is
// encrypted to the newer, and `register export` writes a snapshot a gateway starts on.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { assertReceiverQueue } from '../../src/broker/topology.js';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { cachedAnswer } from '../../src/routing/ar/cache.js';
import { openDatabase } from '../../src/tracking/db.js';
import { ArStandIn, type StandInParty } from '../support/arStandIn.js';
import { makeSigner, openDelivery, received, type SigningKeyPair, SimulatedBydel } from '../support/bydel.js';
import { DAY, pemFiles } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { type LogCapture, Peer, startGateway, testConfig } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const DEMO_CERT = readFileSync('config/demo-keys/bydel-encryption-cert.pem', 'utf8');
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const INNLEGGELSESRAPPORT = 'plo-1.6/Innleggelsesrapport_v1-6_Ny.xml';
const FROGNER = { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' };
const NEW_KD0501 = '9920105';

/** Oslo kommune and Frogner as AR knows them: Frogner's KD0501 moved to a new service, which is renewing its encryption certificate. */
function osloInAr(kpSigning?: string, kdRenewedEncryption?: string): StandInParty[] {
  return [
    { herId: '9900000', name: 'Oslo kommune', type: 'Organization', municipality: '0301' },
    { herId: FROGNER.herId, name: FROGNER.name, type: 'Organization', municipality: '0301' },
    { herId: '9920005', name: 'Saksbehandling (lukket)', type: 'Service', parentHerId: FROGNER.herId, serviceCode: 'KD0501', active: false },
    {
      herId: NEW_KD0501,
      name: 'Saksbehandling',
      type: 'Service',
      parentHerId: FROGNER.herId,
      serviceCode: 'KD0501',
      // GetCertificateDetailsForEncryption still answers the older; the E_DS lists both
      encryptionCertificate: DEMO_CERT,
      listedCertificates: kdRenewedEncryption ? [kdRenewedEncryption] : undefined,
    },
    {
      herId: '9930005',
      name: 'Sykepleietjeneste',
      type: 'Service',
      parentHerId: FROGNER.herId,
      serviceCode: 'KP02',
      encryptionCertificate: DEMO_CERT,
      signingCertificate: kpSigning,
      futureEdiAddresses: [{ address: 'kp02-ny@edi.test.nhn.no', validFrom: '2030-01-01T00:00:00' }],
    },
  ];
}

describe('the address register, live, end to end (stand-in AR, RabbitMQ, SQLite)', function () {
  this.timeout(180000);
  let ar: ArStandIn;
  let peer: Peer;
  let config: GatewayConfig;
  let gateway: Gateway | undefined;
  let logs: LogCapture;
  let kpKey: SigningKeyPair;
  let kdRenewedEncryption: SigningKeyPair;
  let alertQueue: string;

  const queueOf = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;
  /** The deliveries at a bydel service, its Acknowledgments for what it sent left out. */
  const deliveriesAt = async (herId: string, n: number, timeoutMs?: number) =>
    (await peer.take(queueOf(herId), n, timeoutMs)).filter((m) => m.properties.headers?.['msg-type'] !== 'Acknowledgment');

  before(async () => {
    kpKey = await makeSigner('frogner-kp-2026');
    kdRenewedEncryption = await makeSigner('frogner-kd-encryption-2027', {
      extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }],
      notBefore: new Date(Date.now() - DAY),
    });
    ar = await ArStandIn.start([
      ...osloInAr(kpKey.certPem, kdRenewedEncryption.certPem),
      // a receiver only AR knows (not in the snapshot), outside Oslo: its receiver is kept
      { herId: '7777000', name: 'Annen kommune', type: 'Organization', municipality: '3428', encryptionCertificate: DEMO_CERT },
    ]);
    peer = await Peer.connect();
    config = testConfig((c) => {
      c.addressRegister = {
        url: ar.url,
        user: ar.credentials.user,
        password: ar.credentials.password,
        cacheTtl: 'PT1H',
        timeout: 'PT1S',
        checkInterval: 'PT1S',
        bydelOrganisations: { '030105': FROGNER.herId },
      };
      c.retry = { initialDelay: 'PT0.5S', maxDelay: 'PT3S', maxAttempts: 200 };
    });
    ({ gateway, logs } = await startGateway(config));
    // stand-ins for the receivers the snapshot does not have
    for (const her of [NEW_KD0501, '7777000']) await assertReceiverQueue(peer.ch, config.broker.receiverQueuePrefix!, her, config.broker.exchanges.nhnOutbound);
    alertQueue = `${config.broker.queues.dlq}.ar-alerts`;
    await peer.ch.assertQueue(alertQueue, { exclusive: true });
    await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'address-register-unavailable');
  });

  after(async () => {
    await gateway?.stop();
    await ar?.stop();
    for (const her of [NEW_KD0501, '7777000']) await peer?.ch.deleteQueue(queueOf(her)).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it("routes by what AR answers: Frogner's KD0501 is the new service AR has, not the snapshot's closed one; AR is asked once per TTL, not per message", async () => {
    // until the first round has cached Frogner, messages are routed by the snapshot (by design)
    const db = await openDatabase(config.database.url);
    await eventually("the first register round's answer for Frogner", () => cachedAnswer(db, NEW_KD0501));
    await db.kysely.destroy();
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
      await peer.send(config.broker.queues.epjOutbound, xml);
      sent.push(msgId);
    }
    const got = await deliveriesAt(NEW_KD0501, 5);
    expect(got.map((m) => m.properties.headers?.['msg-id']).sort()).to.deep.equal([...sent].sort());
    expect(await deliveriesAt('9920005', 1, 300), 'nothing to the closed service').to.have.length(0);
    // Frogner is asked of AR once per TTL (PT1H here), never per message
    expect(ar.count('GetCommunicationPartyDetails', FROGNER.herId)).to.equal(1);
  });

  it('a service AR lists two encryption certificates for gets its delivery encrypted to the newer', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await deliveriesAt(NEW_KD0501, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    const { parsed } = openDelivery(m.content, m.properties.contentType, pemFiles(kdRenewedEncryption));
    expect(parsed.doc.kind).to.equal('msghead');
    expect(() => openDelivery(m.content, m.properties.contentType), 'the older key cannot open it').to.throw();
  });

  it('a renewed signing certificate: the sender is fetched once more and its message accepted, one signed with the old certificate still is (rollover); a key AR never had is refused after one refetch', async () => {
    const { xml } = readdressToOslo(readSample(INNLAGT), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [admission] = await deliveriesAt('9930005', 1);
    const notice = received(admission);

    // Frogner renews: AR has the new certificate before the cache expires
    const renewedKey = await makeSigner('frogner-kp-2027');
    ar.put({ ...osloInAr(renewedKey.certPem)[4] });
    const renewed = new SimulatedBydel(FROGNER, { name: 'Sykepleietjeneste (FIKTIV)', herId: '9930005' }, renewedKey, 'rsa-sha256');
    const report = renewed.reply(readSample(INNLEGGELSESRAPPORT), notice);
    const packaged = renewed.package(report.xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: notice.fromHerId, conversationId: notice.conversationId });
    await peer.send(config.broker.queues.nhnInbound, packaged.body, { contentType: packaged.contentType, headers: { 'from-her-id': '9930005' } });
    const [forwarded] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(forwarded?.properties.headers?.['msg-id']).to.equal(report.msgId);

    expect(ar.count('GetCommunicationPartyDetails', '9930005'), 'the renewal cost one refetch').to.equal(1);

    // signed with the old certificate before the switch, arriving after: still accepted (rollover), no refetch
    const before = new SimulatedBydel(FROGNER, { name: 'Sykepleietjeneste (FIKTIV)', herId: '9930005' }, kpKey, 'rsa-sha256');
    const late = before.appRec(notice, '1');
    await peer.send(config.broker.queues.nhnInbound, late.packaged.body, { contentType: late.packaged.contentType, headers: { 'from-her-id': '9930005' } });
    const [lateForwarded] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(lateForwarded?.properties.headers?.['msg-id']).to.equal(late.appRecId);
    expect(ar.count('GetCommunicationPartyDetails', '9930005')).to.equal(1);
    const fetchesBefore = ar.count('GetCommunicationPartyDetails', '9930005');
    const stranger = new SimulatedBydel(FROGNER, { name: 'Sykepleietjeneste (FIKTIV)', herId: '9930005' }, await makeSigner('not-frogner'), 'rsa-sha256');
    const forged = stranger.reply(readSample(INNLEGGELSESRAPPORT), notice);
    const forgedPackage = stranger.package(forged.xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: notice.fromHerId, conversationId: notice.conversationId });
    await peer.send(config.broker.queues.nhnInbound, forgedPackage.body, { contentType: forgedPackage.contentType, headers: { 'from-her-id': '9930005' } });
    const [dead] = await peer.take(config.broker.queues.dlq, 1);
    expect(dead?.properties.headers?.['x-error-code']).to.equal('S01');
    expect(await peer.take(config.broker.queues.epjInbound, 1, 500), 'never forwarded').to.have.length(0);
    expect(ar.count('GetCommunicationPartyDetails', '9930005') - fetchesBefore, 'fetched once more before refusing, not again and again').to.equal(1);
  });

  it('AR stopped for 60 s under traffic: nothing rejected or dead-lettered, everything delivered after, one alert firing and one resolved', async () => {
    await ar.stop();
    const sent: string[] = [];
    const waiting = readdressToOslo(readSample(INNLAGT), { postalCode: '0350', receiverHerId: '7777000' });
    const started = Date.now();
    await peer.send(config.broker.queues.epjOutbound, waiting.xml);
    while (Date.now() - started < 60_000) {
      const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
      await peer.send(config.broker.queues.epjOutbound, xml);
      sent.push(msgId);
      await sleep(6000);
    }
    const during = await deliveriesAt(NEW_KD0501, sent.length, 20_000);
    expect(during.map((m) => m.properties.headers?.['msg-id']).sort(), 'the cache serves Frogner meanwhile').to.deep.equal([...sent].sort());
    expect(await deliveriesAt('7777000', 1, 500), 'a receiver nothing knows waits for AR').to.have.length(0);
    await ar.listen();
    const [late] = await deliveriesAt('7777000', 1, 30_000);
    expect(late?.properties.headers?.['msg-id']).to.equal(waiting.msgId);
    expect(await peer.take(config.broker.queues.dlq, 1, 500)).to.have.length(0);
    expect(await peer.take(config.broker.queues.epjInbound, 1, 500), 'no negative AppRec').to.have.length(0);
    const alerts = (await peer.take(alertQueue, 3, 5000)).map((m) => JSON.parse(m.content.toString('utf8')));
    expect(alerts.map((a) => [a.kind, a.state])).to.deep.equal([
      ['address-register-unavailable', 'firing'],
      ['address-register-unavailable', 'resolved'],
    ]);
    expect(alerts[0]).to.include({ eventId: 'GW-4105' });
    expect(logs.text()).not.to.match(/Gundersen|15076500565/);
  });

  it('register show and refresh read AR through the shared cache; register export writes a snapshot a gateway starts on', async () => {
    const shown = await cli(['register', 'show', NEW_KD0501, '--json'], { config });
    expect(shown.status, shown.stderr).to.equal(0);
    const view = JSON.parse(shown.stdout);
    expect(view.party).to.include({ herId: NEW_KD0501, type: 'Service', serviceCode: 'KD0501', bydel: '030105', active: true });
    expect(view.source).to.include({ from: 'ar', found: true });
    expect(view.certificates.encryption.keyUsage).to.include('keyEncipherment');
    expect(view.certificates.encryption.problems).to.deep.equal([]);
    expect(view.certificates.signing).to.equal(null);

    const before = ar.count('GetCommunicationPartyDetails', '9930005');
    const refreshed = await cli(['register', 'refresh', '9930005'], { config });
    expect(refreshed.status, refreshed.stderr).to.equal(0);
    expect(ar.count('GetCommunicationPartyDetails', '9930005')).to.equal(before + 1);

    const out = join(mkdtempSync(join(tmpdir(), 'gw-export-')), 'register.json');
    const exported = await cli(['register', 'export', '--municipality', '0301', '--out', out], { config });
    expect(exported.status, exported.stderr).to.equal(0);
    const snapshot = JSON.parse(readFileSync(out, 'utf8')) as { herId: string; bydel?: string; active: boolean; futureEdiAddresses?: unknown }[];
    expect(snapshot.map((p) => p.herId).sort()).to.deep.equal(['9900000', FROGNER.herId, '9920005', NEW_KD0501, '9930005'].sort());
    expect(snapshot.find((p) => p.herId === NEW_KD0501)).to.include({ bydel: '030105', active: true });
    const announced = [{ address: 'kp02-ny@edi.test.nhn.no', validFrom: '2029-12-31T23:00:00.000Z' }];
    expect(snapshot.find((p) => p.herId === '9930005')?.futureEdiAddresses, 'the announced EDI address is kept').to.deep.equal(announced);
    const kp02 = await cli(['register', 'show', '9930005'], { config });
    expect(kp02.stdout).to.match(/EDI address +9930005@edi\.test\.nhn\.no\n +EDI from 2029-12-31T23:00:00\.000Z kp02-ny@edi\.test\.nhn\.no\n/);

    // the exported file alone (no AR) serves a gateway: it routes Frogner's notice as AR did
    await gateway?.stop();
    gateway = undefined;
    const offline = testConfig((c) => {
      c.routing.addressRegisterFile = out;
      c.broker = config.broker;
    });
    const checked = await cli(['config', 'check'], { config: offline });
    expect(checked.status, checked.stderr).to.equal(0);
    ({ gateway } = await startGateway(offline));
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(offline.broker.queues.epjOutbound, xml);
    const [m] = await deliveriesAt(NEW_KD0501, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
  });
});
