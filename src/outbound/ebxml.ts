// ebMS 2.0 message per HIS 1037 (REFERENCE.md §5.1): a signed SOAP 1.1 envelope and the business
// document as a MIME attachment, packaged as multipart/related.
//
// The payload part is the business document as application/xml, or (HIS 1037 §5.5) a CMS
// EnvelopedData object as application/pkcs7-mime in base64; either way the `cid:` digest covers
// the part's bytes as they are before any transfer encoding (for CMS: the DER object).
import { randomUUID } from 'node:crypto';
import { ParseOption, XmlC14NMode, XmlDocument, type XmlElement } from 'libxml2-wasm';
import { create, fragment } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import { NS } from '../mapping/model.js';
import { buildMultipart, looksLikeMultipart, type MimePart, parseMultipart, rootPart } from '../mapping/multipart.js';
import { type SignatureAlgorithm, signEnveloped, verifyEnveloped } from './xmldsig.js';

export interface SigningKey {
  keyPem: string;
  certPem: string;
  algorithm: SignatureAlgorithm;
}

export interface EbxmlInput {
  /** the business document (MsgHead or AppRec), sent byte for byte as the payload part */
  businessXml: string;
  /** MsgInfo/Type (code list 8279), e.g. LOG_UTSKRIVNINGSKLAR; by default also Action, Service and Roles */
  msgType: string;
  fromHerId: string;
  toHerId: string;
  /** from the CPA when there is one; default `cpaIdFor(from, to)` */
  cpaId?: string;
  /** eb:AckRequested (HIS 1037: always); false where the CPA's channel says ackRequested="never" */
  ackRequested?: boolean;
  conversationId: string;
  /** default `S-<msgType>`; an AppRec travels in the Service of the message it answers (HISD 1209) */
  service?: string;
  /** default `msgType`; `APPREC` for an AppRec */
  action?: string;
  /** eb:Role of From and To; default `<msgType>sender` / `<msgType>receiver` (reversed for an AppRec) */
  roles?: { from: string; to: string };
  messageId?: string;
  timestamp?: Date;
  signing: SigningKey;
  /** the payload part as it goes on the wire, when it is not the business document in clear (an encrypted one) */
  payload?: { contentType: string; body: Buffer; transferEncoding: 'base64' };
}

/** The MIME type of an encrypted payload part (HIS 1037 §5.5, RFC 8551). */
export const ENVELOPED_DATA = 'application/pkcs7-mime; smime-type=enveloped-data';

export interface EbxmlMessage {
  contentType: string;
  body: Buffer;
  ebxmlMessageId: string;
  payloadContentId: string;
}

export type EbxmlVerifyResult =
  | { ok: true; algorithm: SignatureAlgorithm; envelope: Buffer /** signed payload parts, manifest order */; payloads: MimePart[] }
  | { ok: false; reason: string };

/** HIS 1037 CPAId when the parties have no CPA: `<lowest HER-id>_<highest HER-id>`, numerically. */
export function cpaIdFor(a: string, b: string): string {
  const [low, high] = [a, b].sort((x, y) => Number(x) - Number(y));
  return `${low}_${high}`;
}

/** Builds, signs and packages one ebXML message for the business document. */
export function buildEbxmlMessage(input: EbxmlInput): EbxmlMessage {
  for (const her of [input.fromHerId, input.toHerId]) {
    if (!/^\d+$/.test(her)) throw new Error('a HER-id must be digits only');
  }
  const ebxmlMessageId = input.messageId ?? randomUUID();
  // Bare UUIDs as Content-IDs, as in NHN's own envelopes (samples/ebxml SVAR_CYT).
  const payloadContentId = randomUUID();
  const payload = input.payload?.body ?? Buffer.from(input.businessXml, 'utf8');
  const envelope = signEnveloped(envelopeXml(input, ebxmlMessageId, payloadContentId), {
    ...input.signing,
    location: 'soap-header',
    extraReferences: [{ uri: `cid:${payloadContentId}`, bytes: payload }],
  });
  const { contentType, body } = buildMultipart([
    { contentId: randomUUID(), contentType: 'text/xml; charset=UTF-8', body: Buffer.from(envelope, 'utf8') },
    input.payload
      ? { contentId: payloadContentId, contentType: input.payload.contentType, body: payload, transferEncoding: input.payload.transferEncoding }
      : { contentId: payloadContentId, contentType: 'application/xml; charset=UTF-8', body: payload },
  ]);
  return { contentType, body, ebxmlMessageId, payloadContentId };
}

