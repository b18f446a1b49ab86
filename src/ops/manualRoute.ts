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
  type Packaged,
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
import { readyToPackage } from '../outbound/package.js';
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
import { deliveryLinkOf, Receipts } from '../tracking/receipts.js';
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
const RESOLVED_BY = { route: 'manual-route', release: 'manual-release', certificate: 'certificate-available', hint: 'epj-hint' } as const;

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

export type Door =
  | { kind: 'route' | 'release'; by: Actor }
  | { kind: 'certificate' }
  /** the EPJ sent the held message's content again with an x-bydel hint: the hint routes it */
  | { kind: 'hint'; twin: string };

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

/**
 * The stored original packaged for `target`, once what packaging reads of the partner is at hand
 * (its CPA, its CRL); else why it cannot go, in one sentence (`cannot` words it for the door).
 */
async function packagedFor(
  deps: ManualRouteDeps,
  message: MessageRow,
  { parsed, model }: { parsed: ParsedMessage; model: MsgHeadModel },
  target: DeliveryTarget,
  now: Date,
  cannot: { yet: string; there: string },
): Promise<OpsResult<Packaged>> {
  const partners = { config: deps.config, register: deps.routing.register, signing: deps.signing, agreements: deps.agreements, revocation: deps.revocation };
  try {
    await readyToPackage(partners, senderHerId(model) ?? deps.config.ownHerId, target.toHerId, now);
  } catch (e) {
    if (!(e instanceof CppaUnavailable)) throw e;
    return fail('conflict', `${message.msg_id} ${cannot.yet}: ${e.message}, and the agreement with HER-id ${target.toHerId} is not known`);
  }
  const packaged = packageDelivery(parsed, model, target, partners, now);
  return packaged.ok ? packaged : fail('conflict', `${message.msg_id} ${cannot.there}: ${packaged.reason}`);
}

