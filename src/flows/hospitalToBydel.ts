// Flow A (DESIGN §3): EPJ → parse → dedupe (MsgId, then content) → validate → route →
// sign+encrypt+package → store with outbox → publish → ack. Each stage is a function from typed input
// to a typed decision; the decision becomes an Outcome (pure builders below), which the
// recorder stores in one transaction and publishes. This class only sequences the stages.
import { randomUUID } from 'node:crypto';
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { negativeAppRec } from '../mapping/apprec.js';
import { contentHash } from '../mapping/contentHash.js';
import type { MsgHeadModel, ParsedMessage } from '../mapping/model.js';
import { parseMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { redirect, sentFromHold } from '../ops/manualRoute.js';
import type { Agreements } from '../outbound/agreements/agreements.js';
import { type PartnerContext, readyToPackage } from '../outbound/package.js';
import type { RevocationChecker } from '../outbound/revocation.js';
import { alertItem, appRecItem, dlqItem, type RoutingHeaders } from '../outbox/items.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import type { LiveRegister } from '../routing/ar/liveRegister.js';
import { isBydelCode } from '../routing/bydeler.js';
import { ABSENT_INPUT } from '../routing/resolveBydel.js';
import { type RouteDecision, type RouteInput, type RoutingContext, routeMessage } from '../routing/route.js';
import { addressKey, followsStay, type Stay } from '../routing/stay.js';
import type { Stage } from '../shared/vocabulary.js';
import { buildAlert } from '../tracking/alerts.js';
import type { MessageRow } from '../tracking/db.js';
import { alertPolicy } from '../tracking/deadlines.js';
import { heldExpectation, patientKey } from '../tracking/expectations.js';
import { type Outcome, outcome } from '../tracking/outcome.js';
import { ownEventTime } from '../tracking/overtid.js';
import { deliveryLinkOf, Receipts } from '../tracking/receipts.js';
import { OutcomeRecorder } from '../tracking/recorder.js';
import { findStay } from '../tracking/stays.js';
import type { NewMessage, Store } from '../tracking/store.js';
import { EpjAppRecReturn } from './epjAppRec.js';
import { type Arrival, contentDuplicate, duplicateOf, originalPayload, type Refusal, receivedEvent, rejection } from './outcomes.js';
import { conversationIdOf, deliveryParts, type Packaged, packageDelivery, type SigningMaterial, senderHerId } from './packageDelivery.js';

export type { SigningMaterial };

export interface EpjDelivery extends Arrival {
  /** AMQP header `x-bydel`: the EPJ's hint of the responsible bydel */
  bydelHint?: string;
  /** AMQP messageId, used to key a message that cannot be parsed at all */
  amqpMessageId?: string;
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
  /** NHN's Adresseregister behind the routing's register, when configured */
  live?: LiveRegister;
  /** NHN's CPPA register: the CPAs deliveries are sent under, when configured */
  agreements?: Agreements;
  /** receivers' CRLs (with trust anchors configured): a revoked encryption certificate holds the message */
  revocation?: RevocationChecker;
  now?: () => Date;
}

export type FlowOutcome = 'delivered' | 'held' | 'rejected' | 'duplicate' | 'resumed';

/** What the CPU-only part of the flow decided for a message that parsed as a MsgHead. */
export type Plan =
  | { kind: 'reject'; refusal: Refusal }
  | { kind: 'hold'; verdicts: string[]; reasons: Extract<RouteDecision, { action: 'hold' }>['reasons'] }
  /** routed, but its receiver has no usable encryption certificate: held until it has (DESIGN §4.6) */
  | { kind: 'hold-certificate'; route: Extract<RouteDecision, { action: 'deliver' }>; reason: string }
  | { kind: 'deliver'; route: Extract<RouteDecision, { action: 'deliver' }>; packaged: Packaged };

/** What the outbound builders need besides the message. */
export interface OutboundContext {
  config: GatewayConfig;
  now: Date;
}

export class HospitalToBydelFlow {
  private readonly now: () => Date;
  private readonly recorder: OutcomeRecorder;
  private readonly appRecs: EpjAppRecReturn;
  private readonly partners: PartnerContext;

  constructor(private readonly deps: FlowDeps) {
    this.now = deps.now ?? (() => new Date());
    this.partners = { config: deps.config, register: deps.routing.register, signing: deps.signing, agreements: deps.agreements, revocation: deps.revocation };
    const receipts = new Receipts(deps.store.db.kysely, deps.config.tracking);
    this.recorder = new OutcomeRecorder({ store: deps.store, receipts, log: deps.log, outbox: deps.outbox });
    this.appRecs = new EpjAppRecReturn({
      ...deps,
      receipts,
      partners: this.partners,
      now: this.now,
    });
  }

  /** Processes one delivery to a durable outcome. Throws only on transient failures (store down). */
  async handle(delivery: EpjDelivery): Promise<FlowOutcome> {
    const ctx: OutboundContext = { config: this.deps.config, now: this.now() };
    const parsed = parseMessage(delivery.body, { contentType: delivery.contentType, maxBytes: this.deps.config.limits.maxMessageBytes });
    if (!parsed.ok) return this.record(rejectedOutbound(ctx, delivery, { stage: 'parse', error: parsed.error }));

    const doc = parsed.value.doc;
    this.passed(doc.kind === 'msghead' ? doc.msgId : doc.id, doc.kind === 'msghead' ? doc.type : 'APPREC', 'parse', `parsed (${parsed.value.framing})`);
    if (doc.kind !== 'msghead') {
      // The EPJ's AppRec for a message a bydel sent: back to that bydel (epjAppRec.ts).
      const returned = await this.appRecs.handle(parsed.value, doc, this.recorder);
      if (typeof returned === 'object') return this.record(rejectedOutbound(ctx, delivery, returned.refusal, parsed.value));
      return returned;
    }

    const existing = await this.deps.store.findMessage('out', senderHerId(doc) ?? '', doc.msgId);
    if (existing && delivery.skipDedupeFor !== undefined) {
      logStage(this.deps.log, {
        event: EVENTS.dedupeSkipped,
        msgId: doc.msgId,
        type: doc.type,
        stage: 'dedupe',
        decision: `dedupe skipped: replay of dead letter #${delivery.skipDedupeFor}`,
        state: existing.state,
      });
    } else if (existing) {
      const repeat = await this.seenBefore(existing);
      if (repeat) return repeat;
    } else if (delivery.skipDedupeFor === undefined) {
      const twin = await this.contentTwin(parsed.value, doc);
      if (twin) {
        const duplicate = contentDuplicate(outboundMessage(doc, parsed.value), delivery, parsed.value.framing, twin, {
          event: EVENTS.duplicate,
          stage: 'dedupe',
          decision: 'duplicate content',
        });
        // not swallowed: the hint it came with routes a held twin, or sends a misrouted one where it says
        const hinted = await this.routeTwinByHint(twin, doc.msgId, delivery.bydelHint, ctx.now);
        return this.record(hinted ? notingTwin(duplicate, hinted) : duplicate);
      }
    }

    // what the message is addressed to, as AR says now (AR not answering and nothing known: the message waits)
    await this.deps.live?.ensure([doc.receiver.level1.herId, doc.receiver.level2?.herId].filter((h): h is string => h !== undefined));
    // the patient's stay, from the store: the route stage's typed input (docs/routing.md#the-stay-rule)
    const stay = await this.stayOf(doc, ctx.now);
    const plan = await this.plan(parsed.value, doc, this.routeInput(doc, delivery.bydelHint, stay), ctx.now);
    const decided = outboundOutcome(ctx, delivery, parsed.value, doc, plan);
    return this.record(existing ? inPlaceOf(existing, decided) : decided);
  }

  /** Validate, route, sign, encrypt and package: CPU work, but for what the registers say of the receiver once it is known. */
  private async plan(parsed: ParsedMessage, model: MsgHeadModel, input: RouteInput, now: Date): Promise<Plan> {
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return { kind: 'reject', refusal: { stage: 'validate', error: valid.error } };
    this.passed(model.msgId, model.type, 'validate', 'valid');

    const routed = routeMessage(model, input, this.deps.routing);
    if (!routed.ok) return { kind: 'reject', refusal: { stage: 'route', error: routed.error } };
    const route = routed.value;
    if (route.action === 'hold') return { kind: 'hold', verdicts: route.verdicts, reasons: route.reasons };
    this.passed(model.msgId, model.type, 'route', route.rerouted ? `routed to bydel ${route.bydel} by ${route.rule}` : 'receiver kept', {
      herId: route.toHerId,
      ...(route.rerouted ? { bydel: route.bydel, rule: route.rule } : {}),
    });

    // the registers not answering with nothing known of the receiver throws: the message waits
    await readyToPackage(this.partners, senderHerId(model) ?? this.deps.config.ownHerId, route.toHerId, now);
    const packaged = packageDelivery(parsed, model, route, this.partners, now);
    if (!packaged.ok) return { kind: 'hold-certificate', route, reason: packaged.reason };
    const { algorithm, encryption } = packaged.value;
    this.passed(
      model.msgId,
      model.type,
      'sign',
      `signed ${algorithm}${encryption ? `, encrypted ${encryption.contentCipher}/${encryption.keyTransport}` : ', payload plain'}`,
      {
        herId: route.toHerId,
      },
    );
    return { kind: 'deliver', route, packaged: packaged.value };
  }

  /**
   * The EPJ sent the content of a held message (or of one its bydel said was not theirs) again,
   * with an x-bydel hint: the hint decides for that message, which leaves by the rest of the
   * path as any routed message does (the held one is routed, the misrouted one sent again to
   * the hinted bydel). Returns what became of it, for the resend's timeline; undefined when
   * there was nothing to do (no hint, the twin neither held nor misrouted).
   */
  private async routeTwinByHint(twin: MessageRow, resendMsgId: string, hint: string | undefined, now: Date): Promise<Record<string, unknown> | undefined> {
    if (hint === undefined || !isBydelCode(hint.trim())) return undefined;
    const { store, config } = this.deps;
    const held = twin.state === 'held';
    if (!held && (await store.expectation(twin.id, 'redirect'))?.state !== 'open') return undefined;
    const stored = await store.latestPayload(twin.id, 'original');
    const original = stored && parseMessage(Buffer.from(stored.body), { contentType: stored.content_type, maxBytes: config.limits.maxMessageBytes });
    if (!original?.ok || original.value.doc.kind !== 'msghead') return { hintNotUsed: `the stored original of ${twin.msg_id} cannot be read` };
    const model = original.value.doc;
    const plan = await this.plan(original.value, model, this.routeInput(model, hint, await this.stayOf(model, now)), now);
    if (plan.kind !== 'deliver') {
      const why = plan.kind === 'reject' ? plan.refusal.error.reason : plan.kind === 'hold' ? 'no rule could decide the bydel by it' : plan.reason;
      return { hintNotUsed: why };
    }
    const bydel = plan.route.rerouted ? plan.route.bydel : null;
    if (held) {
      const parts = deliveryParts(model, plan.route, plan.packaged, config, now);
      const hold = (await store.expectation(twin.id, 'certificate')) ?? (await store.expectation(twin.id, 'routing'));
      const routed = await this.recorder.record(sentFromHold(twin, model, plan.route, parts, hold, { kind: 'hint', twin: resendMsgId }, config, now));
      return routed.stored ? { routedHeld: twin.msg_id, bydel } : { hintNotUsed: `${twin.msg_id} is no longer held` };
    }
    if (plan.route.toHerId === twin.receiver_l2_her_id) return { hintNotUsed: `the hint gives the receiver ${twin.msg_id} was delivered to` };
    const sent = await redirect(
      { ...this.deps, now: () => now },
      twin,
      { parsed: original.value, model },
      plan.route,
      { kind: 'hint', twin: resendMsgId },
      now,
    );
    return sent.ok ? { resent: twin.msg_id, bydel } : { hintNotUsed: sent.reason };
  }

  /**
   * The stay the message belongs to: the patient's running stay at this hospital, when the
   * message is one the gateway routes to a bydel and can follow a stay (not an admission).
   */
  private async stayOf(model: MsgHeadModel, now: Date): Promise<Stay | undefined> {
    const { config, routing, store } = this.deps;
    const level1 = model.receiver.level1.herId;
    if (!followsStay(model) || !level1 || !routing.routeByBydel.has(level1)) return undefined;
    const key = patientKey(model, config.tracking.patientKeySecret);
    if (!key) return undefined;
    const since = new Date(now.getTime() - durationMs(config.routing.stayWindow)).toISOString();
    return findStay(store.db.kysely, {
      patientKey: key,
      hospitalHerId: model.sender.level1.herId ?? null,
      senderHerId: senderHerId(model),
      msgId: model.msgId,
      since,
    });
  }

  private routeInput(model: MsgHeadModel, bydelHint: string | undefined, stay: Stay | undefined): RouteInput {
    return { bydelHint, stay, addressKey: addressKey(model, this.deps.config.tracking.patientKeySecret) };
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

  /**
   * A MsgId stored before: finish what a crash interrupted (items whose lease ran out), leave
   * alone what a live delivery is still publishing, or recognise a duplicate. Undefined for a
   * settled rejection: that is processed again (LESSONS §9.3).
   */
  private async seenBefore(existing: MessageRow): Promise<FlowOutcome | undefined> {
    const resumed = await this.deps.outbox.resume(existing.id);
    if (resumed.published + resumed.deferred > 0) {
      logStage(this.deps.log, {
        event: EVENTS.delivered,
        msgId: existing.msg_id,
        type: existing.msg_type ?? undefined,
        stage: 'dedupe',
        decision: 'resumed',
        state: existing.state,
      });
      return 'resumed';
    }
    if (existing.state === 'rejected' && resumed.inProgress === 0) return undefined;
    const why = resumed.inProgress > 0 ? 'duplicate: the first copy is being published' : 'duplicate';
    await this.recorder.record(duplicateOf(existing, { event: EVENTS.duplicate, stage: 'dedupe', decision: why, state: existing.state }));
    return 'duplicate';
  }

  /** Stores and publishes an outcome; a copy stored by another consumer a moment before makes this one a duplicate. */
  private async record(o: Outcome): Promise<FlowOutcome> {
    const recorded = await this.recorder.record(o);
    if (recorded.stored) return o.kind as FlowOutcome;
    const existing = recorded.conflict === 'duplicate' ? await this.deps.store.getMessage(recorded.existingId) : undefined;
    return (existing && (await this.seenBefore(existing))) ?? 'duplicate';
  }

  private passed(msgId: string, type: string, stage: Stage, decision: string, extra: Record<string, unknown> = {}) {
    logStage(this.deps.log, { event: EVENTS.stagePassed, msgId, type, stage, decision, ...extra });
  }
}

// ------------------------------------------------------------ outcomes (pure)

/** A content duplicate whose x-bydel hint was used (or not) for its twin: said on its timeline and in its log line. */
export function notingTwin(o: Outcome<'duplicate'>, hinted: Record<string, unknown>): Outcome<'duplicate'> {
  const events = o.events.map((e) => (e.event === 'duplicate-content' ? { ...e, detail: { ...e.detail, ...hinted } } : e));
  const what = hinted.routedHeld ? '; its hint routed the held twin' : hinted.resent ? '; its hint sent the misrouted twin again' : '; its hint was not used';
  return { ...o, events, log: { ...o.log, decision: `${o.log.decision}${what}`, ...hinted } };
}

/** The columns every outgoing message has, whatever becomes of it. */
export function outboundMessage(model: MsgHeadModel | undefined, parsed: ParsedMessage | undefined, fallbackId?: string): NewMessage {
  return {
    msg_id: model?.msgId ?? fallbackId ?? `unparsed-${randomUUID()}`,
    direction: 'out',
    sender_her_id: model ? senderHerId(model) : null,
    msg_type: model?.type ?? null,
    state: 'received',
    conversation_id: model && parsed ? conversationIdOf(parsed, model) : null,
    conversation_ref: model?.conversationRef?.refToConversation ?? null,
    receiver_l1_her_id: model?.receiver.level1.herId ?? null,
    receiver_l2_her_id: model?.receiver.level2?.herId ?? null,
    content_hash: parsed ? contentHash(parsed.businessXml) : null,
    gen_date: model?.genDate ?? null,
    event_time: model ? ownEventTime(model) : null,
    error_code: null,
    error_reason: null,
  };
}

/** The outcome of a message that parsed as a MsgHead, from the plan for it. */
export function outboundOutcome(ctx: OutboundContext, delivery: EpjDelivery, parsed: ParsedMessage, model: MsgHeadModel, plan: Plan): Outcome {
  switch (plan.kind) {
    case 'reject':
      return rejectedOutbound(ctx, delivery, plan.refusal, parsed);
    case 'hold':
      return held(ctx, delivery, parsed, model, plan);
    case 'hold-certificate':
      return heldForCertificate(ctx, delivery, parsed, model, plan);
    case 'deliver':
      return delivered(ctx, delivery, parsed, model, plan);
  }
}

/** Signed for the bydel: the delivery, its payloads, its deadlines; and an answer wait it ends. */
export function delivered(
  ctx: OutboundContext,
  delivery: Arrival,
  parsed: ParsedMessage,
  model: MsgHeadModel,
  plan: Extract<Plan, { kind: 'deliver' }>,
): Outcome<'delivered'> {
  const parts = deliveryParts(model, plan.route, plan.packaged, ctx.config, ctx.now);
  return outcome(
    'delivered',
    { insert: { ...outboundMessage(model, parsed), ...parts.patch } },
    { event: EVENTS.delivered, msgId: model.msgId, type: model.type, stage: 'publish', decision: `delivered to ${plan.route.toHerId}`, ...parts.routedTo },
    {
      payloads: [originalPayload(delivery), parts.payload],
      events: [receivedEvent(delivery, parsed.framing), { stage: 'validate', event: 'validated' }, ...parts.events],
      expectations: parts.expectations,
      outbox: parts.outbox,
      effects: deliveryLinkOf(model) ? [{ effect: 'link-on-delivery', model, conversationId: plan.packaged.conversationId }] : [],
    },
  );
}

/** No rule could decide the bydel: held for ops, with its `unroutable` alert firing at once. */
export function held(
  ctx: OutboundContext,
  delivery: Arrival,
  parsed: ParsedMessage,
  model: MsgHeadModel,
  plan: Extract<Plan, { kind: 'hold' }>,
): Outcome<'held'> {
  const message = { ...outboundMessage(model, parsed), state: 'held' as const, receiver_l2_her_id: null };
  // Only the rules that had something to go on explain why: "no hint given" explains nothing.
  const decisive = plan.verdicts.filter((_, i) => !ABSENT_INPUT.has(plan.reasons[i]));
  const alert = buildAlert({
    kind: 'unroutable',
    state: 'firing',
    severity: 'warning',
    eventId: EVENTS.alertUnroutable,
    msgId: model.msgId,
    conversationId: message.conversation_id ?? undefined,
    msgType: model.type,
    receiverHerId: message.receiver_l1_her_id ?? undefined,
    firedAt: ctx.now,
    text: `Held for manual routing: no rule could decide the bydel (${decisive.join('; ') || 'no usable address'}).`,
  });
  return outcome(
    'held',
    { insert: message },
    { event: EVENTS.held, msgId: model.msgId, type: model.type, stage: 'route', decision: 'held for manual routing' },
    {
      payloads: [originalPayload(delivery)],
      events: [
        receivedEvent(delivery, parsed.framing),
        { stage: 'validate', event: 'validated' },
        { stage: 'route', event: 'held-unroutable', detail: { verdicts: plan.verdicts, reasons: plan.reasons, alertId: alert.id } },
      ],
      expectations: [heldExpectation('routing', ctx.now, alert.id, alertPolicy(ctx.config))],
      outbox: [alertItem(ctx.config.broker, alert)],
    },
  );
}

/**
 * Routed, but the receiver has no usable encryption certificate: held, not rejected (the
 * register's problem, not the hospital's), with its `receiver-certificate` alert firing at once.
 * The decided target is kept on the timeline, so the release sends it where the rules sent it.
 */
export function heldForCertificate(
  ctx: OutboundContext,
  delivery: Arrival,
  parsed: ParsedMessage,
  model: MsgHeadModel,
  plan: Extract<Plan, { kind: 'hold-certificate' }>,
): Outcome<'held'> {
  const { route } = plan;
  const message = {
    ...outboundMessage(model, parsed),
    state: 'held' as const,
    bydel: route.rerouted ? route.bydel : null,
    route_rule: route.rerouted ? route.rule : 'kept-receiver',
    receiver_l1_her_id: route.rerouted ? route.receiver.level1.herId : (model.receiver.level1.herId ?? null),
    receiver_l2_her_id: route.toHerId,
    patient_key: patientKey(model, ctx.config.tracking.patientKeySecret),
  };
  const alert = buildAlert({
    kind: 'receiver-certificate',
    state: 'firing',
    severity: 'warning',
    eventId: EVENTS.alertReceiverCertificate,
    msgId: model.msgId,
    conversationId: message.conversation_id ?? undefined,
    msgType: model.type,
    bydel: message.bydel ?? undefined,
    receiverHerId: route.toHerId,
    firedAt: ctx.now,
    text: `Held, not sent: ${plan.reason}. It leaves when the address register has a usable certificate (the register file is read again when it changes), or when ops release or route it.`,
  });
  return outcome(
    'held',
    { insert: message },
    {
      event: EVENTS.heldForCertificate,
      msgId: model.msgId,
      type: model.type,
      stage: 'encrypt',
      decision: 'held: no usable receiver certificate',
      herId: route.toHerId,
    },
    {
      payloads: [originalPayload(delivery)],
      events: [
        receivedEvent(delivery, parsed.framing),
        { stage: 'validate', event: 'validated' },
        { stage: 'route', event: route.rerouted ? 'routed' : 'receiver-kept', detail: { herId: route.toHerId, explanation: route.explanation } },
        { stage: 'encrypt', event: 'held-certificate', detail: { reason: plan.reason, alertId: alert.id, target: route } },
      ],
      expectations: [heldExpectation('certificate', ctx.now, alert.id, alertPolicy(ctx.config))],
      outbox: [alertItem(ctx.config.broker, alert)],
    },
  );
}

/**
 * Refused: a negative AppRec to the EPJ (never for an AppRec: one the gateway cannot return is
 * for ops, in the DLQ) and the original, unchanged, to the DLQ.
 */
export function rejectedOutbound(ctx: OutboundContext, delivery: EpjDelivery, refusal: Refusal, parsed?: ParsedMessage): Outcome<'rejected'> {
  const { config, now } = ctx;
  const doc = parsed?.doc;
  const model = doc?.kind === 'msghead' ? doc : undefined;
  const appRecFromEpj = doc?.kind === 'apprec' ? doc : undefined;
  const message = outboundMessage(model, parsed, appRecFromEpj?.id ?? delivery.amqpMessageId);
  const original: RoutingHeaders = {
    msgId: model?.msgId ?? appRecFromEpj?.id,
    msgType: model?.type ?? (appRecFromEpj && 'APPREC'),
    conversationId: message.conversation_id ?? undefined,
    fromHerId: message.sender_her_id ?? undefined,
    toHerId: model?.receiver.level2?.herId ?? model?.receiver.level1.herId,
  };
  const { code, reason } = refusal.error;
  const error = { code, reason, stage: refusal.stage, sourceQueue: config.broker.queues.epjOutbound, firstFailedAt: now.toISOString(), attempts: 1 };
  const dlq = dlqItem(config.broker, original, error, { body: delivery.body, contentType: delivery.contentType });
  // the EPJ's bydel hint travels with the dead letter, so that a replay is routed as the original would have been
  if (delivery.bydelHint && isBydelCode(delivery.bydelHint)) dlq.headers['x-bydel'] = delivery.bydelHint;
  const gateway = { level1: { name: 'plo-gateway', herId: config.ownHerId } };
  const appRecId = randomUUID();
  const receipt = appRecFromEpj
    ? undefined
    : appRecItem(
        config.broker,
        {
          msgId: appRecId,
          msgType: 'APPREC',
          conversationId: original.conversationId,
          fromHerId: original.toHerId ?? config.ownHerId,
          toHerId: original.fromHerId ?? config.ownHerId,
        },
        model?.msgId,
        negativeAppRec({ id: appRecId, error: refusal.error, now, model, unreadable: { msgId: delivery.amqpMessageId ?? 'ukjent', party: gateway } }),
      );
  return rejection({
    message,
    arrival: delivery,
    received: receivedEvent(delivery, parsed?.framing ?? 'unknown'),
    refusal,
    dlq,
    receipt,
    log: { event: EVENTS.rejected },
  });
}

/**
 * The same MsgId again after a rejection (or replayed with the dedupe skipped): the stored row
 * takes the new outcome, with everything a first delivery writes (payloads, expectations).
 */
export function inPlaceOf<K extends Outcome['kind']>(previous: MessageRow, o: Outcome<K>): Outcome<K> {
  if (!('insert' in o.message)) return o;
  const { msg_id, direction, sender_her_id, ...patch } = o.message.insert;
  return {
    ...o,
    message: { update: previous.id, patch, guard: { state: previous.state } },
    events: [
      {
        stage: 'dedupe',
        event: previous.state === 'rejected' ? 'resent-after-rejection' : 'replayed-skipping-dedupe',
        detail: { previousCode: previous.error_code, previousState: previous.state },
      },
      ...o.events,
    ],
  };
}