/** One eb:MessageHeader's content (ebMS 2.0 §3.1), for business messages and signals alike. */
interface HeaderFields {
  from: { herId: string; role: string };
  to: { herId: string; role: string };
  cpaId: string;
  conversationId: string;
  service: { value: string; type?: string };
  action: string;
  messageId: string;
  timestamp: string;
  refToMessageId?: string;
  duplicateElimination: boolean;
}

const XMLNS = 'http://www.w3.org/2000/xmlns/';

/** The SOAP envelope with its header, prefixes SOAP and eb as in the HIS 1037 samples (partners compare QNames; logs and support staff read these). */
function soapEnvelope(h: HeaderFields, withXlink: boolean): { doc: XMLBuilder; envelope: XMLBuilder; header: XMLBuilder } {
  const doc = create({ version: '1.0', encoding: 'UTF-8' });
  const envelope = doc.ele(NS.soap, 'SOAP:Envelope').att(XMLNS, 'xmlns:eb', NS.ebxml);
  if (withXlink) envelope.att(XMLNS, 'xmlns:xlink', NS.xlink);
  const header = envelope.ele(NS.soap, 'SOAP:Header');
  const mh = header.ele(NS.ebxml, 'eb:MessageHeader').att(NS.soap, 'SOAP:mustUnderstand', '1').att(NS.ebxml, 'eb:version', '2.0');
  for (const [side, party] of [
    ['eb:From', h.from],
    ['eb:To', h.to],
  ] as const) {
    const el = mh.ele(NS.ebxml, side);
    el.ele(NS.ebxml, 'eb:PartyId').att(NS.ebxml, 'eb:type', 'HER').txt(party.herId);
    el.ele(NS.ebxml, 'eb:Role').txt(party.role);
  }
  mh.ele(NS.ebxml, 'eb:CPAId').txt(h.cpaId);
  mh.ele(NS.ebxml, 'eb:ConversationId').txt(h.conversationId);
  const service = mh.ele(NS.ebxml, 'eb:Service');
  if (h.service.type) service.att(NS.ebxml, 'eb:type', h.service.type);
  service.txt(h.service.value);
  mh.ele(NS.ebxml, 'eb:Action').txt(h.action);
  const data = mh.ele(NS.ebxml, 'eb:MessageData');
  data.ele(NS.ebxml, 'eb:MessageId').txt(h.messageId);
  data.ele(NS.ebxml, 'eb:Timestamp').txt(h.timestamp);
  if (h.refToMessageId) data.ele(NS.ebxml, 'eb:RefToMessageId').txt(h.refToMessageId);
  if (h.duplicateElimination) mh.ele(NS.ebxml, 'eb:DuplicateElimination');
  return { doc, envelope, header };
}

/** An ebMS element with SOAP:mustUnderstand="1" and eb:version="2.0", as every header block has. */
const headerBlock = (parent: XMLBuilder, name: string) =>
  parent.ele(NS.ebxml, name).att(NS.soap, 'SOAP:mustUnderstand', '1').att(NS.ebxml, 'eb:version', '2.0');

