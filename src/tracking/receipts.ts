// What comes back for a message the hospital sent, linked to it (DESIGN §3 B, REFERENCE §2, §4.2,
// §5.1): the ebXML transport Acknowledgment / MessageError, the bydel's AppRec, the kommune's
// answer to an utskrivningsklar notice (Tilbakemelding), and the Innleggelsesrapport a LOG_INNLAGT
// waits for; and what closes the wait for an answer (avmelding, utskrevet, død, cancellation).
//
// Finding the message is a read (`for…`), returning a typed Correlation; recording it (`apply`)
// runs inside the transaction that stores the incoming message, so the link, the expectation and
// the timeline commit together with it. Updates are conditional: the first AppRec and the first
// answer are final, a repeat only adds to the timeline.
import type { Kysely, Transaction } from 'kysely';
import { durationMs, type GatewayConfig } from '../config/config.js';
import { errorText } from '../mapping/apprec.js';
import type { AppRecModel, MsgHeadModel } from '../mapping/model.js';
import type { SignalMessage } from '../mapping/parse.js';
import type { AppRecStatus, ExpectationKind, MatchRule, Stage, TimelineEvent } from '../shared/vocabulary.js';
import type { MessageRow, Schema } from './db.js';
import type { StoreTransaction } from './store.js';
import { insertEvents, type NewEvent } from './tables/events.js';
import { resolveExpectation } from './tables/expectations.js';
import { type MessageGuard, type MessagePatch, updateMessage } from './tables/messages.js';

/** The outgoing message something refers to. */
export interface Target {
  id: number;
  msgId: string;
  msgType: string | null;
}

export type { AppRecStatus, MatchRule };

export type Correlation =
  | { kind: 'transport'; target: Target; state: 'acked' | 'error'; errorCodes: string[] }
  | { kind: 'apprec'; target: Target; status: AppRecStatus; errors: { code: string; text?: string }[] }
  | { kind: 'answer'; target: Target; rule: MatchRule }
  | { kind: 'innleggelsesrapport'; target: Target; rule: MatchRule }
  | { kind: 'close'; targets: Target[]; by: string }
  | { kind: 'none'; why: string };

/** The incoming message a correlation was found for: it goes on the target's timeline. */
export interface Correlating {
  msgId: string;
  msgType: string;
}

/** An incoming message the EPJ owes an AppRec for, and how it came (for the AppRec's envelope). */
export interface IncomingMessage {
  row: MessageRow;
  /** the eb:Service it came in, which the AppRec goes back in (HISD 1209) */
  service?: string;
}

type Executor = Kysely<Schema> | Transaction<Schema>;

const APPREC_STATUS: Record<string, AppRecStatus> = { '1': 'ok', '2': 'rejected', '3': 'partial' };

/** AppRec Status (code list 8258) → what the store records; undefined for a value not in the list. */
export const appRecStatusOf = (v: string): AppRecStatus | undefined => (Object.hasOwn(APPREC_STATUS, v) ? APPREC_STATUS[v] : undefined);

/** The two forms of the kommune's answer (REFERENCE §4.2), as MsgInfo/Type + Notat/TemaKodet "S/V". */
const ANSWER_FORMS: Record<string, string> = {
  DIALOG_NOTAT: '2.16.578.1.12.4.1.1.9155/1',
  DIALOG_HELSEFAGLIG: '2.16.578.1.12.4.1.1.7322/7',
};

/** Message types that end the wait for the kommune's answer (DESIGN §3 C). */
const CLOSING_TYPES = new Set(['LOG_AVMELDING', 'LOG_UTSKREVET', 'LOG_DOD']);

const NOTICE = 'LOG_UTSKRIVNINGSKLAR';

/**
 * A Tilbakemelding: matched on type and code only. The code is unambiguous, and a kommune EPJ
 * that sends DIALOG_NOTAT in the 1.1 namespace (KS tolerates it) still answered.
 */
export function isAnswer(m: MsgHeadModel): boolean {
  const code = ANSWER_FORMS[m.type];
  return code !== undefined && m.temaKodet.includes(code);
}

