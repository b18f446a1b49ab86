// Partners encrypt their payloads (HIS 1037 §5.5): a bydel whose message handler sends only CMS
// EnvelopedData, made by `openssl cms -encrypt`, completes the round trip through the real
// gateway, broker and store; what cannot be opened goes to the DLQ and never to the EPJ.
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, opensslEncrypt, type Received, received, registerWithCertificates, type SigningKeyPair, SimulatedBydel, TEMA } from '../support/bydel.js';
import { pemFiles } from '../support/certificates.js';
import { type LogCapture, Peer, startGateway, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const INNLEGGELSESRAPPORT = 'plo-1.6/Innleggelsesrapport_v1-6_Ny.xml';
const NOTAT = 'dialogmelding/ks-1.0-dialog-notat-webmed-test.xml';
const FROGNER = { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' };
const PERSONAL = ['15076500565', 'Gundersen', 'Roland', 'Testveien'];

const encryptionPair = (cn: string) =>
  makeSigner(cn, { extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }] as never });

describe('encrypted payloads from a bydel (CMS EnvelopedData by openssl), end to end', function () {
  this.timeout(90000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let store: Store;
  let current: SigningKeyPair;
  let previous: SigningKeyPair;
  let stranger: SigningKeyPair;
  let kd: SimulatedBydel;
  let kp: SimulatedBydel;

  before(async () => {
    const [kdKey, kpKey] = await Promise.all([makeSigner('frogner-kd0501'), makeSigner('frogner-kp02')]);
    [current, previous, stranger] = await Promise.all([encryptionPair('gateway-2026'), encryptionPair('gateway-2025'), encryptionPair('someone-else')]);
    kd = new SimulatedBydel(FROGNER, { name: 'Saksbehandling (FIKTIV)', herId: '9920005' }, kdKey);
    kp = new SimulatedBydel(FROGNER, { name: 'Sykepleietjeneste (FIKTIV)', herId: '9930005' }, kpKey, 'rsa-sha256');
    const register = registerWithCertificates({ '9920005': kdKey.certPem, '9930005': kpKey.certPem });
    config = testConfig((c) => {
      c.routing.addressRegisterFile = register;
      // a certificate rollover: the new pair first, the old one still accepted
      c.encryption = { ...c.encryption, keys: [pemFiles(current), pemFiles(previous)], acceptPlain: 'listed', plainPartners: ['9930005'] };
    });
    ({ gateway, logs } = await startGateway(config));
    peer = await Peer.connect();
    store = new Store(await openDatabase(config.database.url));
  });

  after(async () => {
    await gateway?.stop();
    await store?.close();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  const epjInbox = (n: number, timeoutMs?: number) => peer.take(config.broker.queues.epjInbound, n, timeoutMs);
  const dlq = (n: number, timeoutMs?: number) => peer.take(config.broker.queues.dlq, n, timeoutMs);

  /** The delivery the EPJ's message became, at the bydel service (its Acknowledgments for what the bydel sent skipped). */
  async function sendToBydel(xml: string, herId: string): Promise<Received> {
    await peer.send(config.broker.queues.epjOutbound, xml);
    const m = await eventually(`a delivery at ${herId}`, async () =>
      (await peer.take(`${config.broker.receiverQueuePrefix}${herId}`, 1, 200)).find(
        (d) => !['Acknowledgment', 'MessageError'].includes(String(d.properties.headers?.['msg-type'])),
      ),
    );
    return received(m);
  }
  const fromBydel = (bydel: SimulatedBydel, p: { body: Buffer; contentType: string }) =>
    peer.send(config.broker.queues.nhnInbound, p.body, { contentType: p.contentType, headers: { 'from-her-id': bydel.service.herId } });

  it('an encrypted AppRec and answer to a notice, and an Innleggelsesrapport, reach the EPJ decrypted and close what they answer', async () => {
    const notice = await sendToBydel(readdressToOslo(readSample(UTSKRIVNINGSKLAR)).xml, '9920005');
    const appRec = kd.appRec(notice, '1', [], { encryptTo: current.certPem });
    await fromBydel(kd, appRec.packaged);
    const answer = kd.reply(readSample(NOTAT), notice, { temaKodet: TEMA.notat });
    await fromBydel(
      kd,
      kd.package(answer.xml, { msgType: 'DIALOG_NOTAT', toHerId: notice.fromHerId, conversationId: notice.conversationId, encryptTo: current.certPem }),
    );

    const admission = await sendToBydel(readdressToOslo(readSample(INNLAGT)).xml, '9930005');
    const report = kp.reply(readSample(INNLEGGELSESRAPPORT), admission);
    // the old certificate of the rollover, and 3DES: still opened
    await fromBydel(
      kp,
      kp.package(report.xml, {
        msgType: 'INNLEGGELSESRAPPORT',
        toHerId: admission.fromHerId,
        conversationId: admission.conversationId,
        encryptTo: previous.certPem,
        cipher: '-des3',
      }),
    );

    const toEpj = await epjInbox(3);
    expect(toEpj).to.have.length(3);
    const texts = toEpj.map((m) => m.content.toString('utf8'));
    expect(texts.some((t) => t.includes('<AppRec') && t.includes(appRec.appRecId))).to.equal(true);
    expect(texts.some((t) => t === answer.xml || t.includes(answer.msgId))).to.equal(true);
    expect(texts.some((t) => t.includes(report.msgId))).to.equal(true);

    const out = async (msgId: string) => (await store.findByMsgId(msgId)).find((r) => r.direction === 'out')!;
    await eventually('the notice answered and accepted', async () => {
      const row = await out(notice.model.msgId);
      return row.answer_state === 'answered' && row.apprec_status === 'ok';
    });
    const events = (await store.timeline(report.msgId)).flatMap((t) => t.events.map((e) => [e.event, e.detail && JSON.parse(e.detail)]));
    expect(events.find(([e]) => e === 'decrypted')?.[1]).to.deep.include({ keyIndex: 1, contentCipher: 'des-ede3-cbc' });
    expect(logs.text()).not.to.match(new RegExp(PERSONAL.join('|')));
  });

  it('RSA-OAEP key transport is opened too', async () => {
    const admission = await sendToBydel(readdressToOslo(readSample(INNLAGT)).xml, '9930005');
    const report = kp.reply(readSample(INNLEGGELSESRAPPORT), admission);
    const body = opensslEncrypt(report.xml, current.certPem, '-aes256', ['-keyopt', 'rsa_padding_mode:oaep']);
    await fromBydel(
      kp,
      kp.packageWithPayload(report.xml, body, { msgType: 'INNLEGGELSESRAPPORT', toHerId: admission.fromHerId, conversationId: admission.conversationId }),
    );
    const [m] = await epjInbox(1);
    expect(m?.content.toString('utf8')).to.contain(report.msgId);
  });

  const unopenable: [string, (xml: string) => Buffer][] = [
    ['addressed to someone else', (xml) => opensslEncrypt(xml, stranger.certPem)],
    ['truncated', (xml) => opensslEncrypt(xml, current.certPem).subarray(0, 200)],
    [
      'with tampered ciphertext',
      (xml) => {
        const der = Buffer.from(opensslEncrypt(xml, current.certPem));
        der[der.length - 20] ^= 0xff;
        return der;
      },
    ],
  ];
  for (const [name, encrypt] of unopenable) {
    it(`a payload ${name} is never forwarded: the original goes to the DLQ with GW-DECRYPTION`, async () => {
      const admission = await sendToBydel(readdressToOslo(readSample(INNLAGT)).xml, '9930005');
      const report = kp.reply(readSample(INNLEGGELSESRAPPORT), admission);
      const packaged = kp.packageWithPayload(report.xml, encrypt(report.xml), {
        msgType: 'INNLEGGELSESRAPPORT',
        toHerId: admission.fromHerId,
        conversationId: admission.conversationId,
      });
      await fromBydel(kp, packaged);
      const [dead] = await dlq(1);
      expect(dead?.properties.headers).to.include({ 'x-error-code': 'GW-DECRYPTION', 'x-stage': 'decrypt', 'x-source-queue': config.broker.queues.nhnInbound });
      expect(String(dead.properties.headers?.['x-error-reason'])).to.match(/^The encrypted payload cannot be opened: .+\.$/);
      expect(Buffer.compare(dead.content, packaged.body)).to.equal(0);
      expect(await epjInbox(1, 500)).to.have.length(0);
      // the sender's message handler is told, by a signed MessageError
      const refusal = await eventually('a MessageError at the bydel', async () =>
        (await peer.take(`${config.broker.receiverQueuePrefix}9930005`, 10, 200)).find(
          (m) => m.properties.headers?.['msg-type'] === 'MessageError' && m.content.toString('utf8').includes(packaged.ebxmlMessageId),
        ),
      );
      expect(refusal.content.toString('utf8')).to.contain('eb:errorCode="SecurityFailure"').and.contain('transport:decryption-failed');
    });
  }

  it('a payload in clear text from a partner that must encrypt is refused; one allowed to send plain is forwarded', async () => {
    const notice = await sendToBydel(readdressToOslo(readSample(UTSKRIVNINGSKLAR)).xml, '9920005');
    const answer = kd.reply(readSample(NOTAT), notice, { temaKodet: TEMA.notat });
    await fromBydel(kd, kd.package(answer.xml, { msgType: 'DIALOG_NOTAT', toHerId: notice.fromHerId, conversationId: notice.conversationId }));
    const [dead] = await dlq(1);
    expect(dead?.properties.headers).to.include({ 'x-error-code': 'GW-PLAIN-REFUSED' });
    expect(await epjInbox(1, 500)).to.have.length(0);

    const admission = await sendToBydel(readdressToOslo(readSample(INNLAGT)).xml, '9930005');
    const report = kp.reply(readSample(INNLEGGELSESRAPPORT), admission);
    await fromBydel(kp, kp.package(report.xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: admission.fromHerId, conversationId: admission.conversationId }));
    const [m] = await epjInbox(1);
    expect(m?.content.toString('utf8')).to.contain(report.msgId);
  });
});
