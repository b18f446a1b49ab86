// The official sample messages, readdressed the way the hospital's EPJ would send them to
// Oslo kommune: receiver = Oslo kommune (level 1 only), patient living at an Oslo address.

import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { isValidFnr } from '../../src/inbound/rules.js';
import { SAMPLES } from './paths.js';

export const MH = 'http://www.kith.no/xmlstds/msghead/2006-05-24';
export const OSLO_KOMMUNE_HER = '9900000';

export const sampleFiles = (folder: string): string[] =>
  readdirSync(join(SAMPLES, folder))
    .filter((f) => f.endsWith('.xml'))
    .map((f) => join(SAMPLES, folder, f));

export const readSample = (folderAndFile: string): string => readFileSync(join(SAMPLES, folderAndFile), 'utf8');

export interface Readdress {
  postalCode?: string;
  street?: string;
  addressType?: string;
  msgId?: string;
  receiverHerId?: string;
  /** leave the patient address as it is */
  keepAddress?: boolean;
}

export function child(parent: Element, name: string): Element | undefined {
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).localName === name && (n as Element).namespaceURI === MH) return n as Element;
  }
  return undefined;
}

export function el(doc: Document, name: string, text?: string, attrs: Record<string, string> = {}): Element {
  const e = doc.createElementNS(MH, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.appendChild(doc.createTextNode(text));
  return e;
}

let issued = 0;

/**
 * Each message an EPJ sends is a document of its own, issued at its own time: without this the
 * copies a test sends would be the same content under new MsgIds, which the gateway (rightly)
 * refuses to send twice.
 */
function stampIssueDate(doc: Document): void {
  const when = new Date(Date.UTC(2026, 0, 1) + ++issued * 1000).toISOString().slice(0, 19);
  const issueDates = doc.getElementsByTagNameNS(MH, 'IssueDate');
  for (let i = 0; i < issueDates.length; i++) issueDates.item(i)!.setAttribute('V', when);
}

export function readdressToOslo(xml: string, opts: Readdress = {}): { xml: string; msgId: string } {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const msgInfo = child(doc.documentElement, 'MsgInfo')!;
  const msgId = opts.msgId ?? randomUUID();
  const idEl = child(msgInfo, 'MsgId')!;
  idEl.textContent = msgId;
  stampIssueDate(doc);

  const receiver = child(msgInfo, 'Receiver')!;
  const org = el(doc, 'Organisation');
  org.appendChild(el(doc, 'OrganisationName', 'Oslo kommune'));
  const ident = el(doc, 'Ident');
  ident.appendChild(el(doc, 'Id', opts.receiverHerId ?? OSLO_KOMMUNE_HER));
  ident.appendChild(el(doc, 'TypeId', undefined, { V: 'HER', DN: 'HER-id', S: '2.16.578.1.12.4.1.1.9051' }));
  org.appendChild(ident);
  receiver.replaceChild(org, child(receiver, 'Organisation')!);

  const patient = child(msgInfo, 'Patient');
  if (patient && !opts.keepAddress) {
    const address = el(doc, 'Address');
    if (opts.addressType)
      address.appendChild(el(doc, 'Type', undefined, { V: opts.addressType, DN: opts.addressType === 'TMP' ? 'Midlertidig adresse' : 'Bostedsadresse' }));
    address.appendChild(el(doc, 'StreetAdr', opts.street ?? 'Testveien 1'));
    address.appendChild(el(doc, 'PostalCode', opts.postalCode ?? '0350'));
    address.appendChild(el(doc, 'City', 'OSLO'));
    const old = child(patient, 'Address');
    if (old) patient.replaceChild(address, old);
    else {
      const telecom = child(patient, 'TeleCom');
      patient.insertBefore(address, telecom ?? null);
    }
  }
  return { xml: new XMLSerializer().serializeToString(doc), msgId };
}

/** The fødselsnummer of the patient in the official PLO samples. */
export const SAMPLE_FNR = '15076500565';

/**
 * Another synthetic patient, the n-th (a valid fødselsnummer born 1 January 1980, so the gateway's
 * E31 check passes): for tests where two patients must be told apart.
 */
export function syntheticFnr(n: number): string {
  let found = 0;
  for (let individ = 100; individ < 1000; individ++)
    for (let checks = 0; checks < 100; checks++) {
      const fnr = `010180${individ}${String(checks).padStart(2, '0')}`;
      if (isValidFnr(fnr) && found++ === n) return fnr;
    }
  throw new Error(`no synthetic fødselsnummer number ${n}`);
}

/** The sample with its patient replaced by `fnr`. */
export const withPatient = (xml: string, fnr: string): string => xml.replaceAll(SAMPLE_FNR, fnr);
