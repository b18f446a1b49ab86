// Flow A (DESIGN §3): EPJ → parse → validate → dedupe → route → sign+package → store outbox
// → publish → ack. Each stage is a function from typed input to a typed decision; this file
// only sequences them and does the I/O at the edges.
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import { durationMs } from '../config/config.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { negativeAppRec } from '../mapping/apprec.js';
import { contentHash } from '../mapping/contentHash.js';
import type { MsgHeadModel, ParsedMessage, StageError } from '../mapping/model.js';
import { parseMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { alertItem, appRecItem, dlqItem, type NewOutboxItem, type RoutingHeaders } from '../outbound/outboxItems.js';
import { justStored, type OutboxPublisher } from '../outbound/outboxRelay.js';
import { isBydelCode } from '../routing/bydeler.js';
import { type RouteDecision, type RoutingContext, routeMessage } from '../routing/route.js';
import { buildAlert } from '../tracking/alerts.js';
import type { MessageRow } from '../tracking/db.js';
import { alertPolicy } from '../tracking/deadlines.js';
import { heldExpectation } from '../tracking/expectations.js';
import { ownEventTime } from '../tracking/overtid.js';
import { closesAnswerWait, Receipts } from '../tracking/receipts.js';
import {
  DuplicateMessageError,
  type NewEvent,
  type NewExpectation,
  type NewMessage,
  type NewPayload,
  type Store,
  type StoreTransaction,
} from '../tracking/store.js';
import { EpjAppRecReturn } from './epjAppRec.js';
import { conversationIdOf, deliveryParts, type Packaged, packageDelivery, type SigningMaterial, senderHerId } from './packageDelivery.js';

export type { SigningMaterial };

export interface EpjDelivery {
  body: Buffer;
  contentType?: string;
  /** AMQP header `x-bydel`: the EPJ's hint of the responsible bydel */
  bydelHint?: string;
  /** AMQP messageId, used to key a message that cannot be parsed at all */
  amqpMessageId?: string;
  redelivered: boolean;
  /** set for a replay ops granted to bypass the MsgId dedupe (`dlq replay --skip-dedupe`): the dead letter's id */
  skipDedupeFor?: number;
}

export interface FlowDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  schemas: SchemaSet;
  routing: RoutingContext;
  signing: SigningMaterial;
  outbox: OutboxPublisher;
  now?: () => Date;
}

export type FlowOutcome = 'delivered' | 'held' | 'rejected' | 'duplicate' | 'resumed';

type Stage = 'parse' | 'validate' | 'dedupe' | 'route' | 'sign' | 'store' | 'publish';

/** What one outcome writes: metadata, timeline, outbox; and the stage log line. */
interface FlowRecord {
  message: NewMessage;
  events: NewEvent[];
  outbox: NewOutboxItem[];
  expectations?: NewExpectation[];
  outcome: FlowOutcome;
  log: { event: string; stage: string; decision: string } & Record<string, unknown>;
}

type Plan =
  | { kind: 'reject'; stage: Stage; error: StageError; parsed?: ParsedMessage }
  | { kind: 'hold'; parsed: ParsedMessage; model: MsgHeadModel; verdicts: string[] }
  | {
      kind: 'deliver';
      parsed: ParsedMessage;
      model: MsgHeadModel;
      route: Extract<RouteDecision, { action: 'deliver' }>;
      packaged: Packaged;
      conversationId: string;
      fromHerId: string;
    };

type TransactionHook = (tx: StoreTransaction, messageId: number) => Promise<void>;

export class HospitalToBydelFlow {
  private readonly now: () => Date;
  private readonly graceMs: number;
  private readonly receipts: Receipts;
  private readonly appRecs: EpjAppRecReturn;

  constructor(private readonly deps: FlowDeps) {
    this.now = deps.now ?? (() => new Date());
    this.graceMs = 2 * durationMs(deps.config.broker.confirmTimeout);
    this.receipts = new Receipts(deps.store.db.kysely, deps.config.tracking);
    this.appRecs = new EpjAppRecReturn({ ...deps, partners: { config: deps.config, register: deps.routing.register, signing: deps.signing }, now: this.now });
  }

