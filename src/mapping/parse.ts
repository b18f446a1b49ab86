// From received bytes to the typed model. Accepts a bare MsgHead or AppRec, a SOAP envelope
// carrying one inline, or an ebMS 2.0 multipart/related message whose manifest points at the
// payload part. Each XML document is parsed once and read with XPath; nothing here logs.

import type { XmlDocument, XmlElement, XmlNode } from 'libxml2-wasm';
import { XmlC14NMode } from 'libxml2-wasm';
import type {
  AppRecModel,
  ContentInfo,
  EbxmlInfo,
  Framing,
  MsgHeadModel,
  ParsedMessage,
  Party,
  PartyLevel,
  Patient,
  StageResult,
  StandardFamily,
} from './model.js';
import { NS, ok, permanent } from './model.js';
import type { MimePart } from './multipart.js';
import { contentTypeParams, looksLikeMultipart, parseMultipart, rootPart } from './multipart.js';
import { documentText, findAll, findFirst, parseXmlSafely, textOf, textsOf, XPATH_NS } from './xml.js';

export interface ParseOptions {
  /** AMQP content type; names the multipart boundary when the body has no MIME headers */
  contentType?: string;
  maxBytes: number;
}

/** One eb:Error of an ebXML MessageError signal. */
export interface EbxmlError {
  code: string;
  severity: string;
  location?: string;
  description?: string;
}

/** An ebXML Acknowledgment or MessageError: transport only, no business document. */
export interface SignalMessage {
  framing: 'soap' | 'multipart';
  envelopeXml: string;
  ebxml: EbxmlInfo & { signal: 'Acknowledgment' | 'MessageError' };
  errors: EbxmlError[];
}

/** A business message whose payload part is CMS EnvelopedData: readable once decrypted (`openEncrypted`). */
export interface EncryptedMessage {
  envelopeXml: string;
  ebxml?: EbxmlInfo;
  /** the payload part, its body the DER bytes of the CMS object (base64 removed) */
  part: MimePart;
}

export type InboundMessage = { kind: 'business'; message: ParsedMessage } | { kind: 'signal'; signal: SignalMessage };

/** What parsing gives: a message to read on, or one to decrypt first. */
export type Arrived = InboundMessage | { kind: 'encrypted'; encrypted: EncryptedMessage };

const ENCRYPTED = 'application/pkcs7-mime';

/** Parses a message that must carry a business document (MsgHead or AppRec). */
export function parseMessage(body: Buffer, opts: ParseOptions): StageResult<ParsedMessage> {
  const result = parseInbound(body, opts);
  if (!result.ok) return result;
  if (result.value.kind === 'signal') {
    const name = result.value.signal.ebxml.signal;
    return permanent('T10', `The ebXML message is a ${name} signal and carries no business document.`);
  }
  if (result.value.kind === 'encrypted') {
    return permanent('T01', 'The payload part is encrypted (application/pkcs7-mime); the gateway takes messages from the EPJ in clear text.');
  }
  return ok(result.value.message);
}

/** Parses anything that may arrive from NHN: a business message or an ebXML signal. */
export function parseInbound(body: Buffer, opts: ParseOptions): StageResult<Arrived> {
  if (body.length > opts.maxBytes) {
    return permanent('T01', `The message is ${body.length} bytes, more than the limit of ${opts.maxBytes} bytes.`);
  }
  if (looksLikeMultipart(body, opts.contentType)) return fromMultipart(body, opts);
  return withDocument(parseXmlSafely(body, opts.maxBytes), (doc) => fromDocument(doc, body, { opts }));
}

interface Packaging {
  opts: ParseOptions;
  /** the MIME parts, when the message was multipart */
  parts?: MimePart[];
}

/** Runs `use` on a parsed document and always frees it afterwards. */
function withDocument<T>(parsed: StageResult<XmlDocument>, use: (doc: XmlDocument) => StageResult<T>): StageResult<T> {
  if (!parsed.ok) return parsed;
  try {
    return use(parsed.value);
  } finally {
    parsed.value.dispose();
  }
}

