// The outcomes both flows build the same way: a rejection, a repeat of a MsgId, the same content
// under a new MsgId. Pure functions from what arrived to what must be written.
import type { StageError } from '../mapping/model.js';
import type { NewOutboxItem } from '../outbox/items.js';
import type { Stage } from '../shared/vocabulary.js';
import type { MessageRow } from '../tracking/db.js';
import { type Outcome, outcome, type StageLine } from '../tracking/outcome.js';
import type { NewEvent, NewMessage, NewPayload } from '../tracking/store.js';

/** A delivery as it came off a queue. */
export interface Arrival {
  body: Buffer;
  contentType?: string;
  redelivered: boolean;
}

export const originalPayload = (a: Arrival): NewPayload => ({ kind: 'original', content_type: a.contentType ?? 'application/octet-stream', body: a.body });

export const receivedEvent = (a: Arrival, framing: string, extra: Record<string, unknown> = {}): NewEvent => ({
  stage: 'receive',
  event: 'received',
  detail: { framing, redelivered: a.redelivered, ...extra },
});

/** A MsgId this sender sent before, finished with: only its timeline notes the repeat. */
export function duplicateOf(existing: MessageRow, log: StageLine): Outcome<'duplicate'> {
  return outcome(
    'duplicate',
    { existing: existing.id },
    { ...log, msgId: existing.msg_id, type: existing.msg_type ?? undefined },
    {
      events: [{ stage: 'dedupe', event: 'duplicate-ignored' }],
    },
  );
}

/** The same content its sender already sent under another MsgId: kept for the record (and a replay), never sent on. */
export function contentDuplicate(message: NewMessage, arrival: Arrival, framing: string, twin: MessageRow, log: StageLine): Outcome<'duplicate'> {
  return outcome(
    'duplicate',
    { insert: { ...message, state: 'duplicate' } },
    { ...log, msgId: message.msg_id, type: message.msg_type ?? undefined, decision: `duplicate content of ${twin.msg_id}`, of: twin.msg_id },
    {
      payloads: [originalPayload(arrival)],
      events: [receivedEvent(arrival, framing), { stage: 'dedupe', event: 'duplicate-content', detail: { of: twin.msg_id } }],
    },
  );
}

export interface Refusal {
  stage: Stage;
  error: StageError;
}

/**
 * A refused message: stored as rejected, its original, unchanged, to the DLQ (DESIGN §4.3), and a
 * negative AppRec when its sender is to be told (`receipt`).
 */
export function rejection(r: {
  message: NewMessage;
  arrival: Arrival;
  received: NewEvent;
  refusal: Refusal;
  dlq: NewOutboxItem;
  receipt?: NewOutboxItem;
  log: { event: string } & Record<string, unknown>;
}): Outcome<'rejected'> {
  const { code, reason } = r.refusal.error;
  return outcome(
    'rejected',
    { insert: { ...r.message, state: 'rejected', error_code: code, error_reason: reason } },
    {
      stage: r.refusal.stage,
      decision: `rejected ${code}`,
      code,
      reason,
      level: 'warn',
      msgId: r.message.msg_id,
      type: r.message.msg_type ?? undefined,
      ...r.log,
    },
    {
      payloads: [originalPayload(r.arrival)],
      events: [r.received, { stage: r.refusal.stage, event: 'rejected', detail: { code, reason, appRecSent: !!r.receipt } }],
      outbox: r.receipt ? [r.receipt, r.dlq] : [r.dlq],
    },
  );
}
