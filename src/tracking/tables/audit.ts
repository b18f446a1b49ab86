// The audit table (who did what, and why, for every ops action): every write to it is here.
import type { Kysely } from 'kysely';
import type { Schema } from '../db.js';

export interface NewAudit {
  actor: string;
  action: string;
  target?: string | null;
  reason?: string | null;
  detail?: Record<string, unknown>;
}

export async function insertAudit(db: Kysely<Schema>, entry: NewAudit, at: string): Promise<number> {
  const row = await db
    .insertInto('audit')
    .values({
      at,
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
