// Business rules the XSD cannot express (REFERENCE §8.2). Each failure carries a code from
// code list 8221 and one sentence that names fields, never their values: reasons end up in
// AppRecs, logs and alerts, and must hold no personal data.

import type { MsgHeadModel, StageResult, StandardFamily } from '../mapping/model.js';
import { ok, permanent } from '../mapping/model.js';

interface ExpectedContent {
  family: StandardFamily;
  /** local name of the root inside RefDoc/Content */
  root: string;
  /** for Pasientlogistikk: the message element inside it */
  message?: string;
}

const logistics = (message: string): ExpectedContent => ({ family: 'plo', root: 'Pasientlogistikk', message });
const plo = (root: string): ExpectedContent => ({ family: 'plo', root });
const DIALOG: ExpectedContent = { family: 'dialogmelding', root: 'Dialogmelding' };

/** MsgInfo/Type (code list 8279) → the content it must carry (REFERENCE §3.2, §4.1). */
const CONTENT_BY_TYPE: Record<string, ExpectedContent> = {
  LOG_INNLAGT: logistics('MeldingInnlagtPasient'),
  LOG_UTSKRIVNINGSKLAR: logistics('MeldingUtskrivningsklarPasient'),
  LOG_AVMELDING: logistics('AvmeldingUtskrivningsklarPasient'),
  LOG_UTSKREVET: logistics('MeldingOmUtskrevetPasient'),
  LOG_DOD: logistics('OrienteringOmDod'),
  LOG_TILBAKEMELDING: logistics('TilbakemeldingUtskrivningsklarPasient'), // PLO 2.0 draft, tolerated
  INNLEGGELSESRAPPORT: plo('Innleggelsesrapport'),
  HELSEOPPL_SOKNAD: plo('HelseopplysningerVedSoknad'),
  UTSKRIVNINGSRAPPORT: plo('TverrfagligEpikrise'),
  HELSEOPPLYSNINGER_LEGE: plo('Konsultasjon'),
  MEDISINSKE_OPPLYSNINGER: plo('OverforingMedisinskeOpplysninger'),
  ORIENTERING_TJENESTETILBUD: plo('OrienteringOmTjenestetilbud'),
  FRAVARSMELDING: plo('MeldingFravar'),
  DIALOG_FORESPORSEL: DIALOG,
  DIALOG_SVAR: DIALOG,
  DIALOG_NOTAT: DIALOG,
  DIALOG_AVVIK: DIALOG,
  DIALOG_HELSEFAGLIG: DIALOG,
  DIALOG_STATUS_HENVISNING: DIALOG,
  DIALOG_TIL_ARKIVERING: DIALOG,
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ident types that identify a patient on their own, with the name (8221 E36). */
const PATIENT_IDENT_TYPES = new Set(['FNR', 'DNR', 'HNR', 'FHN']);
/** Ident types that carry the two mod-11 check digits of the national register. */
const CHECKED_IDENT_TYPES = new Set(['FNR', 'DNR']);

type Rule = (doc: MsgHeadModel) => StageResult<void> | undefined;

/** Checked in this order; the first failure is the one reported. */
const RULES: Rule[] = [
  msgIdIsUuid,
  typeIsSupported,
  typeMatchesContent,
  utskrivningsklarHasEvents,
  senderHasHerId,
  receiverHasHerId,
  patientIsIdentified,
  fnrPassesMod11,
];

/** Business rules on a parsed MsgHead; the first rule that fails gives the result. */
export function checkRules(doc: MsgHeadModel): StageResult<void> {
  for (const rule of RULES) {
    const failure = rule(doc);
    if (failure) return failure;
  }
  return ok(undefined);
}

function msgIdIsUuid(doc: MsgHeadModel) {
  if (!UUID.test(doc.msgId)) return permanent('E10', 'MsgInfo/MsgId is not a UUID.');
}

function typeIsSupported(doc: MsgHeadModel) {
  if (!Object.hasOwn(CONTENT_BY_TYPE, doc.type)) {
    return permanent('T10', `The message type ${doc.type || '(empty)'} is not supported by this gateway.`);
  }
}

function typeMatchesContent(doc: MsgHeadModel) {
  const expected = CONTENT_BY_TYPE[doc.type];
  const content = doc.content;
  if (!content) return permanent('T02', `The message type ${doc.type} has no XML content in its first Document.`);
  const matches = content.family === expected.family && content.rootLocalName === expected.root && content.messageLocalName === expected.message;
  if (!matches) {
    const actual = content.messageLocalName ?? content.rootLocalName;
    return permanent('T02', `The message type ${doc.type} does not match its content ${actual}.`);
  }
}

/** HIS 1149 §3.2: admission time (code 1) and the expected utskrivningsklar date (code 3). */
function utskrivningsklarHasEvents(doc: MsgHeadModel) {
  if (doc.type !== 'LOG_UTSKRIVNINGSKLAR') return;
  const missing = ['1', '3'].filter((code) => !doc.hendelsekoder.includes(code));
  if (missing.length > 0) {
    return permanent('T02', `LOG_UTSKRIVNINGSKLAR must carry Hendelsekode 1 and 3; ${missing.join(' and ')} is missing.`);
  }
}

function senderHasHerId(doc: MsgHeadModel) {
  if (!doc.sender.level1.herId) return permanent('T02', 'The sender organisation (level 1) has no HER-id.');
}

function receiverHasHerId(doc: MsgHeadModel) {
  if (!doc.receiver.level1.herId) return permanent('E21', 'The receiver organisation (level 1) has no HER-id.');
}

/**
 * 8221 E36: a patient must be named and carry an FNR, DNR, HNR or FHN. (Name + birth date +
 * sex is the standard's other way, but PLO requires an identifier.) PLO requires a Patient;
 * other messages are checked only when they name one.
 */
function patientIsIdentified(doc: MsgHeadModel) {
  const patient = doc.patient;
  if (!patient) {
    return doc.content?.family === 'plo' ? permanent('E36', 'The PLO message has no Patient.') : undefined;
  }
  if (!patient.familyName && !patient.givenName) return permanent('E36', 'The patient has no name.');
  if (!patient.idents.some((ident) => PATIENT_IDENT_TYPES.has(ident.type) && ident.id !== '')) {
    return permanent('E36', 'The patient has no FNR, DNR, HNR or FHN identifier.');
  }
}

function fnrPassesMod11(doc: MsgHeadModel) {
  const bad = doc.patient?.idents.find((ident) => CHECKED_IDENT_TYPES.has(ident.type) && !isValidFnr(ident.id));
  if (bad) return permanent('E31', `The patient's ${bad.type} fails the fødselsnummer check (11 digits, two mod-11 check digits).`);
}

const WEIGHTS_K1 = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const WEIGHTS_K2 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

function checkDigit(digits: number[], weights: number[]): number {
  const sum = weights.reduce((acc, w, i) => acc + w * digits[i], 0);
  const k = 11 - (sum % 11);
  return k === 11 ? 0 : k; // 10 means no valid number exists for these digits
}

/**
 * A fødselsnummer or D-number: 11 digits, a day of 01–31 (D-number: +40, so 41–71), and two
 * mod-11 check digits. The month is not checked, because H-numbers and the synthetic test
 * numbers in official samples (Tenor, NAV) shift it by 40 or 80.
 */
export function isValidFnr(id: string): boolean {
  if (!/^\d{11}$/.test(id)) return false;
  const digits = [...id].map(Number);
  const day = Number(id.slice(0, 2));
  const dNumberDay = day - 40; // a D-number adds 4 to the first digit
  if (!(day >= 1 && day <= 31) && !(dNumberDay >= 1 && dNumberDay <= 31)) return false;
  return checkDigit(digits, WEIGHTS_K1) === digits[9] && checkDigit(digits, WEIGHTS_K2) === digits[10];
}
