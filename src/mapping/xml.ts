// The one safe way into XML for the gateway: size limit, no DTDs, no external or network
// loading, and readable T01 sentences. Documents come from libxml2-wasm, whose memory is not
// garbage-collected: whoever receives an XmlDocument from here must dispose() it.

import type { NamespaceMap, XmlNode } from 'libxml2-wasm';
import { ParseOption, XmlDocument, XmlLibError, XmlXPath } from 'libxml2-wasm';
import { getOrCreate } from '../shared/maps.js';
import type { StageResult } from './model.js';
import { NS, ok, permanent } from './model.js';

/** Prefixes used by the gateway's XPath expressions. */
export const XPATH_NS = {
  mh: { mh: NS.msgHead },
  appRec10: { a: NS.appRec10 },
  appRec11: { a: NS.appRec11 },
  soap: { soap: NS.soap, eb: NS.ebxml, xlink: NS.xlink, mh: NS.msgHead, ar10: NS.appRec10, ar11: NS.appRec11 },
} as const satisfies Record<string, NamespaceMap>;

// NONET and NO_XXE: nothing outside the buffer is ever read. Never add NOENT (it loads
// external entities).
const SAFE_PARSE = ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE;

const DOCTYPE = Buffer.from('<!DOCTYPE', 'latin1');

/**
 * Rejects a DOCTYPE before libxml2 sees the bytes. A DTD is the only place entities can be
 * declared, so this closes XXE and entity expansion at the door. UTF-16 input is decoded first,
 * and parseXmlSafely checks the parsed tree as well for encodings this scan cannot read. The
 * text "<!DOCTYPE" inside a comment or CDATA section is refused too; MsgHead traffic has none.
 */
function hasDoctype(bytes: Buffer): boolean {
  if (bytes.includes(DOCTYPE)) return true;
  const bom = bytes.subarray(0, 2).toString('hex');
  if (bom === 'fffe') return bytes.toString('utf16le').includes('<!DOCTYPE');
  if (bom === 'feff') return new TextDecoder('utf-16be').decode(bytes).includes('<!DOCTYPE');
  return false;
}

// Quoted words libxml2 uses for schema vocabulary rather than for document values.
const SCHEMA_WORDS = /^(xs:\w+|pattern|enumeration|(min|max)?[Ll]ength|(min|max)(In|Ex)clusive|totalDigits|fractionDigits)$/;

/**
 * libxml2 messages can quote document values ("'12345678901' is not a valid value"). Those
 * may be personal data, so every quoted string except schema vocabulary becomes "…", and
 * namespace URIs are dropped for readability.
 */
export function withoutQuotedValues(message: string): string {
  return message
    .replace(/'([^']*)'|"([^"]*)"/g, (quoted, single?: string, double?: string) => (SCHEMA_WORDS.test(single ?? double ?? '') ? quoted : '…'))
    .replace(/\{[a-z][\w+.-]*:[^}\s]*\}/gi, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[.\s]*$/, '');
}

function firstDetail(err: unknown): { message: string; line?: number } {
  if (err instanceof XmlLibError && err.details.length > 0) {
    return { message: err.details[0].message, line: err.details[0].line };
  }
  return { message: err instanceof Error ? err.message : String(err) };
}

export interface SafeParseOptions {
  /** charset from a MIME header; overrides the XML declaration as RFC 7303 requires */
  encoding?: string;
  /** what the bytes are, for the error sentence (e.g. "The payload part") */
  what?: string;
}

/** Parses untrusted bytes into a document the caller must dispose(), or explains T01. */
export function parseXmlSafely(bytes: Buffer, maxBytes: number, opts: SafeParseOptions = {}): StageResult<XmlDocument> {
  const what = opts.what ?? 'The message';
  if (bytes.length > maxBytes) {
    return permanent('T01', `${what} is ${bytes.length} bytes, more than the limit of ${maxBytes} bytes.`);
  }
  if (hasDoctype(bytes)) {
    return permanent('T01', `${what} contains a DOCTYPE declaration, which is not accepted.`);
  }
  let doc: XmlDocument;
  try {
    doc = XmlDocument.fromBuffer(bytes, { option: SAFE_PARSE, encoding: opts.encoding });
  } catch (err) {
    const { message, line } = firstDetail(err);
    const where = line ? ` at line ${line}` : '';
    return permanent('T01', `${what} is not well-formed XML${where}: ${withoutQuotedValues(message)}.`);
  }
  if (doc.dtd) {
    doc.dispose();
    return permanent('T01', `${what} contains a DOCTYPE declaration, which is not accepted.`);
  }
  return ok(doc);
}

const XML_DECL_ENCODING = /^(<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2/;

/**
 * The document as UTF-8 text. UTF-8 input is returned as received (minus a BOM, and with the
 * declaration saying UTF-8 in case a MIME charset overrode it); any other encoding is
 * re-serialised by libxml2, which knows exactly how it decoded the bytes.
 */
export function documentText(doc: XmlDocument, bytes: Buffer): string {
  const encoding = (doc.encoding ?? 'UTF-8').toUpperCase().replace(/[^A-Z0-9]/g, '');
  if (encoding !== 'UTF8') return doc.toString({ format: false });
  const text = bytes.toString('utf8');
  return (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).replace(XML_DECL_ENCODING, '$1$2UTF-8$2');
}

// Compiled expressions are kept for the life of the process: there are a few dozen fixed
// ones, and compiling costs more than evaluating.
const compiled = new WeakMap<NamespaceMap, Map<string, XmlXPath>>();
const NO_NS: NamespaceMap = {};

function xpath(expr: string, ns: NamespaceMap): XmlXPath {
  let byExpr = compiled.get(ns);
  if (!byExpr) {
    byExpr = new Map();
    compiled.set(ns, byExpr);
  }
  return getOrCreate(byExpr, expr, () => XmlXPath.compile(expr, ns));
}

/** All nodes matching `expr` relative to `ctx`. Pass one of the XPATH_NS maps (by identity). */
export function findAll(ctx: XmlNode, expr: string, ns: NamespaceMap = NO_NS): XmlNode[] {
  return ctx.find(xpath(expr, ns));
}

/** The first node matching `expr`, or undefined. */
export function findFirst(ctx: XmlNode, expr: string, ns: NamespaceMap = NO_NS): XmlNode | undefined {
  return ctx.get(xpath(expr, ns)) ?? undefined;
}

/** Trimmed text (or attribute value) of the first match; undefined when missing or blank. */
export function textOf(ctx: XmlNode, expr: string, ns: NamespaceMap = NO_NS): string | undefined {
  const value = findFirst(ctx, expr, ns)?.content.trim();
  return value ? value : undefined;
}

/** Trimmed, non-blank texts of all matches, in document order. */
export function textsOf(ctx: XmlNode, expr: string, ns: NamespaceMap = NO_NS): string[] {
  return findAll(ctx, expr, ns)
    .map((n) => n.content.trim())
    .filter((t) => t !== '');
}