function envelopeXml(input: EbxmlInput, messageId: string, payloadContentId: string): string {
  const roles = input.roles ?? { from: `${input.msgType}sender`, to: `${input.msgType}receiver` };
  const { doc, envelope, header } = soapEnvelope(
    {
      from: { herId: input.fromHerId, role: roles.from },
      to: { herId: input.toHerId, role: roles.to },
      cpaId: input.cpaId ?? cpaIdFor(input.fromHerId, input.toHerId),
      conversationId: input.conversationId,
      service: { value: input.service ?? `S-${input.msgType}`, type: 'string' },
      action: input.action ?? input.msgType,
      messageId,
      timestamp: (input.timestamp ?? new Date()).toISOString(),
      duplicateElimination: true,
    },
    true,
  );
  if (input.ackRequested !== false) headerBlock(header, 'eb:AckRequested').att(NS.ebxml, 'eb:signed', '1');
  const manifest = envelope.ele(NS.soap, 'SOAP:Body').ele(NS.ebxml, 'eb:Manifest').att(NS.ebxml, 'eb:version', '2.0');
  manifest.ele(NS.ebxml, 'eb:Reference').att(NS.xlink, 'xlink:href', `cid:${payloadContentId}`).att(NS.xlink, 'xlink:type', 'simple');
  return doc.end();
}

/** What a transport signal (Acknowledgment, MessageError) says about the message it answers. */
export interface SignalInput {
  /** the party the received message was addressed to: us */
  fromHerId: string;
  /** its sender */
  toHerId: string;
  cpaId?: string;
  conversationId: string;
  /** the eb:Action of the received message: the roles are `<action>receiver` / `<action>sender` */
  action: string;
  /** its eb:MessageId */
  refToMessageId: string;
  messageId?: string;
  timestamp?: Date;
  signing: SigningKey;
}

export interface SignalMessage {
  contentType: string;
  body: Buffer;
  ebxmlMessageId: string;
}

/**
 * The signed transport Acknowledgment (HIS 1037 §5.5, ebMS 2.0 §6.3.2) the gateway owes for a
 * received message that asked for one, with the ds:Reference elements of the signature it
 * acknowledges copied in (non-repudiation of receipt).
 */
export function buildAcknowledgment(input: SignalInput & { receivedReferences: string[] }): SignalMessage {
  return signedSignal(input, 'Acknowledgment', (header, timestamp) => {
    const ack = headerBlock(header, 'eb:Acknowledgment');
    ack.ele(NS.ebxml, 'eb:Timestamp').txt(timestamp);
    ack.ele(NS.ebxml, 'eb:RefToMessageId').txt(input.refToMessageId);
    for (const reference of input.receivedReferences) ack.import(fragment(reference));
  });
}

/** One eb:Error: an ebMS 2.0 §4.2.3.4.1 code and a description without personal data. */
export interface EbxmlErrorOut {
  code: 'SecurityFailure' | 'Inconsistent' | 'OtherXml' | 'NotSupported';
  description: string;
}

/** The signed ebXML MessageError (highestSeverity Error) for a received message refused at the transport level. */
export function buildMessageError(input: SignalInput & { errors: EbxmlErrorOut[] }): SignalMessage {
  return signedSignal(input, 'MessageError', (header) => {
    const list = headerBlock(header, 'eb:ErrorList').att(NS.ebxml, 'eb:highestSeverity', 'Error');
    for (const e of input.errors) {
      const error = list.ele(NS.ebxml, 'eb:Error').att(NS.ebxml, 'eb:errorCode', e.code).att(NS.ebxml, 'eb:severity', 'Error');
      error.ele(NS.ebxml, 'eb:Description').att('http://www.w3.org/XML/1998/namespace', 'xml:lang', 'en').txt(e.description);
    }
  });
}

