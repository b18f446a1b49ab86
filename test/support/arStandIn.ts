// A stand-in for NHN's Adresseregister (ICommunicationPartyService, SOAP), a real HTTP server
// the tests start. Its answers are the official KS samples (samples/adresseregister) with the
// test's parties written into them, so the gateway reads the shape AR really sends; certificate
// answers follow the WSDL's CertificateDetails (ArrayOfCertificateDetails for the searches by
// organisation number). Each party's E_DS lists the serial numbers of its certificates, as AR's
// does. It counts what it is asked, checks basic auth, and can be stopped and started again on
// the same port (AR down).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { keyUsageOf, readCertificate } from '../../src/outbound/certificates.js';
import { HttpStandIn } from './httpStandIn.js';
import { SAMPLES } from './paths.js';

export interface StandInParty {
  herId: string;
  name: string;
  type: 'Organization' | 'Service';
  parentHerId?: string;
  municipality?: string;
  serviceCode?: string;
  /** default true */
  active?: boolean;
  ediAddress?: string;
  /** FutureElectronicAddresses of type E_EDI; validFrom as AR writes it (local time, e.g. 2026-09-01T00:00:00) */
  futureEdiAddresses?: { address: string; validFrom: string }[];
  /** what GetCertificateDetailsForEncryption answers */
  encryptionCertificate?: string;
  /** what GetCertificateDetailsForValidatingSignature answers */
  signingCertificate?: string;
  /** a rollover: more certificates the E_DS lists, found only by the searches (sorted to their purpose by key usage) */
  listedCertificates?: string[];
  /** certificates the searches find for the organisation number that the E_DS does not list (another unit's, an old one) */
  unlistedCertificates?: string[];
  /** default: an organisation's made from its HER-id; a service has its parent's */
  organisationNumber?: string;
}

export interface StandInRequest {
  operation: string;
  herId?: string;
  /** the organisation number a certificate search asked for */
  sn?: string;
}

const CP = 'http://register.nhn.no/CommunicationParty';
const COMMON = 'http://register.nhn.no/Common';
const sample = (name: string) => readFileSync(join(SAMPLES, 'adresseregister', name), 'utf8');

export class ArStandIn extends HttpStandIn {
  readonly parties = new Map<string, StandInParty>();
  readonly requests: StandInRequest[] = [];
  credentials = { user: 'gateway', password: 'hemmelig' };
  /** answers come this much later (a slow AR) */
  delayMs = 0;

