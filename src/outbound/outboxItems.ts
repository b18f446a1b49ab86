// Everything the gateway publishes goes through the outbox: these build the items, with the
// AMQP headers of DESIGN §4.3 (metadata only, never personal data).
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import type { Alert } from '../tracking/alerts.js';
import type { NewOutboxItem } from '../tracking/store.js';

export type { NewOutboxItem };

export interface RoutingHeaders {
  msgId?: string;
  msgType?: string;
  conversationId?: string;
  fromHerId?: string;
  toHerId?: string;
}

/** Only defined values: an absent header is clearer than an empty one. */
export function contractHeaders(h: RoutingHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v?: string) => {
    if (v) out[k] = v;
  };
  put('msg-id', h.msgId);
  put('msg-type', h.msgType);
  put('conversation-id', h.conversationId);
  put('from-her-id', h.fromHerId);
  put('to-her-id', h.toHerId);
  return out;
}

type Broker = GatewayConfig['broker'];

/** The live path publishes at once; the relay only picks an item up after this grace period. */
const relayAfter = (now: Date, graceMs: number) => new Date(now.getTime() + graceMs);

/**
 * A signed ebXML message to a partner on nhn.outbound. Purpose 'receipt' for an AppRec the
 * hospital returns for an incoming message: it must not mark that message 'published'.
 */
export function deliverItem(
  b: Broker,
  now: Date,
  graceMs: number,
  h: RoutingHeaders & { toHerId: string },
  contentType: string,
  body: Buffer,
  purpose: 'deliver' | 'receipt' = 'deliver',
): NewOutboxItem {
  return {
    purpose,
    exchange: b.exchanges.nhnOutbound,
    routing_key: h.toHerId,
    headers: contractHeaders(h),
    content_type: contentType,
    message_id_prop: randomUUID(),
    body,
    next_attempt_at: relayAfter(now, graceMs),
  };
}

/** The gateway's own AppRec for the EPJ, on epj.inbound. */
export function appRecItem(b: Broker, now: Date, graceMs: number, h: RoutingHeaders, originalMsgId: string | undefined, appRecXml: string): NewOutboxItem {
  return epjInboundItem('apprec', b, now, graceMs, h, appRecXml, originalMsgId);
}

/** A message from a bydel (MsgHead or AppRec) handed to the EPJ as it came, on epj.inbound. */
export function forwardItem(b: Broker, now: Date, graceMs: number, h: RoutingHeaders, businessXml: string, originalMsgId?: string): NewOutboxItem {
  return epjInboundItem('forward', b, now, graceMs, h, businessXml, originalMsgId);
}

function epjInboundItem(
  purpose: string,
  b: Broker,
  now: Date,
  graceMs: number,
  h: RoutingHeaders,
  xml: string,
  originalMsgId: string | undefined,
): NewOutboxItem {
  const headers = { ...contractHeaders(h), ...(originalMsgId ? { 'x-original-msg-id': originalMsgId } : {}) };
  return {
    purpose,
    exchange: '',
    routing_key: b.queues.epjInbound,
    headers,
    content_type: 'application/xml; charset=UTF-8',
    message_id_prop: randomUUID(),
    body: Buffer.from(xml, 'utf8'),
    next_attempt_at: relayAfter(now, graceMs),
  };
}

export interface DlqError {
  code: string;
  reason: string;
  stage: string;
  sourceQueue: string;
  firstFailedAt: string;
  attempts: number;
}

export function dlqItem(
  b: Broker,
  now: Date,
  graceMs: number,
  h: RoutingHeaders,
  err: DlqError,
  original: { body: Buffer; contentType?: string },
): NewOutboxItem {
  const headers = {
    ...contractHeaders(h),
    'x-error-code': err.code,
    'x-error-reason': err.reason,
    'x-stage': err.stage,
    'x-source-queue': err.sourceQueue,
    'x-first-failed-at': err.firstFailedAt,
    'x-attempts': String(err.attempts),
  };
  return {
    purpose: 'dlq',
    exchange: '',
    routing_key: b.queues.dlq,
    headers,
    content_type: original.contentType ?? 'application/octet-stream',
    message_id_prop: randomUUID(),
    body: original.body,
    next_attempt_at: relayAfter(now, graceMs),
  };
}

export function alertItem(b: Broker, now: Date, graceMs: number, alert: Alert): NewOutboxItem {
  return {
    purpose: 'alert',
    exchange: b.exchanges.alerts,
    routing_key: alert.kind,
    headers: { 'alert-kind': alert.kind, 'alert-state': alert.state, 'event-id': alert.eventId },
    content_type: 'application/json',
    message_id_prop: alert.id,
    body: Buffer.from(JSON.stringify(alert), 'utf8'),
    next_attempt_at: relayAfter(now, graceMs),
  };
}
