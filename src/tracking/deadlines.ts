// The deadline rules (DESIGN §3 C, §4.4): which alert an overdue expectation raises, how loud,
// when it is repeated, and what it says. Pure decisions over stored metadata; the repository
// applies them and the scheduler runs them. Nothing here reads patient data, so nothing here
// can put it in an alert.
import { DateTime } from 'luxon';
import { durationMs, type GatewayConfig } from '../config/config.js';
import { EVENTS, type EventId } from '../observability/events.js';
import { type Alert, type AlertKind, buildAlert } from './alerts.js';
import type { NewExpectation } from './store.js';
import { WorkingCalendar } from './workingTime.js';

/** What an expectation row can wait for; `apprec-rejected` rows record a rejection already raised. */
export type ConditionKind = NewExpectation['kind'] | 'apprec-rejected' | 'transport-error';

/** The stored facts an alert is built from: expectation and message metadata, never content. */
export interface ConditionContext {
  expectationId: number;
  kind: ConditionKind;
  dueAt: string;
  alertId: string | null;
  reminders: number;
  resolvedBy: string | null;
  messageId: number;
  msgId: string;
  msgType: string | null;
  conversationId: string | null;
  bydel: string | null;
  receiverHerId: string | null;
  genDate: string | null;
  createdAt: string;
  /** JSON list of { code, text } from a rejecting AppRec */
  appRecErrors: string | null;
  /** JSON list of the ebMS error codes of a received MessageError */
  transportErrors: string | null;
  /** transport-ack: how often the message was resent */
  resends?: number;
}

export type Transition = 'firing' | 'reminder' | 'resolved';

interface Rule {
  alert: AlertKind;
  eventId: EventId;
  severity: Alert['severity'];
  /** repeated while the condition stays open; a rejection is a single event */
  remind: boolean;
  /** why the alert fires, in one sentence of metadata */
  reason: (c: ConditionContext, due: string) => string;
}

const receiver = (c: ConditionContext) => (c.bydel ? `bydel ${c.bydel}` : `HER-id ${c.receiverHerId ?? 'unknown'}`);

export const RULES: Record<ConditionKind, Rule> = {
  answer: {
    alert: 'utskrivningsklar-unanswered',
    eventId: EVENTS.alertUnanswered,
    severity: 'warning',
    remind: true,
    reason: (c, due) => `The kommune (${receiver(c)}) has not answered the utskrivningsklar notice; the answer was due ${due}.`,
  },
  innleggelsesrapport: {
    alert: 'innleggelsesrapport-missing',
    eventId: EVENTS.alertInnleggelsesrapportMissing,
    severity: 'warning',
    remind: true,
    reason: (c, due) => `No Innleggelsesrapport from ${receiver(c)} for the admission notice; it was due ${due}.`,
  },
  apprec: {
    alert: 'apprec-missing',
    eventId: EVENTS.alertAppRecMissing,
    severity: 'warning',
    remind: true,
    reason: (c, due) => `No AppRec from ${receiver(c)} for ${c.msgType ?? 'the message'}; it was due ${due}.`,
  },
  'apprec-rejected': {
    alert: 'apprec-rejected',
    eventId: EVENTS.alertAppRecRejected,
    severity: 'critical',
    remind: false,
    reason: (c) => `${receiver(c)} rejected ${c.msgType ?? 'the message'} with AppRec status 2 (Avvist)${errorCodes(c)}; handle it manually.`,
  },
  'transport-ack': {
    alert: 'transport-ack-missing',
    eventId: EVENTS.alertTransportAckMissing,
    severity: 'warning',
    remind: true,
    reason: (c, due) =>
      `No ebXML transport acknowledgment from ${receiver(c)}; it was due ${due}${c.resends ? `, after ${c.resends} resends with the same eb:MessageId; resending has stopped` : ''}.`,
  },
  'transport-error': {
    alert: 'transport-error',
    eventId: EVENTS.alertTransportError,
    severity: 'critical',
    remind: false,
    reason: (c) =>
      `The message handler of ${receiver(c)} refused ${c.msgType ?? 'the message'} with an ebXML MessageError${ebmsCodes(c)}: it was not delivered; check the partner's certificate and agreement, then resend it.`,
  },
  routing: {
    alert: 'unroutable',
    eventId: EVENTS.alertUnroutable,
    severity: 'warning',
    remind: true,
    reason: () => 'The message is held for manual routing: no rule could decide the bydel.',
  },
  certificate: {
    alert: 'receiver-certificate',
    eventId: EVENTS.alertReceiverCertificate,
    severity: 'warning',
    remind: true,
    reason: (c) =>
      `The message is held: the address register has no usable encryption certificate for ${receiver(c)}; it leaves when the register has one, or when ops route or release it.`,
  },
  redirect: {
    alert: 'wrong-receiver',
    eventId: EVENTS.alertWrongReceiver,
    severity: 'warning',
    remind: true,
    reason: (c) =>
      `${receiver(c)} says it is not the receiver of ${c.msgType ?? 'the message'} (DIALOG_AVVIK, feil adressat): send it to the right bydel with \`plo-gateway route ${c.msgId} --bydel <code> --resend\`.`,
  },
};

