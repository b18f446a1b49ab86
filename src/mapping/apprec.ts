// Builds the application receipts (AppRec) the gateway owes when it rejects a message: to the EPJ
// for an outgoing one, to the sending bydel for an incoming one. Version follows the message's
// standard (HITS 1168 §8.3): PLO 1.6 / Dialog 1.1 → 1.1, else 1.0.
import { randomUUID } from 'node:crypto';
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

export const escapeXml = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

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

function hcp(party: Party): string {
  const herTypeId = '<TypeId V="HER" DN="HER-id"/>';
  const id = (herId?: string) => (herId ? `<Id>${escapeXml(herId)}</Id>${herTypeId}` : '');
  const dept = party.level2 ? `<Dept><Name>${escapeXml(party.level2.name)}</Name>${id(party.level2.herId)}</Dept>` : '';
  return `<HCP><Inst><Name>${escapeXml(party.level1.name)}</Name>${id(party.level1.herId)}${dept}</Inst></HCP>`;
}

/** Local time without offset, the form used by MsgHead/AppRec GenDate in every official sample. */
export function localDateTime(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function buildAppRec(input: AppRecInput): string {
  const v11 = input.version === '1.1';
  const ns = v11 ? NS.appRec11 : NS.appRec10;
  const mig = v11 ? 'v1.1 2012-02-15' : '1.0 2004-11-21';
  const senderRole = v11 ? '<Role V="PRIM" DN="Primærmottaker"/>' : '';
  const receiverRole = v11 ? '<Role V="AVS" DN="Avsender"/>' : '';
  const errors = input.errors
    .map((e) => {
      const known = errorText(e.code);
      const code = known ? e.code : 'X99';
      const ot = e.details ? ` OT="${escapeXml(e.details)}"` : '';
      return `<Error S="2.16.578.1.12.4.1.1.8221" V="${code}" DN="${escapeXml(known ?? ERROR_TEXTS.X99)}"${ot}/>`;
    })
    .join('');
  const o = input.original;
  const typeDn = o.msgTypeDn ? ` DN="${escapeXml(o.msgTypeDn)}"` : '';
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<AppRec xmlns="${ns}">` +
    `<MsgType V="APPREC" DN="Applikasjonskvittering"/>` +
    `<MIGversion>${mig}</MIGversion>` +
    `<SoftwareName>plo-gateway</SoftwareName>` +
    `<GenDate>${localDateTime(input.genDate ?? new Date())}</GenDate>` +
    `<Id>${input.id ?? randomUUID()}</Id>` +
    `<Sender>${senderRole}${hcp(input.sender)}</Sender>` +
    `<Receiver>${receiverRole}${hcp(input.receiver)}</Receiver>` +
    `<Status V="${input.status}" DN="${STATUS_DN[input.status]}"/>` +
    errors +
    `<OriginalMsgId><MsgType V="${escapeXml(o.msgType)}"${typeDn}/>` +
    `<IssueDate>${escapeXml(o.issueDate)}</IssueDate><Id>${escapeXml(o.msgId)}</Id></OriginalMsgId>` +
    `</AppRec>\n`
  );
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
