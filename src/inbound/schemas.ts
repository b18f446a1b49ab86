// One compiled XSD set for every business document the gateway accepts. MsgHead declares
// RefDoc/Content as <any processContents="strict">, so the content schemas (PLO, dialogmelding,
// base64container) must sit in the same compiled set as MsgHead itself.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { XmlBufferInputProvider, XmlDocument, XmlValidateError, XsdValidator, xmlRegisterInputProvider } from 'libxml2-wasm';
import type { StageResult } from '../mapping/model.js';
import { ok, permanent } from '../mapping/model.js';
import { parseXmlSafely, withoutQuotedValues } from '../mapping/xml.js';

/** The schemas the bundle imports, one per target namespace; their own imports come along. */
export const BUNDLED_SCHEMAS = [
  'MsgHead-v1_2.xsd',
  'xmldsig-core-schema.xsd',
  'AppRec-v1-2004-11-21.xsd',
  'AppRec-v1.1.xsd',
  'dialogmelding.xsd',
  'dialogmelding-v1.1.xsd',
  'kith.xsd',
  'felleskomponent1.xsd',
  'kith-base64.xsd',
  'EPJ-cave-mv.xsd',
  'EPJ-journalnotat-mv.xsd',
  'EPJ-legemiddel-mv.xsd',
  'EPJ-meta.xsd',
  // PLO 1.5 (2009-06-30)
  'poKomponent-v1.5.xsd',
  'Pasientlogistikk-v1.5.xsd',
  'Innleggelsesrapport-v1.5.xsd',
  'TverrfagligEpikrise-v1.5.xsd',
  'HelseopplysningerVedSoknad-v1.5.xsd',
  'HelseopplysningerTilLege-v1.5.xsd',
  'MedisinskeOpplysninger-v1.5.xsd',
  'OrienteringOmTjenestetilbud-v1.5.xsd',
  'MeldingFravar-v1.5.xsd',
  // PLO 1.6 (2012-04-01)
  'poKomponent-v1.6.xsd',
  'Pasientlogistikk-v1.6.xsd',
  'Innleggelsesrapport-v1.6.xsd',
  'TverrfagligEpikrise-v1.6.xsd',
  'Helseopplysninger-v1.6.xsd',
  'HelseopplysningerTilLege-v1.6.xsd',
  'MedisinskeOpplysninger-v1.6.xsd',
  'OrienteringOmTjenestetilbud-v1.6.xsd',
  // PLO 2.0 draft (2016-05-30), tolerated
  'poKomponent-v2.0.xsd',
  'Pasientlogistikk-v2.0.xsd',
] as const;

export interface SchemaSet {
  /** XSD validation of one business document (MsgHead or AppRec); T02 with a sentence free of message text. */
  validate(xml: string | Buffer): StageResult<void>;
  /** how long compiling the bundle took, for the start-up log */
  readonly compileMs: number;
  /** frees the compiled schemas; the set must not be used afterwards */
  close(): void;
}

// Input providers are process-global in libxml2 and its callback table is small, so one
// in-memory provider is registered once and holds schema files only while a bundle compiles.
// In-memory (not the fs provider) so that no document can make libxml2 read from disk.
let provider: XmlBufferInputProvider | undefined;
let loads = 0;

function schemaProvider(): XmlBufferInputProvider {
  if (!provider) {
    provider = new XmlBufferInputProvider({});
    if (!xmlRegisterInputProvider(provider)) throw new Error('libxml2 refused another input provider');
  }
  return provider;
}

function targetNamespace(file: string, xsd: Buffer): string {
  const m = /targetNamespace\s*=\s*["']([^"']+)["']/.exec(xsd.toString('utf8'));
  if (!m) throw new Error(`${file} declares no targetNamespace`);
  return m[1];
}

function bundleXsd(files: Map<string, Buffer>): string {
  const imports = BUNDLED_SCHEMAS.map((file) => {
    const xsd = files.get(file);
    if (!xsd) throw new Error(`the schema directory lacks ${file}`);
    return `<xs:import namespace="${targetNamespace(file, xsd)}" schemaLocation="${file}"/>`;
  });
  return `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">${imports.join('')}</xs:schema>`;
}

async function readSchemaFiles(schemaDir: string): Promise<Map<string, Buffer>> {
  const names = (await readdir(schemaDir)).filter((name) => name.endsWith('.xsd'));
  return new Map(await Promise.all(names.map(async (name) => [name, await readFile(join(schemaDir, name))] as const)));
}

function compile(files: Map<string, Buffer>): XsdValidator {
  const base = `mem:///plo-gateway-xsd/${++loads}/`;
  const mem = schemaProvider();
  for (const [name, bytes] of files) mem.addBuffer(base + name, bytes);
  const bundle = XmlDocument.fromString(bundleXsd(files), { url: `${base}bundle.xsd` });
  try {
    return XsdValidator.fromDoc(bundle);
  } finally {
    bundle.dispose();
    for (const name of files.keys()) mem.removeBuffer(base + name);
  }
}

/** Reads the official XSDs from `schemaDir` (never copied into the repository) and compiles them once. */
export async function loadSchemaSet(schemaDir: string): Promise<SchemaSet> {
  const files = await readSchemaFiles(schemaDir);
  const started = performance.now();
  const validator = compile(files);
  const compileMs = Math.round(performance.now() - started);
  return {
    compileMs,
    validate: (xml) => validateWith(validator, typeof xml === 'string' ? Buffer.from(xml, 'utf8') : xml),
    close: () => validator.dispose(),
  };
}

function validateWith(validator: XsdValidator, bytes: Buffer): StageResult<void> {
  const parsed = parseXmlSafely(bytes, Number.POSITIVE_INFINITY);
  if (!parsed.ok) return parsed;
  const doc = parsed.value;
  try {
    validator.validate(doc);
    return ok(undefined);
  } catch (err) {
    if (!(err instanceof XmlValidateError)) throw err;
    return permanent('T02', describeInvalid(err));
  } finally {
    doc.dispose();
  }
}

/** "Element '{ns}Name', attribute 'V': rest" → element and attribute names kept, values removed. */
function describeInvalid(err: XmlValidateError): string {
  const [first, ...others] = err.details;
  if (!first) return 'The message does not validate against the XSD.';
  const m = /^Element '(?:\{[^}]*\})?([^']*)'(?:, attribute '(?:\{[^}]*\})?([^']*)')?: ([\s\S]*)$/.exec(first.message.trim());
  const subject = m ? `element ${m[1]}${m[2] ? `, attribute ${m[2]}` : ''}` : 'the document';
  const problem = withoutQuotedValues(m ? m[3] : first.message);
  const more = others.length > 0 ? ` (and ${others.length} more error${others.length > 1 ? 's' : ''})` : '';
  return `The message does not validate against the XSD: ${subject} at line ${first.line}: ${problem}${more}.`;
}
