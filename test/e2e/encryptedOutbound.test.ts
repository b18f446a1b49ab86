// What leaves for a bydel is CMS EnvelopedData of the business document, to the bydel's
// encryption certificate from the address register; openssl (with the bydel's key) and xmlsec1
// (with the CMS part mapped by its cid:) are the oracles, not the gateway's own code. A receiver
// without a usable certificate holds the message with an alert until the register has one.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { parseMultipart } from '../../src/mapping/multipart.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, opensslDecrypt } from '../support/bydel.js';
import { pemFiles, xmlsec1VerifyEnvelope } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { type LogCapture, Peer, startGateway, testConfig, testSigningKeys } from '../support/harness.js';
import { releasedTimeline } from '../support/holds.js';
import { ADDRESS_REGISTER, DEMO_BYDEL_ENCRYPTION } from '../support/paths.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const DAY = 86_400_000;

/** The receiver's part of a MsgHead: what the gateway rewrites; everything else must arrive byte for byte. */
const outsideReceiver = (xml: string) => xml.replace(/<Receiver>[\s\S]*?<\/Receiver>/, '<Receiver/>');

/** A copy of the example register with these parties' encryption certificates replaced (undefined: removed). */
function registerFile(certificates: Record<string, string | undefined>, file = join(mkdtempSync(join(tmpdir(), 'gw-reg-')), 'register.json')): string {
  const parties = JSON.parse(readFileSync(ADDRESS_REGISTER, 'utf8')) as { herId: number; encryptionCertificate?: string }[];
  for (const p of parties) if (String(p.herId) in certificates) p.encryptionCertificate = certificates[String(p.herId)];
  writeFileSync(file, JSON.stringify(parties));
  return file;
}

/** The MIME parts of a delivery: the signed envelope and the payload part as the bydel receives them. */
function partsOf(m: GetMessage) {
  const entity = parseMultipart(m.content, m.properties.contentType);
  const [envelope, payload] = entity.parts;
  const raw = m.content.toString('latin1');
  return { envelope, payload, raw };
}

/** `openssl cms -cmsout -print`: what the CMS object says about its algorithms and recipient. */
const cmsPrint = (der: Buffer) => execFileSync('openssl', ['cms', '-cmsout', '-print', '-inform', 'DER'], { input: der }).toString('utf8');

/** A gateway whose register gives Frogner KP02 an expired encryption certificate (and `more`), with a tap on its receiver-certificate alerts. */
interface HeldSetup {
  config: GatewayConfig;
  store: Store;
  register: string;
  alertQueue: string;
  close: () => Promise<void>;
}

async function heldSetup(peer: Peer, more: Record<string, string | undefined>, checkInterval: string): Promise<HeldSetup> {
  const expired = await makeSigner('frogner-kp-expired', {
    notBefore: new Date(Date.now() - 400 * DAY),
    notAfter: new Date(Date.now() - DAY),
    extensions: [{ name: 'keyUsage', keyEncipherment: true, critical: true }] as never,
  });
  const register = registerFile({ '9930005': expired.certPem, ...more });
  const config = testConfig((c) => {
    c.routing.addressRegisterFile = register;
    c.addressRegister.checkInterval = checkInterval;
  });
  const { gateway } = await startGateway(config);
  const store = new Store(await openDatabase(config.database.url));
  const alertQueue = `${config.broker.queues.dlq}.certificate-alerts`;
  await peer.ch.assertQueue(alertQueue, { exclusive: true });
  await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'receiver-certificate');
  return {
    config,
    store,
    register,
    alertQueue,
    close: async () => {
      await gateway.stop();
      await store.close();
      await peer.deleteRun(config);
    },
  };
}

