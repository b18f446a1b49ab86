// The gateway with NHN's CPPA register configured (a stand-in over HTTP answering the official
// sample CPA with each test's terms, real RabbitMQ and SQLite): a delivery to a partner with an
// agreement carries its CPAId, is signed with its algorithm (xmlsec1 verifies) and asks for an
// Acknowledgment only when the CPA does; the CPA's Retries and RetryInterval are what the
// transport-ack wait resends by; a partner without one gets HIS 1037's defaults; the register is
// asked once per TTL and its cache is shared; the register down holds up only a pair it has
// never answered for, with one alert firing and resolving.
import { randomUUID } from 'node:crypto';
import type { GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { buildAppRec } from '../../src/mapping/apprec.js';
import { parseMultipart } from '../../src/mapping/multipart.js';
import { parseMessage } from '../../src/mapping/parse.js';
import { createLogger } from '../../src/observability/log.js';
import { Agreements } from '../../src/outbound/agreements/agreements.js';
import { cpaIdFor } from '../../src/outbound/ebxml.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, received, registerWithCertificates, type SigningKeyPair, SimulatedBydel, TEMA } from '../support/bydel.js';
import { xmlsec1VerifyEnvelope } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { CppaStandIn } from '../support/cppaStandIn.js';
import { type LogCapture, Peer, startGateway, testConfig, testSigningKeys } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const NOTAT = 'dialogmelding/ks-1.0-dialog-notat-webmed-test.xml';
const FROGNER_KD0501 = '9920005';
const FROGNER_KP02 = '9930005';
const GRORUD_KD0501 = '9920010';
const GRORUD_KP02 = '9930010';
const FROGNER_CPA = '3c1e7a4e-1f0b-4b6e-9d43-6a2f0c1d5e01';
const GRORUD_CPA = '7d2b9c10-5a3e-4f21-8c6d-0e9f1a2b3c04';

/** The signed SOAP envelope of a delivery, and its payload part as the bydel receives it. */
function partsOf(m: GetMessage) {
  const [envelope, payload] = parseMultipart(m.content, m.properties.contentType).parts;
  return { envelope: envelope.body.toString('utf8'), envelopeBytes: envelope.body, payload };
}

describe('CPAs from the CPPA register, end to end (stand-in CPPA, RabbitMQ, SQLite)', function () {
  this.timeout(120000);
  let cppa: CppaStandIn;
  let peer: Peer;
  let config: GatewayConfig;
  let gateway: Gateway | undefined;
  let logs: LogCapture;
  let store: Store;
  let alertQueue: string;
  let frognerKdKey: SigningKeyPair;

  const deliver = async (sample: string, postalCode: string, herId: string) => {
    const { xml, msgId } = readdressToOslo(readSample(sample), { postalCode });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${herId}`, 1);
    expect(m?.properties.headers?.['msg-id'], `delivered to ${herId}`).to.equal(msgId);
    return { m, msgId, ...partsOf(m) };
  };
  const transportAck = async (msgId: string) => {
    const [message] = await store.findByMsgId(msgId);
    return message && store.expectation(message.id, 'transport-ack');
  };

  before(async () => {
    cppa = await CppaStandIn.start([
      // Frogner's case handling: an older partner, rsa-sha1 and no Acknowledgments
      {
        partnerHerId: FROGNER_KD0501,
        msgTypes: ['LOG_UTSKRIVNINGSKLAR', 'DIALOG_NOTAT'],
        cpaId: FROGNER_CPA,
        signatureAlgorithm: 'rsa-sha1',
        ackRequested: 'never',
      },
      // Grorud's: rsa-sha256, Acknowledgments, two resends ten minutes apart
      {
        partnerHerId: GRORUD_KD0501,
        msgTypes: ['LOG_UTSKRIVNINGSKLAR', 'LOG_INNLAGT'],
        cpaId: GRORUD_CPA,
        signatureAlgorithm: 'rsa-sha256',
        ackRequested: 'always',
        retries: 2,
        retryInterval: 'PT10M',
      },
      // Grorud's nursing service, asked for only while the register is down
      { partnerHerId: GRORUD_KP02, msgTypes: ['LOG_INNLAGT'], signatureAlgorithm: 'rsa-sha256' },
    ]);
    peer = await Peer.connect();
    frognerKdKey = await makeSigner('frogner-kd0501-cpa');
    config = testConfig((c) => {
      c.routing.addressRegisterFile = registerWithCertificates({ [FROGNER_KD0501]: frognerKdKey.certPem });
      c.cppa = { url: cppa.url, cacheTtl: 'PT1H', timeout: 'PT1S' };
      c.addressRegister.checkInterval = 'PT1S';
      c.retry = { initialDelay: 'PT0.5S', maxDelay: 'PT2S', maxAttempts: 200 };
    });
    ({ gateway, logs } = await startGateway(config));
    store = new Store(await openDatabase(config.database.url));
    alertQueue = `${config.broker.queues.dlq}.cppa-alerts`;
    await peer.ch.assertQueue(alertQueue, { exclusive: true });
    await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'cppa-unavailable');
  });

  after(async () => {
    await gateway?.stop();
    await store?.db.kysely.destroy();
    await cppa?.stop();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it("under Frogner's CPA: its CPAId, rsa-sha1 (xmlsec1 verifies the envelope over the CMS part), no eb:AckRequested, and no Acknowledgment awaited", async () => {
    const { msgId, envelope, envelopeBytes, payload } = await deliver(UTSKRIVNINGSKLAR, '0350', FROGNER_KD0501);
    expect(envelope).to.contain(`<eb:CPAId>${FROGNER_CPA}</eb:CPAId>`);
    expect(envelope).not.to.contain('AckRequested');
    expect(envelope).to.contain('Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"');
    expect(payload.headers['content-type']).to.equal('application/pkcs7-mime; smime-type=enveloped-data');
    const { certFile } = testSigningKeys();
    const verified = xmlsec1VerifyEnvelope(envelopeBytes, payload.contentId, payload.body, certFile);
    expect(verified.status, verified.output).to.equal(0);

    expect(await transportAck(msgId), 'the CPA asks for no Acknowledgment: none is awaited').to.equal(undefined);
    const [message] = await store.findByMsgId(msgId);
    const signed = await store.latestEvent(message.id, 'signed');
    expect(JSON.parse(signed?.detail ?? '{}')).to.include({ algorithm: 'rsa-sha1', cpaId: FROGNER_CPA, terms: 'cpa' });
  });

  it("under Grorud's CPA: rsa-sha256, eb:AckRequested, and the transport-ack wait resends twice, PT10M apart, as its ReliableMessaging says", async () => {
    const { msgId, envelope } = await deliver(UTSKRIVNINGSKLAR, '0951', GRORUD_KD0501);
    expect(envelope).to.contain(`<eb:CPAId>${GRORUD_CPA}</eb:CPAId>`);
    expect(envelope).to.match(/<eb:AckRequested [^>]*eb:signed="1"/);
    expect(envelope).to.contain('Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"');
    expect(await transportAck(msgId)).to.include({ state: 'open', resend_limit: 2, resend_interval_ms: 600_000 });

    // no Acknowledgment comes: each time its wait runs out it is resent, PT10M on, twice; then the alert
    const queue = `${config.broker.receiverQueuePrefix}${GRORUD_KD0501}`;
    const ackAlerts = `${config.broker.queues.dlq}.ack-alerts`;
    await peer.ch.assertQueue(ackAlerts, { exclusive: true });
    await peer.ch.bindQueue(ackAlerts, config.broker.exchanges.alerts, 'transport-ack-missing');
    const runOut = async () => {
      const row = await transportAck(msgId);
      await store.db.kysely
        .updateTable('expectations')
        .set({ due_at: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', row?.id ?? 0)
        .execute();
      await gateway?.deadlines?.tick();
    };
    for (const attempt of [1, 2]) {
      await runOut();
      const [again] = await peer.take(queue, 1);
      expect(again?.properties.headers?.['msg-id'], `resend ${attempt}`).to.equal(msgId);
      const row = await transportAck(msgId);
      expect(row?.resends).to.equal(attempt);
      expect(Date.parse(row?.due_at ?? '') - Date.now(), 'due again one RetryInterval on').to.be.within(590_000, 600_000);
    }
    await runOut();
    expect(await peer.take(queue, 1, 500), 'not resent a third time').to.have.length(0);
    const [alert] = (await peer.take(ackAlerts, 1)).map((a) => JSON.parse(a.content.toString('utf8')));
    expect(alert).to.include({ kind: 'transport-ack-missing', state: 'firing', severity: 'critical' });
    expect(alert.text).to.contain('after 2 resends');
  });

  it("a partner without an agreement (the register answers 404) gets HIS 1037's defaults: low_high CPAId, eb:AckRequested, the configured resends", async () => {
    const { msgId, envelope, m } = await deliver(INNLAGT, '0350', FROGNER_KP02);
    const fromHerId = String(m.properties.headers?.['from-her-id']);
    expect(envelope).to.contain(`<eb:CPAId>${cpaIdFor(fromHerId, FROGNER_KP02)}</eb:CPAId>`);
    expect(envelope).to.contain('AckRequested');
    expect(await transportAck(msgId)).to.include({ state: 'open', resend_limit: null, resend_interval_ms: null });
    expect(cppa.count(FROGNER_KP02)).to.equal(1);
  });

  it("the EPJ's AppRec to Frogner goes back under the CPA too: its CPAId, rsa-sha1, Action APPREC, no eb:AckRequested", async () => {
    const { m } = await deliver(UTSKRIVNINGSKLAR, '0350', FROGNER_KD0501);
    const notice = received(m);
    const frogner = new SimulatedBydel(
      { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' },
      { name: 'Saksbehandling (FIKTIV)', herId: FROGNER_KD0501 },
      frognerKdKey,
    );
    const answer = frogner.reply(readSample(NOTAT), notice, { temaKodet: TEMA.notat });
    const packaged = frogner.package(answer.xml, { msgType: 'DIALOG_NOTAT', toHerId: notice.fromHerId, conversationId: notice.conversationId });
    await peer.send(config.broker.queues.nhnInbound, packaged.body, { contentType: packaged.contentType, headers: { 'from-her-id': FROGNER_KD0501 } });
    const [forwarded] = await peer.take(config.broker.queues.epjInbound, 1);
    const got = parseMessage(forwarded.content, { maxBytes: 5_000_000 });
    if (!got.ok || got.value.doc.kind !== 'msghead') throw new Error('the EPJ got no MsgHead');
    const doc = got.value.doc;
    const appRecId = randomUUID();
    await peer.send(
      config.broker.queues.epjOutbound,
      buildAppRec({
        id: appRecId,
        version: '1.1',
        status: '1',
        errors: [],
        original: { msgType: doc.type, issueDate: doc.genDate, msgId: doc.msgId },
        sender: doc.receiver,
        receiver: doc.sender,
      }),
    );
    // Frogner's queue also gets the Acknowledgment of its own message
    const back = await eventually('the AppRec at Frogner', async () =>
      (await peer.take(`${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, 1, 200)).find((x) => x.properties.headers?.['msg-id'] === appRecId),
    );
    expect(back, 'the AppRec at Frogner').to.exist;
    const { envelope } = partsOf(back);
    expect(envelope)
      .to.contain(`<eb:CPAId>${FROGNER_CPA}</eb:CPAId>`)
      .and.contain('>S-DIALOG_NOTAT</eb:Service>')
      .and.contain('<eb:Action>APPREC</eb:Action>')
      .and.contain('Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"')
      .and.not.contain('AckRequested');
  });

  it('the register is asked once per pair and TTL, not per message; a second replica reads the same cache without asking', async () => {
    for (let i = 0; i < 3; i++) await deliver(UTSKRIVNINGSKLAR, '0350', FROGNER_KD0501);
    await deliver(INNLAGT, '0350', FROGNER_KP02);
    expect(cppa.count(FROGNER_KD0501)).to.equal(1);
    expect(cppa.count(FROGNER_KP02), 'that there is no agreement is cached too').to.equal(1);

    const asked = cppa.count();
    const replica = new Agreements({ config, db: store.db, log: createLogger('silent') });
    await replica.sync();
    const [pair] = cppa.requests.filter((r) => r.otherHerId === FROGNER_KD0501);
    expect(replica.agreementOf(pair?.myHerId ?? '', FROGNER_KD0501)?.cpaId).to.equal(FROGNER_CPA);
    expect(cppa.count(), 'the replica asked nothing').to.equal(asked);
  });

  it('register show prints the agreement with its terms', async () => {
    const [pair] = cppa.requests.filter((r) => r.otherHerId === GRORUD_KD0501);
    const shown = await cli(['register', 'show', GRORUD_KD0501, '--from', pair?.myHerId ?? ''], { config });
    expect(shown.status, shown.stderr).to.equal(0);
    expect(shown.stdout).to.contain(`CPA ${GRORUD_CPA} with ${pair?.myHerId}, agreed`);
    expect(shown.stdout).to.contain(
      'we send S-LOG_UTSKRIVNINGSKLAR / LOG_UTSKRIVNINGSKLAR: rsa-sha256, Acknowledgment requested, 2 retries every PT10M, payload encrypted',
    );
    const json = JSON.parse((await cli(['register', 'show', GRORUD_KD0501, '--from', pair?.myHerId ?? '', '--json'], { config })).stdout);
    expect(json.agreement).to.deep.include({ configured: true, inForce: true });
    expect(json.agreement.agreement.cpaId).to.equal(GRORUD_CPA);
  });

  it('the register down: a known pair is served from the cache, a pair never asked waits (not rejected, not dead-lettered), one alert fires and resolves', async () => {
    await cppa.stop();
    const known = await deliver(UTSKRIVNINGSKLAR, '0350', FROGNER_KD0501);
    expect(known.envelope).to.contain(FROGNER_CPA);
    const waiting = readdressToOslo(readSample(INNLAGT), { postalCode: '0951' });
    await peer.send(config.broker.queues.epjOutbound, waiting.xml);
    const grorudKp02 = `${config.broker.receiverQueuePrefix}${GRORUD_KP02}`;
    expect(await peer.take(grorudKp02, 1, 4000), 'waits for the register').to.have.length(0);
    await cppa.listen();
    const [late] = await peer.take(grorudKp02, 1, 20_000);
    expect(late?.properties.headers?.['msg-id']).to.equal(waiting.msgId);
    expect(partsOf(late).envelope).to.contain('<eb:CPAId>');
    await sleep(1500);
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
    const alerts = (await peer.take(alertQueue, 3, 5000)).map((a) => JSON.parse(a.content.toString('utf8')));
    expect(alerts.map((a) => [a.kind, a.state, a.eventId])).to.deep.equal([
      ['cppa-unavailable', 'firing', 'GW-4108'],
      ['cppa-unavailable', 'resolved', 'GW-4108'],
    ]);
    expect(logs.text()).not.to.match(/Gundersen|15076500565/);
  });

  it('config check --online reaches the register: our party without a CPP is named', async () => {
    const missing = await cli(['config', 'check', '--online'], { config });
    expect(missing.stdout + missing.stderr).to.contain(`the CPPA register has no profile (CPP) for our HER-id ${config.ownHerId}`);
    cppa.profiles.add(config.ownHerId);
    const found = await cli(['config', 'check', '--online'], { config });
    expect(found.stdout + found.stderr).not.to.contain('cppa.url');
  });
});
