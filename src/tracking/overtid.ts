// The overtid ledger: for each utskrivningsklar notice, when it went out, when (and whether) the
// kommune answered, whether it was withdrawn (avmelding), when the patient left (discharge or
// death), whether the forskrift's preconditions show in the messages (Helseopplysninger before the
// notice), and how many døgn that makes: candidate overliggerdøgn (the episode's døgn, whatever
// the kommune answered), payable ones (unanswered, or before the place a caseworker recorded the
// kommune offered) and, per report, the døgn inside the period (docs/deadlines-and-alerts.md
// "Overtid ledger"). It is computed from the message metadata the gateway keeps anyway, and the
// settlements of 013_ledger, so nothing extra is written on the hot path.
import { DateTime } from 'luxon';
import type { MsgHeadModel } from '../mapping/model.js';
import { isoDate, isoDateTime } from '../shared/dates.js';
import { NATIONAL, type NationalIndicator } from './nationalFigures.js';
import type { Store } from './store.js';
import type { WorkingCalendar } from './workingTime.js';

/** The Hendelsekode (9121) that dates each Pasientlogistikk message's own event. */
const OWN_HENDELSE: Record<string, string> = {
  LOG_INNLAGT: '1',
  LOG_UTSKREVET: '2',
  LOG_UTSKRIVNINGSKLAR: '3',
  LOG_AVMELDING: '4',
  LOG_DOD: '13',
};

/** TidspunktForHendelse of the message's own event (e.g. the utskrivningsklar date), as sent. */
export function ownEventTime(model: MsgHeadModel): string | null {
  const code = OWN_HENDELSE[model.type];
  return (code && model.hendelsestidspunkt?.[code]) || null;
}

/** A stored notice with what the ledger needs; no patient data (the key is a keyed hash). */
export interface NoticeRow {
  msgId: string;
  bydel: string;
  createdAt: string;
  /** when the kommune was first notified of this stay: the first of the notices this one superseded */
  firstNoticeAt?: string;
  eventTime: string | null;
  answeredAt: string | null;
  answerDueAt: string;
  patientKey: string | null;
  conversationId: string | null;
  /** messages.closed_by: what closed its answer wait (e.g. LOG_UTSKREVET:dod) */
  closedBy?: string | null;
  /** the type of the kommune's answer (DIALOG_SVAR, …) and its later message, if any */
  answerMsgType?: string | null;
  laterKommuneMessage?: { at: string; msgType: string | null } | null;
  /** the newest settlement: the date the kommune offered a place */
  settlement?: { offeredDate: string; reason: string; at: string } | null;
  /** forskrift §§ 8–10 as the messages show them (see `preconditionsOf`) */
  preconditions?: Preconditions;
}

/** Whether the forskrift's preconditions show in what the gateway carried before the notice. */
export interface Preconditions {
  status: 'met' | 'missing' | 'unknown';
  /** what is missing: 'helseopplysninger' (none to this bydel for the stay before the notice), 'helseopplysninger-within-24h' */
  missing: string[];
}

/** A message of the same patient before the notice: the stay's LOG_INNLAGT, Helseopplysninger. */
export interface PriorRow {
  msgType: string;
  createdAt: string;
  eventTime: string | null;
  patientKey: string | null;
  bydel: string | null;
}

/** A later message about the same patient or conversation. */
export interface FollowUpRow {
  msgType: string;
  createdAt: string;
  eventTime: string | null;
  patientKey: string | null;
  conversationId: string | null;
}

