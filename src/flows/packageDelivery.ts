// The end of the outbound path, after the bydel is known: rewrite the receiver, sign, encrypt,
// package as ebXML, and what storing the delivery writes (metadata, timeline, outbox item, payload,
// expectations). The flow and ops' manual routing both use it, so a message routed by hand
// leaves exactly like one routed by a rule.
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { MsgHeadModel, ParsedMessage } from '../mapping/model.js';
import { rewriteReceiver } from '../mapping/readdress.js';
import type { AgreedTerms } from '../outbound/agreements/agreements.js';
import { agreedTermsFor, type PartnerContext, packageFor, signingAlgorithmFor } from '../outbound/package.js';
import type { EncryptionChoice } from '../outbound/protection.js';
import { signEnveloped } from '../outbound/xmldsig.js';
import { deliverItem, type NewOutboxItem } from '../outbox/items.js';
import type { RouteDecision } from '../routing/route.js';
import { addressKey, stayRole } from '../routing/stay.js';
import type { MessageState } from '../shared/vocabulary.js';
import { workingCalendar } from '../tracking/deadlines.js';
import { expectationsFor, patientKey, type ReliableMessaging } from '../tracking/expectations.js';
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
  cpaId: string;
  /** the CPA it was sent under; absent: HIS 1037's defaults */
  agreed?: AgreedTerms;
}

export type PackagingDeps = PartnerContext;

/** The sender's most specific HER-id: the ebXML From party and the dedupe key. */
export const senderHerId = (m: MsgHeadModel) => m.sender.level2?.herId ?? m.sender.level1.herId ?? null;

/** ConversationId is shared by a whole conversation; its first MsgId identifies it stably. */
export const conversationIdOf = (p: ParsedMessage, m: MsgHeadModel) => p.ebxml?.conversationId ?? m.conversationRef?.refToConversation ?? m.msgId;

/** Packaged for the target, or why its receiver cannot take it now (no usable encryption certificate). */
export type PackagedDelivery = { ok: true; value: Packaged } | { ok: false; reason: string };

export function packageDelivery(parsed: ParsedMessage, model: MsgHeadModel, target: DeliveryTarget, deps: PackagingDeps, at: Date): PackagedDelivery {
  const { signing, config } = deps;
  const fromHerId = senderHerId(model) ?? config.ownHerId;
  let xml = target.rerouted ? rewriteReceiver(parsed.businessXml, target.receiver) : parsed.businessXml;
  if (config.signing.signMsgHead) {
    const agreed = agreedTermsFor(deps, fromHerId, target.toHerId, `S-${model.type}`, model.type, at);
    xml = signEnveloped(xml, { ...signing, algorithm: signingAlgorithmFor(config, target.toHerId, agreed), location: 'msghead-last-child' });
  }
  const conversationId = conversationIdOf(parsed, model);
  const built = packageFor(deps, { businessXml: xml, msgType: model.type, fromHerId, toHerId: target.toHerId, conversationId }, at);
  if (!built.ok) return built;
  const { contentType, body, ebxmlMessageId, algorithm, encryption, cpaId, agreed } = built.value;
  return { ok: true, value: { contentType, body, ebxmlMessageId, algorithm, conversationId, fromHerId, encryption, cpaId, ...(agreed ? { agreed } : {}) } };
}

/** A CPA's reliable messaging, as the transport-ack expectation keeps it. */
function reliableMessagingOf(agreed: AgreedTerms): ReliableMessaging {
  return {
    ackRequested: agreed.ackRequested,
    ...(agreed.retries !== undefined ? { retries: agreed.retries } : {}),
    ...(agreed.retryInterval ? { retryIntervalMs: durationMs(agreed.retryInterval) } : {}),
  };
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
      // what finds the patient's stay (docs/routing.md#the-stay-rule)
      sender_l1_her_id: model.sender.level1.herId ?? null,
      address_key: addressKey(model, config.tracking.patientKeySecret),
      stay_role: stayRole(model),
    },
    events: [
      { stage: 'route', event: target.rerouted ? 'routed' : 'receiver-kept', detail: { ...routedTo, explanation: target.explanation } },
      {
        stage: 'sign',
        event: 'signed',
        detail: { ebxmlMessageId: packaged.ebxmlMessageId, algorithm: packaged.algorithm, cpaId: packaged.cpaId, terms: packaged.agreed ? 'cpa' : 'his-1037' },
      },
      ...(packaged.encryption ? [{ stage: 'encrypt' as const, event: 'encrypted' as const, detail: { ...packaged.encryption } }] : []),
    ],
    outbox: [deliverItem(config.broker, headers, packaged.contentType, packaged.body)],
    payload: { kind: 'signed', content_type: packaged.contentType, body: packaged.body },
    expectations: expectationsFor(model, now, config.tracking, workingCalendar(config), packaged.agreed && reliableMessagingOf(packaged.agreed)),
    routedTo,
  };
}
