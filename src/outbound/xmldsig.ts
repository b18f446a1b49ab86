// Enveloped XML-DSig for MsgHead documents and ebXML (HIS 1037) envelopes, including `cid:`
// references to MIME attachments.
//
// Why our own signer instead of xml-crypto: xml-crypto's C14N orders namespace declarations with
// localeCompare, while C14N 1.0 requires code-point order. On an NHN envelope, where `xmlns:SOAP`
// and `xmlns:eb` sit on one element, it emits `eb` first and libxml2/xmlsec1/.NET emit `SOAP`
// first, so our signatures would fail at conformant partners and theirs would fail here. It also
// cannot resolve `cid:` references. libxml2-wasm exposes libxml2's own C14N (the engine xmlsec1
// uses), so this module only builds/reads the ds:Signature and leaves hashing and RSA to
// node:crypto.
//
// Canonicalization is inclusive C14N 1.0 throughout (REFERENCE.md §7).
import { createHash, createPrivateKey, type KeyObject, sign, verify, X509Certificate } from 'node:crypto';
import { ParseOption, XmlDocument, type XmlElement } from 'libxml2-wasm';
import { NS } from '../mapping/model.js';

export type SignatureAlgorithm = 'rsa-sha256' | 'rsa-sha1';

const ALGORITHMS = {
  'rsa-sha256': {
    signatureMethod: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    digestMethod: 'http://www.w3.org/2001/04/xmlenc#sha256',
    hash: 'sha256',
  },
  'rsa-sha1': {
    signatureMethod: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
    digestMethod: 'http://www.w3.org/2000/09/xmldsig#sha1',
    hash: 'sha1',
  },
} as const;

const ALL_ALGORITHMS = Object.keys(ALGORITHMS) as SignatureAlgorithm[];
const C14N = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
// ebMS 2.0 §4.1.3 prescribes this XPath filter (partners such as the SVAR_CYT sample use it); it
// drops header blocks addressed to the next MSH, which may change in transit. We accept it on
// verify; we do not emit it because HIS 1037's corrected example does not.
const XPATH_FILTER = 'http://www.w3.org/TR/1999/REC-xpath-19991116';
const EBMS_ACTOR_FILTER =
  'not(ancestor-or-self::node()[@SOAP-ENV:actor="urn:oasis:names:tc:ebxml-msg:actor:nextMSH"]' +
  '|ancestor-or-self::node()[@SOAP-ENV:actor="http://schemas.xmlsoap.org/soap/actor/next"])';
const NEXT_MSH = '@soap:actor="urn:oasis:names:tc:ebxml-msg:actor:nextMSH" or @soap:actor="http://schemas.xmlsoap.org/soap/actor/next"';

const DS = { ds: NS.dsig };
// No network, no external entities; a DOCTYPE is rejected separately (see parseXml).
const PARSE_OPTIONS = ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE;

/** Where the ds:Signature goes: last child of the root element (MsgHead), or of SOAP:Header. */
export type SignatureLocation = 'msghead-last-child' | 'soap-header';

/** A reference to data outside the document, e.g. an ebXML payload part (`cid:…`). */
export interface ExternalReference {
  uri: string;
  /** the exact bytes the digest covers (for `cid:` the MIME part body, no C14N) */
  bytes: Buffer;
}

export interface SignOptions {
  keyPem: string;
  certPem: string;
  /** default rsa-sha256; rsa-sha1 for partners whose CPA still says so */
  algorithm?: SignatureAlgorithm;
  location: SignatureLocation;
  extraReferences?: ExternalReference[];
}

export interface VerifyOptions {
  /** the partner's certificate from AR/CPA; KeyInfo in the message is never trusted */
  certPem: string;
  /** returns the bytes behind a non-document reference such as `cid:…` */
  resolveUri?: (uri: string) => Buffer | undefined;
  /** default: both rsa-sha256 and rsa-sha1 */
  acceptAlgorithms?: readonly SignatureAlgorithm[];
}

export type VerifyResult =
  | { ok: true; algorithm: SignatureAlgorithm /** URIs of all verified references */; references: string[] }
  | { ok: false; reason: string };

/** A verification failure whose message is a readable sentence without message content. */
class Rejected extends Error {}

/** A reference to write into SignedInfo. */
interface ReferenceSpec {
  uri: string;
  transforms: string[];
  digest: Buffer;
}