function fromMultipart(body: Buffer, opts: ParseOptions): StageResult<Arrived> {
  let parts: MimePart[];
  let root: MimePart;
  try {
    const entity = parseMultipart(body, opts.contentType);
    parts = entity.parts;
    root = rootPart(entity);
  } catch (err) {
    return permanent('T01', `The multipart message cannot be split into parts: ${(err as Error).message}.`);
  }
  const parsed = parseXmlSafely(root.body, opts.maxBytes, { encoding: charsetOf(root), what: 'The SOAP part' });
  return withDocument(parsed, (doc) => fromDocument(doc, root.body, { opts, parts }));
}

function charsetOf(part: MimePart): string | undefined {
  return contentTypeParams(part.headers['content-type'] ?? '').params.charset;
}

function fromDocument(doc: XmlDocument, bytes: Buffer, pkg: Packaging): StageResult<Arrived> {
  const root = doc.root;
  if (isBusinessRoot(root)) {
    const framing: Framing = pkg.parts ? 'multipart' : 'msghead';
    return ok({ kind: 'business', message: { framing, businessXml: documentText(doc, bytes), doc: readBusiness(root) } });
  }
  if (root.name === 'Envelope' && root.namespaceUri === NS.soap) {
    return fromEnvelope(root, documentText(doc, bytes), pkg);
  }
  return permanent('T10', `The root element ${root.name} (namespace ${root.namespaceUri || 'none'}) is not a MsgHead, AppRec or SOAP envelope.`);
}

function isBusinessRoot(el: XmlElement): boolean {
  const ns = el.namespaceUri;
  return (el.name === 'MsgHead' && ns === NS.msgHead) || (el.name === 'AppRec' && (ns === NS.appRec10 || ns === NS.appRec11));
}

const SOAP_NS = XPATH_NS.soap;
const SIGNAL_SERVICE = 'urn:oasis:names:tc:ebxml-msg:service';

function fromEnvelope(envelope: XmlElement, envelopeXml: string, pkg: Packaging): StageResult<Arrived> {
  const framing = pkg.parts ? 'multipart' : 'soap';
  const ebxml = readEbxml(envelope);
  if (ebxml?.signal) {
    const errors = readEbxmlErrors(envelope);
    return ok({ kind: 'signal', signal: { framing, envelopeXml, ebxml: { ...ebxml, signal: ebxml.signal }, errors } });
  }
  const inline = findFirst(envelope, 'soap:Body/*[self::mh:MsgHead or self::ar10:AppRec or self::ar11:AppRec]', SOAP_NS);
  if (inline) {
    const message: ParsedMessage = {
      framing,
      businessXml: subtreeText(inline as XmlElement),
      envelopeXml,
      ebxml,
      doc: readBusiness(inline as XmlElement),
    };
    return ok({ kind: 'business', message });
  }
  const href = textOf(envelope, 'soap:Body/eb:Manifest/eb:Reference/@xlink:href', SOAP_NS);
  if (!href) return permanent('T01', 'The SOAP envelope carries no MsgHead or AppRec and its manifest names no payload.');
  const payload = payloadPart(href, pkg.parts ?? []);
  if (!payload.ok) return payload;
  if (contentTypeParams(payload.value.headers['content-type'] ?? '').mediaType === ENCRYPTED) {
    return ok({ kind: 'encrypted', encrypted: { envelopeXml, ebxml, part: payload.value } });
  }
  const message = fromPayload(payload.value, { envelopeXml, ebxml }, pkg.opts);
  return message.ok ? ok({ kind: 'business', message: message.value }) : message;
}

function payloadPart(href: string, parts: MimePart[]): StageResult<MimePart> {
  if (!href.startsWith('cid:')) {
    return permanent('T10', 'The ebXML manifest refers to its payload by something other than a cid: reference.');
  }
  const cid = decodeCid(href.slice(4));
  const part = parts.find((p) => p.contentId === cid);
  if (!part) return permanent('T01', `The ebXML manifest refers to payload ${cid}, but the message has no MIME part with that Content-ID.`);
  return ok(part);
}