async function sendHeld(
  deps: ManualRouteDeps,
  message: MessageRow,
  original: { parsed: ParsedMessage; model: MsgHeadModel },
  target: DeliveryTarget,
  door: Door,
  now: Date,
): Promise<OpsResult<Routed>> {
  const { model } = original;
  const packaged = await packagedFor(deps, message, original, target, now, { yet: 'cannot leave yet', there: 'cannot leave yet' });
  if (!packaged.ok) return packaged;
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
  const byHint = door.kind === 'hint' ? door : undefined;
  return outcome(
    'routed',
    { update: message.id, patch: parts.patch, guard: { state: 'held' } },
    {
      event: manually ? EVENTS.routedManually : byHint ? EVENTS.routedByTwinHint : EVENTS.releasedFromHold,
      msgId: message.msg_id,
      type: model.type,
      stage: 'route',
      decision: manually
        ? `routed manually to bydel ${target.rerouted ? target.bydel : target.toHerId}`
        : byHint
          ? `routed by the x-bydel hint of its content twin ${byHint.twin}`
          : `released to ${target.toHerId} (${resolvedBy})`,
      ...parts.routedTo,
    },
    {
      payloads: [parts.payload],
      events: manually
        ? parts.events
        : byHint
          ? [{ stage: 'dedupe', event: 'routed-by-twin-hint', detail: { twin: byHint.twin } }, ...parts.events]
          : [{ stage: 'encrypt', event: 'released', detail: { by: resolvedBy } }, ...parts.events],
      expectations: parts.expectations,
      outbox: resolved ? [...parts.outbox, alertItem(config.broker, resolved)] : parts.outbox,
      effects: [
        { effect: 'resolve', kind: hold?.kind ?? 'routing', by: resolvedBy, alertResolved: firing },
        ...(deliveryLinkOf(model) ? [{ effect: 'link-on-delivery' as const, model, conversationId: message.conversation_id ?? model.msgId }] : []),
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

// ------------------------------------------------------------ a delivered message, sent elsewhere

/** Where a redirect came from: ops (`route --resend`, audited), or the x-bydel hint of the EPJ's resend. */
export type RedirectBy = { kind: 'ops'; by: Actor } | { kind: 'hint'; twin: string };

/** What `resolved_by` says on the earlier delivery's expectations, and on a `redirect` wait. */
const SUPERSEDED = 'superseded:resend';
const REDIRECTED_BY = { ops: 'manual-resend', hint: 'epj-hint' } as const;

/** States of a message whose delivery went out (or is going out): the ones `--resend` takes. */
const DELIVERED: ReadonlySet<string> = new Set(['received', 'published', 'transport-error']);

/**
 * `plo-gateway route <msgId> --bydel <code> --resend`: a message already delivered (to the wrong
 * bydel, as its DIALOG_AVVIK "feil adressat" said) is sent to this bydel, from the stored
 * original, under a new ebXML MessageId; what the earlier delivery still waited for is closed as
 * superseded and the new delivery's waits open; its `wrong-receiver` alert resolves; audited.
 */
export async function resendDelivered(msgId: string, bydel: string, by: Actor, deps: ManualRouteDeps): Promise<OpsResult<Routed>> {
  const now = (deps.now ?? (() => new Date()))();
  const outgoing = (await deps.store.findByMsgId(msgId)).filter((m) => m.direction === 'out');
  if (outgoing.length === 0) return fail('not-found', `no outgoing message with MsgId ${msgId}`);
  const delivered = outgoing.filter((m) => DELIVERED.has(m.state) && m.ebxml_message_id !== null);
  if (delivered.length > 1)
    return fail('conflict', `${delivered.length} delivered messages from different senders share MsgId ${msgId}: cannot tell which one to send`);
  const message = delivered[0];
  if (!message) {
    const state = outgoing[outgoing.length - 1].state;
    return fail('conflict', state === 'held' ? `${msgId} is held, not delivered: route it without --resend` : `${msgId} was not delivered (state ${state})`);
  }
  const original = await heldOriginal(deps, message);
  if (!original.ok) return original;
  const target = manualTarget(original.value.model, bydel, deps.routing, now);
  if (!target.ok) return target;
  if (target.value.toHerId === message.receiver_l2_her_id)
    return fail('conflict', `${msgId} was delivered to HER-id ${target.value.toHerId} already: name the bydel it should have gone to`);
  return redirect(deps, message, original.value, target.value, { kind: 'ops', by }, now);
}

/** Packages the stored original for the new target and records the redirect in one transaction. */
export async function redirect(
  deps: ManualRouteDeps,
  message: MessageRow,
  original: { parsed: ParsedMessage; model: MsgHeadModel },
  target: DeliveryTarget,
  by: RedirectBy,
  now: Date,
): Promise<OpsResult<Routed>> {
  const { model } = original;
  const packaged = await packagedFor(deps, message, original, target, now, { yet: 'cannot be sent yet', there: 'cannot be sent there' });
  if (!packaged.ok) return packaged;
  const parts = deliveryParts(model, target, packaged.value, deps.config, now);
  const expectations = await deps.store.expectationsOf(message.id);
  const recorder = new OutcomeRecorder({
    store: deps.store,
    receipts: new Receipts(deps.store.db.kysely, deps.config.tracking),
    log: deps.log,
    outbox: deps.outbox,
  });
  const recorded = await recorder.record(redirected(message, model, target, parts, expectations, by, deps.config, now));
  if (!recorded.stored) return fail('conflict', `${message.msg_id} changed meanwhile (someone else sent or updated it): look at its timeline and try again`);
  const bydel = target.rerouted ? target.bydel : '';
  return { ok: true, value: { messageId: message.id, msgId: message.msg_id, bydel, toHerId: target.toHerId, published: recorded.published } };
}

/**
 * A delivered message sent again to another receiver (pure): the row takes the new delivery
 * (receiver, bydel, rule, ebXML MessageId; what came back for the earlier one is cleared, and
 * stays on the timeline), the earlier delivery's open waits close as superseded with their
 * firing alerts resolved, the new delivery's waits open, the `redirect` wait is met; only while
 * the row is as it was read.
 */
export function redirected(
  message: MessageRow,
  model: MsgHeadModel,
  target: DeliveryTarget,
  parts: DeliveryParts,
  expectations: ExpectationRow[],
  by: RedirectBy,
  config: GatewayConfig,
  now: Date,
): Outcome<'routed'> {
  const open = expectations.filter((x) => x.state === 'open');
  const redirectWait = open.find((x) => x.kind === 'redirect');
  const resolvedBy = (x: ExpectationRow) => (x.kind === 'redirect' ? REDIRECTED_BY[by.kind] : SUPERSEDED);
  const resolutions = open.filter((x) => x.alert_state === 'firing').map((x) => expectationResolved(message, x, resolvedBy(x), config, now));
  const toBydel = target.rerouted ? target.bydel : null;
  const detail = {
    fromBydel: message.bydel,
    fromHerId: message.receiver_l2_her_id,
    toBydel,
    toHerId: target.toHerId,
    previousEbxmlMessageId: message.ebxml_message_id,
    superseded: open.filter((x) => x.kind !== 'redirect').map((x) => x.kind),
    by: by.kind === 'ops' ? 'ops' : 'epj-hint',
    ...(by.kind === 'hint' ? { twin: by.twin } : {}),
  };
  const cleared = {
    transport_state: null,
    transport_at: null,
    transport_errors: null,
    apprec_status: null,
    apprec_at: null,
    apprec_errors: null,
    answer_state: null,
    answered_at: null,
    answer_msg_id: null,
    answer_rule: null,
    closed_by: null,
  };
  return outcome(
    'routed',
    { update: message.id, patch: { ...parts.patch, ...cleared }, guard: { state: message.state } },
    {
      event: EVENTS.redirected,
      msgId: message.msg_id,
      type: model.type,
      stage: 'route',
      decision: `sent again to ${toBydel ? `bydel ${toBydel}` : target.toHerId} (was ${message.bydel ? `bydel ${message.bydel}` : message.receiver_l2_her_id})`,
      ...parts.routedTo,
    },
    {
      payloads: [parts.payload],
      events: [{ stage: 'route', event: 'redirected', detail }, ...parts.events],
      outbox: [...parts.outbox, ...resolutions.map((a) => alertItem(config.broker, a))],
      effects: [
        ...(redirectWait
          ? [{ effect: 'resolve' as const, kind: 'redirect' as const, by: REDIRECTED_BY[by.kind], alertResolved: redirectWait.alert_state === 'firing' }]
          : []),
        { effect: 'supersede', by: SUPERSEDED, expectations: parts.expectations },
        ...(by.kind === 'ops'
          ? [
              {
                effect: 'audit' as const,
                entry: {
                  actor: by.by.actor,
                  action: 'message.resend',
                  target: `message:${message.msg_id}`,
                  reason: by.by.reason,
                  detail: { via: by.by.via, ...detail, storeId: message.id },
                },
              },
            ]
          : []),
      ],
    },
  );
}

/** The resolution of one firing expectation of the message (its kind's own alert). */
function expectationResolved(message: MessageRow, x: ExpectationRow, resolvedBy: string, config: GatewayConfig, now: Date): Alert {
  return conditionAlert(
    'resolved',
    {
      expectationId: x.id,
      kind: x.kind,
      dueAt: x.due_at,
      alertId: x.alert_id,
      reminders: x.reminders,
      resolvedBy,
      messageId: message.id,
      msgId: message.msg_id,
      msgType: message.msg_type,
      conversationId: message.conversation_id,
      bydel: message.bydel,
      receiverHerId: message.receiver_l2_her_id ?? message.receiver_l1_her_id,
      genDate: message.gen_date,
      createdAt: message.created_at,
      appRecErrors: message.apprec_errors,
      transportErrors: message.transport_errors,
      resends: x.resends,
    },
    now,
    alertPolicy(config),
  );
}