export interface LedgerEntry {
  msgId: string;
  bydel: string;
  noticeAt: string;
  /** local date the patient is (expected to be) utskrivningsklar; the notice date if not given */
  utskrivningsklarDate: string;
  answeredAt: string | null;
  answerWorkingMs: number | null;
  answeredWithinDeadline: boolean;
  /** local date of the avmelding */
  avmeldtDate: string | null;
  /** local date the patient left the hospital (LOG_UTSKREVET, or LOG_DOD) */
  dischargeDate: string | null;
  /** døgn from the start to the first of answer, avmelding or discharge (the gateway's earlier figure; a lower bound) */
  overtidigeDogn: number;
  /** nothing (answer, avmelding, discharge) has ended `overtidigeDogn` yet: it ran to the end of the report */
  open: boolean;
  /** neither avmelding nor discharge yet: the candidate døgn ran to the end of the report */
  episodeOpen: boolean;
  /** the type of the kommune's answer, and its later message (the «place ready» one, if it sent one) */
  answerMsgType: string | null;
  laterKommuneMessage: { at: string; msgType: string | null } | null;
  /** what ended the episode, and the local date (that day not counted) */
  endedBy: 'utskrevet' | 'avmelding' | 'død' | null;
  endedDate: string | null;
  /** local date the count starts: the later of the utskrivningsklar date and the (first) notice's date */
  startDate: string;
  /** the date a caseworker recorded the kommune offered a place, and why */
  settlement: { offeredDate: string; reason: string; at: string } | null;
  preconditions: Preconditions;
  /** candidate overliggerdøgn inside the report's period: every døgn of the episode, whatever the answer */
  candidateDogn: number;
  /** payable inside the period: preconditions met, and unanswered, or before the offered date */
  payableDogn: number;
  /** answered, no settlement recorded yet: døgn from the answer on, neither payable nor settled */
  unsettledDogn: number;
  /** the counted døgn inside the period as [first, first not counted), null when none */
  candidateRange: [string, string] | null;
  payableRange: [string, string] | null;
  /** the notice was sent inside the period (false: an episode carried over from before) */
  noticeInPeriod: boolean;
  /** when the notice was sent, in Helsedirektoratet's bands; hours from the notice to the patient leaving */
  sentBand?: 'day' | 'evening' | 'night';
  dischargeHours?: number | null;
}

const isDateOnly = (s: string) => /^\d{4}-\d{2}-\d{2}$/.test(s);

/** The local date of a message time: a bare date as is, a date-time in the calendar's zone. */
function localDateOf(text: string, calendar: WorkingCalendar): string | null {
  if (isDateOnly(text)) return text;
  const at = calendar.parseLocal(text);
  return at ? calendar.localDate(at) : null;
}

const daysBetween = (from: string, to: string) => DateTime.fromISO(to, { zone: 'UTC' }).diff(DateTime.fromISO(from, { zone: 'UTC' }), 'days').days;

const earliest = (dates: (string | null)[]) => dates.filter((d): d is string => d !== null).sort()[0] ?? null;
/** Of two YYYY-MM-DD dates (they sort as text), the earlier and the later one. */
const earlier = (a: string, b: string) => [a, b].sort()[0];
const later = (a: string, b: string) => [a, b].sort()[1];

/** Follow-ups that belong to this notice: same patient or conversation, before the patient's next notice. */
function episode(notice: NoticeRow, followUps: FollowUpRow[]): FollowUpRow[] {
  const related = followUps
    .filter(
      (f) =>
        (notice.patientKey !== null && f.patientKey === notice.patientKey) || (notice.conversationId !== null && f.conversationId === notice.conversationId),
    )
    .filter((f) => f.createdAt > notice.createdAt)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const next = related.findIndex((f) => f.msgType === 'LOG_UTSKRIVNINGSKLAR');
  return next === -1 ? related : related.slice(0, next);
}

/** The report period's døgn: first counted date and first date not counted. */
export interface DayWindow {
  from: string;
  /** exclusive */
  until: string;
}

/** Døgn of [start, end) inside the window. */
const daysIn = (start: string, end: string, w: DayWindow) => Math.max(0, daysBetween(later(start, w.from), earlier(end, w.until)));
/** [start, end) inside the window, null when empty. */
const rangeIn = (start: string, end: string, w: DayWindow): [string, string] | null =>
  daysIn(start, end, w) > 0 ? [later(start, w.from), earlier(end, w.until)] : null;

/**
 * One notice's ledger line. `countUntil` is the first local date not counted when nothing has
 * ended the stay yet (the day after the report period, or after today); `window` the report's
 * period (default: from the start to `countUntil`).
 */