/** A reference read from a received SignedInfo. */
interface ParsedReference {
  uri: string;
  transforms: string[];
  hash: string;
  digestValue: Buffer;
}

/**
 * Signs `xml` with an enveloped signature: Reference URI="" (enveloped-signature + C14N) plus one
 * reference per `extraReferences` entry (digest over the raw bytes, no transforms).
 */
export function signEnveloped(xml: string, opts: SignOptions): string {
  const alg = ALGORITHMS[opts.algorithm ?? 'rsa-sha256'];
  const doc = parseXml(xml);
  try {
    // The enveloped-signature transform removes the Signature again, and we add it without any
    // whitespace text around it, so the digest of the unsigned document is what a verifier gets.
    const references: ReferenceSpec[] = [
      { uri: '', transforms: [ENVELOPED, C14N], digest: digest(alg.hash, canonicalize(doc)) },
      ...(opts.extraReferences ?? []).map((r) => ({ uri: r.uri, transforms: [], digest: digest(alg.hash, r.bytes) })),
    ];
    const signature = addSignatureElement(signatureParent(doc, opts.location));
    const signedInfo = addSignedInfo(signature, alg, references);
    const value = sign(alg.hash, canonicalize(doc, signedInfo), privateKey(opts.keyPem));
    addDs(signature, 'SignatureValue', {}, value.toString('base64'));
    const certificate = certificateBase64(opts.certPem);
    addDs(addDs(addDs(signature, 'KeyInfo'), 'X509Data'), 'X509Certificate', {}, certificate);
    // format:false — libxml2-wasm pretty-prints by default, which would change signed content.
    return doc.toString({ format: false });
  } finally {
    doc.dispose();
  }
}

/**
 * Verifies the one enveloped ds:Signature in `xml` against the trusted certificate: every reference
 * digest and the SignatureValue over the canonicalized SignedInfo.
 */
export function verifyEnveloped(xml: string | Buffer, opts: VerifyOptions): VerifyResult {
  let doc: XmlDocument;
  try {
    doc = parseXml(xml);
  } catch (e) {
    return { ok: false, reason: e instanceof Rejected ? e.message : 'the document is not well-formed XML' };
  }
  try {
    return verifyDocument(doc, opts);
  } catch (e) {
    if (e instanceof Rejected) return { ok: false, reason: e.message };
    throw e;
  } finally {
    doc.dispose();
  }
}

function verifyDocument(doc: XmlDocument, opts: VerifyOptions): VerifyResult {
  const signatures = doc.find('//ds:Signature', DS) as XmlElement[];
  if (signatures.length !== 1) {
    throw new Rejected(
      signatures.length === 0 ? 'the document has no XML signature' : `the document has ${signatures.length} XML signatures; exactly one is accepted`,
    );
  }
  const signature = signatures[0];
  const accepted = opts.acceptAlgorithms ?? ALL_ALGORITHMS;
  const signedInfo = onlyChild(signature, 'ds:SignedInfo');
  const algorithm = readSignatureAlgorithm(signedInfo, accepted);
  const { references, documentReference } = readReferences(signedInfo, accepted);
  // Canonicalize before the enveloped transform below removes the Signature from the tree.
  const canonicalSignedInfo = canonicalize(doc, signedInfo);
  const signatureValue = Buffer.from(onlyChild(signature, 'ds:SignatureValue').content.replace(/\s+/g, ''), 'base64');

  for (const ref of references.filter((r) => r.uri !== '')) checkExternalDigest(ref, opts.resolveUri);
  checkDocumentDigest(doc, signature, documentReference);

  const publicKey = new X509Certificate(opts.certPem).publicKey;
  if (!verify(ALGORITHMS[algorithm].hash, canonicalSignedInfo, publicKey, signatureValue)) {
    throw new Rejected('the signature value does not verify with the trusted certificate (another signer, or SignedInfo was changed)');
  }
  return { ok: true, algorithm, references: references.map((r) => r.uri) };
}

function readSignatureAlgorithm(signedInfo: XmlElement, accepted: readonly SignatureAlgorithm[]): SignatureAlgorithm {
  const c14n = algorithmOf(onlyChild(signedInfo, 'ds:CanonicalizationMethod'));
  if (c14n !== C14N) throw new Rejected(`the canonicalization method ${c14n} is not supported; only inclusive C14N 1.0 is`);
  const method = algorithmOf(onlyChild(signedInfo, 'ds:SignatureMethod'));
  const algorithm = accepted.find((a) => ALGORITHMS[a].signatureMethod === method);
  if (!algorithm) throw new Rejected(`the signature method ${method} is not accepted`);
  return algorithm;
}

