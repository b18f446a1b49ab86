// The overtid ledger: for each utskrivningsklar notice, when it went out, when (and whether) the
// kommune answered, whether it was withdrawn (avmelding), when the patient left (discharge or
// death), and how many overtidige døgn that makes (README "Overtidige døgn"). It is computed from
// the message metadata the gateway keeps anyway, so nothing extra is written on the hot path.
import { DateTime } from 'luxon';
import type { MsgHeadModel } from '../mapping/model.js';
import { isoDate, isoDateTime } from '../shared/dates.js';
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
  overtidigeDogn: number;
  /** nothing has ended the count yet: it ran to the end of the report */
  open: boolean;
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

/**
 * One notice's ledger line. `countUntil` is the first local date not counted when nothing has
 * ended the stay yet (the day after the report period, or after today).
 */
export function ledgerEntry(notice: NoticeRow, followUps: FollowUpRow[], calendar: WorkingCalendar, countUntil: string): LedgerEntry {
  const mine = episode(notice, followUps);
  const dateOf = (f: FollowUpRow | undefined) => (f ? (f.eventTime && localDateOf(f.eventTime, calendar)) || calendar.localDate(new Date(f.createdAt)) : null);
  const avmeldtDate = dateOf(mine.find((f) => f.msgType === 'LOG_AVMELDING'));
  const dischargeDate = dateOf(mine.find((f) => f.msgType === 'LOG_UTSKREVET' || f.msgType === 'LOG_DOD'));
  const noticeDate = calendar.localDate(new Date(notice.firstNoticeAt ?? notice.createdAt));
  const utskrivningsklarDate = (notice.eventTime && localDateOf(notice.eventTime, calendar)) || noticeDate;
  const answerDate = notice.answeredAt ? calendar.localDate(new Date(notice.answeredAt)) : null;

  // Payment runs from the day the patient is utskrivningsklar and the kommune is notified,
  // to the day the kommune answers, the notice is withdrawn or the patient leaves (that day
  // itself not counted, as a liggedøgn is counted).
  const start = later(utskrivningsklarDate, noticeDate);
  const end = earliest([answerDate, avmeldtDate, dischargeDate]);
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
    overtidigeDogn: Math.max(0, daysBetween(start, end ?? countUntil)),
    open: end === null,
  };
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
}

/** Nearest-rank percentile: always a value that occurred, no interpolation. */
export function percentile(sorted: number[], p: number): number | null {
  return sorted.length === 0 ? null : sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Per bydel, sorted by code, then a total line `alle`. */
export function overtidReport(entries: LedgerEntry[]): OvertidRow[] {
  const byBydel = new Map<string, LedgerEntry[]>();
  for (const e of entries) byBydel.set(e.bydel, [...(byBydel.get(e.bydel) ?? []), e]);
  const rows = [...byBydel].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([bydel, mine]) => summarise(bydel, mine));
  return entries.length > 0 ? [...rows, summarise('alle', entries)] : rows;
}

function summarise(bydel: string, entries: LedgerEntry[]): OvertidRow {
  const minutes = entries.flatMap((e) => (e.answerWorkingMs === null ? [] : [Math.round(e.answerWorkingMs / 60000)])).sort((a, b) => a - b);
  return {
    bydel,
    notices: entries.length,
    answeredWithinDeadline: entries.filter((e) => e.answeredWithinDeadline).length,
    medianAnswerWorkingMinutes: percentile(minutes, 50),
    p90AnswerWorkingMinutes: percentile(minutes, 90),
    unanswered: entries.filter((e) => e.answeredAt === null && e.avmeldtDate === null).length,
    avmeldt: entries.filter((e) => e.avmeldtDate !== null).length,
    overtidigeDogn: entries.reduce((sum, e) => sum + e.overtidigeDogn, 0),
  };
}

