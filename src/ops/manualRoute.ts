// Held messages leave by one of three doors, each running the rest of the outbound path as for
// any routed message (packageDelivery) from the stored original:
//  * `plo-gateway route <msgId> --bydel <code>`: ops decide the bydel of a message held as
//    unroutable (or send one held for a certificate elsewhere);
//  * `plo-gateway messages release <msgId>`: ops try again a message held for its receiver's
//    encryption certificate, to the target the rules chose;
//  * the gateway itself, when the register has a usable certificate (releaseCertificateHolds).
// The state change, the delivery, its expectations, the resolved hold alert and (for ops) the
// audit row commit in one transaction.
import type { GatewayConfig } from '../config/config.js';
import {
  type DeliveryParts,
  type DeliveryTarget,
  deliveryParts,
  type ManualTarget,
  packageDelivery,
  type SigningMaterial,
  senderHerId,
} from '../flows/packageDelivery.js';
import type { MsgHeadModel, ParsedMessage } from '../mapping/model.js';
import { parseMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import type { Agreements } from '../outbound/agreements/agreements.js';
import { CppaUnavailable } from '../outbound/agreements/client.js';
import { warmRevocation } from '../outbound/package.js';
import type { RevocationChecker } from '../outbound/revocation.js';
import { alertItem } from '../outbox/items.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import { bydelName, isBydelCode, serviceBydel } from '../routing/bydeler.js';
import type { RoutingContext } from '../routing/route.js';
import { messageDay } from '../routing/validity.js';
import type { Alert } from '../tracking/alerts.js';
import type { ExpectationRow, MessageRow } from '../tracking/db.js';
import { alertPolicy, conditionAlert } from '../tracking/deadlines.js';
import { type Outcome, outcome } from '../tracking/outcome.js';
import { closesAnswerWait, Receipts } from '../tracking/receipts.js';
import { OutcomeRecorder } from '../tracking/recorder.js';
import type { Store } from '../tracking/store.js';
import { type Actor, fail, type OpsResult } from './result.js';

export interface ManualRouteDeps {
  config: GatewayConfig;
  store: Store;
  routing: RoutingContext;
  signing: SigningMaterial;
  /** the CPAs deliveries are sent under, when the CPPA register is configured */
  agreements?: Agreements;
  /** receivers' CRLs: a message whose receiver's certificate is revoked stays held */
  revocation?: RevocationChecker;
  /** publishes what was stored at once; without it (or when that fails) the gateway's relay does */
  outbox?: OutboxPublisher;
  log: Logger;
  now?: () => Date;
}

export interface Routed {
  messageId: number;
  msgId: string;
  bydel: string;
  toHerId: string;
  /** false: stored, and the outbox relay of a running gateway will publish it */
  published: boolean;
}

/** What `resolved_by` records on the held message's expectation (and the resolved alert says). */
const RESOLVED_BY = { route: 'manual-route', release: 'manual-release', certificate: 'certificate-available' } as const;

export async function routeHeldMessage(msgId: string, bydel: string, by: Actor, deps: ManualRouteDeps): Promise<OpsResult<Routed>> {
  const now = (deps.now ?? (() => new Date()))();
  const found = await heldMessage(deps.store, msgId);
  if (!found.ok) return found;
  const original = await heldOriginal(deps, found.value);
  if (!original.ok) return original;
  const target = manualTarget(original.value.model, bydel, deps.routing, now);
  if (!target.ok) return target;
  return sendHeld(deps, found.value, original.value, target.value, { kind: 'route', by }, now);
}

/** `messages release`: a message held for its receiver's certificate, tried again now to the target the rules chose. */
export async function releaseHeldMessage(msgId: string, by: Actor, deps: ManualRouteDeps): Promise<OpsResult<Routed>> {
  const now = (deps.now ?? (() => new Date()))();
  const found = await heldMessage(deps.store, msgId);
  if (!found.ok) return found;
  return releaseHeld(deps, found.value, { kind: 'release', by }, now);
}

/**
 * The gateway's own round: every message held for a certificate whose receiver now has a usable
 * one leaves. Returns how many left; the others stay held with their alert firing.
 */
export async function releaseCertificateHolds(deps: ManualRouteDeps, limit = 100): Promise<{ released: number; stillHeld: number }> {
  const now = (deps.now ?? (() => new Date()))();
  let released = 0;
  const held = await deps.store.heldForCertificate(limit);
  for (const message of held) {
    const result = await releaseHeld(deps, message, { kind: 'certificate' }, now);
    if (result.ok) released++;
  }
  return { released, stillHeld: held.length - released };
}

export type Door = { kind: 'route' | 'release'; by: Actor } | { kind: 'certificate' };

async function releaseHeld(deps: ManualRouteDeps, message: MessageRow, door: Door, now: Date): Promise<OpsResult<Routed>> {
  const hold = await deps.store.expectation(message.id, 'certificate');
  const heldEvent = await deps.store.latestEvent(message.id, 'held-certificate');
  const target = heldEvent?.detail ? (JSON.parse(heldEvent.detail) as { target?: DeliveryTarget }).target : undefined;
  if (hold?.state !== 'open' || !target)
    return fail('conflict', `${message.msg_id} is not held for a receiver certificate: route it with \`plo-gateway route\``);
  const original = await heldOriginal(deps, message);
  if (!original.ok) return original;
  return sendHeld(deps, message, original.value, target, door, now);
}

async function heldOriginal(deps: ManualRouteDeps, message: MessageRow): Promise<OpsResult<{ parsed: ParsedMessage; model: MsgHeadModel }>> {
  const original = await deps.store.latestPayload(message.id, 'original');
  if (!original) return fail('invalid', `the original payload of ${message.msg_id} is missing`);
  const parsed = parseMessage(Buffer.from(original.body), { contentType: original.content_type, maxBytes: deps.config.limits.maxMessageBytes });
  if (!parsed.ok || parsed.value.doc.kind !== 'msghead') return fail('invalid', `the stored original of ${message.msg_id} cannot be read as a MsgHead`);
  return { ok: true, value: { parsed: parsed.value, model: parsed.value.doc } };
}

async function sendHeld(
  deps: ManualRouteDeps,
  message: MessageRow,
  original: { parsed: ParsedMessage; model: MsgHeadModel },
  target: DeliveryTarget,
  door: Door,
  now: Date,
): Promise<OpsResult<Routed>> {
  const { parsed, model } = original;
  const fromHerId = senderHerId(model) ?? deps.config.ownHerId;
  try {
    await deps.agreements?.ensure(fromHerId, target.toHerId);
  } catch (e) {
    if (!(e instanceof CppaUnavailable)) throw e;
    return fail('conflict', `${message.msg_id} cannot leave yet: ${e.message}, and the agreement with HER-id ${target.toHerId} is not known`);
  }
  const partners = { config: deps.config, register: deps.routing.register, signing: deps.signing, agreements: deps.agreements, revocation: deps.revocation };
  await warmRevocation(partners, target.toHerId, now);
  const packaged = packageDelivery(parsed, model, target, partners, now);
  if (!packaged.ok) return fail('conflict', `${message.msg_id} cannot leave yet: ${packaged.reason}`);
  const parts = deliveryParts(model, target, packaged.value, deps.config, now);
  const hold = (await deps.store.expectation(message.id, 'certificate')) ?? (await deps.store.expectation(message.id, 'routing'));
  const sent = sentFromHold(message, model, target, parts, hold, door, deps.config, now);
  const recorder = new OutcomeRecorder({
    store: deps.store,
    receipts: new Receipts(deps.store.db.kysely, deps.config.tracking),
    log: deps.log,
    outbox: deps.outbox,
  });
  const recorded = await recorder.record(sent);
  if (!recorded.stored) return fail('conflict', `${message.msg_id} is no longer held (sent by someone else meanwhile)`);
  const bydel = target.rerouted ? target.bydel : '';
  return { ok: true, value: { messageId: message.id, msgId: message.msg_id, bydel, toHerId: target.toHerId, published: recorded.published } };
}

async function heldMessage(store: Store, msgId: string): Promise<OpsResult<MessageRow>> {
  const outgoing = (await store.findByMsgId(msgId)).filter((m) => m.direction === 'out');
  const held = outgoing.filter((m) => m.state === 'held');
  if (held.length === 1) return { ok: true, value: held[0] };
  if (held.length > 1) return fail('conflict', `${held.length} held messages from different senders share MsgId ${msgId}: cannot tell which one to route`);
  if (outgoing.length > 0) return fail('conflict', `${msgId} is not held (state ${outgoing[outgoing.length - 1].state})`);
  return fail('not-found', `no outgoing message with MsgId ${msgId}`);
}

/** The bydel ops named, its service for this message type, and the receiver to write. */
export function manualTarget(model: MsgHeadModel, bydel: string, routing: RoutingContext, now: Date): OpsResult<ManualTarget> {
  if (!isBydelCode(bydel)) return fail('invalid', `${bydel} is not a bydel code (030101–030117)`);
  const serving = serviceBydel(bydel);
  if (!serving) return fail('invalid', `${bydelName(bydel)} (${bydel}) is served by several bydeler: name the one that serves the patient`);
  const serviceCode = routing.serviceByType[model.type];
  if (!serviceCode) return fail('invalid', `no bydel service is configured for message type ${model.type}`);
  const found = routing.register.bydelService(serving, serviceCode, messageDay(model.genDate, now));
  if (!found) return fail('invalid', `${bydelName(serving)} (${serving}) has no active ${serviceCode} service in the address register`);
  const via = serving === bydel ? '' : `, served by ${bydelName(serving)} (${serving})`;
  return {
    ok: true,
    value: {
      action: 'deliver',
      rerouted: true,
      bydel: serving,
      rule: 'manual',
      explanation: `ops routed it to ${bydelName(bydel)} (${bydel})${via}`,
      receiver: {
        level1: { name: found.organisation.name, herId: found.organisation.herId },
        level2: { name: found.service.name, herId: found.service.herId },
      },
      toHerId: found.service.herId,
    },
  };
}

/**
 * A held message sent on: it leaves as one routed by a rule would (packageDelivery), its hold
 * (routing or certificate) is met, its alert resolves, and what ops decided is audited; only
 * while it is still held.
 */
export function sentFromHold(
  message: MessageRow,
  model: MsgHeadModel,
  target: DeliveryTarget,
  parts: DeliveryParts,
  hold: ExpectationRow | undefined,
  door: Door,
  config: GatewayConfig,
  now: Date,
): Outcome<'routed'> {
  // A message held before expectations existed has no row, but did publish its firing alert.
  const firing = !hold || hold.alert_state === 'firing';
  const resolvedBy = RESOLVED_BY[door.kind];
  const resolved = firing ? resolvedAlert(message, target, hold, resolvedBy, config, now) : undefined;
  const bydel = target.rerouted ? { bydel: target.bydel } : {};
  const manually = door.kind === 'route';
  return outcome(
    'routed',
    { update: message.id, patch: parts.patch, guard: { state: 'held' } },
    {
      event: manually ? EVENTS.routedManually : EVENTS.releasedFromHold,
      msgId: message.msg_id,
      type: model.type,
      stage: 'route',
      decision: manually ? `routed manually to bydel ${target.rerouted ? target.bydel : target.toHerId}` : `released to ${target.toHerId} (${resolvedBy})`,
      ...parts.routedTo,
    },
    {
      payloads: [parts.payload],
      events: manually ? parts.events : [{ stage: 'encrypt', event: 'released', detail: { by: resolvedBy } }, ...parts.events],
      expectations: parts.expectations,
      outbox: resolved ? [...parts.outbox, alertItem(config.broker, resolved)] : parts.outbox,
      effects: [
        { effect: 'resolve', kind: hold?.kind ?? 'routing', by: resolvedBy, alertResolved: firing },
        ...(closesAnswerWait(model) ? [{ effect: 'close-answer-wait' as const, model, conversationId: message.conversation_id ?? model.msgId }] : []),
        ...('by' in door
          ? [
              {
                effect: 'audit' as const,
                entry: {
                  actor: door.by.actor,
                  action: manually ? 'message.route' : 'message.release',
                  target: `message:${message.msg_id}`,
                  reason: door.by.reason,
                  detail: { via: door.by.via, ...bydel, toHerId: target.toHerId, storeId: message.id },
                },
              },
            ]
          : []),
      ],
    },
  );
}

/** The resolution of the held message's alert (the deadline engine then finds nothing left to resolve). */
function resolvedAlert(
  message: MessageRow,
  target: DeliveryTarget,
  hold: ExpectationRow | undefined,
  resolvedBy: string,
  config: GatewayConfig,
  now: Date,
): Alert {
  return conditionAlert(
    'resolved',
    {
      expectationId: hold?.id ?? 0,
      kind: hold?.kind === 'certificate' ? 'certificate' : 'routing',
      dueAt: hold?.due_at ?? message.created_at,
      alertId: hold?.alert_id ?? null,
      reminders: hold?.reminders ?? 0,
      resolvedBy,
      messageId: message.id,
      msgId: message.msg_id,
      msgType: message.msg_type,
      conversationId: message.conversation_id,
      bydel: target.rerouted ? target.bydel : null,
      receiverHerId: target.toHerId,
      genDate: message.gen_date,
      createdAt: message.created_at,
      appRecErrors: null,
      transportErrors: null,
    },
    now,
    alertPolicy(config),
  );
}
