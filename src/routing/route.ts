// Route stage: keep the receiver, or reroute a message addressed to Oslo kommune to the
// responsible bydel's service; hold it when the bydel cannot be decided without guessing.
import { type MsgHeadModel, ok, permanent, type StageResult } from '../mapping/model.js';
import type { NewReceiver } from '../mapping/readdress.js';
import type { AddressRegister } from './addressRegister.js';
import { bydelName, isBydelCode, serviceBydel } from './bydeler.js';
import { type BydelDecision, type BydelRule, type BydelUndecided, type RoutingData, resolveBydel, type VerdictReason } from './resolveBydel.js';
import { followsStay, type Stay } from './stay.js';
import { isValidOn, messageDay } from './validity.js';

export interface RoutingContext extends RoutingData {
  register: AddressRegister;
  /** level-1 HER-ids whose messages are routed by bydel */
  routeByBydel: Set<string>;
  serviceByType: Record<string, string>;
}

/** A rule of the route stage: the bydel rules, or the stay the message belongs to. */
export type RouteRule = BydelRule | 'stay';

/** What the flow knows beyond the message itself. */
export interface RouteInput {
  /** AMQP header `x-bydel`: the EPJ's hint */
  bydelHint?: string;
  /** the patient's stay, found in the store (docs/routing.md#the-stay-rule) */
  stay?: Stay;
  /** keyed hash of this message's address (stay.ts addressKey), compared with the stay's */
  addressKey?: string | null;
}

export type RouteDecision =
  | {
      action: 'deliver';
      rerouted: true;
      bydel: string;
      rule: RouteRule;
      explanation: string;
      receiver: NewReceiver;
      toHerId: string;
    }
  | { action: 'deliver'; rerouted: false; toHerId: string; explanation: string }
  | { action: 'hold'; verdicts: string[]; reasons: VerdictReason[] };

/**
 * `input` is the EPJ's hint (a string, as before) or everything the flow knows (RouteInput).
 * `now` only matters for a message without a readable GenDate: it picks the versioned routing data.
 */
export function routeMessage(msg: MsgHeadModel, input: string | undefined | RouteInput, ctx: RoutingContext, now = new Date()): StageResult<RouteDecision> {
  const { bydelHint, stay, addressKey } = typeof input === 'object' ? input : { bydelHint: input, stay: undefined, addressKey: undefined };
  const level1 = msg.receiver.level1.herId;
  if (!level1) return permanent('E21', 'The receiver has no level-1 HER-id.');

  if (!ctx.routeByBydel.has(level1)) {
    const toHerId = msg.receiver.level2?.herId ?? level1;
    if (!ctx.register.isActive(toHerId)) {
      return permanent('E21', `The receiver HER-id ${toHerId} is not an active party in the address register.`);
    }
    return ok({ action: 'deliver', rerouted: false, toHerId, explanation: `kept the receiver ${toHerId}` });
  }

  const serviceCode = ctx.serviceByType[msg.type];
  const day = messageDay(msg.genDate, now);
  const followed = stay && followsStay(msg) ? stayVerdict(stay, bydelHint, addressKey) : undefined;
  const decision: StayDecision | BydelUndecided =
    followed && 'decision' in followed ? followed.decision : withStayVerdict(resolveBydel(msg.patient, bydelHint, ctx, day), followed);
  if (!decision.decided) return ok({ action: 'hold', verdicts: decision.verdicts, reasons: decision.reasons });

  const kept = keptDialogService(msg, decision.bydel, ctx, day);
  if (!kept && !serviceCode) {
    return permanent('E21', `No bydel service is configured for message type ${msg.type}.`);
  }
  const target = kept ?? ctx.register.bydelService(decision.bydel, serviceCode, day);
  if (!target) {
    return permanent('E21', `Bydel ${bydelName(decision.bydel)} (${decision.bydel}) has no active ${serviceCode} service in the address register.`);
  }
  return ok({
    action: 'deliver',
    rerouted: true,
    bydel: decision.bydel,
    rule: decision.rule,
    explanation: kept ? `${decision.explanation}; the EPJ's chosen service ${target.service.herId} belongs to it and is kept` : decision.explanation,
    receiver: {
      level1: { name: target.organisation.name, herId: target.organisation.herId },
      level2: { name: target.service.name, herId: target.service.herId },
    },
    toHerId: target.service.herId,
  });
}

type StayDecision = Omit<BydelDecision, 'rule'> & { rule: RouteRule };

/**
 * The stay decides, unless the message says something new: an EPJ hint, or an address other
 * than the one the stay's LOG_INNLAGT was routed by. Then the rules decide, and this verdict
 * says why the stay did not.
 */
function stayVerdict(
  stay: Stay,
  hint: string | undefined,
  addressKey: string | null | undefined,
): { decision: StayDecision } | { verdict: string; reason: VerdictReason } {
  const went = `the stay's LOG_INNLAGT ${stay.admissionMsgId} went to bydel ${bydelName(stay.bydel)} (${stay.bydel})`;
  if (hint !== undefined && isBydelCode(hint.trim()) && serviceBydel(hint.trim()))
    return { verdict: `stay: ${went}, but the message carries an EPJ hint`, reason: 'stay-hint-given' };
  if (addressKey && addressKey !== stay.addressKey)
    return { verdict: `stay: ${went}, but the message carries a different address`, reason: 'stay-address-changed' };
  return { decision: { decided: true, bydel: stay.bydel, geographicBydel: stay.bydel, rule: 'stay', explanation: went } };
}

/** The rules' decision, with the stay's verdict first when there was a stay the message did not follow. */
function withStayVerdict(d: ReturnType<typeof resolveBydel>, stay: { verdict: string; reason: VerdictReason } | undefined): ReturnType<typeof resolveBydel> {
  if (!stay) return d;
  if (d.decided) return { ...d, explanation: `${d.explanation}; ${stay.verdict.slice('stay: '.length)}` };
  return { ...d, verdicts: [stay.verdict, ...d.verdicts], reasons: [stay.reason, ...d.reasons] };
}

/**
 * Dialog is addressed by hand (the Oslo procedure §4.4): a DIALOG_* message keeps the level-2
 * service the EPJ chose when that service is an active service of the routed bydel, valid on
 * the message's day; otherwise the configured service receives it.
 */
function keptDialogService(msg: MsgHeadModel, bydel: string, ctx: RoutingContext, day: string) {
  const chosen = msg.receiver.level2?.herId;
  if (!msg.type.startsWith('DIALOG_') || !chosen) return undefined;
  const service = ctx.register.get(chosen);
  const current = (p: { active: boolean; validFrom?: string; validTo?: string }) => p.active && isValidOn(p, day);
  if (service?.type !== 'Service' || service.bydel !== bydel || !current(service) || !service.parentHerId) return undefined;
  const organisation = ctx.register.get(service.parentHerId);
  return organisation && current(organisation) ? { service, organisation } : undefined;
}
