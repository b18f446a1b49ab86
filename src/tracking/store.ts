import { type Insertable, type Kysely, sql, type Transaction, type Updateable } from 'kysely';
import type { Db, Direction, EventRow, MessageRow, MessagesTable, OutboxRow, PayloadRow, Schema } from './db.js';

export type {
  AuditRow,
  Db,
  DialectName,
  Direction,
  EventRow,
  MessageRow,
  OutboxRow,
  OutboxState,
  PayloadRow,
  Schema,
} from './db.js';

/** A message's metadata; the store sets `created_at` and `updated_at`. */
export type NewMessage = Omit<Insertable<MessagesTable>, 'id' | 'created_at' | 'updated_at'>;

/** Fields a later stage may change; `updated_at` is set by the store. */
export type MessagePatch = Omit<Updateable<MessagesTable>, 'id' | 'msg_id' | 'direction' | 'sender_her_id' | 'created_at' | 'updated_at'>;

export interface NewPayload {
  kind: string;
  content_type: string;
  body: Uint8Array;
}

export interface NewEvent {
  stage: string;
  event: string;
  /** stored as JSON; never personal data */
  detail?: Record<string, unknown>;
  /** defaults to now */
  at?: Date;
}

export interface NewOutboxItem {
  purpose: string;
  exchange: string;
  routing_key: string;
  /** AMQP headers, stored as JSON; never personal data (DESIGN §4.3) */
  headers: Record<string, unknown>;
  content_type: string;
  message_id_prop?: string | null;
  body: Uint8Array;
  /** defaults to now: publish at once */
  next_attempt_at?: Date;
}

/** Something that must come back (or be done) for a message by `dueAt` (DESIGN §3 C). */
export interface NewExpectation {
  /** 'routing': a held message waits for ops to route it */
  kind: 'transport-ack' | 'apprec' | 'answer' | 'innleggelsesrapport' | 'routing';
  dueAt: Date;
  /** set when its alert is raised in the same transaction (a held message's `unroutable`) */
  firing?: { alertId: string; nextAlertAt: Date | null };
}

export interface NewAudit {
  actor: string;
  action: string;
  target?: string | null;
  reason?: string | null;
  detail?: Record<string, unknown>;
}

/** The store's writers bound to one transaction (see `Store.inTransaction`). */
export interface StoreTransaction {
  readonly trx: Transaction<Schema>;
  addOutbox(messageId: number | null, item: NewOutboxItem): Promise<number>;
  addEvent(messageId: number, e: NewEvent): Promise<void>;
}

export interface TimelineEntry {
  message: MessageRow;
  events: EventRow[];
}

/** Thrown by `recordMessage` when (direction, sender HER-id, MsgId) is already stored. */
export class DuplicateMessageError extends Error {
  override readonly name = 'DuplicateMessageError';

  constructor(
    /** id of the row that holds the key, so the caller can answer idempotently */
    readonly existingId: number,
    readonly direction: Direction,
    readonly senderHerId: string,
    readonly msgId: string,
  ) {
    super(`message ${msgId} from HER-id ${senderHerId} (${direction}) is already stored as #${existingId}`);
  }
}

type Executor = Kysely<Schema> | Transaction<Schema>;

/**
 * The gateway's durable state: message metadata, payload bodies, per-message timelines, the
 * publish outbox and the ops audit trail. Every method that writes more than one row does so in
 * one transaction, so a crash leaves either all of it or none.
 */
export class Store {
  private readonly kysely: Kysely<Schema>;

  constructor(
    readonly db: Db,
    /** injectable for tests of deadlines and retries */
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.kysely = db.kysely;
  }