export function ledgerEntry(notice: NoticeRow, followUps: FollowUpRow[], calendar: WorkingCalendar, countUntil: string, window?: DayWindow): LedgerEntry {
  const mine = episode(notice, followUps);
  const dateOf = (f: FollowUpRow | undefined) => (f ? (f.eventTime && localDateOf(f.eventTime, calendar)) || calendar.localDate(new Date(f.createdAt)) : null);
  const avmelding = mine.find((f) => f.msgType === 'LOG_AVMELDING');
  const leaving = mine.find((f) => f.msgType === 'LOG_UTSKREVET' || f.msgType === 'LOG_DOD');
  const avmeldtDate = dateOf(avmelding);
  const dischargeDate = dateOf(leaving);
  const noticeDate = calendar.localDate(new Date(notice.firstNoticeAt ?? notice.createdAt));
  const utskrivningsklarDate = (notice.eventTime && localDateOf(notice.eventTime, calendar)) || noticeDate;
  const answerDate = notice.answeredAt ? calendar.localDate(new Date(notice.answeredAt)) : null;

  // Payment runs "fra og med det døgnet pasienten blir erklært utskrivningsklar" once the kommune
  // is notified (forskrift, quoted in the Oslo procedure §2), until the patient leaves or the
  // notice is withdrawn, that day itself not counted (as a liggedøgn is counted).
  const start = later(utskrivningsklarDate, noticeDate);
  const died = leaving?.msgType === 'LOG_DOD' || notice.closedBy === 'LOG_DOD' || notice.closedBy === 'LOG_UTSKREVET:dod';
  const ending = earliest([avmeldtDate, dischargeDate]);
  const endedBy = ending === null ? null : ending === avmeldtDate ? 'avmelding' : died ? 'død' : 'utskrevet';
  const end = ending ?? countUntil;
  const w = window ?? { from: start, until: countUntil };
  const candidateDogn = daysIn(start, end, w);
  const preconditions = notice.preconditions ?? { status: 'unknown', missing: [] };
  // Payable: the kommune "ikke har svart på varselet" (every døgn), or it answered and a
  // caseworker recorded the place it offered (døgn before that date); answered without a
  // settlement, the døgn before the answer are payable and those after it wait for one.
  const settlement = notice.settlement ?? null;
  const payableUntil = settlement ? settlement.offeredDate : (answerDate ?? end);
  const payableEnd = earlier(end, later(payableUntil, start));
  const payable = daysIn(start, payableEnd, w);
  const unsettled = settlement || answerDate === null ? 0 : daysIn(later(answerDate, start), end, w);
  const met = preconditions.status === 'met';
  const first = earliest([answerDate, avmeldtDate, dischargeDate]);
  return {
    msgId: notice.msgId,
    bydel: notice.bydel,
    noticeAt: notice.createdAt,
    utskrivningsklarDate,
    answeredAt: notice.answeredAt,
    answerWorkingMs: notice.answeredAt ? calendar.workingTimeBetween(new Date(notice.createdAt), new Date(notice.answeredAt)) : null,
    answeredWithinDeadline: notice.answeredAt !== null && notice.answeredAt <= notice.answerDueAt,
    avmeldtDate,
    dischargeDate,
    overtidigeDogn: Math.max(0, daysBetween(start, first ?? countUntil)),
    open: first === null,
    episodeOpen: ending === null,
    answerMsgType: notice.answerMsgType ?? null,
    laterKommuneMessage: notice.laterKommuneMessage ?? null,
    endedBy,
    endedDate: ending,
    startDate: start,
    settlement,
    preconditions,
    candidateDogn,
    payableDogn: met ? payable : 0,
    unsettledDogn: met ? unsettled : 0,
    candidateRange: rangeIn(start, end, w),
    payableRange: met ? rangeIn(start, payableEnd, w) : null,
    noticeInPeriod: true,
  };
}

/**
 * Forskrift §§ 8–10 as far as the messages show them: § 8's varsel is the Helseopplysninger the
 * hospital sends "innen 24 timer etter innleggelse" (Oslo procedure §4.3), before the
 * utskrivningsklar notice (§ 10). Met: a Helseopplysninger (HELSEOPPL_SOKNAD) went to the same bydel
 * for the stay (after its LOG_INNLAGT, when the gateway carried that) before the notice, and
 * within 24 h of the admission when the LOG_INNLAGT was seen. Missing: the gateway carried the
 * stay's LOG_INNLAGT but no Helseopplysninger (or only a late one). Unknown: it carried neither
 * (the stay began before the gateway, or its messages went another way), or no patient key.
 */
