// A simulated bydel on the far side of Norsk helsenett: a service with its own signing key
// (trusted through a test copy of the address register snapshot), and what it sends back — the
// ebXML Acknowledgment, its AppRec, the kommune's answer, an Innleggelsesrapport — built from
// the official samples, readdressed, and signed the way its message handler would.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { GetMessage } from 'amqplib';
import { buildAppRec } from '../../src/mapping/apprec.js';
import { type MsgHeadModel, NS, type ParsedMessage } from '../../src/mapping/model.js';
import { openEncrypted, parseInbound } from '../../src/mapping/parse.js';
import { buildEbxmlMessage, ENVELOPED_DATA } from '../../src/outbound/ebxml.js';
import { type SignatureAlgorithm, signEnveloped } from '../../src/outbound/xmldsig.js';
import type { SigningKeyPair } from './certificates.js';
import { ADDRESS_REGISTER, DEMO_BYDEL_ENCRYPTION } from './paths.js';
import { child, el, MH } from './samples.js';

export { makeSigner, type SigningKeyPair } from './certificates.js';

/** The example snapshot with these parties' signing certificates added, as a file of its own. */
export function registerWithCertificates(certificates: Record<string, string>): string {
  const parties = JSON.parse(readFileSync(ADDRESS_REGISTER, 'utf8')) as { herId: number | string; signingCertificate?: string }[];
  for (const p of parties) {
    const cert = certificates[String(p.herId)];
    if (cert) p.signingCertificate = cert;
  }
  const file = join(mkdtempSync(join(tmpdir(), 'gw-register-')), 'address-register.json');
  writeFileSync(file, JSON.stringify(parties, null, 1));
  return file;
}

export interface PartyName {
  name: string;
  herId: string;
}

/** What a bydel needs to know about the message it answers (read from what it received). */
export interface Received {
  model: MsgHeadModel;
  /** the MsgHead as delivered: the reply copies its Patient */
  xml: string;
  ebxmlMessageId: string;
  conversationId: string;
  /** the hospital's ebXML From: where the reply goes */
  fromHerId: string;
}

/**
 * What a bydel's message handler reads from a delivery: the ebXML, and the business document,
 * decrypted by `openssl cms -decrypt` with the bydel's key when the payload part is encrypted (not
 * by the gateway's code). `cms` is the encrypted part's DER, for tests that look at it.
 */
export function openDelivery(
  content: Buffer,
  contentType: string | undefined,
  key: { keyFile: string; certFile: string } = DEMO_BYDEL_ENCRYPTION,
): { parsed: ParsedMessage; cms?: Buffer } {
  const arrived = parseInbound(content, { contentType, maxBytes: 5_000_000 });
  if (!arrived.ok) throw new Error(`the delivery does not parse: ${arrived.error.reason}`);
  if (arrived.value.kind === 'business') return { parsed: arrived.value.message };
  if (arrived.value.kind !== 'encrypted') throw new Error('a transport signal, not a delivery');
  const { encrypted } = arrived.value;
  const opened = openEncrypted(encrypted, opensslDecrypt(encrypted.part.body, key), { maxBytes: 5_000_000 });
  if (!opened.ok) throw new Error(`the decrypted payload does not parse: ${opened.error.reason}`);
  return { parsed: opened.value, cms: encrypted.part.body };
}

/** `openssl cms -decrypt -inform DER`: the exact bytes the CMS object holds for this key's holder. */
export function opensslDecrypt(der: Buffer, key: { keyFile: string; certFile: string }): Buffer {
  return execFileSync('openssl', ['cms', '-decrypt', '-binary', '-inform', 'DER', '-inkey', key.keyFile, '-recip', key.certFile], { input: der });
}

/** What a bydel reads from a delivery: the MsgHead it got and the ebXML it came in. */
export function received(m: GetMessage): Received {
  const { parsed } = openDelivery(m.content, m.properties.contentType);
  const { doc, ebxml } = parsed;
  if (doc.kind !== 'msghead' || !ebxml) throw new Error('not a delivered MsgHead');
  return {
    model: doc,
    xml: parsed.businessXml,
    ebxmlMessageId: ebxml.messageId!,
    conversationId: ebxml.conversationId!,
    fromHerId: ebxml.fromPartyIds[0].id,
  };
}

export interface Packaged {
  body: Buffer;
  contentType: string;
  ebxmlMessageId: string;
}

interface PackageOptions {
  msgType: string;
  toHerId: string;
  conversationId: string;
  appRecFor?: string;
  fromHerId?: string;
}

