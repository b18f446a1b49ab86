// A stand-in for NHN's Adresseregister (ICommunicationPartyService, SOAP), a real HTTP server
// the tests start. Its answers are the official KS samples (samples/adresseregister) with the
// test's parties written into them, so the gateway reads the shape AR really sends; certificate
// answers follow the WSDL's CertificateDetails. It counts what it is asked, checks basic auth,
// and can be stopped and started again on the same port (AR down).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
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
  encryptionCertificate?: string;
  signingCertificate?: string;
}

export interface StandInRequest {
  operation: string;
  herId?: string;
}

const CP = 'http://register.nhn.no/CommunicationParty';
const COMMON = 'http://register.nhn.no/Common';
const sample = (name: string) => readFileSync(join(SAMPLES, 'adresseregister', name), 'utf8');

export class ArStandIn {
  readonly parties = new Map<string, StandInParty>();
  readonly requests: StandInRequest[] = [];
  credentials = { user: 'gateway', password: 'hemmelig' };
  /** answers come this much later (a slow AR) */
  delayMs = 0;
  private server?: Server;
  private port = 0;

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

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the port it had. */
  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.answer(req, res));
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const operation = /\/([A-Za-z]+)"?$/.exec(String(req.headers.soapaction ?? ''))?.[1] ?? '';
    const herId = /<(?:\w+:)?herId>(\d+)</.exec(body)?.[1];
    this.requests.push({ operation, herId });
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const expected = `Basic ${Buffer.from(`${this.credentials.user}:${this.credentials.password}`).toString('base64')}`;
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('Unauthorized');
      return;
    }
    const xml = (status: number, text: string) => res.writeHead(status, { 'content-type': 'application/soap+xml; charset=utf-8' }).end(text);
    if (operation === 'Ping') return void xml(200, envelope(`<PingResponse xmlns="${CP}"><PingResult>pong</PingResult></PingResponse>`));
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
    const municipality = child(el, 'Municipality');
    if (municipality) set(municipality, 'CodeValue', p.municipality ?? '0301', COMMON);
    const code = child(el, 'Code');
    if (code && p.serviceCode) set(code, 'CodeValue', p.serviceCode, COMMON);
    const valid = child(el, 'Valid');
    if (valid) {
      set(valid, 'From', '2000-01-01T00:00:00', COMMON);
      set(valid, 'To', '9999-12-31T23:59:59', COMMON);
    }
    for (const address of Array.from(el.getElementsByTagNameNS(COMMON, 'ElectronicAddress'))) {
      if (address.parentNode?.parentNode !== el) continue;
      if (child(address, 'TypeCodeValue', COMMON)?.textContent === 'E_EDI') set(address, 'Address', p.ediAddress ?? `${p.herId}@edi.test.nhn.no`, COMMON);
    }
  }
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
  const der = pem?.replace(/-----[^-]+-----|\s+/g, '');
  const inner = der
    ? `<${result} xmlns:b="http://register.nhn.no/CertificateDetails" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><b:Certificate>${der}</b:Certificate><b:LdapUrl>ldap://ldap.test/cn=stand-in</b:LdapUrl></${result}>`
    : `<${result} i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"/>`;
  return envelope(`<${operation}Response xmlns="${CP}">${inner}</${operation}Response>`);
}
