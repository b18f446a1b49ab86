// What NHN's Adresseregister answers (ICommunicationPartyService, REFERENCE §6.1), read into the
// snapshot's own shape (DESIGN §4.5), so that what AR says and what the snapshot file says are one
// kind of party. SOAP 1.1 and 1.2 envelopes alike; parsed safely (no DTD, bounded size).
import type { XmlNode } from 'libxml2-wasm';
import { DateTime } from 'luxon';
import { findAll, findFirst, parseXmlSafely, textOf } from '../../mapping/xml.js';
import type { CommunicationParty } from '../addressRegister.js';

export const AR_NS = {
  cp: 'http://register.nhn.no/CommunicationParty',
  c: 'http://register.nhn.no/Common',
  cd: 'http://register.nhn.no/CertificateDetails',
  xsi: 'http://www.w3.org/2001/XMLSchema-instance',
  s11: 'http://schemas.xmlsoap.org/soap/envelope/',
  s12: 'http://www.w3.org/2003/05/soap-envelope',
} as const;

/** AR's answers are small; a party with many services stays far below this. */
const MAX_RESPONSE_BYTES = 2_000_000;

/** A SOAP fault AR sent: `InvalidHerIdSupplied` means there is no such party. */
export interface ArFault {
  code: string;
  message: string;
}

export type ArAnswer<T> = { ok: true; value: T } | { ok: false; fault: ArFault };

const TYPES: Record<string, CommunicationParty['type']> = {
  Organization: 'Organization',
  Service: 'Service',
  Department: 'Department',
  Person: 'Person',
};

/** The response body's one result element (or the fault), by the operation's name. */
function resultOf(xml: Buffer, operation: string): ArAnswer<XmlNode | undefined> & { dispose: () => void } {
  const parsed = parseXmlSafely(xml, MAX_RESPONSE_BYTES, { what: `AR's ${operation} answer` });
  if (!parsed.ok) throw new Error(parsed.error.reason);
  const doc = parsed.value;
  const dispose = () => doc.dispose();
  const fault = findFirst(doc.root, '//s12:Fault | //s11:Fault', AR_NS);
  if (fault) {
    const code = textOf(fault, './/c:GenericFault/c:ErrorCode', AR_NS) ?? textOf(fault, './/faultcode | .//s12:Code/s12:Value', AR_NS) ?? 'Fault';
    const message = textOf(fault, './/c:GenericFault/c:Message', AR_NS) ?? textOf(fault, './/faultstring | .//s12:Reason/s12:Text', AR_NS) ?? '';
    return { ok: false, fault: { code: code.trim(), message: message.trim() }, dispose };
  }
  return { ok: true, value: findFirst(doc.root, `//cp:${operation}Response/cp:${operation}Result`, AR_NS), dispose };
}

/** A party as AR answered it, with what finds its certificates: not kept, only used to fetch them. */
export interface ArParty {
  party: CommunicationParty;
  /** the serial numbers (decimal) its E_DS address lists: more than the two GetCertificateDetails give during a rollover */
  certificateSerials: string[];
  /** its own organisation number, or its parent organisation's */
  organisationNumber?: string;
}

/** GetCommunicationPartyDetails: the party, and for an organisation its services. */
export function readCommunicationPartyDetails(xml: Buffer, bydelOf: (p: ArPartyFacts) => string | undefined): ArAnswer<ArParty[]> {
  const result = resultOf(xml, 'GetCommunicationPartyDetails');
  try {
    if (!result.ok) return result;
    if (!result.value) throw new Error('AR answered GetCommunicationPartyDetails without a result');
    const organisation = readParty(result.value, textOf(result.value, '@xsi:type', AR_NS));
    const parties = [organisation];
    for (const service of findAll(result.value, 'cp:Services/cp:Service', AR_NS)) parties.push(readParty(service, 'Service'));
    // AR has no bydel field: an organisation's comes from the configured table, and its services inherit it.
    const orgBydel = bydelOf(organisation.party);
    return {
      ok: true,
      value: parties.map((p) => ({ ...p, party: withBydel(p.party, p === organisation ? orgBydel : (bydelOf(p.party) ?? orgBydel)) })),
    };
  } finally {
    result.dispose();
  }
}

/** GetCertificateDetailsForEncryption / …ForValidatingSignature: the certificate as PEM, or none. */
export function readCertificateDetails(
  xml: Buffer,
  operation: 'GetCertificateDetailsForEncryption' | 'GetCertificateDetailsForValidatingSignature',
): ArAnswer<string | undefined> {
  const result = resultOf(xml, operation);
  try {
    if (!result.ok) return result;
    const base64 = result.value && textOf(result.value, 'cd:Certificate', AR_NS)?.replace(/\s+/g, '');
    return { ok: true, value: base64 ? pem(base64) : undefined };
  } finally {
    result.dispose();
  }
}

/** SearchCertificatesForEncryption / …ForValidatingSignature: every certificate found, as PEM. */
export function readCertificateSearch(
  xml: Buffer,
  operation: 'SearchCertificatesForEncryption' | 'SearchCertificatesForValidatingSignature',
): ArAnswer<string[]> {
  const result = resultOf(xml, operation);
  try {
    if (!result.ok) return result;
    const found = result.value ? findAll(result.value, 'cd:CertificateDetails/cd:Certificate', AR_NS) : [];
    const base64s = found.map((c) => c.content.replace(/\s+/g, '')).filter((b) => b.length > 0);
    return { ok: true, value: base64s.map(pem) };
  } finally {
    result.dispose();
  }
}

