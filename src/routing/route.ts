// Route stage: keep the receiver, or reroute a message addressed to Oslo kommune to the
// responsible bydel's service; hold it when the bydel cannot be decided without guessing.
import { type MsgHeadModel, ok, permanent, type StageResult } from '../mapping/model.js';
import type { NewReceiver } from '../mapping/readdress.js';
import type { AddressRegister } from './addressRegister.js';
import { bydelName } from './bydeler.js';
import { type BydelRule, type RoutingData, resolveBydel, type VerdictReason } from './resolveBydel.js';
import { messageDay } from './validity.js';

export interface RoutingContext extends RoutingData {
  register: AddressRegister;
  /** level-1 HER-ids whose messages are routed by bydel */
  routeByBydel: Set<string>;
  serviceByType: Record<string, string>;
}

export type RouteDecision =
  | {
      action: 'deliver';
      rerouted: true;
      bydel: string;
      rule: BydelRule;
      explanation: string;
      receiver: NewReceiver;
      toHerId: string;
    }
  | { action: 'deliver'; rerouted: false; toHerId: string; explanation: string }
  | { action: 'hold'; verdicts: string[]; reasons: VerdictReason[] };

/** `now` only matters for a message without a readable GenDate: it picks the versioned routing data. */
export function routeMessage(msg: MsgHeadModel, bydelHint: string | undefined, ctx: RoutingContext, now = new Date()): StageResult<RouteDecision> {
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
  if (!serviceCode) {
    return permanent('E21', `No bydel service is configured for message type ${msg.type}.`);
  }
  const day = messageDay(msg.genDate, now);
  const decision = resolveBydel(msg.patient, bydelHint, ctx, day);
  if (!decision.decided) return ok({ action: 'hold', verdicts: decision.verdicts, reasons: decision.reasons });

  const target = ctx.register.bydelService(decision.bydel, serviceCode, day);
  if (!target) {
    return permanent('E21', `Bydel ${bydelName(decision.bydel)} (${decision.bydel}) has no active ${serviceCode} service in the address register.`);
  }
  return ok({
    action: 'deliver',
    rerouted: true,
    bydel: decision.bydel,
    rule: decision.rule,
    explanation: decision.explanation,
    receiver: {
      level1: { name: target.organisation.name, herId: target.organisation.herId },
      level2: { name: target.service.name, herId: target.service.herId },
    },
    toHerId: target.service.herId,
  });
}
