import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { XmlDocument, type XmlElement } from 'libxml2-wasm';
import { NS } from '../../src/mapping/model.js';
import { buildMultipart, contentTypeParams, parseMultipart } from '../../src/mapping/multipart.js';
import { buildEbxmlMessage, cpaIdFor, type SigningKey, verifyEbxmlMessage } from '../../src/outbound/ebxml.js';
import { type SignatureAlgorithm, signEnveloped } from '../../src/outbound/xmldsig.js';
import { makeSigner, xmlsec1 } from '../support/certificates.js';
import { SHARED } from '../support/paths.js';

const STANDARDS = join(SHARED, 'standards');
const PLO_SAMPLE = `${STANDARDS}/samples/plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml`;
const ALGORITHMS: SignatureAlgorithm[] = ['rsa-sha256', 'rsa-sha1'];
const EB = { soap: NS.soap, eb: NS.ebxml, xlink: NS.xlink, ds: NS.dsig };
const EBMS_XPATH =
  'not(ancestor-or-self::node()[@SOAP-ENV:actor="urn:oasis:names:tc:ebxml-msg:actor:nextMSH"]|ancestor-or-self::node()[@SOAP-ENV:actor="http://schemas.xmlsoap.org/soap/actor/next"])';

describe('outbound/ebxml', () => {
  let dir: string;
  let signer: { keyPem: string; certPem: string };
  let other: { keyPem: string; certPem: string };
  let plo: string;
  const file = (name: string, content: string | Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const build = (algorithm: SignatureAlgorithm = 'rsa-sha256', businessXml = plo) =>
    buildEbxmlMessage({
      businessXml,
      msgType: 'LOG_UTSKRIVNINGSKLAR',
      fromHerId: '90998',
      toHerId: '123456',
      conversationId: '774a6ed1-76dd-4f89-9239-6ed3c1bd7caf',
      messageId: '955536cb-fb9a-49d9-848d-2baca7b116e1',
      timestamp: new Date('2025-03-10T09:20:12Z'),
      signing: { ...signer, algorithm } satisfies SigningKey,
    });
  /** xmlsec1 over the envelope, with the payload file mapped to its cid: URI (HIS 1037 check). */
  const xmlsecVerifyEnvelope = (envelope: Buffer, payloadCid: string, payload: Buffer, certPem: string) => {
    const cert = file('cert.pem', certPem);
    return xmlsec1([
      '--verify',
      '--trusted-pem',
      cert,
      '--pubkey-cert-pem',
      cert,
      '--enabled-reference-uris',
      'empty,remote',
      `--url-map:cid:${payloadCid}`,
      file('payload.xml', payload),
      file('envelope.xml', envelope),
    ]);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ebxml-test-'));
    [signer, other] = await Promise.all([makeSigner('gateway-test'), makeSigner('someone-else')]);
    plo = readFileSync(PLO_SAMPLE, 'utf8');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('cpaIdFor puts the numerically lowest HER-id first', () => {
    expect(cpaIdFor('133735', '94866')).to.equal('94866_133735');
    expect(cpaIdFor('79768', '80225')).to.equal('79768_80225');
  });

  it('packages the SOAP part first and the MsgHead byte for byte as application/xml', () => {
    const msg = build();
    const entity = parseMultipart(msg.body, msg.contentType);
    expect(entity.parts).to.have.length(2);
    const [soap, payload] = entity.parts;
    expect(entity.startId).to.equal(soap.contentId);
    expect(contentTypeParams(msg.contentType).params.type).to.equal('text/xml');
    expect(soap.headers['content-type']).to.equal('text/xml; charset=UTF-8');
    expect(payload.headers['content-type']).to.equal('application/xml; charset=UTF-8');
    expect(payload.contentId).to.equal(msg.payloadContentId);
    expect(payload.body.equals(Buffer.from(plo, 'utf8'))).to.equal(true);
  });

  it('writes the HIS 1037 header: parties, roles, CPAId, Service/Action, MessageData, signed AckRequested', () => {
    const msg = build();
    const doc = XmlDocument.fromBuffer(parseMultipart(msg.body, msg.contentType).parts[0].body);
    try {
      const text = (xpath: string) => doc.eval(`string(${xpath})`, EB) as string;
      const mh = '/soap:Envelope/soap:Header/eb:MessageHeader';
      expect(doc.find(`${mh}/*`, EB).map((n) => (n as XmlElement).name)).to.deep.equal([
        'From',
        'To',
        'CPAId',
        'ConversationId',
        'Service',
        'Action',
        'MessageData',
        'DuplicateElimination',
      ]);
      expect(text(`${mh}/@soap:mustUnderstand`)).to.equal('1');
      expect(text(`${mh}/@eb:version`)).to.equal('2.0');
      expect(text(`${mh}/eb:From/eb:PartyId[@eb:type="HER"]`)).to.equal('90998');
      expect(text(`${mh}/eb:From/eb:Role`)).to.equal('LOG_UTSKRIVNINGSKLARsender');
      expect(text(`${mh}/eb:To/eb:PartyId[@eb:type="HER"]`)).to.equal('123456');
      expect(text(`${mh}/eb:To/eb:Role`)).to.equal('LOG_UTSKRIVNINGSKLARreceiver');
      expect(text(`${mh}/eb:CPAId`)).to.equal('90998_123456');
      expect(text(`${mh}/eb:ConversationId`)).to.equal('774a6ed1-76dd-4f89-9239-6ed3c1bd7caf');
      expect(text(`${mh}/eb:Service[@eb:type="string"]`)).to.equal('S-LOG_UTSKRIVNINGSKLAR');
      expect(text(`${mh}/eb:Action`)).to.equal('LOG_UTSKRIVNINGSKLAR');
      expect(text(`${mh}/eb:MessageData/eb:MessageId`))
        .to.equal(msg.ebxmlMessageId)
        .and.to.equal('955536cb-fb9a-49d9-848d-2baca7b116e1');
      expect(text(`${mh}/eb:MessageData/eb:Timestamp`)).to.equal('2025-03-10T09:20:12.000Z');
      const ack = '/soap:Envelope/soap:Header/eb:AckRequested';
      expect(text(`${ack}/@eb:signed`) + text(`${ack}/@eb:version`) + text(`${ack}/@soap:mustUnderstand`)).to.equal('12.01');
      expect(doc.get('/soap:Envelope/soap:Header/*[last()][self::ds:Signature]', EB)).to.not.equal(null);
      expect(text('/soap:Envelope/soap:Body/eb:Manifest/eb:Reference/@xlink:href')).to.equal(`cid:${msg.payloadContentId}`);
      expect(doc.find('//ds:SignedInfo/ds:Reference/@URI', EB).map((a) => a.content)).to.deep.equal(['', `cid:${msg.payloadContentId}`]);
      // the prefixes partners and support staff expect to read
      expect(doc.root.prefix).to.equal('SOAP');
    } finally {
      doc.dispose();
    }
  });

  it('uses the CPA id when there is one', () => {
    const msg = buildEbxmlMessage({
      businessXml: plo,
      msgType: 'LOG_UTSKRIVNINGSKLAR',
      fromHerId: '90998',
      toHerId: '123456',
      cpaId: 'nav:4711',
      conversationId: 'c',
      signing: { ...signer, algorithm: 'rsa-sha256' },
    });
    expect(parseMultipart(msg.body, msg.contentType).parts[0].body.toString()).to.contain('<eb:CPAId>nav:4711</eb:CPAId>');
  });

  it('refuses a HER-id that is not digits', () => {
    expect(() =>
      buildEbxmlMessage({
        businessXml: plo,
        msgType: 'X',
        fromHerId: '90998',
        toHerId: '12<3',
        conversationId: 'c',
        signing: { ...signer, algorithm: 'rsa-sha256' },
      }),
    ).to.throw('a HER-id must be digits only');
  });

  it('the envelope validates against msg-header-2_0.xsd (eb:*) and xmldsig-core-schema.xsd (ds:Signature)', () => {
    // The vendored XSDs import each other by remote URL; a catalog maps them to local copies, and
    // a minimal SOAP 1.1 schema stands in for envelope.xsd, validating its header blocks strictly.
    const xsd = `${STANDARDS}/xsd`;
    const soapStub = file(
      'soap-envelope-stub.xsd',
      `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="${NS.soap}" targetNamespace="${NS.soap}" elementFormDefault="qualified">
        <xs:import namespace="${NS.ebxml}" schemaLocation="${xsd}/ebxml/msg-header-2_0.xsd"/>
        <xs:element name="Envelope"><xs:complexType><xs:sequence><xs:element ref="tns:Header"/><xs:element ref="tns:Body"/></xs:sequence></xs:complexType></xs:element>
        <xs:element name="Header"><xs:complexType><xs:sequence><xs:any namespace="##other" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
        <xs:element name="Body"><xs:complexType><xs:sequence><xs:any namespace="##any" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
        <xs:attribute name="mustUnderstand"><xs:simpleType><xs:restriction base="xs:boolean"><xs:pattern value="0|1"/></xs:restriction></xs:simpleType></xs:attribute>
        <xs:attribute name="actor" type="xs:anyURI"/>
      </xs:schema>`,
    );
    const uri = (name: string, path: string) => `<uri name="${name}" uri="file://${path}"/>`;
    const catalog = file(
      'catalog.xml',
      `<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
        ${uri('http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd', `${xsd}/xmldsig-core-schema.xsd`)}
        ${uri('http://www.oasis-open.org/committees/ebxml-msg/schema/xlink.xsd', `${xsd}/ebxml/xlink.xsd`)}
        ${uri('http://www.oasis-open.org/committees/ebxml-msg/schema/envelope.xsd', soapStub)}
        ${uri('http://www.w3.org/2001/03/xml.xsd', `${xsd}/ebxml/xml.xsd`)}
        ${uri('http://www.w3.org/2001/xml.xsd', `${xsd}/ebxml/xml.xsd`)}
      </catalog>`,
    );
    const msg = build();
    const envelope = file('envelope-xsd.xml', parseMultipart(msg.body, msg.contentType).parts[0].body);
    const r = spawnSync('xmllint', ['--nonet', '--noout', '--schema', soapStub, envelope], {
      encoding: 'utf8',
      env: { ...process.env, XML_CATALOG_FILES: catalog },
    });
    expect(r.error, 'xmllint must be installed').to.equal(undefined);
    expect(r.status, r.stderr).to.equal(0);
  });

  for (const algorithm of ALGORITHMS) {
    describe(`signature, ${algorithm}`, () => {
      let msg: ReturnType<typeof build>;
      let envelope: Buffer;
      let payload: Buffer;
      before(() => {
        msg = build(algorithm);
        [{ body: envelope }, { body: payload }] = parseMultipart(msg.body, msg.contentType).parts;
      });

      it('verifies with our verifier and hands back the signed payload', () => {
        const result = verifyEbxmlMessage(msg.body, msg.contentType, signer.certPem);
        expect(result.ok).to.equal(true);
        if (!result.ok) return;
        expect(result.algorithm).to.equal(algorithm);
        expect(result.payloads).to.have.length(1);
        expect(result.payloads[0].body.toString('utf8')).to.equal(plo);
      });

      it('is verified by xmlsec1, including the cid: reference to the payload', () => {
        const r = xmlsecVerifyEnvelope(envelope, msg.payloadContentId, payload, signer.certPem);
        expect(r.status, r.output).to.equal(0);
        expect(r.output).to.contain('SignedInfo References (ok/all): 2/2');
      });

      it('fails in both after one character of the To PartyId changed', () => {
        const tampered = Buffer.from(msg.body.toString('latin1').replace('"HER">123456<', '"HER">123457<'), 'latin1');
        expect(tampered.equals(msg.body)).to.equal(false);
        expect(verifyEbxmlMessage(tampered, msg.contentType, signer.certPem)).to.deep.equal({
          ok: false,
          reason: 'the digest of the signed document does not match: the document was changed after signing',
        });
        const tamperedEnvelope = parseMultipart(tampered, msg.contentType).parts[0].body;
        expect(xmlsecVerifyEnvelope(tamperedEnvelope, msg.payloadContentId, payload, signer.certPem).status).to.not.equal(0);
      });

      it('fails in both after one character of the payload changed', () => {
        const tampered = Buffer.from(msg.body.toString('latin1').replace('<GivenName>Roland<', '<GivenName>Rolanf<'), 'latin1');
        expect(tampered.equals(msg.body)).to.equal(false);
        expect(verifyEbxmlMessage(tampered, msg.contentType, signer.certPem)).to.deep.equal({
          ok: false,
          reason: `the digest of cid:${msg.payloadContentId} does not match: the attachment was changed after signing`,
        });
        const tamperedPayload = parseMultipart(tampered, msg.contentType).parts[1].body;
        expect(xmlsecVerifyEnvelope(envelope, msg.payloadContentId, tamperedPayload, signer.certPem).status).to.not.equal(0);
      });

      it('fails in both with another certificate', () => {
        const result = verifyEbxmlMessage(msg.body, msg.contentType, other.certPem);
        expect(result.ok).to.equal(false);
        expect(!result.ok && result.reason).to.match(/does not verify with the trusted certificate/);
        expect(xmlsecVerifyEnvelope(envelope, msg.payloadContentId, payload, other.certPem).status).to.not.equal(0);
      });
    });
  }

  it('rejects a manifest entry the signature does not cover, and an unreadable entity', () => {
    const bytes = Buffer.from('<x/>');
    const envelope = `<SOAP:Envelope xmlns:SOAP="${NS.soap}" xmlns:eb="${NS.ebxml}" xmlns:xlink="${NS.xlink}"><SOAP:Header/><SOAP:Body><eb:Manifest eb:version="2.0"><eb:Reference xlink:href="cid:a"/><eb:Reference xlink:href="cid:b"/></eb:Manifest></SOAP:Body></SOAP:Envelope>`;
    const signed = signEnveloped(envelope, { ...signer, location: 'soap-header', extraReferences: [{ uri: 'cid:a', bytes }] });
    const { contentType, body } = buildMultipart([
      { contentId: 'root', contentType: 'text/xml', body: Buffer.from(signed) },
      { contentId: 'a', contentType: 'application/xml', body: bytes },
      { contentId: 'b', contentType: 'application/xml', body: bytes },
    ]);
    expect(verifyEbxmlMessage(body, contentType, signer.certPem)).to.deep.equal({ ok: false, reason: 'the signature does not cover cid:b' });
    expect(verifyEbxmlMessage(Buffer.from('not mime'), 'multipart/related', signer.certPem)).to.deep.equal({
      ok: false,
      reason: 'the message is not a readable multipart/related entity',
    });
  });

  it('verifies a partner envelope signed by xmlsec1 with the ebMS XPath filter; next-MSH blocks may change', () => {
    // Inbound interop: real NHN partners (see samples/ebxml SVAR_CYT) add the ebMS 2.0 XPath
    // transform, which excludes header blocks addressed to the next MSH from the digest.
    const payload = Buffer.from(plo, 'utf8');
    const template = `<?xml version="1.0" encoding="UTF-8"?>
<SOAP:Envelope xmlns:SOAP="${NS.soap}" xmlns:eb="${NS.ebxml}" xmlns:xlink="${NS.xlink}">
  <SOAP:Header>
    <eb:MessageHeader SOAP:mustUnderstand="1" eb:version="2.0"><eb:CPAId>90998_123456</eb:CPAId></eb:MessageHeader>
    <eb:SyncReply SOAP:actor="http://schemas.xmlsoap.org/soap/actor/next" SOAP:mustUnderstand="1" eb:version="2.0"/>
    <Signature xmlns="${NS.dsig}"><SignedInfo>
      <CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>
      <SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/>
      <Reference URI=""><Transforms>
        <Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
        <Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><XPath xmlns:SOAP-ENV="${NS.soap}">${EBMS_XPATH}</XPath></Transform>
        <Transform Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>
      </Transforms><DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/><DigestValue/></Reference>
      <Reference URI="cid:payload-1"><DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/><DigestValue/></Reference>
    </SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature>
  </SOAP:Header>
  <SOAP:Body><eb:Manifest eb:version="2.0"><eb:Reference xlink:href="cid:payload-1"/></eb:Manifest></SOAP:Body>
</SOAP:Envelope>`;
    const signedPath = join(dir, 'xmlsec-signed.xml');
    const r = xmlsec1([
      '--sign',
      '--privkey-pem',
      `${file('key.pem', signer.keyPem)},${file('cert.pem', signer.certPem)}`,
      '--enabled-reference-uris',
      'empty,remote',
      '--url-map:cid:payload-1',
      file('payload.xml', payload),
      '--output',
      signedPath,
      file('template.xml', template),
    ]);
    expect(r.status, r.output).to.equal(0);
    const pack = (envelope: string) =>
      buildMultipart([
        { contentId: 'soap-1', contentType: 'text/xml', body: Buffer.from(envelope) },
        { contentId: 'payload-1', contentType: 'application/xml', body: payload },
      ]);
    const signed = readFileSync(signedPath, 'utf8');
    const verify = (envelope: string) => {
      const { body, contentType } = pack(envelope);
      return verifyEbxmlMessage(body, contentType, signer.certPem);
    };
    expect(verify(signed).ok).to.equal(true);
    expect(verify(signed.replace('eb:version="2.0"/>', 'eb:version="2.0"><changed-in-transit/></eb:SyncReply>')).ok).to.equal(true);
    expect(verify(signed.replace('90998_123456', '90998_123457')).ok).to.equal(false);
  });
});
