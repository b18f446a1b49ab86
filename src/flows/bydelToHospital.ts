// Flow B (DESIGN §3 B): nhn.inbound → parse → verify (signature, sender, addressee) → dedupe →
// validate → correlate → store (outbox) → forward to the EPJ → ack. Each stage is a function
// from typed input to a typed decision; this file only sequences them and does the I/O.
//
// What leaves: a business message or AppRec from a bydel goes to epj.inbound as it came; an
// ebXML Acknowledgment / MessageError only updates the message it refers to. A message that is
// not provably from its sender goes to the DLQ and nowhere else. An invalid one from a verified
// sender also gets a negative AppRec back (its own outbox item). A repeat gets what the first
// copy got: nothing is forwarded twice, and the AppRec already sent for it is sent again.
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import { type VerifiedSender, verifySender } from '../inbound/authenticity.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { negativeAppRec } from '../mapping/apprec.js';
import { contentHash } from '../mapping/contentHash.js';
import type { EbxmlInfo, MsgHeadModel, ParsedMessage, StageError } from '../mapping/model.js';
import { type InboundMessage, parseInbound, type SignalMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { dlqItem, forwardItem, type NewOutboxItem, type RoutingHeaders } from '../outbound/outboxItems.js';
import { justStored, type OutboxPublisher } from '../outbound/outboxRelay.js';
import { type PartnerContext, receiptItem } from '../outbound/package.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import type { MessageRow, OutboxRow } from '../tracking/db.js';
import { patientKey } from '../tracking/expectations.js';
import { type Correlation, Receipts } from '../tracking/receipts.js';
import { DuplicateMessageError, type NewEvent, type NewMessage, type Store } from '../tracking/store.js';
import { relayGraceMs } from './packageDelivery.js';

export interface NhnDelivery {
  body: Buffer;
  contentType?: string;
  /** AMQP header `from-her-id`: the transport's word for who sent it */
  fromHerId?: string;
  /** AMQP messageId, used to key a message that cannot be parsed at all */
  amqpMessageId?: string;
  redelivered: boolean;
}

export interface InboundDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  schemas: SchemaSet;
  register: AddressRegister;
  signing: { keyPem: string; certPem: string };
  outbox: OutboxPublisher;
  now?: () => Date;
}

export type InboundOutcome = 'forwarded' | 'correlated' | 'rejected' | 'duplicate' | 'resumed';

type Stage = 'parse' | 'verify' | 'dedupe' | 'validate' | 'correlate' | 'forward';

type Plan =
  | { kind: 'reject'; stage: Stage; error: StageError; inbound?: InboundMessage; sender?: VerifiedSender }
  | { kind: 'signal'; signal: SignalMessage; sender: VerifiedSender; correlation: Correlation }
  | { kind: 'accept'; parsed: ParsedMessage; sender: VerifiedSender; correlation?: Correlation };

/** What one outcome writes: metadata, timeline, outbox, the link to what it answers; and its log line. */
interface FlowRecord {
  identity: Identity;
  message: NewMessage;
  events: NewEvent[];
  outbox: NewOutboxItem[];
  correlation?: Correlation;
  outcome: InboundOutcome;
  log: { event: string; stage: Stage; decision: string } & Record<string, unknown>;
}

/** The identity of what arrived, as far as it could be read. */
interface Identity {
  msgId: string;
  framing: string;
  msgType?: string;
  ebxml?: EbxmlInfo;
  model?: MsgHeadModel;
  parsed?: ParsedMessage;
}

function identify(inbound: InboundMessage | undefined, fallbackId: string): Identity {
  if (!inbound) return { msgId: fallbackId, framing: 'unknown' };
  if (inbound.kind === 'signal') {
    const { ebxml, framing } = inbound.signal;
    return { msgId: ebxml.messageId || fallbackId, framing, msgType: ebxml.signal, ebxml };
  }
  const parsed = inbound.message;
  const { doc, framing, ebxml } = parsed;
  if (doc.kind === 'apprec') return { msgId: doc.id || fallbackId, framing, msgType: 'APPREC', ebxml, parsed };
  return { msgId: doc.msgId || fallbackId, framing, msgType: doc.type || undefined, ebxml, model: doc, parsed };
}