describe('encrypted payloads to the bydeler (CMS EnvelopedData), end to end', function () {
  this.timeout(90000);
  let peer: Peer;

  before(async () => {
    peer = await Peer.connect();
  });
  after(async () => {
    await peer?.close();
  });

  describe('what leaves, per algorithm choice (openssl and xmlsec1 as oracles)', () => {
    let config: GatewayConfig;
    let gateway: Gateway;
    let logs: LogCapture;

    // Four receivers, four choices; a fifth configured plain.
    const cases = [
      {
        what: 'AES-256-CBC, RSA PKCS#1 v1.5 (the default)',
        sample: UTSKRIVNINGSKLAR,
        postalCode: '0350',
        herId: '9920005',
        cipher: 'aes-256-cbc',
        oaep: false,
      },
      { what: 'AES-256-CBC, RSA-OAEP', sample: INNLAGT, postalCode: '0350', herId: '9930005', cipher: 'aes-256-cbc', oaep: true },
      { what: '3DES, RSA PKCS#1 v1.5', sample: UTSKRIVNINGSKLAR, postalCode: '0151', herId: '9920004', cipher: 'des-ede3-cbc', oaep: false },
      { what: '3DES, RSA-OAEP', sample: INNLAGT, postalCode: '0151', herId: '9930004', cipher: 'des-ede3-cbc', oaep: true },
    ] as const;

    before(async () => {
      config = testConfig((c) => {
        c.encryption.outbound.partners = {
          '9930005': { keyTransport: 'rsa-oaep' },
          '9920004': { contentCipher: 'des-ede3-cbc' },
          '9930004': { contentCipher: 'des-ede3-cbc', keyTransport: 'rsa-oaep' },
          '9920010': { payload: 'plain' },
        };
      });
      ({ gateway, logs } = await startGateway(config));
    });
    after(async () => {
      await gateway?.stop();
      await peer?.deleteRun(config);
    });

    for (const c of cases) {
      it(`${c.what}: openssl decrypts the exact document, xmlsec1 verifies the envelope over the CMS bytes`, async () => {
        const { xml, msgId } = readdressToOslo(readSample(c.sample), { postalCode: c.postalCode });
        await peer.send(config.broker.queues.epjOutbound, xml);
        const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${c.herId}`, 1);
        expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
        const { envelope, payload, raw } = partsOf(m);

        expect(payload.headers['content-type']).to.equal('application/pkcs7-mime; smime-type=enveloped-data');
        expect(raw).to.match(/Content-Transfer-Encoding: base64/i);
        expect(raw, 'nothing of the document in clear').not.to.match(/MsgHead|Gundersen|15076500565/);

        const plain = opensslDecrypt(payload.body, DEMO_BYDEL_ENCRYPTION).toString('utf8');
        expect(outsideReceiver(plain)).to.equal(outsideReceiver(xml));
        expect(plain).to.contain(`<Id>${c.herId}</Id>`);

        const printed = cmsPrint(payload.body);
        expect(printed).to.contain('d.issuerAndSerialNumber');
        expect(printed).to.contain(c.cipher);
        expect(printed).to.contain(c.oaep ? 'rsaesOaep' : 'rsaEncryption');

        const { certFile } = testSigningKeys();
        const verifyOver = (part: Buffer) => xmlsec1VerifyEnvelope(envelope.body, payload.contentId, part, certFile);
        const verified = verifyOver(payload.body);
        expect(verified.status, verified.output).to.equal(0);
        const flipped = Buffer.from(payload.body);
        flipped[flipped.length - 20] ^= 0x01;
        const tampered = verifyOver(flipped);
        expect(tampered.status, 'one CMS byte changed breaks the cid: digest').not.to.equal(0);
      });
    }

    it('a partner configured plain gets the document in clear, as application/xml', async () => {
      const { xml } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0951' });
      await peer.send(config.broker.queues.epjOutbound, xml);
      const [m] = await peer.take(`${config.broker.receiverQueuePrefix}9920010`, 1);
      const { payload } = partsOf(m);
      expect(payload.headers['content-type']).to.match(/^application\/xml/);
      expect(outsideReceiver(payload.body.toString('utf8'))).to.equal(outsideReceiver(xml));
    });

    it('logs say how a message was encrypted, never what it says', () => {
      const text = logs.text();
      expect(text).to.contain('encrypted aes-256-cbc/rsa-pkcs1');
      expect(text).to.contain('encrypted des-ede3-cbc/rsa-oaep');
      expect(text).not.to.match(/Gundersen|15076500565/);
    });
  });

  describe('a receiver without a usable encryption certificate', () => {
    let held: HeldSetup;

    before(async () => {
      // Frogner KD0501 has no certificate; Frogner KP02's has expired.
      held = await heldSetup(peer, { '9920005': undefined }, 'PT0.5S');
    });
    after(() => held?.close());

    it('is held, not rejected, with one receiver-certificate alert; it leaves encrypted once the register file has a certificate', async () => {
      const { config, store, register, alertQueue } = held;
      const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
      await peer.send(config.broker.queues.epjOutbound, xml);
      const [firing] = await peer.take(alertQueue, 1);
      const alert = JSON.parse(firing.content.toString('utf8'));
      expect(alert).to.include({ kind: 'receiver-certificate', state: 'firing', eventId: 'GW-4002', msgId, receiverHerId: '9920005', bydel: '030105' });
      expect(alert.text).to.contain('no encryption certificate for HER-id 9920005');
      expect(firing.content.toString('utf8')).not.to.match(/Gundersen|15076500565/);
      const [row] = await store.findByMsgId(msgId);
      expect(row).to.include({ state: 'held', bydel: '030105', receiver_l2_her_id: '9920005' });
      expect(await peer.take(`${config.broker.receiverQueuePrefix}9920005`, 1, 1500), 'nothing leaves').to.have.length(0);
      expect(await peer.take(config.broker.queues.epjInbound, 1, 200), 'no AppRec to the EPJ').to.have.length(0);

      // ops put the bydel's certificate into the snapshot; the running gateway reads it again
      registerFile({ '9930005': undefined }, register);
      const [m] = await peer.take(`${config.broker.receiverQueuePrefix}9920005`, 1);
      expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
      expect(outsideReceiver(opensslDecrypt(partsOf(m).payload.body, DEMO_BYDEL_ENCRYPTION).toString('utf8'))).to.equal(outsideReceiver(xml));
      const [resolved] = await peer.take(alertQueue, 1);
      expect(JSON.parse(resolved.content.toString('utf8'))).to.include({ kind: 'receiver-certificate', state: 'resolved', msgId });
      const timeline = await releasedTimeline(store, msgId);
      expect((await store.expectation(timeline.message.id, 'certificate'))?.state).to.equal('met');
    });
  });

  describe('ops release', () => {
    let held: HeldSetup;

    before(async () => {
      // the gateway's own round is far off: only ops release here
      held = await heldSetup(peer, {}, 'PT1H');
    });
    after(() => held?.close());

    it('an expired certificate holds the message; release is refused while it is unusable, then sends it once (audited)', async () => {
      const { config, store, register, alertQueue } = held;
      const { xml, msgId } = readdressToOslo(readSample(INNLAGT), { postalCode: '0350' });
      await peer.send(config.broker.queues.epjOutbound, xml);
      const [firing] = await peer.take(alertQueue, 1);
      expect(JSON.parse(firing.content.toString('utf8')).text).to.match(/HER-id 9930005 cannot be used: the certificate expired on/);

      const refused = await cli(['release', msgId], { config });
      expect(refused.status).to.equal(1);
      expect(refused.stderr).to.match(/cannot leave yet: .*expired/);
      expect(await peer.take(`${config.broker.receiverQueuePrefix}9930005`, 1, 300)).to.have.length(0);

      const renewed = pemFiles(
        await makeSigner('frogner-kp-2027', { extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }] as never }),
      );
      registerFile({ '9930005': readFileSync(renewed.certFile, 'utf8') }, register);
      const released = await cli(['release', msgId, '--reason', 'renewed certificate registered', '--json'], { config });
      expect(released.status, released.stderr).to.equal(0);
      expect(JSON.parse(released.stdout)).to.include({ msgId, toHerId: '9930005' });
      const [m] = await peer.take(`${config.broker.receiverQueuePrefix}9930005`, 1);
      expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
      expect(outsideReceiver(opensslDecrypt(partsOf(m).payload.body, renewed).toString('utf8'))).to.equal(outsideReceiver(xml));
      const [resolved] = await peer.take(alertQueue, 1);
      expect(JSON.parse(resolved.content.toString('utf8'))).to.include({ state: 'resolved', msgId });
      expect(JSON.parse(resolved.content.toString('utf8')).text).to.contain('by manual-release');
      const audit = await store.db.kysely.selectFrom('audit').selectAll().where('action', '=', 'message.release').execute();
      expect(audit.map((a) => [a.actor, a.target, a.reason])).to.deep.equal([['ops-tester', `message:${msgId}`, 'renewed certificate registered']]);

      const again = await cli(['release', msgId], { config });
      expect([again.status, again.stderr.split('\n').at(-1)]).to.deep.equal([1, `conflict: ${msgId} is not held (state published)`]);
      expect(await peer.take(`${config.broker.receiverQueuePrefix}9930005`, 1, 500), 'exactly once').to.have.length(0);
    });
  });
});