  /** Processes one delivery to a durable outcome. Throws only on transient failures (store down). */
  async handle(delivery: EpjDelivery): Promise<FlowOutcome> {
    const parsed = parseMessage(delivery.body, {
      contentType: delivery.contentType,
      maxBytes: this.deps.config.limits.maxMessageBytes,
    });
    if (!parsed.ok) return this.finish(delivery, { kind: 'reject', stage: 'parse', error: parsed.error });

    const doc = parsed.value.doc;
    this.logOutcome(doc.kind === 'msghead' ? doc : { msg_id: doc.id, msg_type: 'APPREC' }, 'parse', `parsed (${parsed.value.framing})`, EVENTS.stagePassed, {});
    if (doc.kind !== 'msghead') {
      // The EPJ's AppRec for a message a bydel sent: back to that bydel (epjAppRec.ts).
      const returned = await this.appRecs.handle(parsed.value, doc);
      if (returned.ok) return returned.outcome;
      return this.finish(delivery, { kind: 'reject', stage: returned.stage, parsed: parsed.value, error: returned.error });
    }

    const existing = await this.deps.store.findMessage('out', senderHerId(doc) ?? '', doc.msgId);
    if (existing && delivery.skipDedupeFor !== undefined) {
      this.logOutcome(doc, 'dedupe', `dedupe skipped: replay of dead letter #${delivery.skipDedupeFor}`, EVENTS.dedupeSkipped, { state: existing.state });
    } else if (existing) {
      const resumed = await this.resumeOrIgnore(existing, doc);
      if (resumed) return resumed;
    } else if (delivery.skipDedupeFor === undefined) {
      const twin = await this.contentTwin(parsed.value, doc);
      if (twin) return this.recordContentDuplicate(delivery, parsed.value, doc, twin);
    }

    return this.finish(delivery, this.plan(parsed.value, doc, delivery.bydelHint), existing);
  }

  /**
   * The same content already sent under another MsgId by the same sender (an EPJ resending after
   * a timeout): not sent again. A twin that was rejected does not count (LESSONS §9.3).
   */
  private async contentTwin(parsed: ParsedMessage, model: MsgHeadModel): Promise<MessageRow | undefined> {
    const sender = senderHerId(model);
    const twins = await this.deps.store.findByContentHash('out', contentHash(parsed.businessXml));
    return twins.find((m) => m.sender_her_id === sender && m.msg_id !== model.msgId && m.state !== 'rejected');
  }

  /** Kept for the record (and for ops to replay with --skip-dedupe), but never delivered. */
  private async recordContentDuplicate(delivery: EpjDelivery, parsed: ParsedMessage, model: MsgHeadModel, twin: MessageRow): Promise<FlowOutcome> {
    await this.deps.store.recordMessage({
      message: { ...this.baseMessage(model, parsed, model.msgId), state: 'duplicate', receiver_l1_her_id: model.receiver.level1.herId ?? null },
      payloads: [{ kind: 'original', content_type: delivery.contentType ?? 'application/octet-stream', body: delivery.body }],
      events: [
        { stage: 'receive', event: 'received', detail: { framing: parsed.framing, redelivered: delivery.redelivered } },
        { stage: 'dedupe', event: 'duplicate-content', detail: { of: twin.msg_id } },
      ],
      outbox: [],
    });
    this.logOutcome(model, 'dedupe', `duplicate content of ${twin.msg_id}`, EVENTS.duplicate, { of: twin.msg_id });
    return 'duplicate';
  }

