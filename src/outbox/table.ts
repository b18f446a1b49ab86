// The outbox table: every write to it is here. An item is stored in the transaction that
// decides it, leased to the process that stored it, published with a broker confirm, then
// marked. The lease (`claimed_by` until `next_attempt_at`) is what tells a publish in progress
// (a live delivery in this process or another replica) from one a crash interrupted: only an
// item whose lease has run out may be claimed and published by someone else.
import { type Generated, type Kysely, type Selectable, sql } from 'kysely';
import type { OutboxPurpose } from '../shared/vocabulary.js';
import type { NewOutboxItem } from './items.js';

export type OutboxState = 'pending' | 'published';

export interface OutboxTable {
  id: Generated<number>;
  message_id: number | null;
  purpose: OutboxPurpose;
  exchange: string;
  routing_key: string;
  /** JSON object of AMQP headers */
  headers: string;
  content_type: string;
  /** AMQP `messageId` property */
  message_id_prop: string | null;
  body: Buffer;
  state: OutboxState;
  attempts: number;
  /** not before: the lease of whoever holds it, or the backoff after a failed publish */
  next_attempt_at: string;
  /** the process holding the lease (host:pid:nonce); null after a failed publish */
  claimed_by: string | null;
  last_error: string | null;
  created_at: string;
  published_at: string | null;
}

export type OutboxRow = Selectable<OutboxTable>;

/** Any connection or transaction whose schema has the outbox table. */
type Db = Kysely<{ outbox: OutboxTable }>;

/** Who holds new items, and until when. */
export interface Lease {
  /** null: no publisher in this process (the CLI without a broker); the relay may take it at once */
  owner: string | null;
  until: Date;
}

/** A lease held by a publisher of this process. */
export type Claim = Lease & { owner: string };

/** Stores items for a message (or none, for an alert of the gateway's own), leased to `lease.owner`. */
export async function insertOutboxItems(db: Db, messageId: number | null, items: NewOutboxItem[], lease: Lease, now: string): Promise<number[]> {
  const ids: number[] = [];
  // One by one: the order of RETURNING rows from a multi-row insert is not guaranteed.
  for (const item of items) {
    const row = await db
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
        next_attempt_at: lease.until.toISOString(),
        claimed_by: lease.owner,
        created_at: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    ids.push(row.id);
  }
  return ids;
}

/**
 * Takes over a pending item whose lease ran out (or that waits out its backoff), atomically: of
 * several processes trying at once, exactly one gets true.
 */
export async function claimOutboxItem(db: Db, id: number, claim: Claim, now: Date): Promise<boolean> {
  const result = await db
    .updateTable('outbox')
    .set({ claimed_by: claim.owner, next_attempt_at: claim.until.toISOString() })
    .where('id', '=', id)
    .where('state', '=', 'pending')
    .where('next_attempt_at', '<=', now.toISOString())
    .executeTakeFirst();
  return result.numUpdatedRows === 1n;
}

/** After a failed publish: released, to be tried again from `nextAttemptAt`. `error` holds no personal data. */
export async function deferOutboxItem(db: Db, id: number, nextAttemptAt: Date, error: string): Promise<void> {
  await db
    .updateTable('outbox')
    .set((eb) => ({ attempts: eb('attempts', '+', 1), next_attempt_at: nextAttemptAt.toISOString(), claimed_by: null, last_error: error }))
    .where('id', '=', id)
    .execute();
}

/** Marks an item published; returns its message id (null for an item of no message), undefined if it does not exist. */
export async function markOutboxItemPublished(db: Db, id: number, now: string): Promise<{ messageId: number | null } | undefined> {
  const row = await db.updateTable('outbox').set({ state: 'published', published_at: now }).where('id', '=', id).returning('message_id').executeTakeFirst();
  return row && { messageId: row.message_id };
}

/** Published bodies older than `cutoff` of these messages are emptied (payload retention); returns how many. */
export async function emptyPublishedBodies(db: Db, messageIds: number[], cutoff: string): Promise<number> {
  if (messageIds.length === 0) return 0;
  const emptied = await db
    .updateTable('outbox')
    .set({ body: Buffer.alloc(0) })
    .where('message_id', 'in', messageIds)
    .where('state', '=', 'published')
    .where('created_at', '<', cutoff)
    .where(sql<number>`length(body)`, '>', 0)
    .executeTakeFirst();
  return Number(emptied.numUpdatedRows);
}

/** Items due at `now` (lease or backoff over), longest-waiting first. */
export function dueOutboxItems(db: Db, now: Date, limit: number): Promise<OutboxRow[]> {
  return db
    .selectFrom('outbox')
    .selectAll()
    .where('state', '=', 'pending')
    .where('next_attempt_at', '<=', now.toISOString())
    .orderBy('next_attempt_at')
    .orderBy('id')
    .limit(limit)
    .execute();
}

/** The newest item of this purpose for a message (what a resend publishes again). */
export function latestOutboxItem(db: Db, messageId: number, purpose: OutboxPurpose): Promise<OutboxRow | undefined> {
  return db.selectFrom('outbox').selectAll().where('message_id', '=', messageId).where('purpose', '=', purpose).orderBy('id', 'desc').executeTakeFirst();
}

export function outboxItemsOf(db: Db, messageId: number): Promise<OutboxRow[]> {
  return db.selectFrom('outbox').selectAll().where('message_id', '=', messageId).orderBy('id').execute();
}

/** Both drivers bind a Buffer as a blob/bytea; a plain Uint8Array is wrapped without copying. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