/** Only the 8221 codes: an AppRec's error texts are free text from another system. */
const errorCodes = (c: ConditionContext) => codesIn(c.appRecErrors, (e) => (e as { code?: unknown } | null)?.code, /^[A-Z]\d{2}$/);

/** Only ebMS error code names (ebMS 2.0 §4.2.3.4, e.g. SecurityFailure); the descriptions are another system's free text. */
const ebmsCodes = (c: ConditionContext) => codesIn(c.transportErrors, (e) => e, /^[A-Za-z]{1,40}$/);

/** ` (A, B)` for the codes in a stored JSON list that have the shape of a code; '' for none. */
function codesIn(json: string | null, code: (entry: unknown) => unknown, shape: RegExp): string {
  try {
    const codes = (JSON.parse(json ?? '[]') as unknown[]).map(code).filter((x): x is string => typeof x === 'string' && shape.test(x));
    return codes.length > 0 ? ` (${codes.join(', ')})` : '';
  } catch {
    return '';
  }
}

/** A `resolved_by` is a code such as LOG_AVMELDING or apprec:ok; anything else is not repeated. */
const SAFE_CODE = /^[A-Za-z0-9_:.-]{1,40}$/;

/** Never repeat an alert at the end of a working period within this long of the previous one. */
const REMINDER_MIN_GAP_MS = 60 * 60 * 1000;

export interface AlertPolicy {
  calendar: WorkingCalendar;
  /** 'end-of-working-day' or a fixed interval */
  reminder: 'end-of-working-day' | { everyMs: number };
  /** AppRec 1.1 §3.3.6: no AppRec this long after GenDate counts as negative */
  appRecNegativeAfterMs: number;
  /** reliable messaging out: resends of an unacknowledged message before its alert, and their interval */
  transportRetry?: { count: number; intervalMs: number };
}

export function alertPolicy(config: GatewayConfig): AlertPolicy {
  const { reminder } = config.alerts;
  return {
    calendar: workingCalendar(config),
    reminder: reminder === 'end-of-working-day' ? reminder : { everyMs: durationMs(reminder) },
    appRecNegativeAfterMs: durationMs(config.tracking.deadlines.appRecNegativeAfter),
    transportRetry: { count: config.tracking.transportRetry.count, intervalMs: durationMs(config.tracking.transportRetry.interval) },
  };
}

const calendars = new WeakMap<object, WorkingCalendar>();

/** One calendar per configuration: building one loads the holiday rules. */
export function workingCalendar(config: GatewayConfig): WorkingCalendar {
  const key = config.tracking.workingTime;
  let calendar = calendars.get(key);
  if (!calendar) {
    calendar = new WorkingCalendar(key);
    calendars.set(key, calendar);
  }
  return calendar;
}

