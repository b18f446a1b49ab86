// Flow A (DESIGN §3): EPJ → parse → validate → dedupe → route → sign+package → store outbox
// → publish → ack. Each stage is a function from typed input to a typed decision; this file
// only sequences them and does the I/O at the edges.
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import { durationMs } from '../config/config.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { appRecVersionFor, buildAppRec, localDateTime } from '../mapping/apprec.js';
import { contentHash } from '../mapping/contentHash.js';
import type { MsgHeadModel, ParsedMessage, StageError } from '../mapping/model.js';
import { parseMessage } from '../mapping/parse.js';
import { rewriteReceiver } from '../mapping/readdress.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { buildEbxmlMessage, cpaIdFor } from '../outbound/ebxml.js';
import {
  type NewOutboxItem,
  type RoutingHeaders,
  alertItem,
  appRecItem,
  deliverItem,
  dlqItem,
} from '../outbound/outboxItems.js';
import { type OutboxPublisher, justStored } from '../outbound/outboxRelay.js';
import { signEnveloped } from '../outbound/xmldsig.js';
import { type RouteDecision, type RoutingContext, routeMessage } from '../routing/route.js';
import { buildAlert } from '../tracking/alerts.js';
import type { MessageRow } from '../tracking/db.js';
import { expectationsFor, patientKey } from '../tracking/expectations.js';
import { DuplicateMessageError, type NewEvent, type NewExpectation, type NewMessage, type NewPayload, type Store } from '../tracking/store.js';

export interface EpjDelivery {
  body: Buffer;
  contentType?: string;
  /** AMQP header `x-bydel`: the EPJ's hint of the responsible bydel */
  bydelHint?: string;
  /** AMQP messageId, used to key a message that cannot be parsed at all */
  amqpMessageId?: string;
  redelivered: boolean;
}

export interface SigningMaterial {
  keyPem: string;
  certPem: string;
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
      packaged: { contentType: string; body: Buffer; ebxmlMessageId: string };
      conversationId: string;
      fromHerId: string;
    };

/** The sender's most specific HER-id: the ebXML From party and the dedupe key. */
const senderHerId = (m: MsgHeadModel) => m.sender.level2?.herId ?? m.sender.level1.herId ?? null;

/** ConversationId is shared by a whole conversation; its first MsgId identifies it stably. */
const conversationIdOf = (p: ParsedMessage, m: MsgHeadModel) =>
  p.ebxml?.conversationId ?? m.conversationRef?.refToConversation ?? m.msgId;

export class HospitalToBydelFlow {
  private readonly now: () => Date;
  private readonly graceMs: number;

  constructor(private readonly deps: FlowDeps) {
    this.now = deps.now ?? (() => new Date());
    this.graceMs = 2 * durationMs(deps.config.broker.confirmTimeout);
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
      // AppRecs the EPJ owes the bydeler are the inbound issue's work; until then they are refused visibly.
      return this.finish(delivery, {
        kind: 'reject',
        stage: 'parse',
        parsed: parsed.value,
        error: { code: 'T10', reason: 'An AppRec on the EPJ queue is not supported yet.', transient: false },
      });
    }

    const existing = await this.deps.store.findMessage('out', senderHerId(doc) ?? '', doc.msgId);
    if (existing) {
      const resumed = await this.resumeOrIgnore(existing, doc);
      if (resumed) return resumed;
    }

    return this.finish(delivery, this.plan(parsed.value, doc, delivery.bydelHint), existing);
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
    this.logOutcome(model, 'route', route.rerouted ? `routed to bydel ${route.bydel} by ${route.rule}` : 'receiver kept', EVENTS.stagePassed, route.rerouted ? { bydel: route.bydel, rule: route.rule, herId: route.toHerId } : { herId: route.toHerId });