/** The hospital party a message was sent to: its ebXML To, else the hospital itself. */
const ourHerId = (ebxml: EbxmlInfo | undefined, ownHerId: string) => ebxml?.toPartyIds.find((p) => p.type === 'HER' && /^\d+$/.test(p.id))?.id ?? ownHerId;

/** One short, metadata-only description of a correlation, for the log and the timeline. */
function describe(c: Correlation): { event: string; decision: string; detail: Record<string, unknown> } {
  switch (c.kind) {
    case 'transport':
      return { event: 'correlated', decision: `transport ${c.state} for ${c.target.msgId}`, detail: { kind: c.kind, msgId: c.target.msgId, state: c.state } };
    case 'apprec':
      return { event: 'correlated', decision: `AppRec ${c.status} for ${c.target.msgId}`, detail: { kind: c.kind, msgId: c.target.msgId, status: c.status } };
    case 'answer':
    case 'innleggelsesrapport':
      return { event: 'correlated', decision: `${c.kind} for ${c.target.msgId} by ${c.rule}`, detail: { kind: c.kind, msgId: c.target.msgId, rule: c.rule } };
    case 'close':
      return {
        event: 'correlated',
        decision: `closes the answer wait of ${c.targets.map((t) => t.msgId).join(', ')}`,
        detail: { kind: c.kind, msgIds: c.targets.map((t) => t.msgId), by: c.by },
      };
    case 'none':
      return { event: 'uncorrelated', decision: `uncorrelated: ${c.why}`, detail: { why: c.why } };
  }
}

export class BydelToHospitalFlow {
  private readonly now: () => Date;
  private readonly graceMs: number;
  private readonly receipts: Receipts;
  private readonly partners: PartnerContext;

  constructor(private readonly deps: InboundDeps) {
    this.now = deps.now ?? (() => new Date());
    this.graceMs = relayGraceMs(deps.config);
    this.receipts = new Receipts(deps.store.db.kysely, deps.config.tracking);
    this.partners = { config: deps.config, register: deps.register, signing: deps.signing };
  }

  /** Processes one delivery to a durable outcome. Throws only on transient failures (store down). */
  async handle(d: NhnDelivery): Promise<InboundOutcome> {
    const parsed = parseInbound(d.body, { contentType: d.contentType, maxBytes: this.deps.config.limits.maxMessageBytes });
    if (!parsed.ok) return this.finish(d, { kind: 'reject', stage: 'parse', error: parsed.error });
    const inbound = parsed.value;
    const id = identify(inbound, '');
    this.logPassed(id, 'parse', `parsed (${id.framing})`, {});

    const verified = verifySender(d, inbound, this.deps.register, this.deps.config.ownHerId, this.now());
    if (!verified.ok) return this.finish(d, { kind: 'reject', stage: 'verify', error: verified.error, inbound });
    const sender = verified.value;
    this.logPassed(id, 'verify', `signed by ${sender.herId} (${sender.algorithm})`, { herId: sender.herId });

    // Before validation: a repeat gets what its first copy got, whether that was valid or not.
    const existing = id.msgId ? await this.deps.store.findMessage('in', sender.herId, id.msgId) : undefined;
    if (existing) return this.answerAgain(existing, id);
    const twin = await this.contentTwin(id, sender);
    if (twin) return this.recordContentDuplicate(d, id, sender, twin);

    return this.finish(d, await this.plan(inbound, sender, id));
  }

  private async plan(inbound: InboundMessage, sender: VerifiedSender, id: Identity): Promise<Plan> {
    if (inbound.kind === 'signal') {
      const correlation = await this.receipts.forSignal(inbound.signal, sender.herId);
      return { kind: 'signal', signal: inbound.signal, sender, correlation };
    }
    const parsed = inbound.message;
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return { kind: 'reject', stage: 'validate', error: valid.error, inbound, sender };
    this.logPassed(id, 'validate', 'valid', {});

    const doc = parsed.doc;
    const correlation =
      doc.kind === 'apprec'
        ? await this.receipts.forAppRec(doc)
        : await this.receipts.forMessage(
            doc,
            { herIds: this.senderHerIds(doc, sender), patientKey: this.patientKey(doc), conversationId: parsed.ebxml?.conversationId ?? null },
            this.now(),
          );
    if (correlation) {
      const { decision } = describe(correlation);
      this.logOutcome(id, 'correlate', decision, correlation.kind === 'none' ? EVENTS.inboundUncorrelated : EVENTS.inboundCorrelated, { herId: sender.herId });
    }
    return { kind: 'accept', parsed, sender, correlation };
  }

