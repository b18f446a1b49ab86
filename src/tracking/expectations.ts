// What must come back for a delivered message, and by when (DESIGN §3 C). Receipts are due
// after plain durations; the kommune's answer to an utskrivningsklar notice is due after working
// time (the notice's clock only runs 08:00–15:00 on working days, by default).
import { createHmac } from 'node:crypto';
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { MsgHeadModel } from '../mapping/model.js';
import { type AlertPolicy, nextReminderAt } from './deadlines.js';
import type { NewExpectation } from './store.js';
import type { WorkingCalendar } from './workingTime.js';

type Tracking = GatewayConfig['tracking'];

/** Reliable messaging as the partner's CPA sets it (absent: HIS 1037's signed Acknowledgment, the configured resends). */
export interface ReliableMessaging {
  ackRequested: boolean;
  retries?: number;
  retryIntervalMs?: number;
}

/**
 * A cancellation (Forsendelsesstatus C) withdraws a notice: it awaits its receipts, but no
 * answer or report of its own. A message sent without eb:AckRequested awaits no Acknowledgment.
 */
export function expectationsFor(
  message: Pick<MsgHeadModel, 'type' | 'forsendelsesstatus'>,
  sentAt: Date,
  tracking: Tracking,
  calendar: WorkingCalendar,
  reliable?: ReliableMessaging,
): NewExpectation[] {
  const msgType = message.forsendelsesstatus === 'C' ? 'cancellation' : message.type;
  const after = (iso: string) => new Date(sentAt.getTime() + durationMs(iso));
  const d = tracking.deadlines;
  const list: NewExpectation[] = [];
  if (reliable?.ackRequested !== false) {
    const resend = reliable?.retries === undefined ? undefined : { limit: reliable.retries, intervalMs: reliable.retryIntervalMs };
    list.push({ kind: 'transport-ack', dueAt: after(d.transportAck), ...(resend ? { resend } : {}) });
  }
  list.push({ kind: 'apprec', dueAt: after(d.appRec) });
  if (msgType === 'LOG_UTSKRIVNINGSKLAR') list.push({ kind: 'answer', dueAt: calendar.addWorkingTime(sentAt, durationMs(d.answer)) });
  if (msgType === 'LOG_INNLAGT') list.push({ kind: 'innleggelsesrapport', dueAt: after(d.innleggelsesrapport) });
  return list;
}

/**
 * A held message waits for ops to route it. Its `unroutable` alert is published as it is held,
 * so the row is stored already firing: the scheduler then only reminds and, once the message is
 * routed, resolves.
 */
export function heldExpectation(kind: 'routing' | 'certificate', heldAt: Date, alertId: string, policy: AlertPolicy): NewExpectation {
  const nextAlertAt = nextReminderAt({ kind, genDate: null, createdAt: heldAt.toISOString() }, heldAt, policy);
  return { kind, dueAt: heldAt, firing: { alertId, nextAlertAt } };
}

const PATIENT_ID_TYPES = ['FNR', 'DNR', 'HNR', 'FHN'];

/**
 * A keyed hash of the patient's national id: lets an answer without ConversationRef be matched
 * to its notice, without storing the id itself in metadata.
 */
export function patientKey(model: MsgHeadModel, secret: string): string | null {
  const ident = model.patient?.idents.find((i) => PATIENT_ID_TYPES.includes(i.type));
  return ident ? createHmac('sha256', secret).update(ident.id.trim()).digest('hex') : null;
}