  static async start(parties: StandInParty[] = []): Promise<ArStandIn> {
    const ar = new ArStandIn();
    for (const p of parties) ar.put(p);
    await ar.listen();
    return ar;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/AR/Basic`;
  }

  put(p: StandInParty): void {
    this.parties.set(p.herId, p);
  }

  /** How many requests came, for an operation and HER-id if given. */
  count(operation?: string, herId?: string): number {
    return this.requests.filter((r) => (!operation || r.operation === operation) && (!herId || r.herId === herId)).length;
  }

  protected async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const operation = /\/([A-Za-z]+)"?$/.exec(String(req.headers.soapaction ?? ''))?.[1] ?? '';
    const herId = /<(?:\w+:)?herId>(\d+)</.exec(body)?.[1];
    const sn = /<(?:\w+:)?sn>(\d+)</.exec(body)?.[1];
    this.requests.push({ operation, herId, ...(sn ? { sn } : {}) });
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const expected = `Basic ${Buffer.from(`${this.credentials.user}:${this.credentials.password}`).toString('base64')}`;
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
      return;
    }
    const xml = (status: number, text: string) => res.writeHead(status, { 'content-type': 'application/soap+xml; charset=utf-8' }).end(text);
    if (operation === 'Ping') return void xml(200, envelope(`<PingResponse xmlns="${CP}"><PingResult>pong</PingResult></PingResponse>`));
    if (operation === 'SearchCertificatesForEncryption' || operation === 'SearchCertificatesForValidatingSignature')
      return void xml(200, searchAnswer(operation, this.certificatesOfOrganisation(sn ?? '', operation === 'SearchCertificatesForEncryption')));
    const party = herId ? this.parties.get(herId) : undefined;
    if (!party) return void xml(500, sample('ks-get-communication-party-details-not-found-response.xml'));
    if (operation === 'GetCommunicationPartyDetails') return void xml(200, this.details(party));
    if (operation === 'GetCertificateDetailsForEncryption' || operation === 'GetCertificateDetailsForValidatingSignature') {
      const pem = operation === 'GetCertificateDetailsForEncryption' ? party.encryptionCertificate : party.signingCertificate;
      return void xml(200, certificateAnswer(operation, pem));
    }
    xml(
      500,
      envelope('<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang="en">not in the stand-in</s:Text></s:Reason></s:Fault>'),
    );
  }

  private organisationNumberOf(p: StandInParty): string {
    const parent = p.type === 'Service' && p.parentHerId ? this.parties.get(p.parentHerId) : undefined;
    return p.organisationNumber ?? (parent ? this.organisationNumberOf(parent) : `8${p.herId.padStart(8, '0')}`);
  }

  /** What LDAP holds for an organisation number: every certificate of its parties, for one purpose. */
  private certificatesOfOrganisation(sn: string, forEncryption: boolean): string[] {
    const all = [...this.parties.values()]
      .filter((p) => this.organisationNumberOf(p) === sn)
      .flatMap((p) => [...listedOf(p), ...(p.unlistedCertificates ?? [])]);
    const wanted = (pem: string) => {
      const usage = keyUsageOf(readCertificate(pem)) ?? [];
      return forEncryption ? usage.includes('keyEncipherment') || usage.includes('dataEncipherment') : usage.includes('nonRepudiation');
    };
    return [...new Map(all.filter(wanted).map((pem) => [der(pem), pem])).values()];
  }

  /** The KS sample for the party's type, with the party written into it (an organisation with its services). */
  private details(party: StandInParty): string {
    const doc = new DOMParser().parseFromString(
      sample(
        party.type === 'Service' ? 'ks-get-communication-party-details-service-response.xml' : 'ks-get-communication-party-details-organzation-response.xml',
      ),
      'text/xml',
    );
    const result = doc.getElementsByTagNameNS(CP, 'GetCommunicationPartyDetailsResult')[0];
    this.fill(result, party);
    const services = child(result, 'Services');
    if (services) {
      const template = child(services, 'Service');
      while (services.firstChild) services.removeChild(services.firstChild);
      for (const s of [...this.parties.values()].filter((p) => p.parentHerId === party.herId && p.type === 'Service')) {
        if (!template) break;
        const el = template.cloneNode(true) as Element;
        this.fill(el, s);
        services.appendChild(el);
      }
    }
    return new XMLSerializer().serializeToString(doc);
  }

  private fill(el: Element, p: StandInParty): void {
    set(el, 'HerId', p.herId);
    set(el, 'Name', p.name);
    set(el, 'Active', String(p.active ?? true));
    set(el, 'IsValidCommunicationParty', 'true');
    set(el, 'ParentHerId', p.parentHerId ?? '-1');
    set(el, 'ParentName', (p.parentHerId && this.parties.get(p.parentHerId)?.name) || '');
    const organisationNumber = this.organisationNumberOf(p);
    set(el, 'OrganizationNumber', organisationNumber);
    set(el, 'ParentOrganizationNumber', p.type === 'Service' ? organisationNumber : '-1');
    const municipality = child(el, 'Municipality');
    if (municipality) set(municipality, 'CodeValue', p.municipality ?? '0301', COMMON);
    const code = child(el, 'Code');
    if (code && p.serviceCode) set(code, 'CodeValue', p.serviceCode, COMMON);
    const valid = child(el, 'Valid');
    if (valid) {
      set(valid, 'From', '2000-01-01T00:00:00', COMMON);
      set(valid, 'To', '9999-12-31T23:59:59', COMMON);
    }
    let edi: Element | undefined;
    for (const address of Array.from(el.getElementsByTagNameNS(COMMON, 'ElectronicAddress'))) {
      if (address.parentNode?.parentNode !== el) continue;
      const type = child(address, 'TypeCodeValue', COMMON)?.textContent;
      if (type === 'E_EDI') {
        set(address, 'Address', p.ediAddress ?? `${p.herId}@edi.test.nhn.no`, COMMON);
        edi = address;
      }
      if (type === 'E_DS') {
        const serials = listedOf(p).map((pem) => BigInt(`0x${new X509Certificate(pem).serialNumber}`).toString(10));
        if (serials.length === 0) address.parentNode.removeChild(address);
        else set(address, 'Address', ldapUrl(serials), COMMON);
      }
    }
    const future = child(el, 'FutureElectronicAddresses');
    if (future && edi) {
      while (future.firstChild) future.removeChild(future.firstChild);
      for (const f of p.futureEdiAddresses ?? []) future.appendChild(futureAddress(edi, f));
    }
  }
}

/** The certificates the party's E_DS lists. */
const listedOf = (p: StandInParty): string[] =>
  [p.encryptionCertificate, p.signingCertificate, ...(p.listedCertificates ?? [])].filter((pem): pem is string => pem !== undefined);

const der = (pem: string) => pem.replace(/-----[^-]+-----|\s+/g, '');

/** An E_DS address as AR writes it: one serial as it stands, several or'ed. */
function ldapUrl(serials: string[]): string {
  const each = serials.map((s) => `(certificateSerialNumber=${s})`);
  const filter = each.length === 1 ? each[0] : `(|${each.join('')})`;
  return `ldap://ldap.test4.buypass.no/dc=Buypass,dc=no,CN=Buypass%20Class%203%20Test4%20CA%20G2?usercertificate;binary?sub?${filter}`;
}

/** A FutureElectronicAddress (WSDL: ElectronicAddress + ValidFrom), made from the party's E_EDI address. */
function futureAddress(edi: Element, f: { address: string; validFrom: string }): Element {
  const doc = edi.ownerDocument;
  const prefix = edi.prefix ? `${edi.prefix}:` : '';
  const el = doc.createElementNS(COMMON, `${prefix}FutureElectronicAddress`);
  for (let n = edi.firstChild; n; n = n.nextSibling) el.appendChild(n.cloneNode(true));
  set(el, 'Address', f.address, COMMON);
  const validFrom = doc.createElementNS(COMMON, `${prefix}ValidFrom`);
  validFrom.appendChild(doc.createTextNode(f.validFrom));
  el.appendChild(validFrom);
  return el;
}

function child(el: Element, name: string, ns = CP): Element | undefined {
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).localName === name && (n as Element).namespaceURI === ns) return n as Element;
  }
  return undefined;
}