/** cid: URLs are URL-encoded Content-IDs (RFC 2392). */
function decodeCid(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
}

/** The business message inside an encrypted payload, from its decrypted bytes. */
export function openEncrypted(encrypted: EncryptedMessage, content: Buffer, opts: Pick<ParseOptions, 'maxBytes'>): StageResult<ParsedMessage> {
  // The decrypted document carries its own encoding declaration; the part's charset is the CMS object's.
  return fromPayload(
    { ...encrypted.part, headers: {}, body: content },
    { envelopeXml: encrypted.envelopeXml, ebxml: encrypted.ebxml },
    { maxBytes: opts.maxBytes },
  );
}

function fromPayload(part: MimePart, envelope: { envelopeXml: string; ebxml?: EbxmlInfo }, opts: Pick<ParseOptions, 'maxBytes'>): StageResult<ParsedMessage> {
  const parsed = parseXmlSafely(part.body, opts.maxBytes, { encoding: charsetOf(part), what: 'The payload part' });
  return withDocument(parsed, (doc) => {
    if (!isBusinessRoot(doc.root)) {
      return permanent('T10', `The payload root element ${doc.root.name} is not a MsgHead or AppRec.`);
    }
    const message: ParsedMessage = {
      framing: 'multipart',
      businessXml: documentText(doc, part.body),
      ...envelope,
      doc: readBusiness(doc.root),
    };
    return ok(message);
  });
}

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';

/**
 * An inline document as a standalone text. Inclusive C14N copies every namespace in scope from
 * the envelope, so prefixes used only inside attribute values (xsi:type) stay bound.
 */
function subtreeText(el: XmlElement): string {
  return XML_DECLARATION + el.canonicalizeToString({ mode: XmlC14NMode.XML_C14N_1_0 });
}

function readBusiness(root: XmlElement): MsgHeadModel | AppRecModel {
  if (root.name === 'MsgHead') return readMsgHead(root);
  return readAppRec(root, root.namespaceUri === NS.appRec10 ? '1.0' : '1.1');
}

// ---------------------------------------------------------------- MsgHead

const MH = XPATH_NS.mh;

function readMsgHead(root: XmlElement): MsgHeadModel {
  const content = findFirst(root, 'mh:Document[1]/mh:RefDoc/mh:Content/*[1]', MH) as XmlElement | undefined;
  const patient = findFirst(root, 'mh:MsgInfo/mh:Patient', MH);
  const conversation = findFirst(root, 'mh:MsgInfo/mh:ConversationRef', MH);
  return {
    kind: 'msghead',
    type: textOf(root, 'mh:MsgInfo/mh:Type/@V', MH) ?? '',
    typeDn: textOf(root, 'mh:MsgInfo/mh:Type/@DN', MH),
    msgId: textOf(root, 'mh:MsgInfo/mh:MsgId', MH) ?? '',
    genDate: textOf(root, 'mh:MsgInfo/mh:GenDate', MH) ?? '',
    conversationRef: conversation && {
      refToParent: textOf(conversation, 'mh:RefToParent', MH) ?? '',
      refToConversation: textOf(conversation, 'mh:RefToConversation', MH) ?? '',
    },
    sender: readParty(findFirst(root, 'mh:MsgInfo/mh:Sender/mh:Organisation', MH)),
    receiver: readParty(findFirst(root, 'mh:MsgInfo/mh:Receiver/mh:Organisation', MH)),
    patient: patient && readPatient(patient),
    content: content && readContentInfo(content),
    hendelsekoder: content ? readHendelsekoder(content) : [],
    hendelsestidspunkt: content ? readHendelsestidspunkt(content) : {},
    forsendelsesstatus: content && textOf(content, "*[local-name()='InformasjonOmForsendelsen']/*[local-name()='Forsendelsesstatus']/@V"),
    uttilstand: content && textOf(content, ".//*[local-name()='UtskrevetTil']/*[local-name()='Uttilstand']/@V"),
    temaKodet: content ? readTemaKodet(content) : [],
  };
}

const herIdOf = (node: XmlNode) => textOf(node, "mh:Ident[mh:TypeId/@V='HER']/mh:Id", MH);