  /** The CPU-only part: validate, route, sign and package. */
  private plan(parsed: ParsedMessage, model: MsgHeadModel, bydelHint: string | undefined): Plan {
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return { kind: 'reject', stage: 'validate', parsed, error: valid.error };
    this.logOutcome(model, 'validate', 'valid', EVENTS.stagePassed, {});

    const routed = routeMessage(model, bydelHint, this.deps.routing);
    if (!routed.ok) return { kind: 'reject', stage: 'route', parsed, error: routed.error };
    const route = routed.value;
    if (route.action === 'hold') return { kind: 'hold', parsed, model, verdicts: route.verdicts };
    this.logOutcome(
      model,
      'route',
      route.rerouted ? `routed to bydel ${route.bydel} by ${route.rule}` : 'receiver kept',
      EVENTS.stagePassed,
      route.rerouted ? { bydel: route.bydel, rule: route.rule, herId: route.toHerId } : { herId: route.toHerId },
    );

    const packaged = packageDelivery(parsed, model, route, { config: this.deps.config, register: this.deps.routing.register, signing: this.deps.signing });
    this.logOutcome(model, 'sign', `signed ${packaged.algorithm}`, EVENTS.stagePassed, { herId: route.toHerId });
    return { kind: 'deliver', parsed, model, route, packaged, conversationId: packaged.conversationId, fromHerId: packaged.fromHerId };
  }

  /**
   * A MsgId we have seen before: finish what a crash interrupted, or recognise a duplicate.
   * A duplicate of a rejected message is processed again (LESSONS §9.3).
   */
  private async resumeOrIgnore(existing: MessageRow, model: MsgHeadModel): Promise<FlowOutcome | undefined> {
    const pending = (await this.deps.store.outboxForMessage(existing.id)).filter((o) => o.state === 'pending');
    if (pending.length > 0) {
      for (const item of pending) await this.deps.outbox.publishPending(item);
      this.logOutcome(model, 'dedupe', 'resumed', EVENTS.delivered, { state: existing.state });
      return 'resumed';
    }
    if (existing.state === 'rejected') return undefined;
    await this.deps.store.addEvent(existing.id, { stage: 'dedupe', event: 'duplicate-ignored' });
    this.logOutcome(model, 'dedupe', 'duplicate', EVENTS.duplicate, { state: existing.state });
    return 'duplicate';
  }

  /** Stores the outcome with its outbox items in one transaction, then publishes them. */
  private async finish(delivery: EpjDelivery, plan: Plan, rejectedBefore?: MessageRow): Promise<FlowOutcome> {
    const now = this.now();
    const record =
      plan.kind === 'deliver' ? this.deliveryRecord(plan, now) : plan.kind === 'hold' ? this.heldRecord(plan, now) : this.rejectionRecord(delivery, plan, now);
    const framing = plan.parsed?.framing ?? 'unknown';
    const events: NewEvent[] = [{ stage: 'receive', event: 'received', detail: { framing, redelivered: delivery.redelivered } }, ...record.events];
    const payloads: NewPayload[] = [{ kind: 'original', content_type: delivery.contentType ?? 'application/octet-stream', body: delivery.body }];
    if (plan.kind === 'deliver') payloads.push({ kind: 'signed', content_type: plan.packaged.contentType, body: plan.packaged.body });

    const within = this.closeAnswerWait(plan, now);
    let stored: { messageId: number; outboxIds: number[] };
    try {
      stored = rejectedBefore
        ? await this.recordResend(rejectedBefore, record, events, within)
        : await this.deps.store.recordMessage({ message: record.message, payloads, events, outbox: record.outbox, expectations: record.expectations, within });
    } catch (e) {
      if (e instanceof DuplicateMessageError) {
        // Another consumer stored the same MsgId a moment ago: it is a duplicate.
        this.logOutcome(record.message, 'dedupe', 'duplicate', EVENTS.duplicate, {});
        return 'duplicate';
      }
      throw e;
    }
    for (const item of justStored(stored.messageId, record.outbox, stored.outboxIds)) await this.deps.outbox.publishNow(item);
    logStage(
      this.deps.log,
      { ...record.log, msgId: record.message.msg_id, type: record.message.msg_type ?? undefined, storeId: stored.messageId },
      plan.kind === 'reject' ? 'warn' : 'info',
    );
    return record.outcome;
  }