export class SimulatedBydel {
  constructor(
    readonly organisation: PartyName,
    readonly service: PartyName,
    readonly key: SigningKeyPair,
    private readonly algorithm: SignatureAlgorithm = 'rsa-sha1',
  ) {}

  /**
   * The ebXML message its MSH sends: signed with its key, From = its service's HER-id; with
   * `encryptTo`, the payload is CMS EnvelopedData for that certificate, made by openssl (not by
   * the gateway's code), as a real partner's MSH sends it.
   */
  package(businessXml: string, o: PackageOptions & { encryptTo?: string; cipher?: '-aes256' | '-des3' }): Packaged {
    if (o.encryptTo) return this.packageWithPayload(businessXml, opensslEncrypt(businessXml, o.encryptTo, o.cipher ?? '-aes256'), o);
    return this.build(businessXml, o);
  }

  /** The same with a payload part of its own: any DER bytes, sent as an encrypted part. */
  packageWithPayload(businessXml: string, der: Buffer, o: PackageOptions): Packaged {
    return this.build(businessXml, o, { contentType: ENVELOPED_DATA, body: der, transferEncoding: 'base64' });
  }

  private build(businessXml: string, o: PackageOptions, payload?: { contentType: string; body: Buffer; transferEncoding: 'base64' }): Packaged {
    const built = buildEbxmlMessage({
      payload,
      businessXml,
      msgType: o.appRecFor ?? o.msgType,
      ...(o.appRecFor ? { action: 'APPREC', roles: { from: `${o.appRecFor}receiver`, to: `${o.appRecFor}sender` } } : {}),
      fromHerId: o.fromHerId ?? this.service.herId,
      toHerId: o.toHerId,
      conversationId: o.conversationId,
      signing: { ...this.key, algorithm: this.algorithm },
    });
    return { body: built.body, contentType: built.contentType, ebxmlMessageId: built.ebxmlMessageId };
  }

  /** The signed transport acknowledgment (HIS 1037 / ebMS 2.0 §6.3.2), one SOAP part. */
  acknowledgment(received: Received): Buffer {
    return this.signal(
      received,
      'Acknowledgment',
      `<eb:Acknowledgment SOAP:mustUnderstand="1" eb:version="2.0"><eb:Timestamp>${new Date().toISOString()}</eb:Timestamp><eb:RefToMessageId>${received.ebxmlMessageId}</eb:RefToMessageId></eb:Acknowledgment>`,
    );
  }

  /** A transport error: the message was refused by the bydel's MSH. */
  messageError(received: Received): Buffer {
    return this.signal(
      received,
      'MessageError',
      '<eb:ErrorList SOAP:mustUnderstand="1" eb:version="2.0" eb:highestSeverity="Error"><eb:Error eb:errorCode="SecurityFailure" eb:severity="Error"><eb:Description xml:lang="no">Signaturen kunne ikke verifiseres</eb:Description></eb:Error></eb:ErrorList>',
    );
  }

  private signal(received: Received, action: 'Acknowledgment' | 'MessageError', block: string): Buffer {
    const type = received.model.type;
    const envelope = `<?xml version="1.0" encoding="UTF-8"?>
<SOAP:Envelope xmlns:SOAP="${NS.soap}" xmlns:eb="${NS.ebxml}">
<SOAP:Header>
<eb:MessageHeader SOAP:mustUnderstand="1" eb:version="2.0">
<eb:From><eb:PartyId eb:type="HER">${this.service.herId}</eb:PartyId><eb:Role>${type}receiver</eb:Role></eb:From>
<eb:To><eb:PartyId eb:type="HER">${received.fromHerId}</eb:PartyId><eb:Role>${type}sender</eb:Role></eb:To>
<eb:CPAId>${received.fromHerId}_${this.service.herId}</eb:CPAId>
<eb:ConversationId>${received.conversationId}</eb:ConversationId>
<eb:Service>urn:oasis:names:tc:ebxml-msg:service</eb:Service>
<eb:Action>${action}</eb:Action>
<eb:MessageData><eb:MessageId>${randomUUID()}</eb:MessageId><eb:Timestamp>${new Date().toISOString()}</eb:Timestamp><eb:RefToMessageId>${received.ebxmlMessageId}</eb:RefToMessageId></eb:MessageData>
</eb:MessageHeader>
${block}
</SOAP:Header>
<SOAP:Body/>
</SOAP:Envelope>`;
    return Buffer.from(signEnveloped(envelope, { ...this.key, algorithm: this.algorithm, location: 'soap-header' }), 'utf8');
  }