/** What the reminder schedule depends on. */
export type ReminderSubject = Pick<ConditionContext, 'kind' | 'genDate' | 'createdAt'>;

/** When a missing AppRec counts as negative: GenDate (local time as sent) + 96 h by default. */
export function appRecNegativeAt(c: ReminderSubject, policy: AlertPolicy): Date {
  const sent = (c.genDate && policy.calendar.parseLocal(c.genDate)) || new Date(c.createdAt);
  return new Date(sent.getTime() + policy.appRecNegativeAfterMs);
}

/** When to repeat a firing alert that was last sent at `last`; null when it is never repeated. */
export function nextReminderAt(c: ReminderSubject, last: Date, policy: AlertPolicy): Date | null {
  if (!RULES[c.kind].remind) return null;
  const regular =
    policy.reminder === 'end-of-working-day'
      ? policy.calendar.periodAtOrAfter(new Date(last.getTime() + REMINDER_MIN_GAP_MS)).end
      : new Date(last.getTime() + policy.reminder.everyMs);
  // The 96-hour point is an escalation of its own: it goes out when it is reached.
  if (c.kind === 'apprec') {
    const negative = appRecNegativeAt(c, policy);
    if (negative > last && negative < regular) return negative;
  }
  return regular;
}

function severityAt(c: ConditionContext, now: Date, policy: AlertPolicy): Alert['severity'] {
  // resent (as the CPA or tracking.transportRetry allow) and still unacknowledged: the partner's handler is not taking messages
  if (c.kind === 'transport-ack' && (c.resends ?? 0) > 0) return 'critical';
  return c.kind === 'apprec' && now >= appRecNegativeAt(c, policy) ? 'critical' : RULES[c.kind].severity;
}

const localTime = (iso: string, policy: AlertPolicy) => DateTime.fromISO(iso, { zone: policy.calendar.timeZone }).toFormat('yyyy-MM-dd HH:mm ZZZZ');

function text(transition: Transition, c: ConditionContext, now: Date, policy: AlertPolicy): string {
  const reason = RULES[c.kind].reason(c, localTime(c.dueAt, policy));
  if (transition === 'resolved') {
    const by = c.resolvedBy && SAFE_CODE.test(c.resolvedBy) ? ` by ${c.resolvedBy}` : '';
    return `Resolved${by}. It had fired because: ${reason}`;
  }
  const negative =
    c.kind === 'apprec' && severityAt(c, now, policy) === 'critical'
      ? ' No AppRec within 96 hours of GenDate: treat it as negative (AppRec 1.1 §3.3.6) and follow up manually.'
      : '';
  return transition === 'reminder' ? `Still open (reminder ${c.reminders + 1}). ${reason}${negative}` : `${reason}${negative}`;
}

/** The alert for one transition of one condition (DESIGN §4.4); only metadata goes in. */
export function conditionAlert(transition: Transition, c: ConditionContext, now: Date, policy: AlertPolicy): Alert {
  const rule = RULES[c.kind];
  const alert = buildAlert({
    kind: rule.alert,
    state: transition === 'resolved' ? 'resolved' : 'firing',
    // A resolution keeps the severity, so it reaches whoever received the firing alert.
    severity: severityAt(c, now, policy),
    eventId: rule.eventId,
    msgId: c.msgId,
    conversationId: c.conversationId ?? undefined,
    msgType: c.msgType ?? undefined,
    bydel: c.bydel ?? undefined,
    receiverHerId: c.receiverHerId ?? undefined,
    dueAt: c.dueAt,
    firedAt: now,
    text: text(transition, c, now, policy),
  });
  if (transition === 'firing') return alert;
  return { ...alert, firingId: c.alertId ?? undefined, ...(transition === 'reminder' ? { reminder: c.reminders + 1 } : {}) };
}