/** Ping: AR's answer text. */
export function readPing(xml: Buffer): ArAnswer<string> {
  const result = resultOf(xml, 'Ping');
  try {
    if (!result.ok) return result;
    return { ok: true, value: result.value?.content.trim() ?? '' };
  } finally {
    result.dispose();
  }
}

/** What decides a party's bydel: its HER-id and parent. */
export type ArPartyFacts = Pick<CommunicationParty, 'herId' | 'parentHerId' | 'type'>;

function readParty(node: XmlNode, xsiType: string | undefined): ArParty {
  const text = (expr: string) => {
    const v = textOf(node, expr, AR_NS)?.trim();
    return v ? v : undefined;
  };
  const herId = text('cp:HerId');
  const name = text('cp:Name') ?? text('cp:DisplayName');
  if (!herId || !/^\d+$/.test(herId) || !name) throw new Error('AR answered a party without HerId or Name');
  const typeName = text('cp:Type') ?? xsiType?.replace(/^.*:/, '') ?? '';
  const type = TYPES[typeName];
  if (!type) throw new Error(`AR answered party ${herId} of type ${typeName || '(none)'}, which the gateway does not address`);
  const parentHerId = text('cp:ParentHerId');
  const validFrom = dayOf(text('cp:Valid/c:From'), false);
  const validTo = dayOf(text('cp:Valid/c:To'), true);
  const addresses = findAll(node, 'cp:ElectronicAddresses/c:ElectronicAddress', AR_NS);
  const ofType = (a: XmlNode, type: string) => textOf(a, 'c:TypeCodeValue', AR_NS)?.trim() === type;
  const edi = addresses.find((a) => ofType(a, 'E_EDI'));
  const certificateDirectory = addresses.find((a) => ofType(a, 'E_DS'));
  const futureEdiAddresses = findAll(node, 'cp:FutureElectronicAddresses/c:FutureElectronicAddress', AR_NS)
    .filter((a) => ofType(a, 'E_EDI'))
    .flatMap(futureAddress);
  const organisationNumber = [text('cp:OrganizationNumber'), text('cp:ParentOrganizationNumber')].find((n) => n && /^[1-9]\d*$/.test(n));
  const party: CommunicationParty = {
    herId,
    name,
    type,
    // AR writes -1 (or 0) for "no parent"
    ...(parentHerId && /^[1-9]\d*$/.test(parentHerId) ? { parentHerId } : {}),
    ...(text('cp:Municipality/c:CodeValue') ? { municipality: text('cp:Municipality/c:CodeValue') } : {}),
    ...(type === 'Service' && text('cp:Code/c:CodeValue') ? { serviceCode: text('cp:Code/c:CodeValue') } : {}),
    // a party AR reports as inactive or invalid is not delivered to
    active: text('cp:Active') === 'true' && text('cp:IsValidCommunicationParty') !== 'false',
    ...(edi ? { ediAddress: textOf(edi, 'c:Address', AR_NS)?.trim() } : {}),
    ...(futureEdiAddresses.length > 0 ? { futureEdiAddresses } : {}),
    ...(validFrom ? { validFrom } : {}),
    ...(validTo ? { validTo } : {}),
  };
  return {
    party,
    certificateSerials: certificateDirectory ? serialsOf(textOf(certificateDirectory, 'c:Address', AR_NS) ?? '') : [],
    ...(organisationNumber ? { organisationNumber } : {}),
  };
}

/**
 * A FutureElectronicAddress: its Address from its ValidFrom on, a local date-time (Oslo) unless it
 * carries a zone. One without a readable ValidFrom is left out: the current address stays in effect.
 */
function futureAddress(a: XmlNode): { address: string; validFrom: string }[] {
  const address = textOf(a, 'c:Address', AR_NS)?.trim();
  // an invalid DateTime writes null
  const validFrom = DateTime.fromISO(textOf(a, 'c:ValidFrom', AR_NS)?.trim() ?? '', { zone: 'Europe/Oslo' })
    .toUTC()
    .toISO();
  return address && validFrom ? [{ address, validFrom }] : [];
}

/** The certificate serial numbers an E_DS LDAP URL's filter names, e.g. (|(certificateSerialNumber=1978…)(certificateSerialNumber=…)). */
function serialsOf(ldapUrl: string): string[] {
  let filter = ldapUrl;
  try {
    filter = decodeURIComponent(ldapUrl);
  } catch {
    // not percent-encoded after all: read as it stands
  }
  return [...new Set([...filter.matchAll(/certificateSerialNumber=(\d+)/gi)].map((m) => m[1].replace(/^0+(?=\d)/, '')))];
}

function withBydel(p: CommunicationParty, bydel: string | undefined): CommunicationParty {
  return bydel ? { ...p, bydel } : p;
}

/**
 * AR's Valid/From and Valid/To are local date-times; the snapshot has days (validTo: the first day
 * no longer valid). An end during a day makes that day's successor the first invalid one.
 */
function dayOf(dateTime: string | undefined, end: boolean): string | undefined {
  const m = dateTime && /^(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}:\d{2}))?/.exec(dateTime);
  // 9999-12-31T23:59:59 is AR's "open-ended"
  if (!m || m[1] >= '9999') return undefined;
  if (!end || !m[2] || m[2] === '00:00:00') return m[1];
  const next = new Date(`${m[1]}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString().slice(0, 10);
}

const pem = (base64: string) => `-----BEGIN CERTIFICATE-----\n${base64.match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