export function preconditionsOf(
  notice: { patientKey: string | null; bydel: string; firstAt: string },
  prior: PriorRow[],
  calendar: WorkingCalendar,
): Preconditions {
  if (notice.patientKey === null) return { status: 'unknown', missing: [] };
  const before = prior.filter((p) => p.patientKey === notice.patientKey && p.createdAt < notice.firstAt).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  const admission = before.filter((p) => p.msgType === 'LOG_INNLAGT').at(-1);
  const sent = before.filter((p) => p.msgType === 'HELSEOPPL_SOKNAD' && p.bydel === notice.bydel && (!admission || p.createdAt >= admission.createdAt));
  if (sent.length === 0) return admission ? { status: 'missing', missing: ['helseopplysninger'] } : { status: 'unknown', missing: [] };
  if (admission) {
    const admittedAt = (admission.eventTime && !isDateOnly(admission.eventTime) && calendar.parseLocal(admission.eventTime)) || new Date(admission.createdAt);
    if (new Date(sent[0].createdAt).getTime() - admittedAt.getTime() > 24 * 3600_000) return { status: 'missing', missing: ['helseopplysninger-within-24h'] };
  }
  return { status: 'met', missing: [] };
}

export interface OvertidRow {
  bydel: string;
  notices: number;
  answeredWithinDeadline: number;
  /** working minutes from notice to answer, over answered notices (nearest rank) */
  medianAnswerWorkingMinutes: number | null;
  p90AnswerWorkingMinutes: number | null;
  /** neither answered nor withdrawn */
  unanswered: number;
  avmeldt: number;
  overtidigeDogn: number;
  /** episodes notified before the period that still count døgn in it */
  carriedOver: number;
  /** døgn inside the period, over the period's notices and the carried-over episodes */
  candidateDogn: number;
  payableDogn: number;
  unsettledDogn: number;
  /** episodes (of the above) whose preconditions are missing, or cannot be told */
  preconditionsMissing: number;
  preconditionsUnknown: number;
  /** the indicators Helsedirektoratet's report gives nationally, in percent of the period's notices (1 decimal) */
  sentDayPct: number | null;
  sentEveningPct: number | null;
  sentNightPct: number | null;
  avmeldtPct: number | null;
  diedPct: number | null;
  /** of the notices whose patient was discharged (LOG_UTSKREVET or LOG_DOD): time from the notice */
  discharged24hPct: number | null;
  discharged2to7dPct: number | null;
  discharged8to30dPct: number | null;
  dischargedOver30dPct: number | null;
  answeredWithinDeadlinePct: number | null;
}

/** Each indicator column and the national figure it stands beside. */
export const NATIONAL_COLUMNS: Partial<Record<keyof OvertidRow, NationalIndicator>> = {
  sentDayPct: 'sentDay',
  sentEveningPct: 'sentEvening',
  sentNightPct: 'sentNight',
  avmeldtPct: 'avmeldt',
  diedPct: 'died',
  discharged24hPct: 'discharged24h',
  discharged2to7dPct: 'discharged2to7d',
  discharged8to30dPct: 'discharged8to30d',
  dischargedOver30dPct: 'dischargedOver30d',
};

/** The national line, beside the bydeler: the report's percentages, nothing else. */
export function nationalRow(): Partial<OvertidRow> {
  return Object.fromEntries(Object.entries(NATIONAL_COLUMNS).map(([column, key]) => [column, NATIONAL[key as NationalIndicator].percent]));
}

