import { type Kysely, sql } from 'kysely';
import type { Publishable } from '../outbox/items.js';
import type { OutboxStore } from '../outbox/relay.js';
import { type Claim, claimOutboxItem, deferOutboxItem, dueOutboxItems, markOutboxItemPublished, outboxItemsOf } from '../outbox/table.js';
import type { ExpectationKind, MessageState, OutboxPurpose, PayloadKind, TimelineEvent } from '../shared/vocabulary.js';
import type { Db, Direction, EventRow, ExpectationRow, MessageRow, OutboxRow, PayloadRow, Schema } from './db.js';
import { insertAudit, type NewAudit } from './tables/audit.js';
import { insertEvents } from './tables/events.js';
import { updateMessage } from './tables/messages.js';

export type { AuditRow, Db, DialectName, Direction, EventRow, MessageRow, OutboxRow, OutboxState, PayloadRow, Schema } from './db.js';
export type { NewAudit } from './tables/audit.js';
export type { NewEvent } from './tables/events.js';
export type { NewExpectation } from './tables/expectations.js';
export type { MessagePatch, NewMessage } from './tables/messages.js';
export type { NewPayload } from './tables/payloads.js';

/** One transaction of the store: the table modules (tables/*.ts, outbox/table.ts) write through it. */
export interface StoreTransaction {
  readonly trx: Kysely<Schema>;
  /** the transaction's time, ISO-8601 */
  readonly now: string;
}

export interface TimelineEntry {
  message: MessageRow;
  events: EventRow[];
}

/** The message's state once an item of this purpose is confirmed: delivered to the bydel, or handed to the EPJ. */
const PUBLISHED_STATE: Partial<Record<OutboxPurpose, MessageState>> = { deliver: 'published', forward: 'forwarded' };

/**
 * The gateway's durable state: message metadata, payload bodies, per-message timelines, the
 * publish outbox, expectations and the ops audit trail. Outcomes are written by the recorder
 * (recorder.ts) in one transaction each; this class reads, opens transactions, and keeps the
 * outbox's bookkeeping for the relay.
 */
export class Store implements OutboxStore {
  private readonly kysely: Kysely<Schema>;

  constructor(
    readonly db: Db,
    /** injectable for tests of deadlines and retries */
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.kysely = db.kysely;
  }

