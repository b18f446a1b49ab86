// The expectations table (what must come back for a message, by when, and its alert's state):
// every write to it is here. The deadline engine's transitions are conditional updates whose
// condition is the same as the query that found the row, so a row is acted on exactly once,
// by one replica, also under SKIP LOCKED races and on a single SQLite writer.
import { type Expression, type ExpressionBuilder, type Kysely, type SqlBool, sql } from 'kysely';
import type { ExpectationKind, ExpectationState } from '../../shared/vocabulary.js';
import type { Schema } from '../db.js';

/** Something that must come back (or be done) for a message by `dueAt` (DESIGN §3 C). */
export interface NewExpectation {
  kind: Exclude<ExpectationKind, 'apprec-rejected' | 'transport-error'>;
  dueAt: Date;
  /** transport-ack under a CPA: its Retries and RetryInterval instead of the configured transportRetry */
  resend?: { limit: number; intervalMs?: number };
  /** set when its alert is raised in the same transaction (a held message's `unroutable`) */
  firing?: { alertId: string; nextAlertAt: Date | null };
}

export type Transition = 'firing' | 'reminder' | 'resolved';

type Db = Kysely<Schema>;
/** `resends`: how often an unacknowledged message is resent before its transport-ack alert may fire, unless its CPA says otherwise. */
type Where = (eb: ExpressionBuilder<Schema, 'expectations'>, now: string, resends: number) => Expression<SqlBool>;

/** Which rows each transition acts on. */
export const DUE: Record<Transition, Where> = {
  firing: (eb, now, resends) =>
    eb.and([
      eb('state', '=', 'open'),
      eb('alert_state', 'is', null),
      eb('due_at', '<=', now),
      eb.or([eb('kind', '<>', 'transport-ack'), eb('resends', '>=', resendLimit(eb, resends))]),
    ]),
  reminder: (eb, now) => eb.and([eb('state', '=', 'open'), eb('alert_state', '=', 'firing'), eb('next_alert_at', '<=', now)]),
  resolved: (eb) => eb.and([eb('alert_state', '=', 'firing'), eb('state', '<>', 'open')]),
};

/** An expectation already stored for the same kind (a message routed again) is kept. */
export async function insertExpectations(db: Db, messageId: number, list: NewExpectation[], now: string): Promise<void> {
  if (list.length === 0) return;
  await db
    .insertInto('expectations')
    .values(
      list.map((x) => ({
        message_id: messageId,
        kind: x.kind,
        due_at: x.dueAt.toISOString(),
        state: 'open' as const,
        created_at: now,
        resend_limit: x.resend?.limit ?? null,
        resend_interval_ms: x.resend?.intervalMs ?? null,
        ...firingColumns(x, now),
      })),
    )
    .onConflict((oc) => oc.columns(['message_id', 'kind']).doNothing())
    .execute();
}

/** The alert columns of an expectation whose alert fired as it was stored. */
function firingColumns(x: NewExpectation, now: string) {
  if (!x.firing) return {};
  return { alert_state: 'firing' as const, alert_id: x.firing.alertId, last_alert_at: now, next_alert_at: x.firing.nextAlertAt?.toISOString() ?? null };
}

/**
 * The open expectation of this kind is met or closed, `by` saying what did it. With
 * `alertResolved` its firing alert is resolved here too (the caller publishes the resolution).
 */
export async function resolveExpectation(
  db: Db,
  messageId: number,
  kind: ExpectationKind,
  outcome: { state: Exclude<ExpectationState, 'open'>; by: string; alertResolved?: boolean },
  at: string,
): Promise<void> {
  await db
    .updateTable('expectations')
    .set({
      state: outcome.state,
      resolved_at: at,
      resolved_by: outcome.by,
      ...(outcome.alertResolved ? { alert_state: 'resolved' as const, last_alert_at: at, next_alert_at: null } : {}),
    })
    .where('message_id', '=', messageId)
    .where('kind', '=', kind)
    .where('state', '=', 'open')
    .execute();
}

/** The alert columns a transition writes. */
export type TransitionColumns =
  | { alert_state: 'firing'; alert_id: string; last_alert_at: string; next_alert_at: string | null }
  | { reminders: number; last_alert_at: string; next_alert_at: string | null }
  | { alert_state: 'resolved'; last_alert_at: string; next_alert_at: null };

/** Writes a transition if the row is still due for it; true for the one caller that got it. */
export async function claimTransition(db: Db, id: number, step: Transition, columns: TransitionColumns, at: string, resends: number): Promise<boolean> {
  const claimed = await db
    .updateTable('expectations')
    .set(columns)
    .where('id', '=', id)
    .where((eb) => DUE[step](eb, at, resends))
    .executeTakeFirst();
  return claimed.numUpdatedRows === 1n;
}

/** A row's own resend limit (from its CPA), else the configured one. */
const resendLimit = (eb: ExpressionBuilder<Schema, 'expectations'>, resends: number) => eb.fn.coalesce('resend_limit', eb.val(resends));