/** Nearest-rank percentile: always a value that occurred, no interpolation. */
export function percentile(sorted: number[], p: number): number | null {
  return sorted.length === 0 ? null : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * Per bydel, sorted by code, then a total line `alle`. `entries` are the notices sent in the
 * period (their counts and indicators); `carriedOver` the episodes notified before it that still
 * count døgn in it (their døgn only).
 */
export function overtidReport(entries: LedgerEntry[], carriedOver: LedgerEntry[] = []): OvertidRow[] {
  const byBydel = new Map<string, { mine: LedgerEntry[]; carried: LedgerEntry[] }>();
  const slot = (b: string) => {
    const found = byBydel.get(b);
    if (found) return found;
    const fresh = { mine: [] as LedgerEntry[], carried: [] as LedgerEntry[] };
    byBydel.set(b, fresh);
    return fresh;
  };
  for (const e of entries) slot(e.bydel).mine.push(e);
  for (const e of carriedOver) slot(e.bydel).carried.push(e);
  const rows = [...byBydel].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([bydel, { mine, carried }]) => summarise(bydel, mine, carried));
  return byBydel.size > 0 ? [...rows, summarise('alle', entries, carriedOver)] : rows;
}

/** Candidate and payable døgn per ISO week (its Monday), over the lines' counted ranges. */
export function weeklyDogn(lines: LedgerEntry[]): { week: string; candidateDogn: number; payableDogn: number }[] {
  const weeks = new Map<string, { candidateDogn: number; payableDogn: number }>();
  const add = (range: [string, string] | null, key: 'candidateDogn' | 'payableDogn') => {
    if (!range) return;
    for (let d = DateTime.fromISO(range[0], { zone: 'UTC' }); isoDate(d) < range[1]; d = d.plus({ days: 1 })) {
      const monday = isoDate(d.startOf('week'));
      const w = weeks.get(monday) ?? { candidateDogn: 0, payableDogn: 0 };
      w[key] += 1;
      weeks.set(monday, w);
    }
  };
  for (const l of lines) {
    add(l.candidateRange, 'candidateDogn');
    add(l.payableRange, 'payableDogn');
  }
  return [...weeks].sort(([a], [b]) => a.localeCompare(b)).map(([week, w]) => ({ week, ...w }));
}

const pct = (part: number, whole: number) => (whole === 0 ? null : Math.round((1000 * part) / whole) / 10);

/** Time of day the notice was sent, in Helsedirektoratet's bands (Tabell 10): 08:00–16:00, 16:01–00:00, 00:01–07:59. */
export function sentBand(at: string, calendar: WorkingCalendar): 'day' | 'evening' | 'night' {
  const t = DateTime.fromISO(at, { zone: calendar.timeZone });
  const minute = t.hour * 60 + t.minute;
  return minute >= 480 && minute <= 960 ? 'day' : minute > 960 || minute === 0 ? 'evening' : 'night';
}

/** Hours from the notice to the discharge, in Tabell 15's bands (innen 24 timer, 2–7 dager, 8–30 dager, over 30 dager). */
function dischargeBand(e: LedgerEntry): '24h' | '2to7d' | '8to30d' | 'over30d' | null {
  if (e.dischargeHours === null || e.dischargeHours === undefined) return null;
  const h = e.dischargeHours;
  return h <= 24 ? '24h' : h <= 7 * 24 ? '2to7d' : h <= 30 * 24 ? '8to30d' : 'over30d';
}

function summarise(bydel: string, entries: LedgerEntry[], carried: LedgerEntry[]): OvertidRow {
  const minutes = entries.flatMap((e) => (e.answerWorkingMs === null ? [] : [Math.round(e.answerWorkingMs / 60000)])).sort((a, b) => a - b);
  const all = [...entries, ...carried];
  const sum = (f: (e: LedgerEntry) => number) => all.reduce((n, e) => n + f(e), 0);
  const count = (f: (e: LedgerEntry) => boolean) => entries.filter(f).length;
  const bands = entries.map((e) => e.sentBand);
  const discharged = entries.map(dischargeBand).filter((b) => b !== null);
  const inBand = (b: string) => pct(discharged.filter((d) => d === b).length, discharged.length);
  return {
    bydel,
    notices: entries.length,
    answeredWithinDeadline: count((e) => e.answeredWithinDeadline),
    medianAnswerWorkingMinutes: percentile(minutes, 50),
    p90AnswerWorkingMinutes: percentile(minutes, 90),
    unanswered: count((e) => e.answeredAt === null && e.avmeldtDate === null),
    avmeldt: count((e) => e.avmeldtDate !== null),
    overtidigeDogn: entries.reduce((n, e) => n + e.overtidigeDogn, 0),
    carriedOver: carried.length,
    candidateDogn: sum((e) => e.candidateDogn),
    payableDogn: sum((e) => e.payableDogn),
    unsettledDogn: sum((e) => e.unsettledDogn),
    preconditionsMissing: all.filter((e) => e.preconditions.status === 'missing').length,
    preconditionsUnknown: all.filter((e) => e.preconditions.status === 'unknown').length,
    sentDayPct: pct(bands.filter((b) => b === 'day').length, entries.length),
    sentEveningPct: pct(bands.filter((b) => b === 'evening').length, entries.length),
    sentNightPct: pct(bands.filter((b) => b === 'night').length, entries.length),
    avmeldtPct: pct(
      count((e) => e.avmeldtDate !== null),
      entries.length,
    ),
    diedPct: pct(
      count((e) => e.endedBy === 'død'),
      entries.length,
    ),
    discharged24hPct: inBand('24h'),
    discharged2to7dPct: inBand('2to7d'),
    discharged8to30dPct: inBand('8to30d'),
    dischargedOver30dPct: inBand('over30d'),
    answeredWithinDeadlinePct: pct(
      count((e) => e.answeredWithinDeadline),
      entries.length,
    ),
  };
}

