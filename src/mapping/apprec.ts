// Builds the application receipts (AppRec) the gateway owes when it rejects a message: to the EPJ
// for an outgoing one, to the sending bydel for an incoming one. Version follows the message's
// standard (HITS 1168 §8.3): PLO 1.6 / Dialog 1.1 → 1.1, else 1.0.

import { randomUUID } from 'node:crypto';
import { DateTime } from 'luxon';
import { create } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import type { ErrorCode } from '../shared/vocabulary.js';
import { type ContentInfo, type MsgHeadModel, NS, type Party } from './model.js';

export const ERROR_TEXTS: Record<ErrorCode, string> = {
  T01: "Ikke XML / ikke 'well formed' / uleselig",
  T02: 'XML validerer ikke',
  T10: 'Støtter ikke meldingsformatet',
  T99: 'Annen feil på format',
  S01: 'Feil på signatur',
  S02: 'Ugyldig sertifikat',
  S03: 'Tilbaketrukket sertifikat',
  S99: 'Annen feil på signatur eller sertifikat',
  E10: 'Ugyldig meldingsidentifikator',
  E21: 'Mottaker finnes ikke',
  E30: 'Pasientens fødselsnummer mangler',
  E31: 'Pasientens fødselsnummer er feil',
  E32: 'Pasientens navn mangler',
  E35: 'Pasienten finnes ikke i mottakersystemet',
  E36: 'Pasientopplysninger er utilstrekkelige',
  X99: 'Annen feil',
};

/** The display name of a code from list 8221; undefined for a code not in it (another system's). */
export const errorText = (code: string): string | undefined => (Object.hasOwn(ERROR_TEXTS, code) ? ERROR_TEXTS[code as ErrorCode] : undefined);

export type AppRecVersion = '1.0' | '1.1';

export function appRecVersionFor(content: ContentInfo | undefined): AppRecVersion {
  if (!content) return '1.0';
  if (content.family === 'plo' && content.version !== '1.5') return '1.1';
  if (content.family === 'dialogmelding' && content.version === '1.1') return '1.1';
  if (content.family === 'apprec') return content.version === '1.1' ? '1.1' : '1.0';
  return '1.0';
}

export interface AppRecInput {
  version: AppRecVersion;
  status: '1' | '2' | '3';
  /** 8221 code (or a gateway code, sent as X99) and a text without personal data */
  errors: { code: string; details?: string }[];
  original: { msgType: string; msgTypeDn?: string; issueDate: string; msgId: string };
  /** who issues the receipt: the original receiver (mirrored, AppRec 1.1 §3.5) */
  sender: Party;
  /** who gets the receipt: the original sender */
  receiver: Party;
  id?: string;
  genDate?: Date;
}

const STATUS_DN: Record<string, string> = { '1': 'OK', '2': 'Avvist', '3': 'OK, feil i delmelding' };

/** A party as AppRec's HCP: the institution, its HER-id, and the department (level 2) inside it. */
function hcp(parent: XMLBuilder, party: Party): void {
  const id = (el: XMLBuilder, herId?: string) => {
    if (!herId) return;
    el.ele('Id').txt(herId);
    el.ele('TypeId').att('V', 'HER').att('DN', 'HER-id');
  };
  const inst = parent.ele('HCP').ele('Inst');
  inst.ele('Name').txt(party.level1.name);
  id(inst, party.level1.herId);
  if (party.level2) {
    const dept = inst.ele('Dept');
    dept.ele('Name').txt(party.level2.name);
    id(dept, party.level2.herId);
  }
}

/**
 * Norwegian local time without offset, the form used by MsgHead/AppRec GenDate in every official
 * sample: Europe/Oslo wall-clock time whatever zone the process runs in (a container is often UTC).
 */
export function localDateTime(d: Date): string {
  return DateTime.fromJSDate(d, { zone: 'Europe/Oslo' }).toFormat("yyyy-MM-dd'T'HH:mm:ss");
}

export function buildAppRec(input: AppRecInput): string {
  const v11 = input.version === '1.1';
  const doc = create({ version: '1.0', encoding: 'UTF-8' });
  const root = doc.ele(v11 ? NS.appRec11 : NS.appRec10, 'AppRec');
  root.ele('MsgType').att('V', 'APPREC').att('DN', 'Applikasjonskvittering');
  root.ele('MIGversion').txt(v11 ? 'v1.1 2012-02-15' : '1.0 2004-11-21');
  root.ele('SoftwareName').txt('plo-gateway');
  root.ele('GenDate').txt(localDateTime(input.genDate ?? new Date()));
  root.ele('Id').txt(input.id ?? randomUUID());
  const sender = root.ele('Sender');
  if (v11) sender.ele('Role').att('V', 'PRIM').att('DN', 'Primærmottaker');
  hcp(sender, input.sender);
  const receiver = root.ele('Receiver');
  if (v11) receiver.ele('Role').att('V', 'AVS').att('DN', 'Avsender');
  hcp(receiver, input.receiver);
  root.ele('Status').att('V', input.status).att('DN', STATUS_DN[input.status]);
  for (const e of input.errors) {
    const known = errorText(e.code);
    const error = root
      .ele('Error')
      .att('S', '2.16.578.1.12.4.1.1.8221')
      .att('V', known ? e.code : 'X99')
      .att('DN', known ?? ERROR_TEXTS.X99);
    if (e.details) error.att('OT', e.details);
  }
  const o = input.original;
  const original = root.ele('OriginalMsgId');
  const type = original.ele('MsgType').att('V', o.msgType);
  if (o.msgTypeDn) type.att('DN', o.msgTypeDn);
  original.ele('IssueDate').txt(o.issueDate);
  original.ele('Id').txt(o.msgId);
  return `${doc.end()}\n`;
}

/** Why the gateway refuses a message: an 8221 code (or a gateway code) and one sentence without personal data. */
export interface Rejection {
  code: string;
  reason: string;
}

/**
 * The negative AppRec (status 2 Avvist) for a message the gateway refuses, mirroring its
 * addresses (AppRec 1.1 §3.5). When no MsgHead could be read, `unreadable` stands in for the
 * original and for both parties.
 */
export function negativeAppRec(input: { id: string; error: Rejection; now: Date; model?: MsgHeadModel; unreadable?: { msgId: string; party: Party } }): string {
  const { model, now } = input;
  const stand = input.unreadable ?? { msgId: 'ukjent', party: { level1: { name: 'ukjent' } } };
  return buildAppRec({
    id: input.id,
    version: appRecVersionFor(model?.content),
    status: '2',
    errors: [{ code: input.error.code, details: input.error.reason }],
    original: model
      ? { msgType: model.type, msgTypeDn: model.typeDn, issueDate: model.genDate, msgId: model.msgId }
      : { msgType: 'UKJENT', issueDate: localDateTime(now), msgId: stand.msgId },
    sender: model?.receiver ?? stand.party,
    receiver: model?.sender ?? stand.party,
    genDate: now,
  });
}