/** A signal's envelope: one SOAP part, Service `urn:oasis:names:tc:ebxml-msg:service`, signed. */
function signedSignal(input: SignalInput, action: 'Acknowledgment' | 'MessageError', block: (header: XMLBuilder, timestamp: string) => void): SignalMessage {
  for (const her of [input.fromHerId, input.toHerId]) {
    if (!/^\d+$/.test(her)) throw new Error('a HER-id must be digits only');
  }
  const ebxmlMessageId = input.messageId ?? randomUUID();
  const timestamp = (input.timestamp ?? new Date()).toISOString();
  const { doc, envelope, header } = soapEnvelope(
    {
      from: { herId: input.fromHerId, role: `${input.action}receiver` },
      to: { herId: input.toHerId, role: `${input.action}sender` },
      cpaId: input.cpaId ?? cpaIdFor(input.fromHerId, input.toHerId),
      conversationId: input.conversationId,
      service: { value: 'urn:oasis:names:tc:ebxml-msg:service' },
      action,
      messageId: ebxmlMessageId,
      timestamp,
      refToMessageId: input.refToMessageId,
      duplicateElimination: false,
    },
    false,
  );
  block(header, timestamp);
  envelope.ele(NS.soap, 'SOAP:Body');
  const signed = signEnveloped(doc.end(), { ...input.signing, location: 'soap-header' });
  return { contentType: 'text/xml; charset=UTF-8', body: Buffer.from(signed, 'utf8'), ebxmlMessageId };
}

/** The ds:Reference elements of a received envelope's signature, each standalone (its namespace declared). */
export function signatureReferences(envelopeXml: string): string[] {
  const doc = XmlDocument.fromString(envelopeXml, { option: ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE });
  try {
    const ns = { soap: NS.soap, ds: 'http://www.w3.org/2000/09/xmldsig#' };
    return doc
      .find('/soap:Envelope/soap:Header/ds:Signature/ds:SignedInfo/ds:Reference', ns)
      .map((node) => (node as XmlElement).canonicalizeToString({ mode: XmlC14NMode.XML_C14N_1_0 }));
  } finally {
    doc.dispose();
  }
}

/**
 * Verifies a received ebXML message against the partner's certificate: the envelope signature,
 * the payload digests (`cid:` → MIME part), and that every manifest entry is covered by it.
 */
export function verifyEbxmlMessage(
  body: Buffer,
  contentType: string | undefined,
  certPem: string,
  acceptAlgorithms?: readonly SignatureAlgorithm[],
): EbxmlVerifyResult {
  let parts: MimePart[];
  let envelope: Buffer;
  try {
    if (looksLikeMultipart(body, contentType)) {
      const entity = parseMultipart(body, contentType);
      envelope = rootPart(entity).body;
      parts = entity.parts;
    } else {
      // A signal (Acknowledgment, MessageError) or a document inline in the SOAP Body: no parts.
      envelope = body;
      parts = [];
    }
  } catch {
    return { ok: false, reason: 'the message is not a readable multipart/related entity' };
  }
  const partFor = (uri: string) => {
    const contentId = cidOf(uri);
    return contentId === undefined ? undefined : parts.find((p) => p.contentId === contentId);
  };
  const result = verifyEnveloped(envelope, { certPem, resolveUri: (uri) => partFor(uri)?.body, acceptAlgorithms });
  if (!result.ok) return result;
  const payloads: MimePart[] = [];
  for (const href of manifestHrefs(envelope)) {
    const part = partFor(href);
    if (!part) return { ok: false, reason: `the manifest names ${href}, which is not part of the message` };
    if (!result.references.includes(href)) return { ok: false, reason: `the signature does not cover ${href}` };
    payloads.push(part);
  }
  return { ok: true, algorithm: result.algorithm, envelope, payloads };
}

function manifestHrefs(envelope: Buffer): string[] {
  // Already parsed successfully by the verifier, with the same safe options.
  const doc = XmlDocument.fromBuffer(envelope, { option: ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE });
  try {
    const ns = { soap: NS.soap, eb: NS.ebxml, xlink: NS.xlink };
    return doc.find('/soap:Envelope/soap:Body/eb:Manifest/eb:Reference/@xlink:href', ns).map((a) => a.content);
  } finally {
    doc.dispose();
  }
}

/** RFC 2392: `cid:` + the URL-encoded Content-ID. */
function cidOf(uri: string): string | undefined {
  if (!uri.startsWith('cid:')) return undefined;
  try {
    return decodeURIComponent(uri.slice(4));
  } catch {
    return undefined;
  }
}
