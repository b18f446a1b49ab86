// ebMS 2.0 packaging is SOAP-with-attachments: a MIME multipart/related entity whose
// first part (or the part named by `start`) is the SOAP envelope.
import { randomUUID } from 'node:crypto';

export interface MimePart {
  headers: Record<string, string>;
  /** Content-ID without the angle brackets */
  contentId?: string;
  body: Buffer;
}

export interface MultipartEntity {
  contentType: string;
  parts: MimePart[];
  /** Content-ID of the root (SOAP) part, from the `start` parameter or the first part */
  startId?: string;
}

const CRLF = '\r\n';

/** Reads `name=value` parameters of a Content-Type header (quoted or bare). */
export function contentTypeParams(contentType: string): { mediaType: string; params: Record<string, string> } {
  const [mediaType, ...rest] = contentType.split(';');
  const params: Record<string, string> = {};
  for (const m of rest.join(';').matchAll(/\s*([\w-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))/g)) {
    params[m[1].toLowerCase()] = m[2] ?? m[3];
  }
  return { mediaType: mediaType.trim().toLowerCase(), params };
}

function parseHeaderBlock(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  // unfold continuation lines first
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return headers;
}

const stripBrackets = (id: string) => id.trim().replace(/^<|>$/g, '');

/** Does this body look like a MIME entity (with its own headers, or starting at a boundary)? */
export function looksLikeMultipart(body: Buffer, contentType?: string): boolean {
  if (contentType && contentTypeParams(contentType).mediaType === 'multipart/related') return true;
  const head = body.subarray(0, 512).toString('latin1').trimStart();
  return /^(mime-version|content-type)\s*:/i.test(head) || head.startsWith('--');
}

/**
 * Splits a multipart/related entity. The boundary comes from the AMQP content type, from the
 * entity's own Content-Type header, or from the first delimiter line.
 */
export function parseMultipart(body: Buffer, contentType?: string): MultipartEntity {
  let text = body.toString('latin1'); // byte-preserving; parts are decoded by the caller
  let ct = contentType && contentTypeParams(contentType).mediaType === 'multipart/related' ? contentType : undefined;
  const trimmed = text.trimStart();
  if (/^(mime-version|content-type)\s*:/i.test(trimmed)) {
    const sep = /\r?\n\r?\n/.exec(trimmed);
    if (!sep) throw new Error('the MIME entity has headers but no body');
    const headers = parseHeaderBlock(trimmed.slice(0, sep.index));
    ct = headers['content-type'] ?? ct;
    text = trimmed.slice(sep.index + sep[0].length);
  }
  let boundary = ct ? contentTypeParams(ct).params.boundary : undefined;
  if (!boundary) {
    const first = /^\s*--([^\r\n]+)\r?\n/.exec(text);
    if (!first) throw new Error('no MIME boundary was found');
    boundary = first[1].trim();
  }
  const delimiter = `--${boundary}`;
  const chunks = text.split(delimiter);
  const parts: MimePart[] = [];
  let closed = false;
  for (const chunk of chunks.slice(1)) {
    if (chunk.startsWith('--')) {
      closed = true;
      break;
    }
    const c = chunk.replace(/^[ \t]*\r?\n/, '');
    // A part's headers end with a blank line; without one the part was cut short.
    const sep = /\r?\n\r?\n/.exec(c);
    if (!sep) throw new Error(`part ${parts.length + 1} has no blank line after its headers (cut short)`);
    const headerText = c.slice(0, sep.index);
    let content = c.slice(sep.index + sep[0].length);
    content = content.replace(/\r?\n$/, ''); // the line break before the next delimiter belongs to it
    const headers = parseHeaderBlock(headerText);
    let bytes = Buffer.from(content, 'latin1');
    if ((headers['content-transfer-encoding'] ?? '').toLowerCase() === 'base64') {
      bytes = Buffer.from(content.replace(/\s+/g, ''), 'base64');
    }
    parts.push({ headers, contentId: headers['content-id'] ? stripBrackets(headers['content-id']) : undefined, body: bytes });
  }
  if (parts.length === 0) throw new Error('the multipart entity has no parts');
  // Without the close delimiter the last part runs to the end of the body: a transfer cut off.
  if (!closed) throw new Error(`the closing boundary --${boundary}-- never comes (the message was cut off)`);
  const start = ct ? contentTypeParams(ct).params.start : undefined;
  return {
    contentType: ct ?? `multipart/related; boundary="${boundary}"`,
    parts,
    startId: start ? stripBrackets(start) : parts[0].contentId,
  };
}

/** The root part: the one named by `start`, else the first. */
export function rootPart(entity: MultipartEntity): MimePart {
  return entity.parts.find((p) => p.contentId && p.contentId === entity.startId) ?? entity.parts[0];
}

export interface BuildPart {
  contentId: string;
  contentType: string;
  body: Buffer;
  /** default binary; a CMS object travels base64 (HIS 1037 §5.5), in lines of 76 */
  transferEncoding?: 'binary' | 'base64';
}

const base64Lines = (bytes: Buffer) => (bytes.toString('base64').match(/.{1,76}/g) ?? []).join(CRLF);

/**
 * Builds a complete MIME entity (top-level headers included, so the AMQP body stands on its
 * own) and the Content-Type to put in the AMQP properties as well.
 */
export function buildMultipart(parts: BuildPart[]): { contentType: string; body: Buffer } {
  const boundary = `----=_Part_${randomUUID()}`;
  const contentType = `multipart/related; type="text/xml"; boundary="${boundary}"; start="<${parts[0].contentId}>"`;
  const chunks: Buffer[] = [Buffer.from(`MIME-Version: 1.0${CRLF}Content-Type: ${contentType}${CRLF}${CRLF}`, 'latin1')];
  for (const p of parts) {
    const encoding = p.transferEncoding ?? 'binary';
    chunks.push(
      Buffer.from(
        `--${boundary}${CRLF}Content-Type: ${p.contentType}${CRLF}Content-ID: <${p.contentId}>${CRLF}Content-Transfer-Encoding: ${encoding}${CRLF}${CRLF}`,
        'latin1',
      ),
      encoding === 'base64' ? Buffer.from(base64Lines(p.body), 'latin1') : p.body,
      Buffer.from(CRLF, 'latin1'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--${CRLF}`, 'latin1'));
  return { contentType, body: Buffer.concat(chunks) };
}
