// The dead letters in the store: recorded once, listed and shown, then replayed or discarded
// with an audit row in the same transaction as the state change (LESSONS §9.9).
import type { Kysely } from 'kysely';
import type { Db } from '../../tracking/db.js';
import type { NewAudit } from '../../tracking/store.js';
import { insertAudit } from '../../tracking/tables/audit.js';
import { type DeadLetterRow, type DeadLetterState, type OpsSchema, opsKysely } from '../schema.js';
import type { DeadLetterFacts } from './classify.js';

export type { DeadLetterRow };

export interface DeadLetterFilter {
  /** default: open */
  state?: DeadLetterState | 'all';
  code?: string;
  sourceQueue?: string;
  limit?: number;
}

/** The flag a batch replay checks between items. */
export const REPLAY_PAUSED = 'dlq-replay-paused';

/** How long after its replay a skip-dedupe grant is honoured. */
const SKIP_DEDUPE_WINDOW_MS = 60 * 60 * 1000;

export class DeadLetterRepository {
  private readonly kysely: Kysely<OpsSchema>;

  constructor(
    db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.kysely = opsKysely(db);
  }

  /** Records a dead letter and its body; returns undefined when the same one is already recorded. */
  async record(facts: DeadLetterFacts, body: Buffer, props: { contentType?: string; messageId?: string }): Promise<number | undefined> {
    const now = this.clock().toISOString();
    return this.kysely.transaction().execute(async (trx) => {
      const bydel = facts.bydel ?? (facts.msgId ? await this.bydelOf(trx, facts.msgId) : null);
      const row = await trx
        .insertInto('dead_letters')
        .values({
          received_at: now,
          state: 'open',
          origin: facts.origin,
          source_queue: facts.sourceQueue,
          code: facts.code,
          reason: facts.reason,
          stage: facts.stage,
          msg_id: facts.msgId,
          msg_type: facts.msgType,
          bydel,
          conversation_id: facts.conversationId,
          from_her_id: facts.fromHerId,
          to_her_id: facts.toHerId,
          attempts: facts.attempts,
          first_failed_at: facts.firstFailedAt,
          headers: JSON.stringify(facts.headers),
          content_type: props.contentType ?? null,
          amqp_message_id: props.messageId ?? null,
          dedupe_key: facts.dedupeKey,
        })
        .onConflict((oc) => oc.column('dedupe_key').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (!row) return undefined;
      await trx.insertInto('dead_letter_bodies').values({ dead_letter_id: row.id, body, created_at: now }).execute();
      return row.id;
    });
  }

  async list(filter: DeadLetterFilter = {}): Promise<DeadLetterRow[]> {
    let q = this.kysely
      .selectFrom('dead_letters')
      .selectAll()
      .orderBy('id')
      .limit(filter.limit ?? 500);
    const state = filter.state ?? 'open';
    if (state !== 'all') q = q.where('state', '=', state);
    if (filter.code) q = q.where('code', '=', filter.code);
    if (filter.sourceQueue) q = q.where('source_queue', '=', filter.sourceQueue);
    return q.execute();
  }

  async get(id: number): Promise<DeadLetterRow | undefined> {
    return this.kysely.selectFrom('dead_letters').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** The body, or undefined once payload retention has expired it. */
  async body(id: number): Promise<Buffer | undefined> {
    const row = await this.kysely.selectFrom('dead_letter_bodies').select('body').where('dead_letter_id', '=', id).executeTakeFirst();
    return row ? Buffer.from(row.body) : undefined;
  }

  async countOpen(): Promise<number> {
    const row = await this.kysely
      .selectFrom('dead_letters')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('state', '=', 'open')
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Before a replay is published: checks it is still open and records whether the replay may
   * bypass the flow's MsgId dedupe (the gateway honours `x-replay-skip-dedupe` only for this).
   */
  async prepareReplay(id: number, skipDedupe: boolean): Promise<DeadLetterRow | undefined> {
    return this.kysely
      .updateTable('dead_letters')
      .set({ skip_dedupe: skipDedupe ? 1 : 0 })
      .where('id', '=', id)
      .where('state', '=', 'open')
      .returningAll()
      .executeTakeFirst();
  }

  /**
   * Was a skip-dedupe replay granted for this dead letter (by the CLI or API, before publishing),
   * and recently? The window covers redeliveries of the replay, not a header copied days later.
   */
  async skipDedupeGranted(id: number): Promise<boolean> {
    const since = new Date(this.clock().getTime() - SKIP_DEDUPE_WINDOW_MS).toISOString();
    const row = await this.kysely
      .selectFrom('dead_letters')
      .select('id')
      .where('id', '=', id)
      .where('skip_dedupe', '=', 1)
      .where((eb) => eb.or([eb('state', '=', 'open'), eb('resolved_at', '>=', since)]))
      .executeTakeFirst();
    return row !== undefined;
  }

  /** open → replayed or discarded, with its audit row; false when it was no longer open. */
  async resolve(id: number, state: Exclude<DeadLetterState, 'open'>, audit: NewAudit): Promise<boolean> {
    const now = this.clock().toISOString();
    return this.kysely.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('dead_letters')
        .set({ state, resolved_at: now, resolved_by: audit.actor, resolution_reason: audit.reason ?? null })
        .where('id', '=', id)
        .where('state', '=', 'open')
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) return false;
      await insertAudit(trx as Kysely<OpsSchema>, audit, now);
      return true;
    });
  }

  async flag(name: string): Promise<string | undefined> {
    const row = await this.kysely.selectFrom('ops_flags').select('value').where('name', '=', name).executeTakeFirst();
    return row?.value;
  }

  /** Sets (value) or clears (undefined) a flag, audited. */
  async setFlag(name: string, value: string | undefined, audit: NewAudit): Promise<void> {
    const now = this.clock().toISOString();
    await this.kysely.transaction().execute(async (trx) => {
      if (value === undefined) await trx.deleteFrom('ops_flags').where('name', '=', name).execute();
      else {
        await trx
          .insertInto('ops_flags')
          .values({ name, value, updated_at: now, updated_by: audit.actor })
          .onConflict((oc) => oc.column('name').doUpdateSet({ value, updated_at: now, updated_by: audit.actor }))
          .execute();
      }
      await insertAudit(trx as Kysely<OpsSchema>, audit, now);
    });
  }

  /** Payload retention: the bodies of dead letters resolved and received before `cutoff`; returns how many. */
  async expireBodies(cutoff: string): Promise<number> {
    const result = await this.kysely
      .deleteFrom('dead_letter_bodies')
      .where('dead_letter_id', 'in', (eb) => eb.selectFrom('dead_letters').select('id').where('state', '<>', 'open').where('received_at', '<', cutoff))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async audit(entry: NewAudit): Promise<void> {
    await insertAudit(this.kysely, entry, this.clock().toISOString());
  }

  /** The bydel of the stored outgoing message with this MsgId, for the listing. */
  private async bydelOf(trx: Kysely<OpsSchema>, msgId: string): Promise<string | null> {
    const row = await trx.selectFrom('messages').select('bydel').where('msg_id', '=', msgId).where('bydel', 'is not', null).executeTakeFirst();
    return row?.bydel ?? null;
  }
}