function set(el: Element, name: string, value: string, ns = CP): void {
  const c = child(el, name, ns);
  if (!c) return;
  while (c.firstChild) c.removeChild(c.firstChild);
  c.removeAttributeNS('http://www.w3.org/2001/XMLSchema-instance', 'nil');
  c.appendChild(c.ownerDocument.createTextNode(value));
}

const envelope = (body: string) =>
  `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Body>${body}</s:Body></s:Envelope>`;

/** CertificateDetails as the WSDL defines it: the DER in base64, and the LDAP URL it came from. */
function certificateAnswer(operation: string, pem: string | undefined): string {
  const result = `${operation}Result`;
  const inner = pem
    ? `<${result} xmlns:b="http://register.nhn.no/CertificateDetails" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><b:Certificate>${der(pem)}</b:Certificate><b:LdapUrl>ldap://ldap.test/cn=stand-in</b:LdapUrl></${result}>`
    : `<${result} i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/>`;
  return envelope(`<${operation}Response xmlns="${CP}">${inner}</${operation}Response>`);
}

/** ArrayOfCertificateDetails: each certificate found, with the LDAP URL it came from. */
function searchAnswer(operation: string, pems: string[]): string {
  const result = `${operation}Result`;
  const details = pems
    .map((pem) => `<b:CertificateDetails><b:Certificate>${der(pem)}</b:Certificate><b:LdapUrl>ldap://ldap.test/cn=stand-in</b:LdapUrl></b:CertificateDetails>`)
    .join('');
  return envelope(
    `<${operation}Response xmlns="${CP}"><${result} xmlns:b="http://register.nhn.no/CertificateDetails" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">${details}</${result}></${operation}Response>`,
  );
}
