// Partner certificates checked to the root, end to end (RabbitMQ, SQLite, openssl-made CAs and a
// real HTTP CRL server): a bydel signing with a certificate the trusted CA issued gets through; a
// revoked one (on the CA's CRL) is refused with S03 and a MessageError; one from an unknown CA
// with S02; a CRL that cannot be fetched soft-fails with one crl-unavailable alert; the CRL is
// fetched once and kept until its nextUpdate. A bydel whose encryption certificate is revoked gets
// nothing: the message is held until the register gives it a renewed certificate.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { openDelivery, SimulatedBydel } from '../support/bydel.js';
import { issue, makeCa, revokeAndPublish, type TestCa } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { Peer, startGateway, testConfig } from '../support/harness.js';
import { releasedTimeline } from '../support/holds.js';
import { ADDRESS_REGISTER } from '../support/paths.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const INNLEGGELSESRAPPORT = 'plo-1.6/Innleggelsesrapport_v1-6_Ny.xml';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
/** Frogner KD0501: its encryption certificate is on the CA's CRL */
const REVOKED_RECEIVER = '9920005';
const ENCRYPTION = 'critical,keyEncipherment,dataEncipherment';
const ORG = { name: 'Oslo kommune, Bydel (FIKTIV)', herId: '9910005' };

