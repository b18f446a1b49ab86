// The payloads table (message bodies, kept apart from metadata so retention can expire them):
// every write to it is here.
import type { Kysely } from 'kysely';
import { toBuffer } from '../../outbox/table.js';
import type { PayloadKind } from '../../shared/vocabulary.js';
import type { Schema } from '../db.js';

export interface NewPayload {
  kind: PayloadKind;
  content_type: string;
  body: Uint8Array;
}

export async function insertPayloads(db: Kysely<Schema>, messageId: number, payloads: NewPayload[], now: string): Promise<void> {
  if (payloads.length === 0) return;
  await db
    .insertInto('payloads')
    .values(payloads.map((p) => ({ message_id: messageId, kind: p.kind, content_type: p.content_type, body: toBuffer(p.body), created_at: now })))
    .execute();
}

/** Payload retention: the bodies of these messages stored before `cutoff`. */
export async function deletePayloadsBefore(db: Kysely<Schema>, messageIds: number[], cutoff: string): Promise<void> {
  if (messageIds.length === 0) return;
  await db.deleteFrom('payloads').where('message_id', 'in', messageIds).where('created_at', '<', cutoff).execute();
}