/** Level 1 is the organisation; level 2 the nested Organisation (a service) or a person. */
function readParty(org: XmlNode | undefined): Party {
  if (!org) return { level1: { name: '' } };
  const level1: PartyLevel = { name: textOf(org, 'mh:OrganisationName', MH) ?? '', herId: herIdOf(org) };
  const service = findFirst(org, 'mh:Organisation', MH);
  if (service) return { level1, level2: { name: textOf(service, 'mh:OrganisationName', MH) ?? '', herId: herIdOf(service) } };
  const person = findFirst(org, 'mh:HealthcareProfessional', MH);
  if (person) {
    const names = ['mh:GivenName', 'mh:MiddleName', 'mh:FamilyName'].map((part) => textOf(person, part, MH));
    const name = names.filter((part) => part !== undefined).join(' ');
    return { level1, level2: { name, herId: herIdOf(person) } };
  }
  return { level1 };
}

function readPatient(patient: XmlNode): Patient {
  return {
    familyName: textOf(patient, 'mh:FamilyName', MH),
    givenName: textOf(patient, 'mh:GivenName', MH),
    idents: findAll(patient, 'mh:Ident', MH).map((ident) => ({
      id: textOf(ident, 'mh:Id', MH) ?? '',
      type: textOf(ident, 'mh:TypeId/@V', MH) ?? '',
    })),
    addresses: findAll(patient, 'mh:Address', MH).map((address) => ({
      type: textOf(address, 'mh:Type/@V', MH),
      street: textOf(address, 'mh:StreetAdr', MH),
      postalCode: textOf(address, 'mh:PostalCode', MH),
      city: textOf(address, 'mh:City', MH),
    })),
  };
}

// ---------------------------------------------------------------- Content

/** Content namespaces end in their release date; the date names the version. */
const VERSIONS: Record<Exclude<StandardFamily, 'other'>, Record<string, string>> = {
  plo: { '2009-06-30': '1.5', '2012-04-01': '1.6', '2016-05-30': '2.0' },
  dialogmelding: { '2006-10-11': '1.0', '2013-01-23': '1.1' },
  apprec: { '2004-11-21': '1.0', '2012-02-15': '1.1' },
};

function classify(namespace: string): { family: StandardFamily; version: string } {
  const m = /\/xmlstds\/(po\/[^/]+|dialog|apprec)\/(\d{4}-\d{2}-\d{2})$/.exec(namespace);
  if (!m) return { family: 'other', version: '' };
  const family = m[1].startsWith('po/') ? 'plo' : m[1] === 'dialog' ? 'dialogmelding' : 'apprec';
  const version = VERSIONS[family][m[2]];
  return version ? { family, version } : { family: 'other', version: '' };
}

/** Pasientlogistikk holds exactly one message element in its own namespace (the others are poKomponent). */
function logisticsMessage(content: XmlElement): XmlNode | undefined {
  if (content.name !== 'Pasientlogistikk') return undefined;
  return findFirst(content, '*[namespace-uri() = namespace-uri(..)]');
}

function readContentInfo(content: XmlElement): ContentInfo {
  const message = logisticsMessage(content) as XmlElement | undefined;
  return {
    rootLocalName: content.name,
    rootNamespace: content.namespaceUri,
    messageLocalName: message?.name,
    ...classify(content.namespaceUri),
  };
}

function readHendelsekoder(content: XmlElement): string[] {
  const message = logisticsMessage(content);
  return message ? textsOf(message, ".//*[local-name()='Hendelsekode']/@V") : [];
}

function readHendelsestidspunkt(content: XmlElement): Record<string, string> {
  const message = logisticsMessage(content);
  const times: Record<string, string> = {};
  for (const event of message ? findAll(message, ".//*[local-name()='TidsfestetHendelse']") : []) {
    const code = textOf(event, "*[local-name()='Hendelsekode']/@V");
    const at = textOf(event, "*[local-name()='TidspunktForHendelse']/@V");
    if (code && at && !(code in times)) times[code] = at;
  }
  return times;
}