export interface LedgerQuery {
  /** first and last local date (YYYY-MM-DD) of the period */
  from: string;
  to: string;
  now: Date;
  /** the bydel of a notice whose receiver was kept (no bydel stored): from the address register */
  bydelOfHerId: (herId: string) => string | undefined;
}

/** The ledger of a period: the notices sent in it, and the episodes notified before it that still count døgn in it. */
export interface PeriodLedger {
  entries: LedgerEntry[];
  carriedOver: LedgerEntry[];
}

/** Reads the notices sent in [from, to] and their follow-ups, and builds their ledger lines. */
export async function loadLedger(store: Store, calendar: WorkingCalendar, q: LedgerQuery): Promise<LedgerEntry[]> {
  return (await loadPeriodLedger(store, calendar, q)).entries;
}

const ENDING = ['LOG_AVMELDING', 'LOG_UTSKREVET', 'LOG_DOD'];

/**
 * Reads the notices sent in [from, to], and those sent before it whose episode had not ended by
 * its start, with their follow-ups, answers, settlements and the messages before them, and builds
 * their ledger lines; døgn are counted inside [from, to] (and not after today).
 */
export async function loadPeriodLedger(store: Store, calendar: WorkingCalendar, q: LedgerQuery): Promise<PeriodLedger> {
  const zone = calendar.timeZone;
  const startOf = (date: string) => DateTime.fromISO(date, { zone }).startOf('day');
  const fromAt = isoDateTime(startOf(q.from).toUTC());
  const untilAt = isoDateTime(startOf(q.to).plus({ days: 1 }).toUTC());
  const kysely = store.db.kysely;
  const notices = await kysely
    .selectFrom('messages as m')
    .leftJoin('expectations as e', (j) => j.onRef('e.message_id', '=', 'm.id').on('e.kind', '=', 'answer'))
    .select([
      'm.id',
      'm.msg_id',
      'm.bydel',
      'm.receiver_l1_her_id',
      'm.created_at',
      'm.event_time',
      'm.answer_state',
      'm.answered_at',
      'm.answer_msg_id',
      'm.patient_key',
      'm.conversation_id',
      'm.closed_by',
      'e.due_at',
    ])
    .where('m.direction', '=', 'out')
    .where('m.msg_type', '=', 'LOG_UTSKRIVNINGSKLAR')
    .where('m.state', 'not in', ['rejected', 'held'])
    .where('m.created_at', '<', untilAt)
    .where((eb) =>
      eb.or([
        eb('m.created_at', '>=', fromAt),
        // sent before the period: only while no avmelding, discharge or death of the patient was sent before it began
        eb.not(
          eb.exists(
            eb
              .selectFrom('messages as f')
              .select('f.id')
              .where('f.direction', '=', 'out')
              .where('f.msg_type', 'in', ENDING)
              .where('f.state', '<>', 'rejected')
              .whereRef('f.patient_key', '=', 'm.patient_key')
              .whereRef('f.created_at', '>', 'm.created_at')
              .where('f.created_at', '<', fromAt),
          ),
        ),
      ]),
    )
    .orderBy('m.created_at')
    .execute();
  if (notices.length === 0) return { entries: [], carriedOver: [] };
  const inForce = inForceNotices(notices);

  const keys = [...new Set(notices.map((n) => n.patient_key).filter((k): k is string => k !== null))];
  const conversations = [...new Set(notices.map((n) => n.conversation_id).filter((c): c is string => c !== null))];
  const followUps = await kysely
    .selectFrom('messages')
    .select(['msg_type', 'created_at', 'event_time', 'patient_key', 'conversation_id'])
    .where('direction', '=', 'out')
    .where('msg_type', 'in', [...ENDING, 'LOG_UTSKRIVNINGSKLAR'])
    .where('state', '<>', 'rejected')
    .where('created_at', '>', notices[0].created_at)
    .where((eb) => eb.or([eb('patient_key', 'in', keys.length ? keys : ['']), eb('conversation_id', 'in', conversations.length ? conversations : [''])]))
    .execute();
  // the stay's admission and the Helseopplysninger sent for it, for the preconditions
  const prior = keys.length
    ? await kysely
        .selectFrom('messages')
        .select(['msg_type', 'created_at', 'event_time', 'patient_key', 'bydel', 'receiver_l1_her_id'])
        .where('direction', '=', 'out')
        .where('msg_type', 'in', ['LOG_INNLAGT', 'HELSEOPPL_SOKNAD'])
        .where('state', 'not in', ['rejected', 'held'])
        .where('patient_key', 'in', keys)
        .where('created_at', '<', untilAt)
        .execute()
    : [];
  const ids = inForce.map(({ notice }) => notice.id);
  const answerIds = inForce.map(({ notice }) => notice.answer_msg_id).filter((a): a is string => a !== null);
  const answers = answerIds.length
    ? await kysely.selectFrom('messages').select(['msg_id', 'msg_type']).where('direction', '=', 'in').where('msg_id', 'in', answerIds).execute()
    : [];
  const laterEvents = await kysely
    .selectFrom('events')
    .select(['message_id', 'at', 'detail'])
    .where('event', '=', 'kommune-follow-up')
    .where('message_id', 'in', ids)
    .orderBy('at')
    .orderBy('id')
    .execute();
  const settlements = await kysely
    .selectFrom('overtid_settlements')
    .select(['message_id', 'offered_date', 'reason', 'at'])
    .where('message_id', 'in', ids)
    .orderBy('id')
    .execute();

  const today = calendar.localDate(q.now);
  const countUntil = isoDate(DateTime.fromISO(earlier(q.to, today)).plus({ days: 1 }));
  const window: DayWindow = { from: q.from, until: countUntil };
  const follow: FollowUpRow[] = followUps.map((f) => ({
    msgType: f.msg_type ?? '',
    createdAt: f.created_at,
    eventTime: f.event_time,
    patientKey: f.patient_key,
    conversationId: f.conversation_id,
  }));
  const bydelOf = (bydel: string | null, herId: string | null) => bydel ?? (herId && q.bydelOfHerId(herId)) ?? 'ukjent';
  const priorRows: PriorRow[] = prior.map((p) => ({
    msgType: p.msg_type ?? '',
    createdAt: p.created_at,
    eventTime: p.event_time,
    patientKey: p.patient_key,
    bydel: bydelOf(p.bydel, p.receiver_l1_her_id),
  }));
  const answerType = new Map(answers.map((a) => [a.msg_id, a.msg_type]));
  const laterMessage = new Map<number, { at: string; msgType: string | null }>();
  for (const ev of laterEvents) if (!laterMessage.has(ev.message_id)) laterMessage.set(ev.message_id, { at: ev.at, msgType: msgTypeOf(ev.detail) });
  const settled = new Map(settlements.map((r) => [r.message_id, { offeredDate: r.offered_date, reason: r.reason, at: r.at }]));

  const lines = inForce.map(({ notice: n, firstNoticeAt }) => {
    const bydel = bydelOf(n.bydel, n.receiver_l1_her_id);
    const entry = ledgerEntry(
      {
        msgId: n.msg_id,
        bydel,
        createdAt: n.created_at,
        firstNoticeAt,
        eventTime: n.event_time,
        answeredAt: n.answer_state === 'answered' ? n.answered_at : null,
        answerDueAt: n.due_at ?? n.created_at,
        patientKey: n.patient_key,
        conversationId: n.conversation_id,
        closedBy: n.closed_by,
        answerMsgType: (n.answer_msg_id && answerType.get(n.answer_msg_id)) ?? null,
        laterKommuneMessage: laterMessage.get(n.id) ?? null,
        settlement: settled.get(n.id) ?? null,
        preconditions: preconditionsOf({ patientKey: n.patient_key, bydel, firstAt: firstNoticeAt ?? n.created_at }, priorRows, calendar),
      },
      follow,
      calendar,
      countUntil,
      window,
    );
    const leftAt = leavingTime(entry, n.patient_key, n.conversation_id, n.created_at, follow, calendar);
    return {
      ...entry,
      noticeInPeriod: n.created_at >= fromAt,
      sentBand: sentBand(n.created_at, calendar),
      dischargeHours: leftAt === null ? null : (leftAt.getTime() - new Date(n.created_at).getTime()) / 3600_000,
    };
  });
  return {
    entries: lines.filter((l) => l.noticeInPeriod),
    // an episode from before the period is in it only while it counts døgn in it
    carriedOver: lines.filter((l) => !l.noticeInPeriod && (l.episodeOpen || (l.endedDate !== null && l.endedDate > q.from))),
  };
}

