// The events table (each message's timeline): every write to it is here.
import type { Insertable, Kysely } from 'kysely';
import type { Stage, TimelineEvent } from '../../shared/vocabulary.js';
import type { Schema } from '../db.js';

export interface NewEvent {
  stage: Stage;
  event: TimelineEvent;
  /** stored as JSON; never personal data */
  detail?: Record<string, unknown>;
  /** defaults to now */
  at?: Date;
}

export async function insertEvents(db: Kysely<Schema>, messageId: number, events: NewEvent[], now: string): Promise<void> {
  if (events.length === 0) return;
  await db
    .insertInto('events')
    .values(events.map((e) => eventRow(messageId, e, now)))
    .execute();
}

/** One event on each of several messages (payload retention marks each message it expired). */
export async function insertEventForEach(db: Kysely<Schema>, messageIds: number[], e: NewEvent, now: string): Promise<void> {
  if (messageIds.length === 0) return;
  await db
    .insertInto('events')
    .values(messageIds.map((id) => eventRow(id, e, now)))
    .execute();
}

function eventRow(messageId: number, e: NewEvent, now: string): Insertable<Schema['events']> {
  return {
    message_id: messageId,
    at: e.at?.toISOString() ?? now,
    stage: e.stage,
    event: e.event,
    detail: e.detail === undefined ? null : JSON.stringify(e.detail),
  };
}