  /**
   * Stores a newly received message with everything that follows from it. Throws
   * `DuplicateMessageError` (and writes nothing) when its dedupe key is already stored.
   */
  async recordMessage(input: {
    message: NewMessage;
    payloads: NewPayload[];
    events: NewEvent[];
    outbox: NewOutboxItem[];
    expectations?: NewExpectation[];
    /** more work that must commit with the message, e.g. linking a receipt to what it answers */
    within?: (tx: StoreTransaction, messageId: number) => Promise<void>;
  }): Promise<{ messageId: number; outboxIds: number[] }> {
    const now = this.now();
    const { message } = input;
    return this.kysely.transaction().execute(async (trx) => {
      // ON CONFLICT on exactly the dedupe key lets the database decide atomically, also between
      // replicas, without parsing dialect-specific error codes; any other violation still throws.
      const inserted = await trx
        .insertInto('messages')
        .values({ ...message, created_at: now, updated_at: now })
        .onConflict((oc) => oc.columns(['direction', 'sender_her_id', 'msg_id']).doNothing())
        .returning('id')
        .executeTakeFirst();
      // A NULL sender never conflicts, so on this path sender_her_id is known to be set.
      if (!inserted) {
        const existing = await trx
          .selectFrom('messages')
          .select('id')
          .where('direction', '=', message.direction)
          .where('sender_her_id', '=', message.sender_her_id!)
          .where('msg_id', '=', message.msg_id)
          .executeTakeFirstOrThrow();
        // Throwing inside the transaction rolls it back; nothing has been written yet anyway.
        throw new DuplicateMessageError(existing.id, message.direction, message.sender_her_id!, message.msg_id);
      }
      const messageId = inserted.id;
      if (input.payloads.length > 0) {
        await trx
          .insertInto('payloads')
          .values(input.payloads.map((p) => ({ message_id: messageId, kind: p.kind, content_type: p.content_type, body: toBuffer(p.body), created_at: now })))
          .execute();
      }
      if (input.events.length > 0) {
        await trx
          .insertInto('events')
          .values(input.events.map((e) => this.eventRow(messageId, e, now)))
          .execute();
      }
      if (input.expectations?.length) {
        await trx
          .insertInto('expectations')
          .values(
            input.expectations.map((x) => ({
              message_id: messageId,
              kind: x.kind,
              due_at: x.dueAt.toISOString(),
              state: 'open',
              created_at: now,
              ...firingColumns(x, now),
            })),
          )
          .execute();
      }
      // One by one: the order of RETURNING rows from a multi-row insert is not guaranteed.
      const outboxIds: number[] = [];
      for (const item of input.outbox) {
        outboxIds.push(await this.insertOutbox(trx, messageId, item, now));
      }
      await input.within?.(this.bind(trx, now), messageId);
      return { messageId, outboxIds };
    });
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

  /**
   * Changes a message's metadata and, in the same transaction, records why on its timeline and
   * queues what must be published because of it (e.g. a held message routed by ops). Returns the
   * new outbox ids.
   */
  async updateMessage(id: number, patch: MessagePatch, event?: NewEvent, outbox: NewOutboxItem[] = []): Promise<number[]> {
    const now = this.now();
    return this.kysely.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('messages')
        .set({ ...patch, updated_at: now })
        .where('id', '=', id)
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) throw new Error(`message #${id} does not exist`);
      if (event)
        await trx
          .insertInto('events')
          .values(this.eventRow(id, event, now))
          .execute();
      const outboxIds: number[] = [];
      for (const item of outbox) outboxIds.push(await this.insertOutbox(trx, id, item, now));
      return outboxIds;
    });
  }

  async addEvent(messageId: number, e: NewEvent): Promise<void> {
    await this.kysely
      .insertInto('events')
      .values(this.eventRow(messageId, e, this.now()))
      .execute();
  }

  /**
   * Runs `work` in one transaction with the outbox and timeline writers bound to it, for
   * repositories (e.g. the deadline engine) whose state change and the items it publishes must
   * commit together.
   */
  async inTransaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const now = this.now();
    return this.kysely.transaction().execute((trx) => work(this.bind(trx, now)));
  }

  private bind(trx: Transaction<Schema>, now: string): StoreTransaction {
    return {
      trx,
      addOutbox: (messageId, item) => this.insertOutbox(trx, messageId, item, now),
      addEvent: async (messageId, e) => {
        await trx
          .insertInto('events')
          .values(this.eventRow(messageId, e, now))
          .execute();
      },
    };
  }

  /**
   * Outbox items due at `now`, longest-waiting first. Delivery is at least once: an item is
   * published, then marked; a crash in between publishes it again, and receivers dedupe on MsgId.
   */
  async pendingOutbox(now: Date, limit: number): Promise<OutboxRow[]> {
    return this.kysely
      .selectFrom('outbox')
      .selectAll()
      .where('state', '=', 'pending')
      .where('next_attempt_at', '<=', now.toISOString())
      .orderBy('next_attempt_at')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /** Queues one item outside `recordMessage`, e.g. an alert (no message) or a resent AppRec. */
  async enqueueOutbox(messageId: number | null, item: NewOutboxItem): Promise<number> {
    return this.insertOutbox(this.kysely, messageId, item, this.now());
  }

  async outboxForMessage(messageId: number): Promise<OutboxRow[]> {
    return this.kysely.selectFrom('outbox').selectAll().where('message_id', '=', messageId).orderBy('id').execute();
  }

  /**
   * Marks an item published (after the broker confirmed it), and in the same transaction adds
   * `event` to its message's timeline and applies `messagePatch` to it, if it has a message.
   */
  async markOutboxPublished(id: number, event?: NewEvent, messagePatch?: MessagePatch): Promise<void> {
    const now = this.now();
    await this.kysely.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('outbox')
        .set({ state: 'published', published_at: now })
        .where('id', '=', id)
        .returning('message_id')
        .executeTakeFirst();
      if (!row) throw new Error(`outbox item #${id} does not exist`);
      if (row.message_id === null) return;
      if (event)
        await trx
          .insertInto('events')
          .values(this.eventRow(row.message_id, event, now))
          .execute();
      if (messagePatch)
        await trx
          .updateTable('messages')
          .set({ ...messagePatch, updated_at: now })
          .where('id', '=', row.message_id)
          .execute();
    });
  }

  /** Schedules another attempt after a failed publish. `error` must not contain personal data. */
  async deferOutbox(id: number, nextAttemptAt: Date, error: string): Promise<void> {
    await this.kysely
      .updateTable('outbox')
      .set((eb) => ({ attempts: eb('attempts', '+', 1), next_attempt_at: nextAttemptAt.toISOString(), last_error: error }))
      .where('id', '=', id)
      .execute();
  }

  async payloads(messageId: number): Promise<PayloadRow[]> {
    return this.kysely.selectFrom('payloads').selectAll().where('message_id', '=', messageId).orderBy('id').execute();
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

  async audit(entry: NewAudit): Promise<number> {
    const row = await this.kysely
      .insertInto('audit')
      .values({
        at: this.now(),
        actor: entry.actor,
        action: entry.action,
        target: entry.target ?? null,
        reason: entry.reason ?? null,
        detail: entry.detail === undefined ? null : JSON.stringify(entry.detail),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
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

  private eventRow(messageId: number, e: NewEvent, now: string): Insertable<Schema['events']> {
    return {
      message_id: messageId,
      at: e.at?.toISOString() ?? now,
      stage: e.stage,
      event: e.event,
      detail: e.detail === undefined ? null : JSON.stringify(e.detail),
    };
  }

  private async insertOutbox(trx: Executor, messageId: number | null, item: NewOutboxItem, now: string): Promise<number> {
    const row = await trx
      .insertInto('outbox')
      .values({
        message_id: messageId,
        purpose: item.purpose,
        exchange: item.exchange,
        routing_key: item.routing_key,
        headers: JSON.stringify(item.headers),
        content_type: item.content_type,
        message_id_prop: item.message_id_prop ?? null,
        body: toBuffer(item.body),
        state: 'pending',
        attempts: 0,
        next_attempt_at: item.next_attempt_at?.toISOString() ?? now,
        created_at: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }
}

/** The alert columns of an expectation whose alert fired as it was stored. */
function firingColumns(x: NewExpectation, now: string) {
  if (!x.firing) return {};
  return { alert_state: 'firing', alert_id: x.firing.alertId, last_alert_at: now, next_alert_at: x.firing.nextAlertAt?.toISOString() ?? null };
}

/** Both drivers bind a Buffer as a blob/bytea; a plain Uint8Array is wrapped without copying. */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