    const { signing, config } = this.deps;
    const algorithm = config.signing.partnerAlgorithms[route.toHerId] ?? config.signing.algorithm;
    let xml = route.rerouted ? rewriteReceiver(parsed.businessXml, route.receiver) : parsed.businessXml;
    if (config.signing.signMsgHead) {
      xml = signEnveloped(xml, { ...signing, algorithm, location: 'msghead-last-child' });
    }
    const fromHerId = senderHerId(model) ?? config.ownHerId;
    const conversationId = conversationIdOf(parsed, model);
    const packaged = buildEbxmlMessage({
      businessXml: xml,
      msgType: model.type,
      fromHerId,
      toHerId: route.toHerId,
      cpaId: this.deps.routing.register.get(route.toHerId)?.ebxml?.cpaId ?? cpaIdFor(fromHerId, route.toHerId),
      conversationId,
      signing: { ...signing, algorithm },
    });
    this.logOutcome(model, 'sign', `signed ${algorithm}`, EVENTS.stagePassed, { herId: route.toHerId });
    return { kind: 'deliver', parsed, model, route, packaged, conversationId, fromHerId };
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
    const record = plan.kind === 'deliver' ? this.deliveryRecord(plan, now) : plan.kind === 'hold' ? this.heldRecord(plan, now) : this.rejectionRecord(delivery, plan, now);
    const framing = plan.parsed?.framing ?? 'unknown';
    const events: NewEvent[] = [{ stage: 'receive', event: 'received', detail: { framing, redelivered: delivery.redelivered } }, ...record.events];
    const payloads: NewPayload[] = [{ kind: 'original', content_type: delivery.contentType ?? 'application/octet-stream', body: delivery.body }];
    if (plan.kind === 'deliver') payloads.push({ kind: 'signed', content_type: plan.packaged.contentType, body: plan.packaged.body });

