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
import type { AppRecStatus, ExpectationKind, ExpectationState, MatchRule, Stage, TimelineEvent } from '../shared/vocabulary.js';
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

/** How a closing message found the message whose waits it ends. */
export type LinkRule = 'conversation-ref' | 'conversation' | 'patient';

/** The waits a later message can end without meeting them. */
export type ClosableWait = Extract<ExpectationKind, 'answer' | 'innleggelsesrapport'>;

/** The delivered message that ends waits, as stored: what the patient link matches on. */
export interface ClosingMessage {
  id: number;
  patientKey: string | null;
  bydel: string | null;
  receiverL1: string | null;
  receiverL2: string | null;
  senderHerId: string | null;
}

export type Correlation =
  | { kind: 'transport'; target: Target; state: 'acked' | 'error'; errorCodes: string[] }
  | { kind: 'apprec'; target: Target; status: AppRecStatus; errors: { code: string; text?: string }[] }
  | { kind: 'answer'; target: Target; rule: MatchRule }
  | { kind: 'innleggelsesrapport'; target: Target; rule: MatchRule }
  | { kind: 'close'; targets: Target[]; by: string; link: LinkRule; waits: ClosableWait[] }
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

/** Message types that end the wait for the kommune's answer (DESIGN §3 C, Oslo procedure §4.5–4.7). */
const CLOSING_TYPES = new Set(['LOG_AVMELDING', 'LOG_UTSKREVET', 'LOG_DOD']);

const NOTICE = 'LOG_UTSKRIVNINGSKLAR';
const ADMISSION = 'LOG_INNLAGT';
/** Uttilstand (8431) 2: the patient died; LOG_UTSKREVET then ends the wait as a death */
const DIED = '2';

/**
 * A Tilbakemelding: matched on type and code only. The code is unambiguous, and a kommune EPJ
 * that sends DIALOG_NOTAT in the 1.1 namespace (KS tolerates it) still answered.
 */
export function isAnswer(m: MsgHeadModel): boolean {
  const code = ANSWER_FORMS[m.type];
  return code !== undefined && m.temaKodet.includes(code);
}

/** What a message the hospital sends does to the waits of messages sent before it. */
export type DeliveryLink =
  /** avmelding, utskrevet, død: the notice's wait for the kommune's answer ends (`by` names why) */
  | { does: 'close'; by: string }
  /** Forsendelsesstatus C: the message of this type it cancels is withdrawn, its waits end */
  | { does: 'cancel'; of: string }
  /** a notice sent again for the same stay: the earlier one's wait ends, this one's runs */
  | { does: 'supersede' }
  /** a LOG_INNLAGT: an Innleggelsesrapport that came before it meets its wait */
  | { does: 'meet-early-rapport' };