function readTemaKodet(content: XmlElement): string[] {
  if (content.name !== 'Dialogmelding') return [];
  return findAll(content, "*[local-name()='Notat']/*[local-name()='TemaKodet']").map((tema) => `${textOf(tema, '@S') ?? ''}/${textOf(tema, '@V') ?? ''}`);
}

// ---------------------------------------------------------------- AppRec

function readAppRec(root: XmlElement, version: '1.0' | '1.1'): AppRecModel {
  const ns = version === '1.0' ? XPATH_NS.appRec10 : XPATH_NS.appRec11;
  // HER-ids sit on Inst, Dept, HCPerson or HCProf (Id + TypeId), or in AdditionalId (Id + Type).
  const herIds = (side: string) => textsOf(root, `${side}/a:HCP//*[a:TypeId/@V='HER']/a:Id | ${side}/a:HCP//a:AdditionalId[a:Type/@V='HER']/a:Id`, ns);
  return {
    kind: 'apprec',
    version,
    id: textOf(root, 'a:Id', ns) ?? '',
    genDate: textOf(root, 'a:GenDate', ns) ?? '',
    status: textOf(root, 'a:Status/@V', ns) ?? '',
    errors: findAll(root, 'a:Error', ns).map((error) => ({
      code: textOf(error, '@V') ?? '',
      text: textOf(error, '@DN'),
      details: textOf(error, '@OT'),
    })),
    originalMsgId: {
      msgType: textOf(root, 'a:OriginalMsgId/a:MsgType/@V', ns) ?? '',
      issueDate: textOf(root, 'a:OriginalMsgId/a:IssueDate', ns) ?? '',
      id: textOf(root, 'a:OriginalMsgId/a:Id', ns) ?? '',
    },
    senderHerIds: herIds('a:Sender'),
    receiverHerIds: herIds('a:Receiver'),
  };
}

// ---------------------------------------------------------------- ebXML

function readEbxml(envelope: XmlElement): EbxmlInfo | undefined {
  const header = findFirst(envelope, 'soap:Header/eb:MessageHeader', SOAP_NS);
  if (!header) return undefined;
  const partyIds = (side: string) =>
    findAll(header, `eb:${side}/eb:PartyId`, SOAP_NS).map((p) => ({ type: textOf(p, '@eb:type', SOAP_NS) ?? '', id: p.content.trim() }));
  const service = textOf(header, 'eb:Service', SOAP_NS);
  const action = textOf(header, 'eb:Action', SOAP_NS);
  return {
    fromPartyIds: partyIds('From'),
    toPartyIds: partyIds('To'),
    cpaId: textOf(header, 'eb:CPAId', SOAP_NS),
    conversationId: textOf(header, 'eb:ConversationId', SOAP_NS),
    service,
    action,
    messageId: textOf(header, 'eb:MessageData/eb:MessageId', SOAP_NS),
    // An Acknowledgment may carry the reference only in eb:Acknowledgment (as NHN's samples do).
    refToMessageId: textOf(header, 'eb:MessageData/eb:RefToMessageId', SOAP_NS) ?? textOf(header, '../eb:Acknowledgment/eb:RefToMessageId', SOAP_NS),
    timestamp: textOf(header, 'eb:MessageData/eb:Timestamp', SOAP_NS),
    signal: service === SIGNAL_SERVICE && (action === 'Acknowledgment' || action === 'MessageError') ? action : undefined,
    ackRequested: findFirst(envelope, 'soap:Header/eb:AckRequested', SOAP_NS) !== undefined,
  };
}

function readEbxmlErrors(envelope: XmlElement): EbxmlError[] {
  return findAll(envelope, 'soap:Header/eb:ErrorList/eb:Error', SOAP_NS).map((error) => ({
    code: textOf(error, '@eb:errorCode', SOAP_NS) ?? '',
    severity: textOf(error, '@eb:severity', SOAP_NS) ?? '',
    location: textOf(error, '@eb:location', SOAP_NS),
    description: textOf(error, 'eb:Description', SOAP_NS),
  }));
}
