// `report overtid settle <msgId> --offered <date> --reason …`: a caseworker records the date the
// kommune offered a place for an answered utskrivningsklar notice, so that the overtid ledger
// counts døgn from that date on as not payable (docs/deadlines-and-alerts.md "Overtid ledger").
// One transaction: the settlement, the audit row and the notice's timeline event.
import { DateTime } from 'luxon';
import type { Store } from '../tracking/store.js';
import { insertAudit } from '../tracking/tables/audit.js';
import { insertEvents } from '../tracking/tables/events.js';
import { insertSettlement } from '../tracking/tables/settlements.js';
import { type Actor, fail, type OpsResult } from './result.js';

export interface Settled {
  msgId: string;
  offeredDate: string;
  settlementId: number;
  /** an earlier settlement of the notice this one replaces */
  replaced: string | null;
}

const VOID: Record<string, string> = {
  cancellation: 'the hospital cancelled it: it counts for nothing',
  'apprec:rejected': 'the bydel rejected it by AppRec: it was no valid notice',
  superseded: 'a later notice for the same stay stands for it: settle that one',
};

export async function settleNotice(store: Store, msgId: string, offeredDate: string, by: Actor): Promise<OpsResult<Settled>> {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(offeredDate) || !DateTime.fromISO(offeredDate).isValid) return fail('invalid', 'the offered date must be YYYY-MM-DD');
  if (!by.reason?.trim()) return fail('invalid', 'a reason is required (audited; no personal data)');
  const kysely = store.db.kysely;
  const notice = await kysely
    .selectFrom('messages')
    .select(['id', 'msg_id', 'state', 'answer_state', 'closed_by'])
    .where('direction', '=', 'out')
    .where('msg_type', '=', 'LOG_UTSKRIVNINGSKLAR')
    .where('msg_id', '=', msgId)
    .executeTakeFirst();
  if (!notice) return fail('not-found', `no utskrivningsklar notice ${msgId} sent`);
  if (notice.state === 'held' || notice.state === 'rejected')
    return fail('conflict', `${msgId} was ${notice.state}, not delivered: no notice the kommune received`);
  if (notice.closed_by && VOID[notice.closed_by]) return fail('conflict', `${msgId}: ${VOID[notice.closed_by]}`);
  if (notice.answer_state !== 'answered')
    return fail('conflict', `${msgId} is not answered: while the kommune "ikke har svart på varselet" every døgn is payable, there is nothing to settle`);
  const reason = by.reason.trim();
  return store.inTransaction(async ({ trx, now }) => {
    const earlier = await trx
      .selectFrom('overtid_settlements')
      .select('offered_date')
      .where('message_id', '=', notice.id)
      .orderBy('id', 'desc')
      .executeTakeFirst();
    const settlementId = await insertSettlement(trx, { messageId: notice.id, offeredDate, reason, actor: by.actor }, now);
    await insertAudit(
      trx,
      {
        actor: by.actor,
        action: 'overtid.settle',
        target: `message:${msgId}`,
        reason,
        detail: { via: by.via, offeredDate, replaced: earlier?.offered_date ?? null, storeId: notice.id },
      },
      now,
    );
    await insertEvents(
      trx,
      notice.id,
      [{ stage: 'ledger', event: 'overtid-settled', detail: { offeredDate, replaced: earlier?.offered_date ?? null, actor: by.actor } }],
      now,
    );
    return { ok: true as const, value: { msgId, offeredDate, settlementId, replaced: earlier?.offered_date ?? null } };
  });
}