export function deliveryLinkOf(m: Pick<MsgHeadModel, 'type' | 'forsendelsesstatus' | 'uttilstand'>): DeliveryLink | undefined {
  if (m.forsendelsesstatus === 'C') return { does: 'cancel', of: m.type };
  if (m.type === 'LOG_UTSKREVET' && m.uttilstand === DIED) return { does: 'close', by: 'LOG_UTSKREVET:dod' };
  if (CLOSING_TYPES.has(m.type)) return { does: 'close', by: m.type };
  if (m.type === NOTICE) return { does: 'supersede' };
  if (m.type === ADMISSION) return { does: 'meet-early-rapport' };
  return undefined;
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
    const link = deliveryLinkOf(m);
    if (link?.does === 'close' || link?.does === 'cancel') return this.forClose(m, link, from.conversationId);
    if (isAnswer(m)) return this.forReply(m, NOTICE, 'answer', from, now);
    // the Oslo procedure §4.5: "Dette svaret kommer i form av dialogmelding 'svar på forespørsel'";
    // a svar answers many questions, so it counts only when it refers to the notice
    if (m.type === 'DIALOG_SVAR') return this.forReply(m, NOTICE, 'answer', from, now, { referenceOnly: true });
    if (m.type === 'INNLEGGELSESRAPPORT') return this.forReply(m, 'LOG_INNLAGT', 'innleggelsesrapport', from, now);
    return undefined;
  }

  /**
   * The messages whose waits a closing message (`link`) ends, and still open: those it refers to by
   * ConversationRef, else those that share its conversation, else (for a message the hospital
   * sent, `closing`) the open ones for the same patient, to the same bydel, from the same sender,
   * sent before it: the official LOG_AVMELDING and LOG_UTSKREVET samples carry no
   * ConversationRef, and EPJs send them so. The link that decided is recorded.
   */
  async forClose(
    m: MsgHeadModel,
    link: Extract<DeliveryLink, { does: 'close' | 'cancel' | 'supersede' }>,
    conversationId: string | null,
    closing?: ClosingMessage,
    db: Executor = this.db,
  ): Promise<Correlation> {
    const { type, waits, by } =
      link.does === 'cancel'
        ? { type: link.of, waits: link.of === ADMISSION ? (['innleggelsesrapport'] as ClosableWait[]) : (['answer'] as ClosableWait[]), by: 'cancellation' }
        : { type: NOTICE, waits: ['answer'] as ClosableWait[], by: link.does === 'close' ? link.by : 'superseded' };
    // a cancellation withdraws its message even when answered (it leaves the ledger); the others end what still waits
    const states: ExpectationState[] = link.does === 'cancel' ? ['open', 'met', 'closed'] : ['open'];
    const waiting = () =>
      this.outgoing(db)
        .where('msg_type', '=', type)
        .where('id', '<>', closing?.id ?? 0)
        .where((eb) => eb.or([eb('closed_by', 'is', null), eb('closed_by', '<>', 'cancellation')]))
        .where(({ exists, selectFrom }) =>
          exists(
            selectFrom('expectations as e')
              .select('e.id')
              .whereRef('e.message_id', '=', 'messages.id')
              .where('e.kind', 'in', waits)
              .where('e.state', 'in', states),
          ),
        );
    const found = (rows: MessageRow[], rule: LinkRule): Correlation | undefined =>
      rows.length > 0 ? { kind: 'close', targets: rows.map(targetOf), by, link: rule, waits } : undefined;
    const refs = refsOf(m);
    const byRef = refs.length > 0 ? found(await waiting().where('msg_id', 'in', refs).execute(), 'conversation-ref') : undefined;
    if (byRef) return byRef;
    const byConversation = conversationId ? found(await waiting().where('conversation_id', '=', conversationId).execute(), 'conversation') : undefined;
    if (byConversation) return byConversation;
    if (closing?.patientKey) {
      const { patientKey, bydel, receiverL1, senderHerId } = closing;
      const rows = await waiting()
        .where('patient_key', '=', patientKey)
        .where('id', '<', closing.id)
        .where((eb) => (senderHerId ? eb('sender_her_id', '=', senderHerId) : eb('sender_her_id', 'is', null)))
        .where((eb) => (bydel ? eb('bydel', '=', bydel) : eb('receiver_l1_her_id', '=', receiverL1 ?? '')))
        .orderBy('id')
        .execute();
      const byPatient = found(rows, 'patient');
      if (byPatient) return byPatient;
    }
    const what = type === NOTICE ? 'no utskrivningsklar notice' : `no ${type}`;
    return { kind: 'none', why: `${what} for this conversation or patient is waiting` };
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
    o: { referenceOnly?: boolean } = {},
  ): Promise<Correlation> {
    const refs = refsOf(m);
    if (refs.length > 0) {
      const rows = await this.outgoing().where('msg_type', '=', originalType).where('msg_id', 'in', refs).orderBy('id', 'desc').execute();
      const row = rows.find((r) => sentTo(r, from.herIds));
      if (row) return { kind, target: targetOf(row), rule: 'conversation-ref' };
    }
    if (o.referenceOnly) return { kind: 'none', why: `a ${m.type} answers a ${originalType} only when its ConversationRef names it` };
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
        if (first && c.status === 'rejected' && c.target.msgType === NOTICE) {
          // a notice the bydel rejected was no valid notice: nothing to answer, nothing owed for it
          await setOnce(tx, c.target.id, 'answer_state', { answer_state: 'closed', closed_by: 'apprec:rejected' });
          await resolveExpectation(tx.trx, c.target.id, 'answer', { state: 'closed', by: 'apprec:rejected' }, tx.now);
        }
        // An AppRec is final (AppRec 1.1 §3.2): a second one is kept on the timeline only.
        return note(c.target.id, 'apprec', first ? `apprec-${c.status}` : 'apprec-repeated', { appRecId: by.msgId, status: c.status, errors: c.errors });
      }
      case 'answer': {
        const fields: MessagePatch = { answer_state: 'answered', answered_at: at, answer_msg_id: by.msgId, answer_rule: c.rule };
        const first = await setOnce(tx, c.target.id, 'answer_state', fields);
        await met(tx, c.target.id, 'answer', `answer:${c.rule}`);
        return note(c.target.id, 'answer', first ? 'answered' : 'kommune-follow-up', { answerMsgId: by.msgId, msgType: by.msgType, rule: c.rule });
      }
      case 'innleggelsesrapport':
        await met(tx, c.target.id, 'innleggelsesrapport', `innleggelsesrapport:${c.rule}`);
        return note(c.target.id, 'innleggelsesrapport', 'innleggelsesrapport-received', { msgId: by.msgId, rule: c.rule });
      case 'close':
        for (const target of c.targets) {
          if (c.waits.includes('answer')) await setOnce(tx, target.id, 'answer_state', { answer_state: 'closed', closed_by: c.by });
          // withdrawn, answered or not: the ledger leaves it out
          if (c.by === 'cancellation') await updateMessage(tx.trx, target.id, { closed_by: c.by }, tx.now);
          for (const wait of c.waits) await resolveExpectation(tx.trx, target.id, wait, { state: 'closed', by: c.by }, tx.now);
          await note(target.id, c.waits.includes('answer') ? 'answer' : 'innleggelsesrapport', 'wait-closed', {
            by: c.by,
            link: c.link,
            msgId: by.msgId,
            msgType: by.msgType,
          });
        }
        return;
      case 'none':
        return;
    }
  }

  /**
   * The effect the outbound path records with a delivery (deliveryLinkOf): an avmelding,
   * utskrevet, død or cancellation ends the waits it closes, a notice sent again supersedes the
   * earlier one, a LOG_INNLAGT is met by a rapport that came first. Read and written in the
   * caller's transaction: SQLite has one connection, and it is holding it.
   */
  async linkOnDelivery(tx: StoreTransaction, m: MsgHeadModel, conversationId: string, messageId: number, now: Date): Promise<void> {
    const link = deliveryLinkOf(m);
    if (!link) return;
    const row = await tx.trx.selectFrom('messages').selectAll().where('id', '=', messageId).executeTakeFirstOrThrow();
    const closing: ClosingMessage = {
      id: row.id,
      patientKey: row.patient_key,
      bydel: row.bydel,
      receiverL1: row.receiver_l1_her_id,
      receiverL2: row.receiver_l2_her_id,
      senderHerId: row.sender_her_id,
    };
    const by = { msgId: m.msgId, msgType: m.type };
    if (link.does === 'meet-early-rapport') return this.meetEarlyRapport(tx, closing, by, now);
    const closed = await this.forClose(m, link, conversationId, closing, tx.trx);
    if (closed.kind === 'close') await this.apply(tx, closed, by, now);
    // a notice that supersedes nothing is the usual case: its timeline is not cluttered with it
    if (link.does === 'supersede' && closed.kind !== 'close') return;
    const detail = closed.kind === 'close' ? { msgIds: closed.targets.map((t) => t.msgId), by: closed.by, link: closed.link } : {};
    const name = closed.kind !== 'close' ? 'nothing-to-close' : link.does === 'supersede' ? 'superseded-earlier' : 'closed-answer-wait';
    await insertEvents(tx.trx, messageId, [event('correlate', name, detail)], tx.now);
  }

  /**
   * The procedure allows the Innleggelsesrapport before the LOG_INNLAGT: one from the bydel the
   * admission went to (any of its services), for the same patient, that matched nothing when it
   * came, within the fallback window, meets the admission's wait now.
   */
  private async meetEarlyRapport(tx: StoreTransaction, admission: ClosingMessage, by: Correlating, now: Date): Promise<void> {
    if (!admission.patientKey) return;
    const since = new Date(now.getTime() - this.fallbackWindowMs).toISOString();
    const rapport = await tx.trx
      .selectFrom('messages as m')
      .select(['m.id', 'm.msg_id'])
      .where('m.direction', '=', 'in')
      .where('m.msg_type', '=', 'INNLEGGELSESRAPPORT')
      .where('m.state', '<>', 'rejected')
      .where('m.patient_key', '=', admission.patientKey)
      .where('m.created_at', '>=', since)
      .where((eb) =>
        admission.bydel
          ? eb('m.bydel', '=', admission.bydel)
          : eb(
              'm.sender_her_id',
              'in',
              [admission.receiverL1, admission.receiverL2].filter((h): h is string => h !== null),
            ),
      )
      .where(({ exists, not, selectFrom }) =>
        not(exists(selectFrom('events as e').select('e.id').whereRef('e.message_id', '=', 'm.id').where('e.event', '=', 'correlated'))),
      )
      .orderBy('m.created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (!rapport) return;
    await met(tx, admission.id, 'innleggelsesrapport', 'innleggelsesrapport:before-admission');
    await insertEvents(
      tx.trx,
      admission.id,
      [event('innleggelsesrapport', 'innleggelsesrapport-received', { msgId: rapport.msg_id, rule: 'before-admission' })],
      tx.now,
    );
    await insertEvents(
      tx.trx,
      rapport.id,
      [event('correlate', 'correlated', { kind: 'innleggelsesrapport', msgId: by.msgId, rule: 'before-admission' })],
      tx.now,
    );
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
