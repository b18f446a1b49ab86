// With `signing.signMsgHead` on, the MsgHead delivered to the bydel carries an enveloped
// ds:Signature that xmlsec1 verifies; a legacy partner gets rsa-sha1, everyone else rsa-sha256.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { parseMultipart } from '../../src/mapping/multipart.js';
import { verifyEbxmlMessage } from '../../src/outbound/ebxml.js';
import { opensslDecrypt } from '../support/bydel.js';
import { Peer, startGateway, testConfig, testSigningKeys } from '../support/harness.js';
import { DEMO_BYDEL_ENCRYPTION } from '../support/paths.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';
const GRORUD_KD0501 = '9920010';

function xmlsec1Verify(xml: string, certFile: string): number | null {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-sig-')), 'msghead.xml');
  writeFileSync(file, xml);
  const r = spawnSync('xmlsec1', ['--verify', '--trusted-pem', certFile, '--pubkey-cert-pem', certFile, file], { encoding: 'utf8' });
  if (r.error) throw new Error(`xmlsec1 could not be run: ${r.error.message}`);
  return r.status;
}

describe('signing as configured, end to end', function () {
  this.timeout(60000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let peer: Peer;

  before(async () => {
    config = testConfig((c) => {
      c.signing.signMsgHead = true;
      c.signing.partnerAlgorithms = { [GRORUD_KD0501]: 'rsa-sha1' };
    });
    ({ gateway } = await startGateway(config));
    peer = await Peer.connect();
  });

  after(async () => {
    await gateway?.stop();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  const deliver = async (postalCode: string, herId: string) => {
    const { xml } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), { postalCode });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${herId}`, 1);
    expect(m, 'delivered').to.exist;
    // the payload part is CMS EnvelopedData for the bydel: openssl opens it
    const entity = parseMultipart(m.content, m.properties.contentType);
    return { message: m, msgHead: opensslDecrypt(entity.parts[1].body, DEMO_BYDEL_ENCRYPTION).toString('utf8') };
  };

  it('the MsgHead signature verifies with xmlsec1 and tampering breaks it', async () => {
    const { certFile, certPem } = testSigningKeys();
    const { message, msgHead } = await deliver('0350', FROGNER_KD0501);
    expect(msgHead).to.contain('http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    expect(xmlsec1Verify(msgHead, certFile)).to.equal(0);
    expect(xmlsec1Verify(msgHead.replace('Gundersen', 'Gundersem'), certFile)).not.to.equal(0);
    expect(verifyEbxmlMessage(message.content, message.properties.contentType, certPem)).to.include({ ok: true, algorithm: 'rsa-sha256' });
  });

  it('a partner configured for rsa-sha1 gets rsa-sha1 on the envelope and the MsgHead', async () => {
    const { certFile, certPem } = testSigningKeys();
    const { message, msgHead } = await deliver('0951', GRORUD_KD0501);
    expect(msgHead).to.contain('http://www.w3.org/2000/09/xmldsig#rsa-sha1');
    expect(xmlsec1Verify(msgHead, certFile)).to.equal(0);
    expect(verifyEbxmlMessage(message.content, message.properties.contentType, certPem)).to.include({ ok: true, algorithm: 'rsa-sha1' });
  });
});
