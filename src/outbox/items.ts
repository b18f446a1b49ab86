// Everything the gateway publishes goes through the outbox: these build the items, with the
// AMQP headers of DESIGN §4.3 (metadata only, never personal data). When an item may be
// published is not theirs to say: the store leases each item to the process that stores it.
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import type { OutboxPurpose } from '../shared/vocabulary.js';
import type { OutboxRow } from './table.js';

export interface NewOutboxItem {
  purpose: OutboxPurpose;
  exchange: string;
  routing_key: string;
  /** AMQP headers, stored as JSON; never personal data (DESIGN §4.3) */
  headers: Record<string, unknown>;
  content_type: string;
  message_id_prop?: string | null;
  body: Uint8Array;
}

/** A stored outbox item, from a row read back or straight from what was just written. */
export type Publishable = NewOutboxItem & { id: number; message_id: number | null; attempts: number };

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

/**
 * A signed ebXML message to a partner on nhn.outbound. Purpose 'receipt' for an AppRec the
 * hospital returns for an incoming message: it must not mark that message 'published'.
 */
export function deliverItem(
  b: Broker,
  h: RoutingHeaders & { toHerId: string },
  contentType: string,
  body: Buffer,
  purpose: 'deliver' | 'receipt' | 'acknowledgment' | 'message-error' = 'deliver',
): NewOutboxItem {
  return {
    purpose,
    exchange: b.exchanges.nhnOutbound,
    routing_key: h.toHerId,
    headers: contractHeaders(h),
    content_type: contentType,
    message_id_prop: randomUUID(),
    body,
  };
}

/** The gateway's own AppRec for the EPJ, on epj.inbound. */
export function appRecItem(b: Broker, h: RoutingHeaders, originalMsgId: string | undefined, appRecXml: string): NewOutboxItem {
  return epjInboundItem('apprec', b, h, appRecXml, originalMsgId);
}

/** A message from a bydel (MsgHead or AppRec) handed to the EPJ as it came, on epj.inbound. */
export function forwardItem(b: Broker, h: RoutingHeaders, businessXml: string, originalMsgId?: string): NewOutboxItem {
  return epjInboundItem('forward', b, h, businessXml, originalMsgId);
}

function epjInboundItem(purpose: 'apprec' | 'forward', b: Broker, h: RoutingHeaders, xml: string, originalMsgId: string | undefined): NewOutboxItem {
  const headers = { ...contractHeaders(h), ...(originalMsgId ? { 'x-original-msg-id': originalMsgId } : {}) };
  return {
    purpose,
    exchange: '',
    routing_key: b.queues.epjInbound,
    headers,
    content_type: 'application/xml; charset=UTF-8',
    message_id_prop: randomUUID(),
    body: Buffer.from(xml, 'utf8'),
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

export function dlqItem(b: Broker, h: RoutingHeaders, err: DlqError, original: { body: Buffer; contentType?: string }): NewOutboxItem {
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
  };
}

/** The alert as JSON on gateway.alerts (DESIGN §4.4), routed by its kind. */
export function alertItem(b: Broker, alert: { id: string; kind: string; state: string; eventId: string }): NewOutboxItem {
  return {
    purpose: 'alert',
    exchange: b.exchanges.alerts,
    routing_key: alert.kind,
    headers: { 'alert-kind': alert.kind, 'alert-state': alert.state, 'event-id': alert.eventId },
    content_type: 'application/json',
    message_id_prop: alert.id,
    body: Buffer.from(JSON.stringify(alert), 'utf8'),
  };
}

/** The same item once more, exactly as it was stored: the receiver's MSH drops it if it has it. */
export function again(row: Pick<OutboxRow, 'purpose' | 'exchange' | 'routing_key' | 'headers' | 'content_type' | 'message_id_prop' | 'body'>): NewOutboxItem {
  return {
    purpose: row.purpose,
    exchange: row.exchange,
    routing_key: row.routing_key,
    headers: JSON.parse(row.headers) as Record<string, unknown>,
    content_type: row.content_type,
    message_id_prop: row.message_id_prop,
    body: row.body,
  };
}