  /** The same MsgId again after a rejection: the existing row takes the new outcome. */
  private async recordResend(previous: MessageRow, record: FlowRecord, events: NewEvent[], within?: TransactionHook) {
    const { msg_id, direction, sender_her_id, ...patch } = record.message;
    const outboxIds = await this.deps.store.updateMessage(
      previous.id,
      patch,
      {
        stage: 'dedupe',
        event: previous.state === 'rejected' ? 'resent-after-rejection' : 'replayed-skipping-dedupe',
        detail: { previousCode: previous.error_code, previousState: previous.state },
      },
      record.outbox,
    );
    for (const e of events) await this.deps.store.addEvent(previous.id, e);
    if (within) await this.deps.store.inTransaction((tx) => within(tx, previous.id));
    return { messageId: previous.id, outboxIds };
  }

  /** Delivering an avmelding, utskrevet, død or cancellation ends the wait for the kommune's answer. */
  private closeAnswerWait(plan: Plan, now: Date): TransactionHook | undefined {
    if (plan.kind !== 'deliver' || !closesAnswerWait(plan.model)) return undefined;
    return (tx, messageId) => this.receipts.closeWaitOnDelivery(tx, plan.model, plan.conversationId, messageId, now);
  }

  private baseMessage(model: MsgHeadModel | undefined, parsed: ParsedMessage | undefined, fallbackId: string) {
    return {
      msg_id: model?.msgId ?? fallbackId,
      direction: 'out' as const,
      sender_her_id: model ? senderHerId(model) : null,
      msg_type: model?.type ?? null,
      conversation_id: model && parsed ? conversationIdOf(parsed, model) : null,
      conversation_ref: model?.conversationRef?.refToConversation ?? null,
      content_hash: parsed ? contentHash(parsed.businessXml) : null,
      gen_date: model?.genDate ?? null,
      event_time: model ? ownEventTime(model) : null,
      error_code: null,
      error_reason: null,
    };
  }

  private deliveryRecord(plan: Extract<Plan, { kind: 'deliver' }>, now: Date): FlowRecord {
    const { route, model } = plan;
    const parts = deliveryParts(model, route, plan.packaged, this.deps.config, now);
    return {
      message: { ...this.baseMessage(model, plan.parsed, model.msgId), ...parts.patch },
      events: [{ stage: 'validate', event: 'validated' }, ...parts.events],
      outbox: parts.outbox,
      expectations: parts.expectations,
      outcome: 'delivered',
      log: { event: EVENTS.delivered, stage: 'publish', decision: `delivered to ${route.toHerId}`, ...parts.routedTo },
    };
  }

  private heldRecord(plan: Extract<Plan, { kind: 'hold' }>, now: Date): FlowRecord {
    const message = {
      ...this.baseMessage(plan.model, plan.parsed, plan.model.msgId),
      state: 'held',
      receiver_l1_her_id: plan.model.receiver.level1.herId ?? null,
    };
    const decisive = plan.verdicts.filter((v) => !v.includes('none given') && !v.includes('no entry'));
    const alert = buildAlert({
      kind: 'unroutable',
      state: 'firing',
      severity: 'warning',
      eventId: EVENTS.alertUnroutable,
      msgId: plan.model.msgId,
      conversationId: message.conversation_id ?? undefined,
      msgType: plan.model.type,
      receiverHerId: message.receiver_l1_her_id ?? undefined,
      firedAt: now,
      text: `Held for manual routing: no rule could decide the bydel (${decisive.join('; ') || 'no usable address'}).`,
    });
    return {
      message,
      events: [
        { stage: 'validate', event: 'validated' },
        { stage: 'route', event: 'held-unroutable', detail: { verdicts: plan.verdicts, alertId: alert.id } },
      ],
      outbox: [alertItem(this.deps.config.broker, now, this.graceMs, alert)],
      expectations: [heldExpectation(now, alert.id, alertPolicy(this.deps.config))],
      outcome: 'held',
      log: { event: EVENTS.held, stage: 'route', decision: 'held for manual routing' },
    };
  }

