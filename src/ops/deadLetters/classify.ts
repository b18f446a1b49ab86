// What a message in gateway.dlq is, from its AMQP headers alone: the gateway's own dead letters
// carry x-error-* (DESIGN §4.3); the broker's (a quorum queue's delivery limit, a rejection, a
// TTL) carry x-death and x-first-death-*. Pure functions: the recorder does the I/O.
import { createHash } from 'node:crypto';
import type { DeadLetterOrigin } from '../schema.js';

export type Headers = Record<string, unknown>;

/** A dead letter as it is recorded: metadata only. */
export interface DeadLetterFacts {
  origin: DeadLetterOrigin;
  sourceQueue: string | null;
  code: string;
  reason: string;
  stage: string | null;
  msgId: string | null;
  msgType: string | null;
  bydel: string | null;
  conversationId: string | null;
  fromHerId: string | null;
  toHerId: string | null;
  attempts: number | null;
  firstFailedAt: string | null;
  /** the headers made JSON-safe (timestamps as ISO strings, byte strings as text) */
  headers: Headers;
  dedupeKey: string;
}

/** Gateway codes for what the broker dead-letters, by x-first-death-reason. */
export const BROKER_CODES: Record<string, { code: string; why: string }> = {
  delivery_limit: { code: 'GW-DELIVERY-LIMIT', why: 'it exceeded the delivery limit (delivered and returned too often)' },
  rejected: { code: 'GW-REJECTED', why: 'a consumer rejected it without requeueing' },
  expired: { code: 'GW-EXPIRED', why: 'its time to live ran out' },
  maxlen: { code: 'GW-MAXLEN', why: 'the queue was over its length limit' },
};

/** Headers the broker or a previous failure set: a replay starts clean without them. */
const NOT_REPLAYED = /^(x-death|x-first-death-|x-last-death-|x-delivery-count|x-error-|x-stage$|x-source-queue$|x-first-failed-at$|x-attempts$|x-replay-)/;

export function classifyDeadLetter(rawHeaders: Headers, messageId: string | undefined, body: Buffer): DeadLetterFacts {
  const headers = jsonSafe(rawHeaders) as Headers;
  const text = (name: string) => {
    const v = headers[name];
    return typeof v === 'string' && v.length > 0 ? v : null;
  };
  const common = {
    headers,
    msgId: text('msg-id'),
    msgType: text('msg-type'),
    bydel: bydelCode(text('x-bydel')),
    conversationId: text('conversation-id'),
    fromHerId: text('from-her-id'),
    toHerId: text('to-her-id'),
    dedupeKey: dedupeKey(headers, messageId, body),
  };
  const code = text('x-error-code');
  if (code) {
    const attempts = Number(text('x-attempts'));
    return {
      ...common,
      origin: 'gateway',
      sourceQueue: text('x-source-queue'),
      code,
      reason: text('x-error-reason') ?? 'No reason was given.',
      stage: text('x-stage'),
      attempts: Number.isInteger(attempts) && attempts > 0 ? attempts : null,
      firstFailedAt: text('x-first-failed-at'),
    };
  }
  const firstDeath = deaths(headers)[0];
  const queue = text('x-first-death-queue') ?? firstDeath?.queue ?? null;
  const deathReason = text('x-first-death-reason') ?? firstDeath?.reason;
  if (queue && deathReason) {
    const known = BROKER_CODES[deathReason];
    const deliveryCount = Number(headers['x-delivery-count']);
    return {
      ...common,
      origin: 'broker',
      sourceQueue: queue,
      code: known?.code ?? 'GW-DEAD-LETTERED',
      reason: `RabbitMQ dead-lettered it from ${queue} because ${known?.why ?? `of "${deathReason.slice(0, 40)}"`}.`,
      stage: 'broker',
      attempts: firstDeath?.count ?? (Number.isInteger(deliveryCount) ? deliveryCount : null),
      firstFailedAt: firstDeath?.time ?? null,
    };
  }
  return {
    ...common,
    origin: 'unknown',
    sourceQueue: null,
    code: 'GW-UNKNOWN-DEAD-LETTER',
    reason: 'It arrived in the DLQ without x-error-* or x-death headers, so its origin is unknown.',
    stage: null,
    attempts: null,
    firstFailedAt: null,
  };
}

/** The headers a replay publishes: the original's own, without failure and broker bookkeeping. */
export function replayHeaders(stored: Headers): Headers {
  return Object.fromEntries(Object.entries(stored).filter(([k]) => !NOT_REPLAYED.test(k)));
}

interface Death {
  queue?: string;
  reason?: string;
  count?: number;
  time?: string;
}

function deaths(headers: Headers): Death[] {
  const list = headers['x-death'];
  if (!Array.isArray(list)) return [];
  return list.map((d: Record<string, unknown>) => ({
    queue: typeof d.queue === 'string' ? d.queue : undefined,
    reason: typeof d.reason === 'string' ? d.reason : undefined,
    count: typeof d.count === 'number' ? d.count : undefined,
    time: typeof d.time === 'string' ? d.time : undefined,
  }));
}

const bydelCode = (v: string | null) => (v && /^0301(0[1-9]|1[0-7])$/.test(v) ? v : null);

/**
 * The same broker message seen twice (the recorder crashed before its ack) has the same key; a
 * message that dies again after a replay gets a new x-death entry and so a new key.
 */
function dedupeKey(headers: Headers, messageId: string | undefined, body: Buffer): string {
  const identity = messageId ?? createHash('sha256').update(body).digest('hex');
  return createHash('sha256')
    .update(identity)
    .update(JSON.stringify(headers['x-death'] ?? null))
    .digest('hex');
}

/** amqplib decodes AMQP timestamps as { '!': 'timestamp', value: seconds } and long strings as bytes. */
function jsonSafe(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (o['!'] === 'timestamp' && typeof o.value === 'number') return new Date(o.value * 1000).toISOString();
    if (v instanceof Date) return v.toISOString();
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, jsonSafe(x)]));
  }
  return v;
}