/** What a message closes the answer wait with, if anything: its type, or 'cancellation'. */
export function closesAnswerWait(m: MsgHeadModel): string | undefined {
  if (m.forsendelsesstatus === 'C') return 'cancellation';
  return CLOSING_TYPES.has(m.type) ? m.type : undefined;
}

const refsOf = (m: MsgHeadModel) => [m.conversationRef?.refToParent, m.conversationRef?.refToConversation].filter((r): r is string => !!r);
const targetOf = (r: Pick<MessageRow, 'id' | 'msg_id' | 'msg_type'>): Target => ({ id: r.id, msgId: r.msg_id, msgType: r.msg_type });
/** Was `row` sent to the party these HER-ids name (its bydel organisation or the service)? */
const sentTo = (row: Pick<MessageRow, 'receiver_l1_her_id' | 'receiver_l2_her_id'>, herIds: string[]) =>
  [row.receiver_l1_her_id, row.receiver_l2_her_id].some((h) => h !== null && herIds.includes(h));

export class Receipts {
  private readonly fallbackWindowMs: number;

  constructor(
    private readonly db: Kysely<Schema>,
    tracking: Pick<GatewayConfig['tracking'], 'answerFallbackWindow'>,
  ) {
    this.fallbackWindowMs = durationMs(tracking.answerFallbackWindow);
  }

  // ------------------------------------------------------------ finding

  /** ebXML Acknowledgment / MessageError → the message we sent under RefToMessageId, from that party. */
  async forSignal(signal: SignalMessage, senderHerId: string): Promise<Correlation> {
    const ref = signal.ebxml.refToMessageId;
    if (!ref) return { kind: 'none', why: 'the signal has no RefToMessageId' };
    const rows = await this.outgoing().where('ebxml_message_id', '=', ref).execute();
    const row = rows.find((r) => sentTo(r, [senderHerId]));
    if (!row) return { kind: 'none', why: `no message was sent to HER-id ${senderHerId} under ebXML MessageId ${ref}` };
    return {
      kind: 'transport',
      target: targetOf(row),
      state: signal.ebxml.signal === 'Acknowledgment' ? 'acked' : 'error',
      errorCodes: signal.errors.map((e) => e.code),
    };
  }

  /** AppRec → by OriginalMsgId/Id, and its Sender must name the original receiver (all its HER-ids). */
  async forAppRec(appRec: AppRecModel): Promise<Correlation> {
    const status = appRecStatusOf(appRec.status);
    if (!status) return { kind: 'none', why: `the AppRec status ${appRec.status} is not in code list 8258` };
    const rows = await this.outgoing().where('msg_id', '=', appRec.originalMsgId.id).execute();
    const row = rows.find((r) => [r.receiver_l1_her_id, r.receiver_l2_her_id].every((h) => h === null || appRec.senderHerIds.includes(h)));
    if (!row) return { kind: 'none', why: `no message ${appRec.originalMsgId.id} was sent to the AppRec's sender` };
    // DN is the code's display name; OT is free text from another system and stays in the payload.
    const errors = appRec.errors.map((e) => ({ code: e.code, text: errorText(e.code) ?? e.text }));
    return { kind: 'apprec', target: targetOf(row), status, errors };
  }

  /**
   * A business message from a bydel: the kommune's answer, an Innleggelsesrapport, or something
   * that closes the answer wait. Undefined when it replies to nothing we track.
   */
  async forMessage(
    m: MsgHeadModel,
    from: { herIds: string[]; patientKey: string | null; conversationId: string | null },
    now: Date,
  ): Promise<Correlation | undefined> {
    const closedBy = closesAnswerWait(m);
    if (closedBy) return this.forClose(m, closedBy, from.conversationId);
    if (isAnswer(m)) return this.forReply(m, NOTICE, 'answer', from, now);
    if (m.type === 'INNLEGGELSESRAPPORT') return this.forReply(m, 'LOG_INNLAGT', 'innleggelsesrapport', from, now);
    return undefined;
  }