  private rejectionRecord(delivery: EpjDelivery, plan: Extract<Plan, { kind: 'reject' }>, now: Date): FlowRecord {
    const model = plan.parsed?.doc.kind === 'msghead' ? plan.parsed.doc : undefined;
    const doc = plan.parsed?.doc;
    const fallbackId = doc?.kind === 'apprec' ? doc.id : (delivery.amqpMessageId ?? `unparsed-${randomUUID()}`);
    const message = {
      ...this.baseMessage(model, plan.parsed, fallbackId),
      state: 'rejected',
      receiver_l1_her_id: model?.receiver.level1.herId ?? null,
      receiver_l2_her_id: model?.receiver.level2?.herId ?? null,
      error_code: plan.error.code,
      error_reason: plan.error.reason,
    };
    const detail = { code: plan.error.code, reason: plan.error.reason };
    return {
      message,
      events: [{ stage: plan.stage, event: 'rejected', detail }],
      outbox: this.rejectionItems(delivery, plan, model, message.conversation_id ?? undefined, now),
      outcome: 'rejected',
      log: { event: EVENTS.rejected, stage: plan.stage, decision: `rejected ${plan.error.code}`, ...detail },
    };
  }

  /** A negative AppRec to the EPJ (not for an AppRec) and the original, unchanged, to the DLQ (DESIGN §4.3). */
  private rejectionItems(
    delivery: EpjDelivery,
    plan: Extract<Plan, { kind: 'reject' }>,
    model: MsgHeadModel | undefined,
    conversationId: string | undefined,
    now: Date,
  ): NewOutboxItem[] {
    const { config } = this.deps;
    const gateway = { level1: { name: 'plo-gateway', herId: config.ownHerId } };
    const appRecId = randomUUID();
    const appRec = negativeAppRec({ id: appRecId, error: plan.error, now, model, unreadable: { msgId: delivery.amqpMessageId ?? 'ukjent', party: gateway } });
    const appRecFromEpj = plan.parsed?.doc.kind === 'apprec' ? plan.parsed.doc : undefined;
    const original: RoutingHeaders = {
      msgId: model?.msgId ?? appRecFromEpj?.id,
      msgType: model?.type ?? (appRecFromEpj && 'APPREC'),
      conversationId,
      fromHerId: model ? (senderHerId(model) ?? undefined) : undefined,
      toHerId: model?.receiver.level2?.herId ?? model?.receiver.level1.herId,
    };
    const receipt: RoutingHeaders = {
      msgId: appRecId,
      msgType: 'APPREC',
      conversationId,
      fromHerId: original.toHerId ?? config.ownHerId,
      toHerId: original.fromHerId ?? config.ownHerId,
    };
    const error = {
      code: plan.error.code,
      reason: plan.error.reason,
      stage: plan.stage,
      sourceQueue: config.broker.queues.epjOutbound,
      firstFailedAt: now.toISOString(),
      attempts: 1,
    };
    const dead = dlqItem(config.broker, now, this.graceMs, original, error, { body: delivery.body, contentType: delivery.contentType });
    // the EPJ's bydel hint travels with the dead letter, so that a replay is routed as the original would have been
    if (delivery.bydelHint && isBydelCode(delivery.bydelHint)) dead.headers['x-bydel'] = delivery.bydelHint;
    // An AppRec is never answered with an AppRec: one the gateway cannot return is for ops, in the DLQ.
    if (appRecFromEpj) return [dead];
    return [appRecItem(config.broker, now, this.graceMs, receipt, model?.msgId, appRec), dead];
  }

  private logOutcome(
    m: { msg_id: string; msg_type?: string | null } | MsgHeadModel,
    stage: Stage,
    decision: string,
    event: string,
    extra: Record<string, unknown>,
  ) {
    const [msgId, type] = 'kind' in m ? [m.msgId, m.type] : [m.msg_id, m.msg_type ?? undefined];
    logStage(this.deps.log, { event, msgId, type, stage, decision, ...extra });
  }
}