const msgTypeOf = (detail: string | null): string | null => {
  try {
    const parsed = detail ? (JSON.parse(detail) as { msgType?: unknown }) : {};
    return typeof parsed.msgType === 'string' ? parsed.msgType : null;
  } catch {
    return null;
  }
};

/** When the patient left (LOG_UTSKREVET or LOG_DOD of the episode): its event time, else when it was sent. */
function leavingTime(
  entry: LedgerEntry,
  patientKey: string | null,
  conversationId: string | null,
  createdAt: string,
  followUps: FollowUpRow[],
  calendar: WorkingCalendar,
): Date | null {
  if (entry.dischargeDate === null) return null;
  const mine = episode({ patientKey, conversationId, createdAt } as NoticeRow, followUps);
  const leaving = mine.find((f) => f.msgType === 'LOG_UTSKREVET' || f.msgType === 'LOG_DOD');
  if (!leaving) return null;
  const own = leaving.eventTime && !isDateOnly(leaving.eventTime) ? calendar.parseLocal(leaving.eventTime) : undefined;
  return own ?? new Date(leaving.createdAt);
}

/** Closed so that the notice counts for nothing: withdrawn by a cancellation, or rejected by the bydel (no valid notice). */
const VOID = new Set(['cancellation', 'apprec:rejected']);