  /** Its AppRec for a received message (AppRec 1.1, addresses mirrored), packaged in that message's Service. */
  appRec(
    received: Received,
    status: '1' | '2' | '3',
    errors: { code: string; details?: string }[] = [],
    o: { encryptTo?: string } = {},
  ): { appRecId: string; packaged: Packaged } {
    const appRecId = randomUUID();
    const m = received.model;
    const xml = buildAppRec({
      id: appRecId,
      version: '1.1',
      status,
      errors,
      original: { msgType: m.type, issueDate: m.genDate, msgId: m.msgId },
      sender: m.receiver,
      receiver: m.sender,
    });
    const packaged = this.package(xml, {
      msgType: 'APPREC',
      appRecFor: m.type,
      toHerId: received.fromHerId,
      conversationId: received.conversationId,
      encryptTo: o.encryptTo,
    });
    return { appRecId, packaged };
  }

  /**
   * A reply built from an official sample: from this bydel to the hospital service that sent
   * `received`, about the same patient, linked by ConversationRef unless `linked` is false.
   */
  reply(
    sampleXml: string,
    received: Received,
    o: { linked?: boolean; temaKodet?: { V: string; S: string; DN: string }; msgId?: string } = {},
  ): { xml: string; msgId: string } {
    const doc = new DOMParser().parseFromString(sampleXml, 'text/xml');
    const msgInfo = child(doc.documentElement, 'MsgInfo')!;
    const msgId = o.msgId ?? randomUUID();
    child(msgInfo, 'MsgId')!.textContent = msgId;

    const old = child(msgInfo, 'ConversationRef');
    if (old) msgInfo.removeChild(old);
    if (o.linked !== false) {
      const ref = el(doc, 'ConversationRef');
      ref.appendChild(el(doc, 'RefToParent', received.model.msgId));
      ref.appendChild(el(doc, 'RefToConversation', received.model.conversationRef?.refToConversation || received.model.msgId));
      msgInfo.insertBefore(ref, child(msgInfo, 'Sender')!);
    }
    const hospital = received.model.sender;
    setParty(doc, child(msgInfo, 'Sender')!, this.organisation, this.service);
    setParty(
      doc,
      child(msgInfo, 'Receiver')!,
      { name: hospital.level1.name, herId: hospital.level1.herId! },
      { name: hospital.level2!.name, herId: hospital.level2!.herId! },
    );

    const patient = new DOMParser().parseFromString(received.xml, 'text/xml').getElementsByTagNameNS(MH, 'Patient')[0];
    msgInfo.replaceChild(doc.importNode(patient, true), child(msgInfo, 'Patient')!);

    if (o.temaKodet) {
      const tema = doc.getElementsByTagNameNS('*', 'TemaKodet')[0];
      for (const [k, v] of Object.entries(o.temaKodet)) tema.setAttribute(k, v);
    }
    return { xml: new XMLSerializer().serializeToString(doc), msgId };
  }
}

/** Replaces a Sender/Receiver's Organisation with level 1 + level 2 HER-ids. */
function setParty(doc: Document, side: Element, level1: PartyName, level2: PartyName): void {
  const organisation = (p: PartyName) => {
    const org = el(doc, 'Organisation');
    org.appendChild(el(doc, 'OrganisationName', p.name));
    const ident = el(doc, 'Ident');
    ident.appendChild(el(doc, 'Id', p.herId));
    ident.appendChild(el(doc, 'TypeId', undefined, { V: 'HER', DN: 'HER-id', S: '2.16.578.1.12.4.1.1.9051' }));
    org.appendChild(ident);
    return org;
  };
  const top = organisation(level1);
  top.appendChild(organisation(level2));
  side.replaceChild(top, child(side, 'Organisation')!);
}

/** The answer forms of REFERENCE §4.2. */
export const TEMA = {
  notat: { V: '1', S: '2.16.578.1.12.4.1.1.9155', DN: 'Tilbakemelding på mottak av utskrivningsklar pasient' },
  helsefaglig: { V: '7', S: '2.16.578.1.12.4.1.1.7322', DN: 'Tilbakemelding på mottak av utskrivningsklar pasient' },
};

/** `openssl cms -encrypt` of the exact bytes, to the certificate, as DER. */
export function opensslEncrypt(content: string | Buffer, certPem: string, cipher: '-aes256' | '-des3' = '-aes256', extra: string[] = []): Buffer {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-cms-')), 'recipient.pem');
  writeFileSync(file, certPem);
  return execFileSync('openssl', ['cms', '-encrypt', '-binary', '-outform', 'DER', cipher, '-recip', file, ...extra], { input: content });
}