/** All references in document order, and the one to the whole document (URI=""). */
function readReferences(
  signedInfo: XmlElement,
  accepted: readonly SignatureAlgorithm[],
): { references: ParsedReference[]; documentReference: ParsedReference } {
  const references = (signedInfo.find('ds:Reference', DS) as XmlElement[]).map((el) => readReference(el, accepted));
  const documentRefs = references.filter((r) => r.uri === '');
  if (documentRefs.length !== 1) {
    throw new Rejected(`the signature has ${documentRefs.length} references to the whole document (URI=""); exactly one is required`);
  }
  return { references, documentReference: documentRefs[0] };
}

function readReference(el: XmlElement, accepted: readonly SignatureAlgorithm[]): ParsedReference {
  const uri = el.attr('URI')?.value;
  if (uri === undefined) throw new Rejected('a signature reference has no URI');
  const method = algorithmOf(onlyChild(el, 'ds:DigestMethod'));
  const alg = accepted.map((a) => ALGORITHMS[a]).find((a) => a.digestMethod === method);
  if (!alg) throw new Rejected(`the digest method ${method} is not accepted`);
  const transformElements = el.find('ds:Transforms/ds:Transform', DS) as XmlElement[];
  if (uri !== '' && transformElements.length > 0) {
    throw new Rejected(`the reference ${uri} has transforms; only the document reference may have them`);
  }
  const transforms = transformElements.map(checkTransform);
  if (uri === '') checkDocumentTransformChain(transforms);
  const digestValue = Buffer.from(onlyChild(el, 'ds:DigestValue').content.replace(/\s+/g, ''), 'base64');
  return { uri, transforms, hash: alg.hash, digestValue };
}

function checkTransform(transform: XmlElement): string {
  const algorithm = algorithmOf(transform);
  if (algorithm === XPATH_FILTER) {
    const xpath = onlyChild(transform, 'ds:XPath');
    const expression = xpath.content.replace(/\s+/g, '');
    if (expression !== EBMS_ACTOR_FILTER || xpath.namespaceForPrefix('SOAP-ENV') !== NS.soap) {
      throw new Rejected('the signature uses an XPath transform other than the ebMS 2.0 actor filter');
    }
  } else if (algorithm !== ENVELOPED && algorithm !== C14N) {
    throw new Rejected(`the transform ${algorithm} is not supported`);
  }
  return algorithm;
}

/** Enveloped-signature first, then optionally the ebMS XPath filter, then optionally C14N. */
function checkDocumentTransformChain(transforms: string[]): void {
  const [first, ...rest] = transforms;
  if (rest[0] === XPATH_FILTER) rest.shift();
  if (rest[0] === C14N) rest.shift();
  if (first !== ENVELOPED || rest.length > 0) {
    throw new Rejected('the document reference must use enveloped-signature, optionally the ebMS XPath filter, then C14N');
  }
}

function checkExternalDigest(ref: ParsedReference, resolveUri: VerifyOptions['resolveUri']): void {
  const bytes = resolveUri?.(ref.uri);
  if (!bytes) throw new Rejected(`the signature references ${ref.uri}, which is not part of the message`);
  if (!digest(ref.hash, bytes).equals(ref.digestValue)) {
    throw new Rejected(`the digest of ${ref.uri} does not match: the attachment was changed after signing`);
  }
}

function checkDocumentDigest(doc: XmlDocument, signature: XmlElement, ref: ParsedReference): void {
  // Without a final C14N transform, XML-DSig converts the node-set with inclusive C14N anyway.
  signature.remove();
  if (ref.transforms.includes(XPATH_FILTER)) {
    // Outermost matches only: removing an ancestor frees its descendants.
    const blocks = doc.find(`//*[${NEXT_MSH}][not(ancestor::*[${NEXT_MSH}])]`, { soap: NS.soap });
    for (const block of blocks) block.remove();
  }
  if (!digest(ref.hash, canonicalize(doc)).equals(ref.digestValue)) {
    throw new Rejected('the digest of the signed document does not match: the document was changed after signing');
  }
}

function signatureParent(doc: XmlDocument, location: SignatureLocation): XmlElement {
  if (location === 'msghead-last-child') return doc.root;
  const header = doc.get('/soap:Envelope/soap:Header', { soap: NS.soap });
  if (!header) throw new Error('the document has no SOAP Header to hold the signature');
  return header as XmlElement;
}

