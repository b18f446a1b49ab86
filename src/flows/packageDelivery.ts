// The end of the outbound path, after the bydel is known: rewrite the receiver, sign, encrypt,
// package as ebXML, and what storing the delivery writes (metadata, timeline, outbox item, payload,
// expectations). The flow and ops' manual routing both use it, so a message routed by hand
// leaves exactly like one routed by a rule.
import type { GatewayConfig } from '../config/config.js';
import type { MsgHeadModel, ParsedMessage } from '../mapping/model.js';
import { rewriteReceiver } from '../mapping/readdress.js';
import { packageFor, signingAlgorithmFor } from '../outbound/package.js';
import type { EncryptionChoice } from '../outbound/protection.js';
import { signEnveloped } from '../outbound/xmldsig.js';
import { deliverItem, type NewOutboxItem } from '../outbox/items.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import type { RouteDecision } from '../routing/route.js';
import type { MessageState } from '../shared/vocabulary.js';
import { workingCalendar } from '../tracking/deadlines.js';
import { expectationsFor, patientKey } from '../tracking/expectations.js';
import type { MessagePatch, NewEvent, NewExpectation, NewPayload } from '../tracking/store.js';

export interface SigningMaterial {
  keyPem: string;
  certPem: string;
}

type RuleTarget = Extract<RouteDecision, { action: 'deliver' }>;

/** A bydel chosen by ops (`plo-gateway route`), recorded with the rule `manual`. */
export type ManualTarget = Omit<Extract<RuleTarget, { rerouted: true }>, 'rule'> & { rule: 'manual' };

export type DeliveryTarget = RuleTarget | ManualTarget;

export interface Packaged {
  contentType: string;
  body: Buffer;
  ebxmlMessageId: string;
  algorithm: string;
  conversationId: string;
  fromHerId: string;
  encryption?: EncryptionChoice & { certificateSerial: string };
}

export interface PackagingDeps {
  config: GatewayConfig;
  register: AddressRegister;
  signing: SigningMaterial;
}

/** The sender's most specific HER-id: the ebXML From party and the dedupe key. */
export const senderHerId = (m: MsgHeadModel) => m.sender.level2?.herId ?? m.sender.level1.herId ?? null;

/** ConversationId is shared by a whole conversation; its first MsgId identifies it stably. */
export const conversationIdOf = (p: ParsedMessage, m: MsgHeadModel) => p.ebxml?.conversationId ?? m.conversationRef?.refToConversation ?? m.msgId;

/** Packaged for the target, or why its receiver cannot take it now (no usable encryption certificate). */
export type PackagedDelivery = { ok: true; value: Packaged } | { ok: false; reason: string };

export function packageDelivery(parsed: ParsedMessage, model: MsgHeadModel, target: DeliveryTarget, deps: PackagingDeps, at: Date): PackagedDelivery {
  const { signing, config } = deps;
  let xml = target.rerouted ? rewriteReceiver(parsed.businessXml, target.receiver) : parsed.businessXml;
  if (config.signing.signMsgHead) {
    xml = signEnveloped(xml, { ...signing, algorithm: signingAlgorithmFor(config, target.toHerId), location: 'msghead-last-child' });
  }
  const fromHerId = senderHerId(model) ?? config.ownHerId;
  const conversationId = conversationIdOf(parsed, model);
  const built = packageFor(deps, { businessXml: xml, msgType: model.type, fromHerId, toHerId: target.toHerId, conversationId }, at);
  if (!built.ok) return built;
  const { contentType, body, ebxmlMessageId, algorithm, encryption } = built.value;
  return { ok: true, value: { contentType, body, ebxmlMessageId, algorithm, conversationId, fromHerId, encryption } };
}

export interface DeliveryParts {
  /** the message's routing and delivery columns */
  patch: MessagePatch & { state: MessageState };
  /** route, sign and encrypt, for the timeline */
  events: NewEvent[];
  outbox: NewOutboxItem[];
  payload: NewPayload;
  expectations: NewExpectation[];
  /** bydel, rule and HER-id for the stage log line */
  routedTo: Record<string, string>;
}

export function deliveryParts(model: MsgHeadModel, target: DeliveryTarget, packaged: Packaged, config: GatewayConfig, now: Date): DeliveryParts {
  const routedTo: Record<string, string> = target.rerouted ? { bydel: target.bydel, rule: target.rule, herId: target.toHerId } : { herId: target.toHerId };
  const headers = { msgId: model.msgId, msgType: model.type, conversationId: packaged.conversationId, fromHerId: packaged.fromHerId, toHerId: target.toHerId };
  return {
    patch: {
      state: 'received',
      bydel: target.rerouted ? target.bydel : null,
      route_rule: target.rerouted ? target.rule : 'kept-receiver',
      receiver_l1_her_id: target.rerouted ? target.receiver.level1.herId : (model.receiver.level1.herId ?? null),
      receiver_l2_her_id: target.toHerId,
      ebxml_message_id: packaged.ebxmlMessageId,
      patient_key: patientKey(model, config.tracking.patientKeySecret),
    },
    events: [
      { stage: 'route', event: target.rerouted ? 'routed' : 'receiver-kept', detail: { ...routedTo, explanation: target.explanation } },
      { stage: 'sign', event: 'signed', detail: { ebxmlMessageId: packaged.ebxmlMessageId, algorithm: packaged.algorithm } },
      ...(packaged.encryption ? [{ stage: 'encrypt' as const, event: 'encrypted' as const, detail: { ...packaged.encryption } }] : []),
    ],
    outbox: [deliverItem(config.broker, headers, packaged.contentType, packaged.body)],
    payload: { kind: 'signed', content_type: packaged.contentType, body: packaged.body },
    expectations: expectationsFor(model, now, config.tracking, workingCalendar(config)),
    routedTo,
  };
}