  /**
   * The notices a closing message ends the wait for: those it refers to by ConversationRef, or
   * that share its conversation, and that are still waiting.
   */
  async forClose(m: MsgHeadModel, by: string, conversationId: string | null, db: Executor = this.db): Promise<Correlation> {
    const refs = refsOf(m);
    const rows = await this.outgoing(db)
      .where('msg_type', '=', NOTICE)
      .where('answer_state', 'is', null)
      .where((eb) => eb.or([eb('msg_id', 'in', [...refs, '']), eb('conversation_id', '=', conversationId ?? '')]))
      .execute();
    if (rows.length === 0) return { kind: 'none', why: 'no utskrivningsklar notice in this conversation is waiting for an answer' };
    return { kind: 'close', targets: rows.map(targetOf), by };
  }

  /**
   * The message `m` replies to: by ConversationRef (RefToParent or RefToConversation = its
   * MsgId), else the newest one still waiting, for the same patient, sent to the same bydel,
   * within the fallback window. Either way the reply must come from the party it was sent to.
   */
  private async forReply(
    m: MsgHeadModel,
    originalType: string,
    kind: 'answer' | 'innleggelsesrapport',
    from: { herIds: string[]; patientKey: string | null },
    now: Date,
  ): Promise<Correlation> {
    const refs = refsOf(m);
    if (refs.length > 0) {
      const rows = await this.outgoing().where('msg_type', '=', originalType).where('msg_id', 'in', refs).orderBy('id', 'desc').execute();
      const row = rows.find((r) => sentTo(r, from.herIds));
      if (row) return { kind, target: targetOf(row), rule: 'conversation-ref' };
    }
    if (!from.patientKey) return { kind: 'none', why: `no ${originalType} is referenced, and the message names no patient to match on` };
    const since = new Date(now.getTime() - this.fallbackWindowMs).toISOString();
    const rows = await this.outgoing()
      .where('msg_type', '=', originalType)
      .where('patient_key', '=', from.patientKey)
      .where('created_at', '>=', since)
      .where((eb) => eb.or([eb('receiver_l1_her_id', 'in', from.herIds), eb('receiver_l2_her_id', 'in', from.herIds)]))
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('expectations as e').select('e.id').whereRef('e.message_id', '=', 'messages.id').where('e.kind', '=', kind).where('e.state', '=', 'open'),
        ),
      )
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(1)
      .execute();
    if (rows.length === 0) return { kind: 'none', why: `no ${originalType} to this bydel for this patient is waiting within the fallback window` };
    return { kind, target: targetOf(rows[0]), rule: 'fallback' };
  }

  /** The incoming message an AppRec from the EPJ answers: its MsgId, from the party the AppRec goes to. */
  async incomingFor(appRec: AppRecModel): Promise<IncomingMessage | undefined> {
    if (appRec.receiverHerIds.length === 0) return undefined;
    const row = await this.db
      .selectFrom('messages')
      .selectAll()
      .where('direction', '=', 'in')
      .where('msg_id', '=', appRec.originalMsgId.id)
      .where('sender_her_id', 'in', appRec.receiverHerIds)
      .executeTakeFirst();
    if (!row) return undefined;
    const received = await this.db
      .selectFrom('events')
      .select('detail')
      .where('message_id', '=', row.id)
      .where('stage', '=', 'receive')
      .where('event', '=', 'received')
      .executeTakeFirst();
    const detail = received?.detail ? (JSON.parse(received.detail) as { ebxmlService?: unknown }) : {};
    return { row, service: typeof detail.ebxmlService === 'string' ? detail.ebxmlService : undefined };
  }

  // ------------------------------------------------------------ recording

  /** Records `c` on its target(s), inside the caller's transaction. */
  async apply(tx: StoreTransaction, c: Correlation, by: Correlating, now: Date): Promise<void> {
    const at = now.toISOString();
    const note = (id: number, stage: Stage, name: TimelineEvent, detail: Record<string, unknown>) => insertEvents(tx.trx, id, [event(stage, name, detail)], at);
    switch (c.kind) {
      case 'transport': {
        // A MessageError means the partner's handler refused it: the message was not delivered.
        const refused = c.state === 'error' ? { state: 'transport-error' as const, transport_errors: JSON.stringify(c.errorCodes) } : {};
        const first = await setOnce(tx, c.target.id, 'transport_state', { transport_state: c.state, transport_at: at, ...refused });
        await met(tx, c.target.id, 'transport-ack', `transport:${c.state}`);
        const name = first ? (c.state === 'acked' ? 'transport-acked' : 'transport-error') : 'transport-signal-repeated';
        return note(c.target.id, 'transport', name, { signalMessageId: by.msgId, state: c.state, errorCodes: c.errorCodes });
      }
      case 'apprec': {
        const errors = c.errors.length > 0 ? JSON.stringify(c.errors) : null;
        const first = await setOnce(tx, c.target.id, 'apprec_status', { apprec_status: c.status, apprec_at: at, apprec_errors: errors });
        await met(tx, c.target.id, 'apprec', `apprec:${c.status}`);
        // An AppRec is final (AppRec 1.1 §3.2): a second one is kept on the timeline only.
        return note(c.target.id, 'apprec', first ? `apprec-${c.status}` : 'apprec-repeated', { appRecId: by.msgId, status: c.status, errors: c.errors });
      }
      case 'answer': {
        const fields: MessagePatch = { answer_state: 'answered', answered_at: at, answer_msg_id: by.msgId, answer_rule: c.rule };
        const first = await setOnce(tx, c.target.id, 'answer_state', fields);
        await met(tx, c.target.id, 'answer', `answer:${c.rule}`);
        return note(c.target.id, 'answer', first ? 'answered' : 'answer-repeated', { answerMsgId: by.msgId, msgType: by.msgType, rule: c.rule });
      }
      case 'innleggelsesrapport':
        await met(tx, c.target.id, 'innleggelsesrapport', `innleggelsesrapport:${c.rule}`);
        return note(c.target.id, 'innleggelsesrapport', 'innleggelsesrapport-received', { msgId: by.msgId, rule: c.rule });
      case 'close':
        for (const target of c.targets) {
          await setOnce(tx, target.id, 'answer_state', { answer_state: 'closed', closed_by: c.by });
          await resolveExpectation(tx.trx, target.id, 'answer', { state: 'closed', by: c.by }, tx.now);
          await note(target.id, 'answer', 'wait-closed', { by: c.by, msgId: by.msgId, msgType: by.msgType });
        }
        return;
      case 'none':
        return;
    }
  }

  /**
   * The effect the outbound path records with a delivery: a LOG_AVMELDING, LOG_UTSKREVET,
   * LOG_DOD or cancellation ends the wait for the kommune's answer in its conversation.
   */
  async closeWaitOnDelivery(tx: StoreTransaction, m: MsgHeadModel, conversationId: string, messageId: number, now: Date): Promise<void> {
    const by = closesAnswerWait(m);
    if (!by) return;
    // Read in the caller's transaction: SQLite has one connection, and it is holding it.
    const closing = await this.forClose(m, by, conversationId, tx.trx);
    if (closing.kind === 'close') await this.apply(tx, closing, { msgId: m.msgId, msgType: m.type }, now);
    const detail = closing.kind === 'close' ? { msgIds: closing.targets.map((t) => t.msgId) } : {};
    await insertEvents(tx.trx, messageId, [event('correlate', closing.kind === 'close' ? 'closed-answer-wait' : 'nothing-to-close', detail)], tx.now);
  }

  // ------------------------------------------------------------ helpers

  /** Messages the hospital sent that reached the outbox (a rejected or held one has no ebXML MessageId). */
  private outgoing(db: Executor = this.db) {
    return db.selectFrom('messages').selectAll().where('direction', '=', 'out').where('ebxml_message_id', 'is not', null);
  }
}

/** Sets `fields` unless `column` is already set (the first receipt is final); true if this call set them. */
const setOnce = (tx: StoreTransaction, id: number, column: Extract<MessageGuard, { unset: string }>['unset'], fields: MessagePatch) =>
  updateMessage(tx.trx, id, fields, tx.now, { unset: column });

const met = (tx: StoreTransaction, messageId: number, kind: ExpectationKind, by: string) =>
  resolveExpectation(tx.trx, messageId, kind, { state: 'met', by }, tx.now);

function event(stage: Stage, name: TimelineEvent, detail: Record<string, unknown>): NewEvent {
  return { stage, event: name, detail };
}
