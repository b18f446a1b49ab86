// The one typed model every stage works on. Personal data lives only in `patient`
// and `contentXml`; nothing in this file is ever logged as a whole.
import type { ErrorCode, GatewayErrorCode, TransportCondition } from '../shared/vocabulary.js';

export const NS = {
  msgHead: 'http://www.kith.no/xmlstds/msghead/2006-05-24',
  appRec10: 'http://www.kith.no/xmlstds/apprec/2004-11-21',
  appRec11: 'http://www.kith.no/xmlstds/apprec/2012-02-15',
  soap: 'http://schemas.xmlsoap.org/soap/envelope/',
  ebxml: 'http://www.oasis-open.org/committees/ebxml-msg/schema/msg-header-2_0.xsd',
  xlink: 'http://www.w3.org/1999/xlink',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
} as const;

/** How the EPJ (or NHN) wrapped the business document. */
export type Framing = 'msghead' | 'soap' | 'multipart';

/** Family and version of the business standard inside MsgHead/Document/RefDoc/Content. */
export type StandardFamily = 'plo' | 'dialogmelding' | 'apprec' | 'other';

export interface ContentInfo {
  /** local name of the first element inside RefDoc/Content (e.g. Pasientlogistikk) */
  rootLocalName: string;
  rootNamespace: string;
  /** for Pasientlogistikk: the local name of the chosen message child (e.g. MeldingUtskrivningsklarPasient) */
  messageLocalName?: string;
  family: StandardFamily;
  /** '1.5' | '1.6' | '2.0' for PLO, '1.0' | '1.1' for dialogmelding/apprec */
  version: string;
}

export interface PartyLevel {
  name: string;
  herId?: string;
}

/** MsgHead Sender/Receiver: level 1 = organisation, level 2 = service/department (nested Organisation). */
export interface Party {
  level1: PartyLevel;
  level2?: PartyLevel;
}

export interface PatientAddress {
  /** code list 3401, e.g. H, HP, TMP; undefined when the EPJ left it out */
  type?: string;
  street?: string;
  postalCode?: string;
  city?: string;
}

export interface PatientIdent {
  id: string;
  /** code list 8116: FNR, DNR, HNR, ... */
  type: string;
}

/** Personal data: never log, never put in headers, alerts or error reasons. */
export interface Patient {
  familyName?: string;
  givenName?: string;
  idents: PatientIdent[];
  addresses: PatientAddress[];
}

export interface ConversationRef {
  refToParent: string;
  refToConversation: string;
}

export interface MsgHeadModel {
  kind: 'msghead';
  type: string;
  typeDn?: string;
  msgId: string;
  genDate: string;
  conversationRef?: ConversationRef;
  sender: Party;
  receiver: Party;
  patient?: Patient;
  content?: ContentInfo;
  /** Hendelsekode values (9121) found in a Pasientlogistikk message, in document order */
  hendelsekoder: string[];
  /** TidspunktForHendelse as sent (a date or a local date-time), per Hendelsekode: the first of each code */
  hendelsestidspunkt?: Record<string, string>;
  /** Forsendelsesstatus (7309): N, M, C */
  forsendelsesstatus?: string;
  /** LOG_UTSKREVET's UtskrevetTil/Uttilstand (8431): 1 som levende, 2 død */
  uttilstand?: string;
  /** Dialogmelding Notat/TemaKodet, as "S/V" pairs (e.g. 2.16.578.1.12.4.1.1.9155/1) */
  temaKodet: string[];
}

export interface AppRecModel {
  kind: 'apprec';
  version: '1.0' | '1.1';
  id: string;
  genDate: string;
  status: string;
  errors: { code: string; text?: string; details?: string }[];
  originalMsgId: { msgType: string; issueDate: string; id: string };
  senderHerIds: string[];
  receiverHerIds: string[];
}

/** Transport-level fields from an ebXML envelope, when one was present. */
export interface EbxmlInfo {
  fromPartyIds: { type: string; id: string }[];
  toPartyIds: { type: string; id: string }[];
  cpaId?: string;
  conversationId?: string;
  service?: string;
  action?: string;
  messageId?: string;
  refToMessageId?: string;
  timestamp?: string;
  /** true for Acknowledgment and MessageError signals */
  signal?: 'Acknowledgment' | 'MessageError';
  /** eb:AckRequested: the sender's MSH waits for our signed Acknowledgment (ebMS 2.0 §6.3) */
  ackRequested?: boolean;
}

export interface ParsedMessage {
  framing: Framing;
  /** the business document (MsgHead or AppRec) exactly as received, UTF-8 */
  businessXml: string;
  /** the SOAP envelope text, when framing is soap or multipart */
  envelopeXml?: string;
  ebxml?: EbxmlInfo;
  doc: MsgHeadModel | AppRecModel;
}

/** A permanent or transient failure of one stage, in one readable sentence without personal data. */
export interface StageError {
  /** code list 8221 (T01, T02, E10, E21, E36, ...), else a gateway code */
  code: ErrorCode | GatewayErrorCode;
  reason: string;
  transient: boolean;
  /** set when the failure is the sender's transport (signature, certificate, encryption): a MessageError goes back */
  condition?: TransportCondition;
}

export type StageResult<T> = { ok: true; value: T } | { ok: false; error: StageError };

export const ok = <T>(value: T): StageResult<T> => ({ ok: true, value });
export const permanent = (code: ErrorCode | GatewayErrorCode, reason: string, condition?: TransportCondition): { ok: false; error: StageError } => ({
  ok: false,
  error: { code, reason, transient: false, ...(condition ? { condition } : {}) },
});
export const transient = (code: ErrorCode | GatewayErrorCode, reason: string): { ok: false; error: StageError } => ({
  ok: false,
  error: { code, reason, transient: true },
});