    let stored: { messageId: number; outboxIds: number[] };
    try {
      stored = rejectedBefore
        ? await this.recordResend(rejectedBefore, record, events)
        : await this.deps.store.recordMessage({ message: record.message, payloads, events, outbox: record.outbox, expectations: record.expectations });
    } catch (e) {
      if (e instanceof DuplicateMessageError) {
        // Another consumer stored the same MsgId a moment ago: it is a duplicate.
        this.logOutcome(record.message, 'dedupe', 'duplicate', EVENTS.duplicate, {});
        return 'duplicate';
      }
      throw e;
    }
    for (const item of justStored(stored.messageId, record.outbox, stored.outboxIds)) await this.deps.outbox.publishNow(item);
    logStage(this.deps.log, { ...record.log, msgId: record.message.msg_id, type: record.message.msg_type ?? undefined, storeId: stored.messageId }, plan.kind === 'reject' ? 'warn' : 'info');
    return record.outcome;
  }

  /** The same MsgId again after a rejection: the existing row takes the new outcome. */
  private async recordResend(previous: MessageRow, record: FlowRecord, events: NewEvent[]) {
    const { msg_id, direction, sender_her_id, ...patch } = record.message;
    const outboxIds = await this.deps.store.updateMessage(previous.id, patch, { stage: 'dedupe', event: 'resent-after-rejection', detail: { previousCode: previous.error_code } }, record.outbox);
    for (const e of events) await this.deps.store.addEvent(previous.id, e);
    return { messageId: previous.id, outboxIds };
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
      error_code: null,
      error_reason: null,
    };
  }

  private deliveryRecord(plan: Extract<Plan, { kind: 'deliver' }>, now: Date): FlowRecord {
    const { route, model } = plan;
    const routedTo = route.rerouted ? { bydel: route.bydel, rule: route.rule, herId: route.toHerId } : { herId: route.toHerId };
    const headers = { msgId: model.msgId, msgType: model.type, conversationId: plan.conversationId, fromHerId: plan.fromHerId, toHerId: route.toHerId };
    return {
      message: {
        ...this.baseMessage(model, plan.parsed, model.msgId),
        state: 'received',
        bydel: route.rerouted ? route.bydel : null,
        route_rule: route.rerouted ? route.rule : 'kept-receiver',
        receiver_l1_her_id: route.rerouted ? route.receiver.level1.herId : (model.receiver.level1.herId ?? null),
        receiver_l2_her_id: route.toHerId,
        ebxml_message_id: plan.packaged.ebxmlMessageId,
        patient_key: patientKey(model, this.deps.config.tracking.patientKeySecret),
      },
      events: [
        { stage: 'validate', event: 'validated' },
        { stage: 'route', event: route.rerouted ? 'routed' : 'receiver-kept', detail: { ...routedTo, explanation: route.explanation } },
        { stage: 'sign', event: 'signed', detail: { ebxmlMessageId: plan.packaged.ebxmlMessageId } },
      ],
      outbox: [deliverItem(this.deps.config.broker, now, this.graceMs, headers, plan.packaged.contentType, plan.packaged.body)],
      expectations: expectationsFor(model.type, now, this.deps.config.tracking),
      outcome: 'delivered',
      log: { event: EVENTS.delivered, stage: 'publish', decision: `delivered to ${route.toHerId}`, ...routedTo },
    };
  }

  private heldRecord(plan: Extract<Plan, { kind: 'hold' }>, now: Date): FlowRecord {
    const message = { ...this.baseMessage(plan.model, plan.parsed, plan.model.msgId), state: 'held', receiver_l1_her_id: plan.model.receiver.level1.herId ?? null };
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
      outcome: 'held',
      log: { event: EVENTS.held, stage: 'route', decision: 'held for manual routing' },
    };
  }

  private rejectionRecord(delivery: EpjDelivery, plan: Extract<Plan, { kind: 'reject' }>, now: Date): FlowRecord {
    const model = plan.parsed?.doc.kind === 'msghead' ? plan.parsed.doc : undefined;
    const fallbackId = delivery.amqpMessageId ?? `unparsed-${randomUUID()}`;
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

  /** A negative AppRec to the EPJ and the original, unchanged, to the DLQ (DESIGN §4.3). */
  private rejectionItems(delivery: EpjDelivery, plan: Extract<Plan, { kind: 'reject' }>, model: MsgHeadModel | undefined, conversationId: string | undefined, now: Date): NewOutboxItem[] {
    const { config } = this.deps;
    const gateway = { level1: { name: 'plo-gateway', herId: config.ownHerId } };
    const appRecId = randomUUID();
    const appRec = buildAppRec({
      id: appRecId,
      version: appRecVersionFor(model?.content),
      status: '2',
      errors: [{ code: plan.error.code, details: plan.error.reason }],
      original: {
        msgType: model?.type ?? 'UKJENT',
        msgTypeDn: model?.typeDn,
        issueDate: model?.genDate ?? localDateTime(now),
        msgId: model?.msgId ?? delivery.amqpMessageId ?? 'ukjent',
      },
      sender: model ? model.receiver : gateway,
      receiver: model ? model.sender : gateway,
      genDate: now,
    });
    const original: RoutingHeaders = {
      msgId: model?.msgId,
      msgType: model?.type,
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
    const error = { code: plan.error.code, reason: plan.error.reason, stage: plan.stage, sourceQueue: config.broker.queues.epjOutbound, firstFailedAt: now.toISOString(), attempts: 1 };
    return [
      appRecItem(config.broker, now, this.graceMs, receipt, model?.msgId, appRec),
      dlqItem(config.broker, now, this.graceMs, original, error, { body: delivery.body, contentType: delivery.contentType }),
    ];
  }

  private logOutcome(m: { msg_id: string; msg_type?: string | null } | MsgHeadModel, stage: Stage, decision: string, event: string, extra: Record<string, unknown>) {
    const [msgId, type] = 'kind' in m ? [m.msgId, m.type] : [m.msg_id, m.msg_type ?? undefined];
    logStage(this.deps.log, { event, msgId, type, stage, decision, ...extra });
  }
}
