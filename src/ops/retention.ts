// Payload retention (LESSONS §9.9): bodies expire after `retention.payloadDays`, metadata and
// timelines stay. Nothing unresolved loses its body: not a held message, not one whose outbox
// item is still pending, not one with an open expectation (receipt, answer, report, routing),
// not one with an open dead letter, and no open dead letter itself.
import { type ExpressionBuilder, type Kysely, sql } from 'kysely';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { emptyPublishedBodies } from '../outbox/table.js';
import type { Db } from '../tracking/db.js';
import { insertAudit } from '../tracking/tables/audit.js';
import { insertEventForEach } from '../tracking/tables/events.js';
import { deletePayloadsBefore } from '../tracking/tables/payloads.js';
import { DeadLetterRepository } from './deadLetters/repository.js';
import { type OpsSchema, opsKysely } from './schema.js';

export interface RetentionResult {
  cutoff: string;
  /** messages whose payloads were deleted (each gets a `payload-expired` event) */
  messages: number;
  outboxBodies: number;
  deadLetterBodies: number;
}

/** Waiting for ops. (Stored but not yet sent shows as a pending outbox item.) */
const HELD = 'held';
const BATCH = 500;
const DAY_MS = 24 * 60 * 60 * 1000;

/** The message is finished with: nothing about it is waiting for anyone. */
function resolved(eb: ExpressionBuilder<OpsSchema, 'messages'>) {
  return eb.and([
    eb('messages.state', '<>', HELD),
    eb.not(eb.exists(eb.selectFrom('outbox as o').select('o.id').whereRef('o.message_id', '=', 'messages.id').where('o.state', '=', 'pending'))),
    eb.not(eb.exists(eb.selectFrom('expectations as x').select('x.id').whereRef('x.message_id', '=', 'messages.id').where('x.state', '=', 'open'))),
    eb.not(eb.exists(eb.selectFrom('dead_letters as d').select('d.id').whereRef('d.msg_id', '=', 'messages.msg_id').where('d.state', '=', 'open'))),
  ]);
}

export class PayloadRetention {
  private readonly kysely: Kysely<OpsSchema>;
  private readonly deadLetters: DeadLetterRepository;

  constructor(
    db: Db,
    private readonly payloadDays: number,
    private readonly log: Logger,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.kysely = opsKysely(db);
    this.deadLetters = new DeadLetterRepository(db, clock);
  }

  async runOnce(): Promise<RetentionResult> {
    const now = this.clock();
    const cutoff = new Date(now.getTime() - this.payloadDays * DAY_MS).toISOString();
    const result: RetentionResult = { cutoff, messages: 0, outboxBodies: 0, deadLetterBodies: 0 };
    for (;;) {
      const batch = await this.expireMessageBatch(cutoff, now.toISOString());
      result.messages += batch.messages;
      result.outboxBodies += batch.outboxBodies;
      if (batch.messages < BATCH) break;
    }
    result.deadLetterBodies = await this.deadLetters.expireBodies(cutoff);
    if (result.messages + result.outboxBodies + result.deadLetterBodies > 0) {
      await insertAudit(
        this.kysely,
        { actor: 'retention', action: 'retention.expire-payloads', detail: { ...result, payloadDays: this.payloadDays } },
        now.toISOString(),
      );
      this.log.info({ event: EVENTS.payloadsExpired, ...result }, 'payload retention: expired bodies');
    }
    return result;
  }

  /** Up to BATCH resolved messages with old bodies: payloads deleted, published outbox bodies emptied, one event each. */
  private async expireMessageBatch(cutoff: string, at: string): Promise<{ messages: number; outboxBodies: number }> {
    return this.kysely.transaction().execute(async (trx) => {
      const ids = (
        await trx
          .selectFrom('messages')
          .select('messages.id')
          .where((eb) => resolved(eb))
          .where((eb) =>
            eb.or([
              eb.exists(eb.selectFrom('payloads as p').select('p.id').whereRef('p.message_id', '=', 'messages.id').where('p.created_at', '<', cutoff)),
              eb.exists(
                eb
                  .selectFrom('outbox as o')
                  .select('o.id')
                  .whereRef('o.message_id', '=', 'messages.id')
                  .where('o.state', '=', 'published')
                  .where('o.created_at', '<', cutoff)
                  .where(sql<number>`length(o.body)`, '>', 0),
              ),
            ]),
          )
          .orderBy('messages.id')
          .limit(BATCH)
          .execute()
      ).map((r) => r.id);
      if (ids.length === 0) return { messages: 0, outboxBodies: 0 };
      const store = trx as Kysely<OpsSchema>;
      await deletePayloadsBefore(store, ids, cutoff);
      const outboxBodies = await emptyPublishedBodies(store, ids, cutoff);
      await insertEventForEach(store, ids, { stage: 'retention', event: 'payload-expired', detail: { cutoff } }, at);
      return { messages: ids.length, outboxBodies };
    });
  }
}