export interface LedgerQuery {
  /** first and last local date (YYYY-MM-DD) of notices to include */
  from: string;
  to: string;
  now: Date;
  /** the bydel of a notice whose receiver was kept (no bydel stored): from the address register */
  bydelOfHerId: (herId: string) => string | undefined;
}

/** Reads the notices sent in [from, to] and their follow-ups, and builds their ledger lines. */
export async function loadLedger(store: Store, calendar: WorkingCalendar, q: LedgerQuery): Promise<LedgerEntry[]> {
  const zone = calendar.timeZone;
  const startOf = (date: string) => DateTime.fromISO(date, { zone }).startOf('day');
  const fromAt = isoDateTime(startOf(q.from).toUTC());
  const untilAt = isoDateTime(startOf(q.to).plus({ days: 1 }).toUTC());
  const kysely = store.db.kysely;
  const notices = await kysely
    .selectFrom('messages as m')
    .leftJoin('expectations as e', (j) => j.onRef('e.message_id', '=', 'm.id').on('e.kind', '=', 'answer'))
    .select([
      'm.msg_id',
      'm.bydel',
      'm.receiver_l1_her_id',
      'm.created_at',
      'm.event_time',
      'm.answer_state',
      'm.answered_at',
      'm.patient_key',
      'm.conversation_id',
      'm.closed_by',
      'e.due_at',
    ])
    .where('m.direction', '=', 'out')
    .where('m.msg_type', '=', 'LOG_UTSKRIVNINGSKLAR')
    .where('m.state', 'not in', ['rejected', 'held'])
    .where('m.created_at', '>=', fromAt)
    .where('m.created_at', '<', untilAt)
    .orderBy('m.created_at')
    .execute();
  if (notices.length === 0) return [];
  const inForce = inForceNotices(notices);

  const keys = [...new Set(notices.map((n) => n.patient_key).filter((k): k is string => k !== null))];
  const conversations = [...new Set(notices.map((n) => n.conversation_id).filter((c): c is string => c !== null))];
  const followUps = await kysely
    .selectFrom('messages')
    .select(['msg_type', 'created_at', 'event_time', 'patient_key', 'conversation_id'])
    .where('direction', '=', 'out')
    .where('msg_type', 'in', ['LOG_AVMELDING', 'LOG_UTSKREVET', 'LOG_DOD', 'LOG_UTSKRIVNINGSKLAR'])
    .where('state', '<>', 'rejected')
    .where('created_at', '>', notices[0].created_at)
    .where((eb) => eb.or([eb('patient_key', 'in', keys.length ? keys : ['']), eb('conversation_id', 'in', conversations.length ? conversations : [''])]))
    .execute();

  const today = calendar.localDate(q.now);
  const countUntil = isoDate(DateTime.fromISO(earlier(q.to, today)).plus({ days: 1 }));
  const follow: FollowUpRow[] = followUps.map((f) => ({
    msgType: f.msg_type ?? '',
    createdAt: f.created_at,
    eventTime: f.event_time,
    patientKey: f.patient_key,
    conversationId: f.conversation_id,
  }));
  return inForce.map(({ notice: n, firstNoticeAt }) =>
    ledgerEntry(
      {
        msgId: n.msg_id,
        bydel: n.bydel ?? (n.receiver_l1_her_id && q.bydelOfHerId(n.receiver_l1_her_id)) ?? 'ukjent',
        createdAt: n.created_at,
        firstNoticeAt,
        eventTime: n.event_time,
        answeredAt: n.answer_state === 'answered' ? n.answered_at : null,
        answerDueAt: n.due_at ?? n.created_at,
        patientKey: n.patient_key,
        conversationId: n.conversation_id,
      },
      follow,
      calendar,
      countUntil,
    ),
  );
}

/** Closed so that the notice counts for nothing: withdrawn by a cancellation, or rejected by the bydel (no valid notice). */
const VOID = new Set(['cancellation', 'apprec:rejected']);

interface NoticeSelected {
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