  /**
   * A MsgId this sender sent before: finish what a crash interrupted, or answer it as the first
   * copy was answered (ebMS 2.0 §6.5.4, LESSONS §9.3), without processing it again.
   */
  private async answerAgain(existing: MessageRow, id: Identity): Promise<InboundOutcome> {
    const items = await this.deps.store.outboxForMessage(existing.id);
    const pending = items.filter((o) => o.state === 'pending');
    if (pending.length > 0) {
      for (const item of pending) await this.deps.outbox.publishPending(item);
      this.logOutcome(id, 'dedupe', 'resumed', EVENTS.inboundDuplicate, { state: existing.state });
      return 'resumed';
    }
    const receipt = items.filter((o) => o.purpose === 'receipt').at(-1);
    if (!receipt) {
      await this.deps.store.addEvent(existing.id, { stage: 'dedupe', event: 'duplicate-ignored' });
      this.logOutcome(id, 'dedupe', 'duplicate ignored', EVENTS.inboundDuplicate, { state: existing.state });
      return 'duplicate';
    }
    const again = resend(receipt, this.now(), this.graceMs);
    const outboxId = await this.deps.store.inTransaction(async (tx) => {
      await tx.addEvent(existing.id, { stage: 'dedupe', event: 'duplicate-answered-again', detail: { appRecId: again.headers['msg-id'] } });
      return tx.addOutbox(existing.id, again);
    });
    await this.deps.outbox.publishNow(justStored(existing.id, [again], [outboxId])[0]);
    this.logOutcome(id, 'dedupe', 'duplicate: its AppRec sent again', EVENTS.inboundDuplicate, { state: existing.state, herId: receipt.routing_key });
    return 'duplicate';
  }

  /** Stores the outcome with its outbox items and correlation in one transaction, then publishes. */
  private async finish(d: NhnDelivery, plan: Plan): Promise<InboundOutcome> {
    const now = this.now();
    const record =
      plan.kind === 'reject' ? this.rejectionRecord(d, plan, now) : plan.kind === 'signal' ? this.signalRecord(plan) : this.acceptRecord(plan, now);
    const { ebxml } = record.identity;
    const received: NewEvent = {
      stage: 'receive',
      event: 'received',
      // The eb:Service is kept because the AppRec the EPJ returns for this message goes back in it.
      detail: { framing: record.identity.framing, redelivered: d.redelivered, ebxmlService: ebxml?.service, ebxmlAction: ebxml?.action },
    };
    const { correlation } = record;
    const correlating = { msgId: record.message.msg_id, msgType: record.message.msg_type ?? '' };
    let stored: { messageId: number; outboxIds: number[] };
    try {
      stored = await this.deps.store.recordMessage({
        message: record.message,
        payloads: [{ kind: 'original', content_type: d.contentType ?? 'application/octet-stream', body: d.body }],
        events: [received, ...record.events],
        outbox: record.outbox,
        within: correlation && correlation.kind !== 'none' ? (tx) => this.receipts.apply(tx, correlation, correlating, now) : undefined,
      });
    } catch (e) {
      if (!(e instanceof DuplicateMessageError)) throw e;
      // Another consumer stored the same MsgId a moment ago.
      const existing = await this.deps.store.getMessage(e.existingId);
      return existing ? this.answerAgain(existing, record.identity) : 'duplicate';
    }
    for (const item of justStored(stored.messageId, record.outbox, stored.outboxIds)) await this.deps.outbox.publishNow(item);
    logStage(
      this.deps.log,
      { ...record.log, msgId: record.message.msg_id, type: record.message.msg_type ?? undefined, storeId: stored.messageId },
      plan.kind === 'reject' ? 'warn' : 'info',
    );
    return record.outcome;
  }

  /**
   * The same business content this sender already sent under another MsgId: not forwarded to
   * the EPJ again, and not answered (an AppRec is never sent for a duplicate). A twin that was
   * rejected does not count.
   */
  private async contentTwin(id: Identity, sender: VerifiedSender): Promise<MessageRow | undefined> {
    if (!id.parsed || !id.msgId) return undefined;
    const twins = await this.deps.store.findByContentHash('in', contentHash(id.parsed.businessXml));
    return twins.find((m) => m.sender_her_id === sender.herId && m.msg_id !== id.msgId && m.state !== 'rejected');
  }

