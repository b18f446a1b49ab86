import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ParseOption, XmlDocument } from 'libxml2-wasm';
import { NS } from '../../src/mapping/model.js';
import { checkSigningCertificate } from '../../src/outbound/certificates.js';
import { type SignatureAlgorithm, signEnveloped, verifyEnveloped } from '../../src/outbound/xmldsig.js';
import { DAY, makeSigner, xmlsec1 } from '../support/certificates.js';
import { SHARED } from '../support/paths.js';

const STANDARDS = join(SHARED, 'standards');
const PLO_SAMPLE = `${STANDARDS}/samples/plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml`;
const ALGORITHMS: SignatureAlgorithm[] = ['rsa-sha256', 'rsa-sha1'];

function withoutSignatureC14n(xml: string): string {
  const doc = XmlDocument.fromString(xml, { option: ParseOption.XML_PARSE_NONET });
  try {
    doc.get('//ds:Signature', { ds: NS.dsig })?.remove();
    return doc.canonicalizeToString();
  } finally {
    doc.dispose();
  }
}

describe('outbound/xmldsig', () => {
  let dir: string;
  let signer: { keyPem: string; certPem: string };
  let other: { keyPem: string; certPem: string };
  let plo: string;
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xmldsig-test-'));
    [signer, other] = await Promise.all([makeSigner('gateway-test'), makeSigner('someone-else')]);
    plo = readFileSync(PLO_SAMPLE, 'utf8');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const algorithm of ALGORITHMS) {
    describe(`MsgHead enveloped signature, ${algorithm}`, () => {
      let signed: string;
      before(() => {
        signed = signEnveloped(plo, { ...signer, algorithm, location: 'msghead-last-child' });
      });

      it('round-trips through our verifier', () => {
        expect(verifyEnveloped(signed, { certPem: signer.certPem })).to.deep.equal({ ok: true, algorithm, references: [''] });
      });

      it('puts a ds:Signature with the configured algorithms last in MsgHead', () => {
        const doc = XmlDocument.fromString(signed);
        try {
          const ns = { ds: NS.dsig, mh: NS.msgHead };
          expect(doc.get('/mh:MsgHead/*[last()][self::ds:Signature]', ns)).to.not.equal(null);
          const uri = (xpath: string) => doc.eval(`string(//ds:SignedInfo/${xpath}/@Algorithm)`, ns) as string;
          expect(uri('ds:CanonicalizationMethod')).to.equal('http://www.w3.org/TR/2001/REC-xml-c14n-20010315');
          expect(uri('ds:SignatureMethod')).to.equal(
            algorithm === 'rsa-sha256' ? 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256' : 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
          );
          expect(uri('ds:Reference[@URI=""]/ds:DigestMethod')).to.equal(
            algorithm === 'rsa-sha256' ? 'http://www.w3.org/2001/04/xmlenc#sha256' : 'http://www.w3.org/2000/09/xmldsig#sha1',
          );
          expect(doc.find('//ds:Reference[@URI=""]/ds:Transforms/ds:Transform/@Algorithm', ns).map((a) => a.content)).to.deep.equal([
            'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
            'http://www.w3.org/TR/2001/REC-xml-c14n-20010315',
          ]);
          expect(doc.eval('string(//ds:KeyInfo/ds:X509Data/ds:X509Certificate)', ns)).to.have.length.above(500);
        } finally {
          doc.dispose();
        }
      });

      it('is verified by xmlsec1', () => {
        const path = file(`msghead-${algorithm}.xml`, signed);
        const cert = file('signer.pem', signer.certPem);
        const r = xmlsec1(['--verify', '--trusted-pem', cert, '--pubkey-cert-pem', cert, path]);
        expect(r.status, r.output).to.equal(0);
      });

      it('fails in our verifier and in xmlsec1 after one character of content changed', () => {
        const tampered = signed.replace('<GivenName>Roland<', '<GivenName>Rolanf<');
        expect(tampered).to.not.equal(signed);
        const result = verifyEnveloped(tampered, { certPem: signer.certPem });
        expect(result).to.deep.equal({
          ok: false,
          reason: 'the digest of the signed document does not match: the document was changed after signing',
        });
        const cert = file('signer.pem', signer.certPem);
        const r = xmlsec1(['--verify', '--trusted-pem', cert, '--pubkey-cert-pem', cert, file('tampered.xml', tampered)]);
        expect(r.status, r.output).to.not.equal(0);
      });

      it('fails with another certificate, in our verifier and in xmlsec1', () => {
        const result = verifyEnveloped(signed, { certPem: other.certPem });
        expect(result.ok).to.equal(false);
        expect(!result.ok && result.reason).to.match(/does not verify with the trusted certificate/);
        const wrong = file('other.pem', other.certPem);
        const r = xmlsec1(['--verify', '--trusted-pem', wrong, '--pubkey-cert-pem', wrong, file(`msghead-${algorithm}.xml`, signed)]);
        expect(r.status, r.output).to.not.equal(0);
      });
    });
  }

  it('keeps the original PLO 1.6 content: same C14N without the signature, still schema-valid', () => {
    const signed = signEnveloped(plo, { ...signer, location: 'msghead-last-child' });
    expect(withoutSignatureC14n(signed)).to.equal(withoutSignatureC14n(plo));
    expect(signed).to.contain('<GivenName>Roland</GivenName>').and.to.contain('Dette er en testmelding med fiktive personer');
    const bundle = file(
      'msghead-bundle.xsd',
      `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
        <xs:import namespace="${NS.msgHead}" schemaLocation="${STANDARDS}/xsd/MsgHead-v1_2.xsd"/>
        <xs:import namespace="http://www.kith.no/xmlstds/po/Pasientlogistikk/2012-04-01" schemaLocation="${STANDARDS}/xsd/Pasientlogistikk-v1.6.xsd"/>
      </xs:schema>`,
    );
    const r = spawnSync('xmllint', ['--nonet', '--noout', '--schema', bundle, file('plo-signed.xml', signed)], { encoding: 'utf8' });
    expect(r.error, 'xmllint must be installed').to.equal(undefined);
    expect(r.status, r.stderr).to.equal(0);
  });

  it('adds no whitespace around the inserted signature', () => {
    const signed = signEnveloped('<a xmlns="urn:x"><b/></a>', { ...signer, location: 'msghead-last-child' });
    expect(signed).to.match(/<a xmlns="urn:x"><b\/><ds:Signature xmlns:ds="http:\/\/www\.w3\.org\/2000\/09\/xmldsig#"><ds:SignedInfo>/);
    expect(signed.trimEnd()).to.match(/<\/ds:KeyInfo><\/ds:Signature><\/a>$/);
    expect(verifyEnveloped(signed, { certPem: signer.certPem }).ok).to.equal(true);
  });

  it('signs and verifies cid: references over raw bytes', () => {
    const bytes = Buffer.from('<payload>æøå</payload>\r\n');
    const envelope = `<SOAP:Envelope xmlns:SOAP="${NS.soap}"><SOAP:Header/><SOAP:Body/></SOAP:Envelope>`;
    const signed = signEnveloped(envelope, { ...signer, location: 'soap-header', extraReferences: [{ uri: 'cid:p1', bytes }] });
    const resolveUri = (uri: string) => (uri === 'cid:p1' ? bytes : undefined);
    expect(verifyEnveloped(signed, { certPem: signer.certPem, resolveUri })).to.deep.equal({
      ok: true,
      algorithm: 'rsa-sha256',
      references: ['', 'cid:p1'],
    });
    expect(verifyEnveloped(signed, { certPem: signer.certPem })).to.deep.equal({
      ok: false,
      reason: 'the signature references cid:p1, which is not part of the message',
    });
    const changed = Buffer.from(bytes);
    changed[2] ^= 1;
    expect(verifyEnveloped(signed, { certPem: signer.certPem, resolveUri: () => changed })).to.deep.equal({
      ok: false,
      reason: 'the digest of cid:p1 does not match: the attachment was changed after signing',
    });
  });

  it('refuses to sign into a SOAP header that is not there', () => {
    expect(() => signEnveloped('<a/>', { ...signer, location: 'soap-header' })).to.throw(/no SOAP Header/);
  });

  describe('rejections', () => {
    const verifySigned = (xml: string, opts: Partial<Parameters<typeof verifyEnveloped>[1]> = {}) => verifyEnveloped(xml, { certPem: signer.certPem, ...opts });

    it('rejects an algorithm the partner is not allowed to use', () => {
      const signed = signEnveloped(plo, { ...signer, algorithm: 'rsa-sha1', location: 'msghead-last-child' });
      const result = verifySigned(signed, { acceptAlgorithms: ['rsa-sha256'] });
      expect(result).to.deep.equal({ ok: false, reason: 'the signature method http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted' });
    });

    it('rejects a document without, or with two, signatures', () => {
      expect(verifySigned(plo)).to.deep.equal({ ok: false, reason: 'the document has no XML signature' });
      const once = signEnveloped('<a><b/></a>', { ...signer, location: 'msghead-last-child' });
      const twice = signEnveloped(once, { ...signer, location: 'msghead-last-child' });
      expect(verifySigned(twice)).to.deep.equal({ ok: false, reason: 'the document has 2 XML signatures; exactly one is accepted' });
    });

    it('rejects a DOCTYPE and non-XML without echoing content', () => {
      const signed = signEnveloped('<a>Kari Nordmann</a>', { ...signer, location: 'msghead-last-child' });
      const withDoctype = signed.replace('<a>', '<!DOCTYPE a [<!ENTITY n "Kari">]><a>');
      expect(verifySigned(withDoctype)).to.deep.equal({ ok: false, reason: 'the document has a DOCTYPE, which signed messages must not have' });
      expect(verifySigned('<a>Kari Nordmann</b>')).to.deep.equal({ ok: false, reason: 'the document is not well-formed XML' });
    });

    it('rejects a document C14N 1.0 cannot represent, on both sides', () => {
      const reason = 'the document cannot be canonicalized (C14N 1.0 refuses it, e.g. for a relative namespace URI)';
      const signed = signEnveloped('<a xmlns="urn:x"><b/></a>', { ...signer, location: 'msghead-last-child' });
      expect(verifySigned(signed.replace('urn:x', 'relative/x'))).to.deep.equal({ ok: false, reason });
      expect(() => signEnveloped('<a xmlns="relative/x"/>', { ...signer, location: 'msghead-last-child' })).to.throw(reason);
    });

    it('rejects transforms it cannot reproduce', () => {
      const signed = signEnveloped('<a><b/></a>', { ...signer, location: 'msghead-last-child' });
      const xslt = signed.replace(
        'http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/></ds:Transforms>',
        'http://www.w3.org/TR/1999/REC-xslt-19991116"/></ds:Transforms>',
      );
      expect(verifySigned(xslt)).to.deep.equal({ ok: false, reason: 'the transform http://www.w3.org/TR/1999/REC-xslt-19991116 is not supported' });
    });
  });

  describe('checkSigningCertificate', () => {
    it('accepts a valid certificate with nonRepudiation', () => {
      expect(checkSigningCertificate(signer.certPem)).to.deep.equal({ ok: true, problems: [] });
    });

    it('reports an expired and a not yet valid certificate', async () => {
      const expired = await makeSigner('expired', { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - 30 * DAY) });
      const future = await makeSigner('future', { notBefore: new Date(Date.now() + 30 * DAY), notAfter: new Date(Date.now() + 400 * DAY) });
      const e = checkSigningCertificate(expired.certPem);
      expect(e.ok).to.equal(false);
      expect(e.problems).to.have.length(1);
      expect(e.problems[0]).to.match(/^the certificate expired on \d{4}-/);
      const f = checkSigningCertificate(future.certPem);
      expect(f.problems).to.have.length(1);
      expect(f.problems[0]).to.match(/^the certificate is not valid before \d{4}-/);
      // the same certificate is fine at a date inside its validity period
      expect(checkSigningCertificate(future.certPem, new Date(Date.now() + 60 * DAY)).ok).to.equal(true);
    });

    it('reports a certificate without nonRepudiation, or without any key usage', async () => {
      const tlsOnly = await makeSigner('tls', { extensions: [{ name: 'keyUsage', digitalSignature: true, keyEncipherment: true }] });
      expect(checkSigningCertificate(tlsOnly.certPem)).to.deep.equal({
        ok: false,
        problems: ['the certificate key usage does not include nonRepudiation'],
      });
      const noUsage = await makeSigner('none', { extensions: [{ name: 'basicConstraints', cA: false }] });
      expect(checkSigningCertificate(noUsage.certPem)).to.deep.equal({
        ok: false,
        problems: ['the certificate has no key usage extension, so nonRepudiation is missing'],
      });
    });
  });
});
