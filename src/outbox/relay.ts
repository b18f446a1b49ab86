// Publishes outbox items with broker confirms. The live path publishes what it just stored (it
// holds the lease); the relay and the crash-resume path first claim an item whose lease ran out,
// so an item is never published by two processes at once, and nothing stored is left unsent.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { durationMs, type GatewayConfig } from '../config/config.js';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { backoffDelay } from '../shared/backoff.js';
import { Periodic } from '../shared/periodic.js';
import type { NewOutboxItem, Publishable } from './items.js';
import type { Claim, OutboxRow } from './table.js';

export interface PublishOptions {
  headers: Record<string, unknown>;
  contentType: string;
  messageId?: string;
}

export type PublishFn = (exchange: string, routingKey: string, body: Buffer, opts: PublishOptions) => Promise<void>;

/** What the relay needs of the store (tracking/store.ts implements it). */
export interface OutboxStore {
  dueOutbox(now: Date, limit: number): Promise<OutboxRow[]>;
  outboxForMessage(messageId: number): Promise<OutboxRow[]>;
  claimOutbox(id: number, claim: Claim, now: Date): Promise<boolean>;
  deferOutbox(id: number, nextAttemptAt: Date, error: string): Promise<void>;
  /** marks it published and applies what that means for its message, in one transaction */
  markOutboxPublished(item: Publishable): Promise<void>;
}

export interface RelayPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** how often the relay looks for due items */
  intervalMs: number;
  batchSize: number;
  /** how long a process holds an item it stored or claimed: longer than a confirmed publish can take */
  leaseMs: number;
}

/** What resuming a message's pending items found. */
export interface Resumed {
  /** published now by this process */
  published: number;
  /** still leased to a live publish (here or in another replica): left to it */
  inProgress: number;
  /** claimed, but the broker did not confirm: deferred for the relay */
  deferred: number;
}

/** A publish waits at most one confirm timeout: a lease of two is never cut short by a live publish. */
export const leaseMsFor = (config: GatewayConfig) => 2 * durationMs(config.broker.confirmTimeout);

/** The relay's policy from the configuration: retry backoff, lease, pace. */
export const relayPolicy = (config: GatewayConfig): RelayPolicy => ({
  initialDelayMs: durationMs(config.retry.initialDelay),
  maxDelayMs: durationMs(config.retry.maxDelay),
  intervalMs: 1000,
  batchSize: 100,
  leaseMs: leaseMsFor(config),
});

const fromRow = (row: OutboxRow): Publishable => ({ ...row, headers: JSON.parse(row.headers) });

/** The items the store just wrote, with the ids it returned: no need to read them back. */
export const justStored = (messageId: number | null, items: NewOutboxItem[], ids: number[]): Publishable[] =>
  items.map((item, i) => ({ ...item, id: ids[i], message_id: messageId, attempts: 0 }));

export class OutboxPublisher {
  /** this process, as the owner of the leases it takes */
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private loop?: Periodic;

  constructor(
    private readonly store: OutboxStore,
    private readonly publish: PublishFn,
    private readonly log: Logger,
    private readonly policy: RelayPolicy,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A lease from now, for items this process stores or claims. */
  lease(): Claim {
    return { owner: this.owner, until: new Date(this.now().getTime() + this.policy.leaseMs) };
  }

  /** Publishes an item this process holds. Broker failures defer it (durably); store failures throw. */
  async publishNow(item: Publishable): Promise<boolean> {
    try {
      await this.publish(item.exchange, item.routing_key, Buffer.from(item.body.buffer, item.body.byteOffset, item.body.byteLength), {
        headers: item.headers,
        contentType: item.content_type,
        messageId: item.message_id_prop ?? undefined,
      });
    } catch (e) {
      const delay = backoffDelay({ initialMs: this.policy.initialDelayMs, maxMs: this.policy.maxDelayMs }, item.attempts);
      const reason = `publish to ${item.exchange || '(default)'}/${item.routing_key} failed: ${(e as Error).message}`;
      await this.store.deferOutbox(item.id, new Date(this.now().getTime() + delay), reason);
      this.log.warn(
        { event: EVENTS.outboxDeferred, outboxId: item.id, purpose: item.purpose, attempts: item.attempts + 1, retryInMs: delay, reason },
        'outbox: publish deferred',
      );
      return false;
    }
    await this.store.markOutboxPublished(item);
    return true;
  }

  /** Claims a stored item whose lease ran out and publishes it; 'in-progress' when someone holds it. */
  async claimAndPublish(row: OutboxRow): Promise<'published' | 'deferred' | 'in-progress' | 'done'> {
    if (row.state !== 'pending') return 'done';
    if (!(await this.store.claimOutbox(row.id, this.lease(), this.now()))) return 'in-progress';
    return (await this.publishNow(fromRow(row))) ? 'published' : 'deferred';
  }

  /** Finishes what a crash left of a message: its pending items, unless a live publish holds them. */
  async resume(messageId: number): Promise<Resumed> {
    const resumed: Resumed = { published: 0, inProgress: 0, deferred: 0 };
    for (const row of await this.store.outboxForMessage(messageId)) {
      const r = await this.claimAndPublish(row);
      if (r === 'published') resumed.published++;
      else if (r === 'in-progress') resumed.inProgress++;
      else if (r === 'deferred') resumed.deferred++;
    }
    return resumed;
  }

  /** One pass over due items, oldest first. */
  async relayOnce(): Promise<number> {
    const due = await this.store.dueOutbox(this.now(), this.policy.batchSize);
    let published = 0;
    for (const row of due) {
      if ((await this.claimAndPublish(row)) !== 'published') continue;
      published++;
      this.log.info({ event: EVENTS.outboxPublished, outboxId: row.id, purpose: row.purpose, attempts: row.attempts }, 'outbox: relayed');
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