/** Transport-ack rows due for a resend (fewer than their limit so far), longest-waiting first. */
export function dueForResend(db: Db, now: string, resends: number, limit: number) {
  return db
    .selectFrom('expectations')
    .select(['id', 'message_id', 'resends', 'resend_limit', 'resend_interval_ms'])
    .where('kind', '=', 'transport-ack')
    .where('state', '=', 'open')
    .where('alert_state', 'is', null)
    .where('due_at', '<=', now)
    .where((eb) => eb('resends', '<', resendLimit(eb, resends)))
    .orderBy('due_at')
    .limit(limit);
}

/** Counts one resend and moves the deadline on, if the row is still due for it; true for the one caller that got it. */
export async function claimResend(db: Db, id: number, resends: number, nextDueAt: Date, at: string): Promise<boolean> {
  const claimed = await db
    .updateTable('expectations')
    .set((eb) => ({ resends: eb('resends', '+', 1), due_at: nextDueAt.toISOString() }))
    .where('id', '=', id)
    .where('state', '=', 'open')
    .where('due_at', '<=', at)
    .where((eb) => eb('resends', '<', resendLimit(eb, resends)))
    .executeTakeFirst();
  return claimed.numUpdatedRows === 1n;
}

/** Nothing to resend (the message has no stored delivery): its resends count as spent, so its alert may fire. */
export async function spendResends(db: Db, id: number, resends: number): Promise<void> {
  await db
    .updateTable('expectations')
    .set((eb) => ({ resends: resendLimit(eb, resends) }))
    .where('id', '=', id)
    .where((eb) => eb('resends', '<', resendLimit(eb, resends)))
    .execute();
}

/** What comes back final and is raised once: a rejecting AppRec, a MessageError. */
export type RaisedKind = Extract<ExpectationKind, 'apprec-rejected' | 'transport-error'>;

/**
 * Records that a final refusal was raised: closed at once ('raised': a single alert that no later
 * event resolves). Unique per message and kind, so of several replicas only one insert lands.
 */
export async function insertRaised(db: Db, messageId: number, kind: RaisedKind, dueAt: string, at: string): Promise<number | undefined> {
  const inserted = await db
    .insertInto('expectations')
    .values({
      message_id: messageId,
      kind,
      due_at: dueAt,
      state: 'closed',
      created_at: at,
      resolved_at: at,
      resolved_by: kind === 'apprec-rejected' ? 'apprec:rejected' : 'transport:error',
      alert_state: 'raised',
      last_alert_at: at,
    })
    .onConflict((oc) => oc.columns(['message_id', 'kind']).doNothing())
    .returning('id')
    .executeTakeFirst();
  return inserted?.id;
}

export async function setAlertId(db: Db, id: number, alertId: string): Promise<void> {
  await db.updateTable('expectations').set({ alert_id: alertId }).where('id', '=', id).execute();
}

/** A held message that ops routed (or discarded), or that was released, no longer waits: its routing or certificate row is met. */
export async function closeRoutedHolds(db: Db, at: string): Promise<number> {
  const result = await db
    .updateTable('expectations')
    .set({ state: 'met', resolved_at: at, resolved_by: 'no-longer-held' })
    // literals, not parameters: SQLite uses the partial index expectations_open_holds only for the very same IN list
    .where('kind', 'in', [sql.lit<ExpectationKind>('routing'), sql.lit<ExpectationKind>('certificate')])
    .where('state', '=', 'open')
    .where(({ exists, selectFrom }) =>
      exists(selectFrom('messages as m').select('m.id').whereRef('m.id', '=', 'expectations.message_id').where('m.state', '<>', 'held')),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/**
 * A message delivered again (to another bydel, `route --resend`): every expectation still open
 * for the earlier delivery is closed as superseded, its firing alert resolved with it (the
 * caller publishes the resolutions).
 */
export async function supersedeExpectations(db: Db, messageId: number, by: string, at: string): Promise<void> {
  await db
    .updateTable('expectations')
    .set((eb) => ({
      state: 'closed',
      resolved_at: at,
      resolved_by: by,
      alert_state: eb.case().when('alert_state', '=', 'firing').then(sql.lit<'resolved'>('resolved')).else(eb.ref('alert_state')).end(),
      next_alert_at: null,
    }))
    .where('message_id', '=', messageId)
    .where('state', '=', 'open')
    .execute();
}

/**
 * Expectations opened for a message that already had rows of these kinds (one per message and
 * kind): the row starts over, as a new expectation would, with nothing of the earlier one's
 * alert. For a new delivery of the same message, or a condition raised again.
 */
export async function reopenExpectations(db: Db, messageId: number, list: NewExpectation[], now: string): Promise<void> {
  for (const x of list) {
    const fresh = {
      due_at: x.dueAt.toISOString(),
      state: 'open' as const,
      created_at: now,
      resolved_at: null,
      resolved_by: null,
      alert_state: null,
      last_alert_at: null,
      alert_id: null,
      next_alert_at: null,
      reminders: 0,
      resends: 0,
      resend_limit: x.resend?.limit ?? null,
      resend_interval_ms: x.resend?.intervalMs ?? null,
      ...firingColumns(x, now),
    };
    await db
      .insertInto('expectations')
      .values({ message_id: messageId, kind: x.kind, ...fresh })
      .onConflict((oc) => oc.columns(['message_id', 'kind']).doUpdateSet(fresh))
      .execute();
  }
}
