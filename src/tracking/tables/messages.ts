// The messages table: every write to it is here. One row per message in each direction, keyed
// for dedupe by (direction, sender HER-id, MsgId).
import type { Insertable, Kysely, Updateable } from 'kysely';
import type { MessageState } from '../../shared/vocabulary.js';
import type { Direction, MessagesTable, Schema } from '../db.js';

/** A message's metadata; the store sets `created_at` and `updated_at`. */
export type NewMessage = Omit<Insertable<MessagesTable>, 'id' | 'created_at' | 'updated_at'>;

/** Fields a later stage may change; `updated_at` is set here. */
export type MessagePatch = Omit<Updateable<MessagesTable>, 'id' | 'msg_id' | 'direction' | 'sender_her_id' | 'created_at' | 'updated_at'>;

/** Columns an update may be conditional on: the row still has this state, or this column is still unset. */
export type MessageGuard = { state: MessageState } | { unset: 'transport_state' | 'apprec_status' | 'answer_state' };

type Db = Kysely<Schema>;

/**
 * Inserts unless (direction, sender, MsgId) is taken; returns the new id, or the id that holds
 * the key. ON CONFLICT on exactly the dedupe key lets the database decide atomically, also
 * between replicas; any other violation still throws. A NULL sender never conflicts.
 */
export async function insertMessage(db: Db, message: NewMessage, now: string): Promise<{ inserted: number } | { existing: number }> {
  const inserted = await db
    .insertInto('messages')
    .values({ ...message, created_at: now, updated_at: now })
    .onConflict((oc) => oc.columns(['direction', 'sender_her_id', 'msg_id']).doNothing())
    .returning('id')
    .executeTakeFirst();
  if (inserted) return { inserted: inserted.id };
  const existing = await findMessageId(db, message.direction, message.sender_her_id ?? '', message.msg_id);
  if (existing === undefined) throw new Error(`message ${message.msg_id} conflicted on its dedupe key, but no row holds it`);
  return { existing };
}

async function findMessageId(db: Db, direction: Direction, senderHerId: string, msgId: string): Promise<number | undefined> {
  const row = await db
    .selectFrom('messages')
    .select('id')
    .where('direction', '=', direction)
    .where('sender_her_id', '=', senderHerId)
    .where('msg_id', '=', msgId)
    .executeTakeFirst();
  return row?.id;
}

/** Applies `patch`, only while `guard` holds; true if the row changed. */
export async function updateMessage(db: Db, id: number, patch: MessagePatch, now: string, guard?: MessageGuard): Promise<boolean> {
  let update = db
    .updateTable('messages')
    .set({ ...patch, updated_at: now })
    .where('id', '=', id);
  if (guard && 'state' in guard) update = update.where('state', '=', guard.state);
  if (guard && 'unset' in guard) update = update.where(guard.unset, 'is', null);
  const result = await update.executeTakeFirst();
  return result.numUpdatedRows > 0n;
}
