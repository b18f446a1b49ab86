// What a message's processing decided, as a value: everything the decision writes (the message
// row, payloads, timeline, expectations, outbox items, and effects on other messages) and the
// stage line it logs. The flows, manual routing and the EPJ's AppRecs build these with pure
// functions; the recorder (recorder.ts) writes each in one transaction, then publishes.
import type { MsgHeadModel } from '../mapping/model.js';
import type { NewOutboxItem } from '../outbox/items.js';
import type { ExpectationKind } from '../shared/vocabulary.js';
import type { Correlating, Correlation } from './receipts.js';
import type { NewAudit } from './tables/audit.js';
import type { NewEvent } from './tables/events.js';
import type { NewExpectation } from './tables/expectations.js';
import type { MessageGuard, MessagePatch, NewMessage } from './tables/messages.js';
import type { NewPayload } from './tables/payloads.js';

export type OutcomeKind =
  /** hospital → bydel: signed and stored for the bydel */
  | 'delivered'
  /** waits for ops to decide the bydel */
  | 'held'
  /** refused: negative AppRec and dead letter */
  | 'rejected'
  /** seen before (MsgId or content): recorded, not sent again */
  | 'duplicate'
  /** bydel → hospital: handed to the EPJ */
  | 'forwarded'
  /** a transport signal recorded on the message it refers to */
  | 'correlated'
  /** the EPJ's AppRec for a bydel's message, on its way back */
  | 'returned'
  /** a held message routed by ops */
  | 'routed';

/** Where the outcome's message row comes from. */
export type MessageWrite =
  /** first seen: a new row (it conflicts, and nothing is written, if its dedupe key is taken) */
  | { insert: NewMessage }
  /** a row already stored takes the new outcome: only while `guard` holds */
  | { update: number; patch: MessagePatch; guard?: MessageGuard }
  /** a row already stored only gains events and outbox items */
  | { existing: number };

/** What an outcome changes beyond its own message, inside the same transaction. */
export type Effect =
  /** a receipt, answer or closing message recorded on what it refers to */
  | { effect: 'correlate'; correlation: Correlation; by: Correlating }
  /** an outgoing avmelding, utskrevet, død or cancellation ends the wait for the kommune's answer */
  /** what a delivered message does to earlier ones' waits (receipts.deliveryLinkOf) */
  | { effect: 'link-on-delivery'; model: MsgHeadModel; conversationId: string }
  /** the outcome's message no longer waits for this (with its firing alert resolved) */
  | { effect: 'resolve'; kind: ExpectationKind; by: string; alertResolved: boolean }
  /** another message (a bydel's DIALOG_AVVIK "feil adressat" names it) waits again: its expectation opened firing, its timeline noted */
  | { effect: 'raise-on'; messageId: number; expectation?: NewExpectation; events: NewEvent[] }
  /** the outcome's message delivered again (`route --resend`): the earlier delivery's open expectations closed as `by`, these opened */
  | { effect: 'supersede'; by: string; expectations: NewExpectation[] }
  | { effect: 'audit'; entry: NewAudit };

export interface StageLine {
  event: string;
  msgId?: string;
  type?: string;
  stage: string;
  decision: string;
  level?: 'info' | 'warn';
  [key: string]: unknown;
}

export interface Outcome<K extends OutcomeKind = OutcomeKind> {
  kind: K;
  message: MessageWrite;
  payloads: NewPayload[];
  events: NewEvent[];
  expectations: NewExpectation[];
  outbox: NewOutboxItem[];
  effects: Effect[];
  /** logged once the outcome is stored, with the message's MsgId, type and store id */
  log: StageLine;
}

/** An outcome with nothing but its row and its log line; builders add the rest. */
export function outcome<K extends OutcomeKind>(
  kind: K,
  message: MessageWrite,
  log: StageLine,
  parts: Partial<Omit<Outcome<K>, 'kind' | 'message' | 'log'>> = {},
): Outcome<K> {
  return { kind, message, payloads: [], events: [], expectations: [], outbox: [], effects: [], log, ...parts };
}