  /** Runs `work` in one transaction: everything it writes commits together, or none of it. */
  async inTransaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const now = this.now();
    return this.kysely.transaction().execute((trx) => work({ trx, now }));
  }

  async findMessage(direction: Direction, senderHerId: string, msgId: string): Promise<MessageRow | undefined> {
    return this.kysely
      .selectFrom('messages')
      .selectAll()
      .where('direction', '=', direction)
      .where('sender_her_id', '=', senderHerId)
      .where('msg_id', '=', msgId)
      .executeTakeFirst();
  }

  /** Messages with this content hash, oldest first (a sender may resend under a new MsgId). */
  async findByContentHash(direction: Direction, hash: string): Promise<MessageRow[]> {
    return this.kysely.selectFrom('messages').selectAll().where('direction', '=', direction).where('content_hash', '=', hash).orderBy('id').execute();
  }

  async getMessage(id: number): Promise<MessageRow | undefined> {
    return this.kysely.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Every row with this MsgId, oldest first: the same MsgId can exist per direction and sender. */
  async findByMsgId(msgId: string): Promise<MessageRow[]> {
    return this.kysely.selectFrom('messages').selectAll().where('msg_id', '=', msgId).orderBy('id').execute();
  }

  async outboxForMessage(messageId: number): Promise<OutboxRow[]> {
    return outboxItemsOf(this.kysely, messageId);
  }

  async payloads(messageId: number): Promise<PayloadRow[]> {
    return this.kysely.selectFrom('payloads').selectAll().where('message_id', '=', messageId).orderBy('id').execute();
  }

  /** The newest payload of this kind (a message resent after a rejection has its first one too). */
  async latestPayload(messageId: number, kind: PayloadKind): Promise<PayloadRow | undefined> {
    return this.kysely.selectFrom('payloads').selectAll().where('message_id', '=', messageId).where('kind', '=', kind).orderBy('id', 'desc').executeTakeFirst();
  }

  async expectation(messageId: number, kind: ExpectationKind): Promise<ExpectationRow | undefined> {
    return this.kysely.selectFrom('expectations').selectAll().where('message_id', '=', messageId).where('kind', '=', kind).executeTakeFirst();
  }

  /** Every expectation of a message, oldest first. */
  async expectationsOf(messageId: number): Promise<ExpectationRow[]> {
    return this.kysely.selectFrom('expectations').selectAll().where('message_id', '=', messageId).orderBy('id').execute();
  }

  /** The newest timeline event of this name on a message. */
  async latestEvent(messageId: number, event: TimelineEvent): Promise<EventRow | undefined> {
    return this.kysely.selectFrom('events').selectAll().where('message_id', '=', messageId).where('event', '=', event).orderBy('id', 'desc').executeTakeFirst();
  }

  /** Messages held for their receiver's encryption certificate (an open `certificate` expectation), oldest first. */
  async heldForCertificate(limit: number): Promise<MessageRow[]> {
    return this.kysely
      .selectFrom('messages as m')
      .innerJoin('expectations as e', 'e.message_id', 'm.id')
      .selectAll('m')
      .where('m.state', '=', 'held')
      .where('e.kind', '=', 'certificate')
      .where('e.state', '=', 'open')
      .orderBy('m.id')
      .limit(limit)
      .execute();
  }

  /** Every message row with this MsgId, each with its events in the order they happened. */
  async timeline(msgId: string): Promise<TimelineEntry[]> {
    const messages = await this.findByMsgId(msgId);
    if (messages.length === 0) return [];
    const events = await this.kysely
      .selectFrom('events')
      .selectAll()
      .where(
        'message_id',
        'in',
        messages.map((m) => m.id),
      )
      .orderBy('at')
      .orderBy('id')
      .execute();
    return messages.map((message) => ({ message, events: events.filter((e) => e.message_id === message.id) }));
  }

  // ------------------------------------------------------------ the outbox, for the relay

  /** Items due at `now`, longest-waiting first. */
  dueOutbox(now: Date, limit: number): Promise<OutboxRow[]> {
    return dueOutboxItems(this.kysely, now, limit);
  }

  claimOutbox(id: number, claim: Claim, now: Date): Promise<boolean> {
    return claimOutboxItem(this.kysely, id, claim, now);
  }

  /** Schedules another attempt after a failed publish. `error` must not contain personal data. */
  deferOutbox(id: number, nextAttemptAt: Date, error: string): Promise<void> {
    return deferOutboxItem(this.kysely, id, nextAttemptAt, error);
  }

  /** Marks an item published (after the broker confirmed it) and, in the same transaction, what that means for its message. */
  async markOutboxPublished(item: Publishable): Promise<void> {
    await this.inTransaction(async ({ trx, now }) => {
      const marked = await markOutboxItemPublished(trx, item.id, now);
      if (!marked) throw new Error(`outbox item #${item.id} does not exist`);
      if (marked.messageId === null) return;
      await insertEvents(
        trx,
        marked.messageId,
        [{ stage: 'publish', event: `${item.purpose}-published`, detail: { exchange: item.exchange, routingKey: item.routing_key } }],
        now,
      );
      const state = PUBLISHED_STATE[item.purpose];
      if (state) await updateMessage(trx, marked.messageId, { state }, now);
    });
  }

  async audit(entry: NewAudit): Promise<number> {
    return insertAudit(this.kysely, entry, this.now());
  }

  /** Throws when the database cannot answer (for readiness checks). */
  async ping(): Promise<void> {
    await sql`select 1`.execute(this.kysely);
  }

  async close(): Promise<void> {
    await this.kysely.destroy();
  }

  private now(): string {
    return this.clock().toISOString();
  }
}