  private async recordContentDuplicate(d: NhnDelivery, id: Identity, sender: VerifiedSender, twin: MessageRow): Promise<InboundOutcome> {
    await this.deps.store.recordMessage({
      message: { ...this.baseMessage(id, sender), state: 'duplicate' },
      payloads: [{ kind: 'original', content_type: d.contentType ?? 'application/octet-stream', body: d.body }],
      events: [
        { stage: 'receive', event: 'received', detail: { framing: id.framing } },
        { stage: 'dedupe', event: 'duplicate-content', detail: { of: twin.msg_id } },
      ],
      outbox: [],
    });
    this.logOutcome(id, 'dedupe', `duplicate content of ${twin.msg_id}`, EVENTS.inboundDuplicate, { herId: sender.herId });
    return 'duplicate';
  }

  private baseMessage(id: Identity, sender: VerifiedSender | undefined): NewMessage {
    const { model, parsed, ebxml } = id;
    return {
      msg_id: id.msgId,
      direction: 'in',
      // Only a verified sender takes a dedupe key: a forged copy must not block the real one.
      sender_her_id: sender?.herId ?? null,
      msg_type: id.msgType ?? null,
      state: 'received',
      conversation_id: ebxml?.conversationId ?? null,
      conversation_ref: model?.conversationRef?.refToConversation ?? null,
      bydel: sender ? (this.deps.register.get(sender.herId)?.bydel ?? null) : null,
      receiver_l1_her_id: model?.receiver.level1.herId ?? null,
      receiver_l2_her_id: model?.receiver.level2?.herId ?? null,
      content_hash: parsed ? contentHash(parsed.businessXml) : null,
      gen_date: parsed?.doc.genDate ?? null,
      ebxml_message_id: ebxml?.messageId ?? null,
      patient_key: model ? this.patientKey(model) : null,
      error_code: null,
      error_reason: null,
    };
  }

  private signalRecord(plan: Extract<Plan, { kind: 'signal' }>): FlowRecord {
    const id = identify({ kind: 'signal', signal: plan.signal }, '');
    const { event, decision, detail } = describe(plan.correlation);
    const matched = plan.correlation.kind !== 'none';
    return {
      identity: id,
      message: { ...this.baseMessage(id, plan.sender), state: matched ? 'correlated' : 'unmatched' },
      events: [this.verifiedEvent(plan.sender), { stage: 'correlate', event, detail: { ...detail, errorCodes: plan.signal.errors.map((e) => e.code) } }],
      outbox: [],
      correlation: plan.correlation,
      outcome: 'correlated',
      log: { event: matched ? EVENTS.inboundCorrelated : EVENTS.inboundUncorrelated, stage: 'correlate', decision, herId: plan.sender.herId },
    };
  }

  private acceptRecord(plan: Extract<Plan, { kind: 'accept' }>, now: Date): FlowRecord {
    const { parsed, sender, correlation } = plan;
    const id = identify({ kind: 'business', message: parsed }, '');
    const doc = parsed.doc;
    const headers: RoutingHeaders = {
      msgId: id.msgId,
      msgType: id.msgType,
      conversationId: parsed.ebxml?.conversationId,
      fromHerId: sender.herId,
      toHerId: ourHerId(parsed.ebxml, this.deps.config.ownHerId),
    };
    const forward = forwardItem(
      this.deps.config.broker,
      now,
      this.graceMs,
      headers,
      parsed.businessXml,
      doc.kind === 'apprec' ? doc.originalMsgId.id : undefined,
    );
    const events: NewEvent[] = [this.verifiedEvent(sender), { stage: 'validate', event: 'validated' }];
    if (correlation) {
      const { event, detail } = describe(correlation);
      events.push({ stage: 'correlate', event, detail });
    }
    return {
      identity: id,
      message: this.baseMessage(id, sender),
      events,
      outbox: [forward],
      correlation,
      outcome: 'forwarded',
      log: { event: EVENTS.inboundForwarded, stage: 'forward', decision: 'forwarded to the EPJ', herId: sender.herId },
    };
  }

