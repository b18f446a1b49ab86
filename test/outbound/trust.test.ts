// Chains to the configured trust anchors, with CAs made by `openssl ca` (root → issuing CA →
// virksomhetssertifikat, as Buypass issues them): trusted, untrusted, missing issuing CA,
// expired issuing CA, and a certificate whose issuer name is right but whose signature is not.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { checkSigningCertificate, TrustStore } from '../../src/outbound/certificates.js';
import { encryptionCertificateProblem } from '../../src/outbound/cms.js';
import { DAY, issue, makeCa, type TestCa } from '../support/certificates.js';

describe('trust anchors (GATEWAY_TRUST_ANCHORS)', function () {
  this.timeout(30000);
  let root: TestCa;
  let other: TestCa;
  let anchors: TrustStore;
  let signer: ReturnType<typeof issue>;
  let encryption: ReturnType<typeof issue>;

  before(() => {
    root = makeCa('Test Root CA');
    const issuing = makeCa('Test Class 3 CA', root);
    other = makeCa('Someone Else CA');
    anchors = TrustStore.fromFiles([root.certFile, issuing.certFile]);
    signer = issue(issuing, 'Bydel Frogner');
    encryption = issue(issuing, 'Bydel Frogner kryptering', { keyUsage: 'critical,keyEncipherment,dataEncipherment' });
  });

  it('a certificate the issuing CA issued chains to the anchors, for signing and for encryption', () => {
    expect(checkSigningCertificate(signer.certPem, new Date(), anchors)).to.deep.equal({ ok: true, problems: [] });
    expect(encryptionCertificateProblem(encryption.certPem, new Date(), anchors)).to.equal(undefined);
  });

  it('without anchors nothing is checked; an unknown CA, or anchors without the issuing CA, are refused with one sentence', () => {
    const stranger = issue(other, 'Not Frogner');
    expect(checkSigningCertificate(stranger.certPem, new Date()).ok).to.equal(true);
    expect(checkSigningCertificate(stranger.certPem, new Date(), anchors).problems).to.deep.equal([
      'the certificate does not chain to a trusted CA (issuer CN=Someone Else CA)',
    ]);
    expect(TrustStore.fromFiles([root.certFile]).chainProblem(signer.certPem, new Date())).to.equal(
      'the certificate does not chain to a trusted CA (issuer CN=Test Class 3 CA)',
    );
  });

  it('an issuing CA that has expired breaks the chain; a lookalike issuer name signed by another key does not chain', () => {
    const old = makeCa('Old Class 3 CA', root, { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
    const leaf = issue(old, 'Bydel Ullern', { notBefore: new Date(Date.now() - 300 * DAY), notAfter: new Date(Date.now() + 30 * DAY) });
    const store = TrustStore.fromFiles([root.certFile, old.certFile]);
    expect(store.chainProblem(leaf.certPem, new Date())).to.match(/^the issuing CA certificate \(CN=Old Class 3 CA\) is not valid at /);
    const impostor = makeCa('Test Class 3 CA');
    const forged = issue(impostor, 'Bydel Frogner');
    expect(anchors.chainProblem(forged.certPem, new Date())).to.equal('the certificate does not chain to a trusted CA (issuer CN=Test Class 3 CA)');
  });

  it('an anchors file without a certificate is named', () => {
    const empty = join(root.dir, 'empty.pem');
    writeFileSync(empty, 'no certificate here\n');
    expect(() => TrustStore.fromFiles([empty])).to.throw(`${empty} holds no PEM certificate`);
  });
});
