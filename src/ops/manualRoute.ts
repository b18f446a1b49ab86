// `plo-gateway route <msgId> --bydel <code>`: ops decide the bydel of a message held as
// unroutable. The rest of the outbound path runs as for any routed message (packageDelivery),
// from the stored original; the state change, the delivery, its expectations, the resolved
// `unroutable` alert and the audit row commit in one transaction.
import type { GatewayConfig } from '../config/config.js';
import { type DeliveryParts, deliveryParts, type ManualTarget, packageDelivery, type SigningMaterial } from '../flows/packageDelivery.js';
import type { MsgHeadModel } from '../mapping/model.js';
import { parseMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
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

/** What `resolved_by` records on the held message's routing expectation (and the alert says). */
const RESOLVED_BY = 'manual-route';

export async function routeHeldMessage(msgId: string, bydel: string, by: Actor, deps: ManualRouteDeps): Promise<OpsResult<Routed>> {
  const now = (deps.now ?? (() => new Date()))();
  const found = await heldMessage(deps.store, msgId);
  if (!found.ok) return found;
  const message = found.value;

  const original = await deps.store.latestPayload(message.id, 'original');
  if (!original) return fail('invalid', `the original payload of ${msgId} is missing`);
  const parsed = parseMessage(Buffer.from(original.body), { contentType: original.content_type, maxBytes: deps.config.limits.maxMessageBytes });
  if (!parsed.ok || parsed.value.doc.kind !== 'msghead') return fail('invalid', `the stored original of ${msgId} cannot be read as a MsgHead`);
  const model = parsed.value.doc;

  const target = manualTarget(model, bydel, deps.routing, now);
  if (!target.ok) return target;
  const packaged = packageDelivery(parsed.value, model, target.value, { config: deps.config, register: deps.routing.register, signing: deps.signing });
  const parts = deliveryParts(model, target.value, packaged, deps.config, now);

  const hold = await deps.store.expectation(message.id, 'routing');
  const routed = routedByOps(message, model, target.value, parts, hold, by, deps.config, now);
  const recorder = new OutcomeRecorder({
    store: deps.store,
    receipts: new Receipts(deps.store.db.kysely, deps.config.tracking),
    log: deps.log,
    outbox: deps.outbox,
  });
  const recorded = await recorder.record(routed);
  if (!recorded.stored) return fail('conflict', `${msgId} is no longer held (routed by someone else meanwhile)`);
  return { ok: true, value: { messageId: message.id, msgId, bydel: target.value.bydel, toHerId: target.value.toHerId, published: recorded.published } };
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
 * A held message routed by ops: it leaves as one routed by a rule would (packageDelivery), its
 * routing expectation is met, its `unroutable` alert resolves, and the decision is audited; only
 * while it is still held.
 */
export function routedByOps(
  message: MessageRow,
  model: MsgHeadModel,
  target: ManualTarget,
  parts: DeliveryParts,
  hold: ExpectationRow | undefined,
  by: Actor,
  config: GatewayConfig,
  now: Date,
): Outcome<'routed'> {
  // A message held before expectations existed has no row, but did publish its firing alert.
  const firing = !hold || hold.alert_state === 'firing';
  const resolved = firing ? resolvedAlert(message, target, hold, config, now) : undefined;
  return outcome(
    'routed',
    { update: message.id, patch: parts.patch, guard: { state: 'held' } },
    {
      event: EVENTS.routedManually,
      msgId: message.msg_id,
      type: model.type,
      stage: 'route',
      decision: `routed manually to bydel ${target.bydel}`,
      ...parts.routedTo,
    },
    {
      payloads: [parts.payload],
      events: parts.events,
      expectations: parts.expectations,
      outbox: resolved ? [...parts.outbox, alertItem(config.broker, resolved)] : parts.outbox,
      effects: [
        { effect: 'resolve', kind: 'routing', by: RESOLVED_BY, alertResolved: firing },
        ...(closesAnswerWait(model) ? [{ effect: 'close-answer-wait' as const, model, conversationId: message.conversation_id ?? model.msgId }] : []),
        {
          effect: 'audit',
          entry: {
            actor: by.actor,
            action: 'message.route',
            target: `message:${message.msg_id}`,
            reason: by.reason,
            detail: { via: by.via, bydel: target.bydel, toHerId: target.toHerId, storeId: message.id },
          },
        },
      ],
    },
  );
}

/** The resolution of the held message's `unroutable` alert (the deadline engine then finds nothing left to resolve). */
function resolvedAlert(message: MessageRow, target: ManualTarget, hold: ExpectationRow | undefined, config: GatewayConfig, now: Date): Alert {
  return conditionAlert(
    'resolved',
    {
      expectationId: hold?.id ?? 0,
      kind: 'routing',
      dueAt: hold?.due_at ?? message.created_at,
      alertId: hold?.alert_id ?? null,
      reminders: hold?.reminders ?? 0,
      resolvedBy: RESOLVED_BY,
      messageId: message.id,
      msgId: message.msg_id,
      msgType: message.msg_type,
      conversationId: message.conversation_id,
      bydel: target.bydel,
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