function addSignatureElement(parent: XmlElement): XmlElement {
  const signature = parent.addElement('Signature');
  signature.addNsDeclaration(NS.dsig, 'ds');
  signature.prefix = 'ds';
  return signature;
}

function addSignedInfo(signature: XmlElement, alg: (typeof ALGORITHMS)[SignatureAlgorithm], refs: ReferenceSpec[]): XmlElement {
  const signedInfo = addDs(signature, 'SignedInfo');
  addDs(signedInfo, 'CanonicalizationMethod', { Algorithm: C14N });
  addDs(signedInfo, 'SignatureMethod', { Algorithm: alg.signatureMethod });
  for (const ref of refs) {
    const reference = addDs(signedInfo, 'Reference', { URI: ref.uri });
    if (ref.transforms.length > 0) {
      const transforms = addDs(reference, 'Transforms');
      for (const t of ref.transforms) addDs(transforms, 'Transform', { Algorithm: t });
    }
    addDs(reference, 'DigestMethod', { Algorithm: alg.digestMethod });
    addDs(reference, 'DigestValue', {}, ref.digest.toString('base64'));
  }
  return signedInfo;
}

function addDs(parent: XmlElement, name: string, attrs: Record<string, string> = {}, text?: string): XmlElement {
  const el = parent.addElement(name, 'ds');
  for (const [key, value] of Object.entries(attrs)) el.setAttr(key, value);
  if (text !== undefined) el.addText(text);
  return el;
}

function onlyChild(parent: XmlElement, qname: string): XmlElement {
  const found = parent.find(qname, DS) as XmlElement[];
  if (found.length !== 1) throw new Rejected(`the signature must have exactly one ${qname} in ${parent.name}`);
  return found[0];
}

function algorithmOf(el: XmlElement): string {
  const algorithm = el.attr('Algorithm')?.value;
  if (!algorithm) throw new Rejected(`the signature element ${el.name} has no Algorithm`);
  return algorithm;
}

/**
 * Inclusive C14N 1.0 of the document, or of one element *in document context* so that inherited
 * namespaces (xmlns:SOAP, the MsgHead default namespace, …) appear as a verifier sees them. The
 * nodeSet form is the XPath node-set xmlsec1 uses, and ~8× faster than
 * XmlNode.canonicalizeToString, which calls back into JS for every node.
 */
function canonicalize(doc: XmlDocument, element?: XmlElement): Buffer {
  try {
    return Buffer.from(doc.canonicalizeToString(element ? { nodeSet: new Set([element]) } : {}));
  } catch {
    // libxml2 refuses documents C14N 1.0 cannot represent, e.g. relative namespace URIs.
    throw new Rejected('the document cannot be canonicalized (C14N 1.0 refuses it, e.g. for a relative namespace URI)');
  }
}

// Parsing a PEM key costs ~1 ms, four times the RSA signature itself; the gateway signs with one key.
let cachedKey: { pem: string; key: KeyObject } | undefined;
function privateKey(pem: string): KeyObject {
  if (cachedKey?.pem !== pem) cachedKey = { pem, key: createPrivateKey(pem) };
  return cachedKey.key;
}

let cachedCert: { pem: string; base64: string } | undefined;

/** Parsing the certificate costs as much as the RSA signature itself; the signer's rarely changes. */
function certificateBase64(pem: string): string {
  if (cachedCert?.pem !== pem) cachedCert = { pem, base64: new X509Certificate(pem).raw.toString('base64') };
  return cachedCert.base64;
}

function digest(hash: string, data: string | Buffer): Buffer {
  return createHash(hash).update(data).digest();
}

/** Parses without network or external entities and refuses a DOCTYPE (entities, default attributes). */
function parseXml(xml: string | Buffer): XmlDocument {
  // A JS string is already Unicode: force UTF-8 so an encoding declaration cannot re-decode it.
  const doc =
    typeof xml === 'string'
      ? XmlDocument.fromString(xml, { encoding: 'utf-8', option: PARSE_OPTIONS })
      : XmlDocument.fromBuffer(xml, { option: PARSE_OPTIONS });
  if (doc.dtd) {
    doc.dispose();
    throw new Rejected('the document has a DOCTYPE, which signed messages must not have');
  }
  return doc;
}