describe('certificates to the root: trust anchors and CRLs, end to end', function () {
  this.timeout(90000);
  let root: TestCa;
  let issuing: TestCa;
  let crlServer: Server;
  let crlRequests = 0;
  let crl: Buffer;
  let config: GatewayConfig;
  let gateway: Gateway;
  let peer: Peer;
  let alertQueue: string;
  let certificateAlerts: string;
  let store: Store;
  let base: string;
  let register: string;
  let parties: { herId: number; signingCertificate?: string; encryptionCertificate?: string }[];
  /** each bydel service: its signer and the key its deliveries are encrypted for */
  const services: Record<string, { bydel: SimulatedBydel; encryption: { keyFile: string; certFile: string } }> = {};

  before(async () => {
    root = makeCa('Test Root CA');
    issuing = makeCa('Test Class 3 CA', root);
    const other = makeCa('Unknown CA');
    crlServer = createServer((req, res) => {
      crlRequests++;
      if (req.url === '/class3.crl') res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(crl);
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => crlServer.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(crlServer.address() as AddressInfo).port}`;

    const signers = {
      '9930005': issue(issuing, 'Frogner sykepleie', { crlUrl: `${base}/class3.crl` }),
      '9930006': issue(issuing, 'Ullern sykepleie', { crlUrl: `${base}/class3.crl` }),
      '9930004': issue(other, 'St. Hanshaugen sykepleie'),
      '9930010': issue(issuing, 'Grorud sykepleie', { crlUrl: `${base}/missing.crl` }),
    };
    const revokedEncryption = issue(issuing, 'kryptering Frogner KD', { keyUsage: ENCRYPTION, crlUrl: `${base}/class3.crl` });
    crl = revokeAndPublish(issuing, [signers['9930006'].certPem, revokedEncryption.certPem]);

    parties = JSON.parse(readFileSync(ADDRESS_REGISTER, 'utf8'));
    for (const [herId, signer] of Object.entries(signers)) {
      const encryption = issue(issuing, `kryptering ${herId}`, { keyUsage: ENCRYPTION });
      const party = parties.find((p) => String(p.herId) === herId);
      if (!party) throw new Error(`${herId} is not in the example register`);
      party.signingCertificate = signer.certPem;
      party.encryptionCertificate = encryption.certPem;
      services[herId] = { bydel: new SimulatedBydel(ORG, { name: 'Sykepleietjeneste (FIKTIV)', herId }, signer, 'rsa-sha256'), encryption };
    }
    const frogner = parties.find((p) => String(p.herId) === REVOKED_RECEIVER);
    if (!frogner) throw new Error(`${REVOKED_RECEIVER} is not in the example register`);
    frogner.encryptionCertificate = revokedEncryption.certPem;
    register = `${issuing.dir}/register.json`;
    writeFileSync(register, JSON.stringify(parties));
    config = testConfig((c) => {
      c.routing.addressRegisterFile = register;
      c.trust = { anchors: [root.certFile, issuing.certFile], crl: { mode: 'soft-fail', timeout: 'PT2S' } };
      c.addressRegister.checkInterval = 'PT0.5S';
    });
    ({ gateway } = await startGateway(config));
    peer = await Peer.connect();
    alertQueue = `${config.broker.queues.dlq}.crl-alerts`;
    await peer.ch.assertQueue(alertQueue, { exclusive: true });
    await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'crl-unavailable');
    certificateAlerts = `${config.broker.queues.dlq}.certificate-alerts`;
    await peer.ch.assertQueue(certificateAlerts, { exclusive: true });
    await peer.ch.bindQueue(certificateAlerts, config.broker.exchanges.alerts, 'receiver-certificate');
    store = new Store(await openDatabase(config.database.url));
  });

  after(async () => {
    await gateway?.stop();
    await store?.close();
    await peer?.deleteRun(config);
    await peer?.close();
    await new Promise((r) => crlServer?.close(r));
  });

  /** An admission to the service, and its Innleggelsesrapport back, signed with its certificate. */
  async function reportFrom(herId: string): Promise<string> {
    const { xml } = readdressToOslo(readSample(INNLAGT), { postalCode: postcodeOf[herId] });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await deliveries(herId, 1);
    expect(m, `delivered to ${herId}`).to.exist;
    const { parsed } = openDelivery(m.content, m.properties.contentType, services[herId].encryption);
    const { bydel } = services[herId];
    const notice = {
      model: parsed.doc as never,
      xml: parsed.businessXml,
      ebxmlMessageId: parsed.ebxml?.messageId ?? '',
      conversationId: parsed.ebxml?.conversationId ?? '',
      fromHerId: parsed.ebxml?.fromPartyIds[0].id ?? '',
    };
    const report = bydel.reply(readSample(INNLEGGELSESRAPPORT), notice);
    const packaged = bydel.package(report.xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: notice.fromHerId, conversationId: notice.conversationId });
    await peer.send(config.broker.queues.nhnInbound, packaged.body, { contentType: packaged.contentType, headers: { 'from-her-id': herId } });
    return report.msgId;
  }
  const postcodeOf: Record<string, string> = { '9930005': '0350', '9930006': '0275', '9930004': '0151', '9930010': '0951' };
  /** The next delivery at the service, transport signals skipped. */
  const deliveries = async (herId: string, n: number): Promise<GetMessage[]> => {
    const got: GetMessage[] = [];
    const deadline = performance.now() + 15000;
    while (got.length < n && performance.now() < deadline) {
      const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${herId}`, 1, 200);
      if (m && !['Acknowledgment', 'MessageError'].includes(String(m.properties.headers?.['msg-type']))) got.push(m);
    }
    return got;
  };

  it('a certificate the trusted CA issued, not on its CRL: forwarded; the CRL is fetched once and kept', async () => {
    const msgId = await reportFrom('9930005');
    const [m] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    const fetched = crlRequests;
    const again = await reportFrom('9930005');
    const [n] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(n?.properties.headers?.['msg-id']).to.equal(again);
    expect(crlRequests, 'kept until its nextUpdate').to.equal(fetched);
  });

  it('a revoked certificate is refused with S03 and a MessageError; one from an unknown CA with S02; neither reaches the EPJ', async () => {
    await reportFrom('9930006');
    const [revoked] = await peer.take(config.broker.queues.dlq, 1);
    expect(revoked?.properties.headers).to.include({ 'x-error-code': 'S03' });
    expect(String(revoked?.properties.headers?.['x-error-reason'])).to.match(/^The signing certificate of HER-id 9930006 was revoked on /);
    const errors = (await peer.take(`${config.broker.receiverQueuePrefix}9930006`, 3, 3000)).filter(
      (m) => m.properties.headers?.['msg-type'] === 'MessageError',
    );
    expect(errors).to.have.length(1);
    expect(errors[0].content.toString('utf8')).to.contain('eb:errorCode="SecurityFailure"');

    await reportFrom('9930004');
    const [untrusted] = await peer.take(config.broker.queues.dlq, 1);
    expect(untrusted?.properties.headers).to.include({ 'x-error-code': 'S02' });
    expect(String(untrusted?.properties.headers?.['x-error-reason'])).to.contain('does not chain to a trusted CA (issuer CN=Unknown CA)');
    expect(await peer.take(config.broker.queues.epjInbound, 1, 1000)).to.have.length(0);
  });

  it('a bydel whose encryption certificate is revoked gets nothing: held with a receiver-certificate alert, released once it is renewed', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [firing] = await peer.take(certificateAlerts, 1);
    const alert = JSON.parse(firing.content.toString('utf8'));
    expect(alert).to.include({ kind: 'receiver-certificate', state: 'firing', eventId: 'GW-4002', msgId, receiverHerId: REVOKED_RECEIVER });
    expect(alert.text).to.match(new RegExp(`the encryption certificate of HER-id ${REVOKED_RECEIVER} was revoked on \\d{4}-`));
    const [row] = await store.findByMsgId(msgId);
    expect(row).to.include({ state: 'held', receiver_l2_her_id: REVOKED_RECEIVER });
    const queue = `${config.broker.receiverQueuePrefix}${REVOKED_RECEIVER}`;
    expect(await peer.take(queue, 1, 2000), 'nothing leaves, round after round').to.have.length(0);
    // ops release checks it too (the CLI reads the CRL the gateway cached in the store)
    const fetched = crlRequests;
    const refused = await cli(['release', msgId], { config });
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/cannot leave yet: the encryption certificate of HER-id 9920005 was revoked on /);
    expect(crlRequests, 'no CRL fetched for it').to.equal(fetched);

    // the register gives Frogner a renewed certificate; the running gateway reads the file again
    const renewed = issue(issuing, 'kryptering Frogner KD 2', { keyUsage: ENCRYPTION, crlUrl: `${base}/class3.crl` });
    const frogner = parties.find((p) => String(p.herId) === REVOKED_RECEIVER);
    if (frogner) frogner.encryptionCertificate = renewed.certPem;
    writeFileSync(register, JSON.stringify(parties));
    const [m] = await peer.take(queue, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    expect(openDelivery(m.content, m.properties.contentType, renewed).parsed.businessXml).to.contain(`<Id>${REVOKED_RECEIVER}</Id>`);
    const [resolved] = await peer.take(certificateAlerts, 1);
    expect(JSON.parse(resolved.content.toString('utf8'))).to.include({ kind: 'receiver-certificate', state: 'resolved', msgId });
    await releasedTimeline(store, msgId);
    expect(await peer.take(queue, 1, 1500), 'exactly once').to.have.length(0);
  });

  it('a CRL that cannot be fetched soft-fails: the message is forwarded, and one crl-unavailable alert fires', async () => {
    const msgId = await reportFrom('9930010');
    const [m] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    const [alert] = await peer.take(alertQueue, 1);
    const body = JSON.parse(alert.content.toString('utf8'));
    expect(body).to.include({ kind: 'crl-unavailable', state: 'firing', eventId: 'GW-4106', severity: 'warning' });
    expect(body.text).to.contain('answered HTTP 404');
    // the next good CRL resolves it
    await reportFrom('9930005');
    const [resolved] = await peer.take(alertQueue, 1);
    expect(JSON.parse(resolved.content.toString('utf8'))).to.include({ kind: 'crl-unavailable', state: 'resolved' });
  });

  it('config check names a receiver certificate that does not chain, and start refuses an expired own certificate with one line', async () => {
    const checked = await cli(['config', 'check'], { config });
    expect(checked.status).to.equal(1);
    // the example register's other services carry the demo certificate, which no trusted CA issued
    expect(checked.stderr).to.match(
      /^routing\.addressRegisterFile: the encryption certificate of HER-id 9920001 cannot be used: the certificate does not chain to a trusted CA/m,
    );
    const expired = issue(root, 'gateway-expired', { notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const started = await cli(['start'], { config, env: { GATEWAY_SIGNING_KEY: expired.keyFile, GATEWAY_SIGNING_CERT: expired.certFile } });
    expect(started.status).to.equal(1);
    expect(started.stderr.split('\n').at(-1)).to.match(/^signing\.certFile: the gateway's own certificate .* expired on .*; renew it before starting$/);
  });
});