  private rejectionRecord(d: NhnDelivery, plan: Extract<Plan, { kind: 'reject' }>, now: Date): FlowRecord {
    const id = identify(plan.inbound, d.amqpMessageId ?? `unparsed-${randomUUID()}`);
    const error = { code: plan.error.code, reason: plan.error.reason };
    const original: RoutingHeaders = {
      msgId: id.msgId,
      msgType: id.msgType,
      conversationId: id.ebxml?.conversationId,
      fromHerId: d.fromHerId,
      toHerId: ourHerId(id.ebxml, this.deps.config.ownHerId),
    };
    const dlqError = { ...error, stage: plan.stage, sourceQueue: this.deps.config.broker.queues.nhnInbound, firstFailedAt: now.toISOString(), attempts: 1 };
    const outbox = [dlqItem(this.deps.config.broker, now, this.graceMs, original, dlqError, { body: d.body, contentType: d.contentType })];
    // A verified sender of an invalid business message is told why; never a forger, never about an AppRec.
    const receipt = plan.sender && id.model && this.negativeReceipt(id, id.model, plan.sender, error, now);
    if (receipt) outbox.push(receipt);
    return {
      identity: id,
      message: {
        ...this.baseMessage(id, plan.sender),
        state: 'rejected',
        error_code: error.code,
        error_reason: error.reason,
        // The AppRec this message got: final, so the EPJ cannot send a second one for it.
        ...(receipt ? { apprec_status: 'rejected', apprec_at: now.toISOString() } : {}),
      },
      events: [{ stage: plan.stage, event: 'rejected', detail: { ...error, appRecSent: !!receipt } }],
      outbox,
      outcome: 'rejected',
      log: {
        event: plan.stage === 'verify' ? EVENTS.inboundForged : EVENTS.inboundRejected,
        stage: plan.stage,
        decision: `rejected ${error.code}`,
        ...error,
        claimedHerId: d.fromHerId,
      },
    };
  }

  private negativeReceipt(id: Identity, model: MsgHeadModel, sender: VerifiedSender, error: { code: string; reason: string }, now: Date): NewOutboxItem {
    const appRecId = randomUUID();
    return receiptItem(
      this.partners,
      { now, graceMs: this.graceMs },
      {
        appRecId,
        appRecXml: negativeAppRec({ id: appRecId, error, now, model }),
        fromHerId: ourHerId(id.ebxml, this.deps.config.ownHerId),
        toHerId: sender.herId,
        answers: { msgType: model.type, service: id.ebxml?.service, conversationId: id.ebxml?.conversationId ?? model.msgId },
      },
    );
  }

  private verifiedEvent(sender: VerifiedSender): NewEvent {
    return { stage: 'verify', event: 'verified', detail: { herId: sender.herId, algorithm: sender.algorithm } };
  }

  /** Who the message is from, by every HER-id it names for its sender (the bydel and its service). */
  private senderHerIds(m: MsgHeadModel, sender: VerifiedSender): string[] {
    return [...new Set([m.sender.level1.herId, m.sender.level2?.herId, sender.herId].filter((h): h is string => !!h))];
  }

  private patientKey(m: MsgHeadModel): string | null {
    return patientKey(m, this.deps.config.tracking.patientKeySecret);
  }

  private logPassed(id: Identity, stage: Stage, decision: string, extra: Record<string, unknown>) {
    this.logOutcome(id, stage, decision, EVENTS.inboundStagePassed, extra);
  }

  private logOutcome(id: Identity, stage: Stage, decision: string, event: string, extra: Record<string, unknown>) {
    logStage(this.deps.log, { event, msgId: id.msgId || undefined, type: id.msgType, stage, decision, ...extra });
  }
}

/** The same AppRec once more, exactly as it was sent: the receiver's MSH drops it if it has it. */
function resend(receipt: OutboxRow, now: Date, graceMs: number): NewOutboxItem & { headers: Record<string, string> } {
  return {
    purpose: 'receipt',
    exchange: receipt.exchange,
    routing_key: receipt.routing_key,
    headers: JSON.parse(receipt.headers) as Record<string, string>,
    content_type: receipt.content_type,
    message_id_prop: receipt.message_id_prop,
    body: receipt.body,
    next_attempt_at: new Date(now.getTime() + graceMs),
  };
}
