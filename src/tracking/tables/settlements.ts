// The overtid_settlements table (the date the kommune offered a place, per answered notice):
// every write to it is here.
import type { Kysely } from 'kysely';
import type { Schema } from '../db.js';

export interface NewSettlement {
  messageId: number;
  /** local date YYYY-MM-DD */
  offeredDate: string;
  reason: string;
  actor: string;
}

export async function insertSettlement(db: Kysely<Schema>, s: NewSettlement, at: string): Promise<number> {
  const row = await db
    .insertInto('overtid_settlements')
    .values({ message_id: s.messageId, offered_date: s.offeredDate, reason: s.reason, actor: s.actor, at })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}