interface NoticeSelected {
  id: number;
  msg_id: string;
  bydel: string | null;
  receiver_l1_her_id: string | null;
  created_at: string;
  patient_key: string | null;
  closed_by: string | null;
  /** the answer wait's deadline; null: a cancellation (Forsendelsesstatus C), which waits for no answer */
  due_at: string | null;
}

/**
 * The notices that count, in time order: not cancellations, not void; a notice sent again for the
 * same stay stands for the ones it superseded, counted from the first of them.
 */
function inForceNotices<T extends NoticeSelected>(notices: T[]): { notice: T; firstNoticeAt?: string }[] {
  const superseded = new Map<string, string>();
  const stayOf = (n: T) => `${n.patient_key}|${n.bydel ?? n.receiver_l1_her_id}`;
  const counted: { notice: T; firstNoticeAt?: string }[] = [];
  for (const n of notices) {
    if (n.due_at === null || (n.closed_by !== null && VOID.has(n.closed_by))) continue;
    if (n.closed_by === 'superseded') {
      if (n.patient_key !== null && !superseded.has(stayOf(n))) superseded.set(stayOf(n), n.created_at);
      continue;
    }
    const first = n.patient_key !== null ? superseded.get(stayOf(n)) : undefined;
    if (first) superseded.delete(stayOf(n));
    counted.push(first ? { notice: n, firstNoticeAt: first } : { notice: n });
  }
  return counted;
}
