// Publishes outbox items with broker confirms. The live path publishes an item right after
// storing it; the relay picks up whatever the live path could not finish (broker down, crash,
// unroutable return) with exponential backoff, so nothing stored is ever left unsent.
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { Periodic } from '../shared/periodic.js';
import type { OutboxRow } from '../tracking/db.js';
import type { NewOutboxItem, Store } from '../tracking/store.js';

export interface PublishOptions {
  headers: Record<string, unknown>;
  contentType: string;
  messageId?: string;
}

export type PublishFn = (exchange: string, routingKey: string, body: Buffer, opts: PublishOptions) => Promise<void>;

export interface RelayPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** how often the relay looks for due items */
  intervalMs: number;
  batchSize: number;
}

/** A stored outbox item, from a row read back or straight from what was just written. */
export type Publishable = Omit<NewOutboxItem, 'next_attempt_at'> & { id: number; message_id: number | null; attempts: number };

const fromRow = (row: OutboxRow): Publishable => ({ ...row, headers: JSON.parse(row.headers) });

/** The items `Store.recordMessage` just stored, with the ids it returned: no need to read them back. */
export const justStored = (messageId: number, items: NewOutboxItem[], ids: number[]): Publishable[] =>
  items.map((item, i) => ({ ...item, id: ids[i], message_id: messageId, attempts: 0 }));

/** The message's state once an item of this purpose is confirmed: delivered to the bydel, or handed to the EPJ. */
const PUBLISHED_STATE: Record<string, string> = { deliver: 'published', forward: 'forwarded' };

export class OutboxPublisher {
  private loop?: Periodic;

  constructor(
    private readonly store: Store,
    private readonly publish: PublishFn,
    private readonly log: Logger,
    private readonly policy: RelayPolicy,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Publishes one item now. Broker failures defer it (durably); store failures throw. */
  async publishNow(item: Publishable): Promise<boolean> {
    try {
      await this.publish(item.exchange, item.routing_key, Buffer.from(item.body.buffer, item.body.byteOffset, item.body.byteLength), {
        headers: item.headers,
        contentType: item.content_type,
        messageId: item.message_id_prop ?? undefined,
      });
    } catch (e) {
      const delay = Math.min(this.policy.maxDelayMs, this.policy.initialDelayMs * 2 ** item.attempts);
      const reason = `publish to ${item.exchange || '(default)'}/${item.routing_key} failed: ${(e as Error).message}`;
      await this.store.deferOutbox(item.id, new Date(this.now().getTime() + delay), reason);
      this.log.warn(
        { event: EVENTS.outboxDeferred, outboxId: item.id, purpose: item.purpose, attempts: item.attempts + 1, retryInMs: delay, reason },
        'outbox: publish deferred',
      );
      return false;
    }
    const state = PUBLISHED_STATE[item.purpose];
    const event = { stage: 'publish', event: `${item.purpose}-published`, detail: { exchange: item.exchange, routingKey: item.routing_key } };
    await this.store.markOutboxPublished(item.id, event, state ? { state } : undefined);
    return true;
  }

  async publishPending(row: OutboxRow): Promise<boolean> {
    return row.state === 'pending' ? this.publishNow(fromRow(row)) : true;
  }

  /** One pass over due items, oldest first. */
  async relayOnce(): Promise<number> {
    const due = await this.store.pendingOutbox(this.now(), this.policy.batchSize);
    let published = 0;
    for (const item of due) {
      if (await this.publishPending(item)) {
        published++;
        this.log.info({ event: EVENTS.outboxPublished, outboxId: item.id, purpose: item.purpose, attempts: item.attempts }, 'outbox: relayed');
      }
    }
    return published;
  }

  start(): void {
    this.loop = new Periodic(
      this.policy.intervalMs,
      async () => void (await this.relayOnce()),
      (e) => this.log.error({ event: EVENTS.outboxDeferred, err: e.message }, 'outbox relay pass failed'),
    );
    this.loop.start(0);
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }
}
