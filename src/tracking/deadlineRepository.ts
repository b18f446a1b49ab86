// The deadline engine's database work. Each transition (an expectation's alert fires, is
// repeated, is resolved) claims its rows and writes the new alert state, the outbox item and the
// timeline event in ONE transaction, so an alert is published exactly when its state change is
// committed. On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`: replicas share the due rows
// and never act on the same one. Every update also re-checks the claim condition, which keeps
// a single SQLite writer (and any race) to exactly once. The webhook takes alerts from the
// outbox (webhook.ts), so it needs nothing here.
import type { Kysely } from 'kysely';
import type { GatewayConfig } from '../config/config.js';
import { again, alertItem, type Publishable } from '../outbox/items.js';
import { type Claim, insertOutboxItems, latestOutboxItem } from '../outbox/table.js';
import type { Alert } from './alerts.js';
import type { Schema } from './db.js';
import { type AlertPolicy, type ConditionContext, type ConditionKind, conditionAlert, nextReminderAt, type Transition } from './deadlines.js';
import type { Store, StoreTransaction } from './store.js';
import { insertEvents } from './tables/events.js';
import {
  claimResend,
  claimTransition,
  closeRoutedHolds,
  DUE,
  dueForResend,
  insertRaised,
  type RaisedKind,
  setAlertId,
  spendResends,
  type TransitionColumns,
} from './tables/expectations.js';

/** An alert whose state change is committed, with its stored outbox item to publish now. */
export interface Emission {
  alert: Alert;
  item: Publishable;
}

export interface DeadlineRepositoryOptions {
  broker: GatewayConfig['broker'];
  /** the lease its alert items are stored under: the publisher that publishes them at once */
  lease: () => Claim;
  /** who acted (host:pid), recorded on the message's timeline */
  replica: string;
}

const ORDER: Record<Transition, 'due_at' | 'next_alert_at' | 'id'> = { firing: 'due_at', reminder: 'next_alert_at', resolved: 'id' };

export class DeadlineRepository {
  private readonly postgres: boolean;

  constructor(
    private readonly store: Store,
    private readonly policy: AlertPolicy,
    private readonly options: DeadlineRepositoryOptions,
  ) {
    this.postgres = store.db.dialect === 'postgres';
  }

  /** How often an unacknowledged message is resent before its alert fires. */
  private get resends(): number {
    return this.policy.transportRetry?.count ?? 0;
  }

  /**
   * Reliable messaging out (ebMS 2.0 §6.4): a message whose transport Acknowledgment is overdue
   * is published again, byte for byte (the same eb:MessageId, so the receiver drops a copy it
   * has), and its deadline moves one retry interval on; the resend is on its timeline.
   */
  async resendUnacknowledged(now: Date, limit: number): Promise<Publishable[]> {
    const retry = this.policy.transportRetry ?? { count: 0, intervalMs: 0 };
    const at = now.toISOString();
    return this.store.inTransaction(async (tx) => {
      let due = dueForResend(tx.trx, at, retry.count, limit);
      if (this.postgres) due = due.forUpdate().skipLocked();
      const resent: Publishable[] = [];
      for (const row of await due.execute()) {
        const sent = await latestOutboxItem(tx.trx, row.message_id, 'deliver');
        if (!sent) {
          await spendResends(tx.trx, row.id, retry.count);
          continue;
        }
        const intervalMs = row.resend_interval_ms ?? retry.intervalMs;
        if (!(await claimResend(tx.trx, row.id, retry.count, new Date(now.getTime() + intervalMs), at))) continue;
        const item = again(sent);
        const [id] = await insertOutboxItems(tx.trx, row.message_id, [item], this.options.lease(), tx.now);
        const ebxmlMessageId = (await tx.trx.selectFrom('messages').select('ebxml_message_id').where('id', '=', row.message_id).executeTakeFirst())
          ?.ebxml_message_id;
        await insertEvents(
          tx.trx,
          row.message_id,
          [{ stage: 'transport', event: 'resent', detail: { attempt: row.resends + 1, of: row.resend_limit ?? retry.count, ebxmlMessageId } }],
          tx.now,
        );
        resent.push({ ...item, id, message_id: row.message_id, attempts: 0 });
      }
      return resent;
    });
  }

  /** Fires, repeats or resolves up to `limit` due conditions. */
  async transition(step: Transition, now: Date, limit: number): Promise<Emission[]> {
    const at = now.toISOString();
    return this.store.inTransaction(async (tx) => {
      let due = tx.trx
        .selectFrom('expectations')
        .select('id')
        .where((eb) => DUE[step](eb, at, this.resends))
        .orderBy(ORDER[step])
        .limit(limit);
      if (this.postgres) due = due.forUpdate().skipLocked();
      const ids = (await due.execute()).map((r) => r.id);
      const emissions: Emission[] = [];
      for (const c of await this.contexts(tx.trx, ids)) {
        const alert = conditionAlert(step, c, now, this.policy);
        if (await claimTransition(tx.trx, c.expectationId, step, this.alertColumns(step, c, alert, now), at, this.resends))
          emissions.push(await this.emit(tx, c, alert, step));
      }
      return emissions;
    });
  }

  /**
   * What came back final is raised once: a rejected AppRec (status 2, `apprec_status =
   * 'rejected'`) as `apprec-rejected`, a received MessageError (`transport_state = 'error'`) as
   * `transport-error`. The row that records it is unique per message and kind, so of several
   * replicas finding the same refusal only the one whose insert lands raises it.
   */
  async raiseRefusals(kind: RaisedKind, now: Date, limit: number): Promise<Emission[]> {
    const at = now.toISOString();
    return this.store.inTransaction(async (tx) => {
      let refused = tx.trx
        .selectFrom('messages as m')
        .select(['m.id', 'm.apprec_at', 'm.transport_at'])
        .where('m.direction', '=', 'out')
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('expectations as e').select('e.id').whereRef('e.message_id', '=', 'm.id').where('e.kind', '=', kind))),
        );
      refused = kind === 'apprec-rejected' ? refused.where('m.apprec_status', '=', 'rejected') : refused.where('m.transport_state', '=', 'error');
      const emissions: Emission[] = [];
      for (const m of await refused.orderBy('m.id').limit(limit).execute()) {
        const inserted = await insertRaised(tx.trx, m.id, kind, (kind === 'apprec-rejected' ? m.apprec_at : m.transport_at) ?? at, at);
        if (inserted === undefined) continue;
        const [c] = await this.contexts(tx.trx, [inserted]);
        const alert = conditionAlert('firing', c, now, this.policy);
        await setAlertId(tx.trx, inserted, alert.id);
        emissions.push(await this.emit(tx, c, alert, 'firing'));
      }
      return emissions;
    });
  }

  /** A held message that ops routed (or discarded) no longer waits: its routing row is met. */
  async closeRoutedHolds(now: Date): Promise<number> {
    return closeRoutedHolds(this.store.db.kysely, now.toISOString());
  }

  private async contexts(trx: Kysely<Schema>, ids: number[]): Promise<ConditionContext[]> {
    if (ids.length === 0) return [];
    const rows = await trx
      .selectFrom('expectations as e')
      .innerJoin('messages as m', 'm.id', 'e.message_id')
      .select([
        'e.id as expectationId',
        'e.kind',
        'e.due_at as dueAt',
        'e.alert_id as alertId',
        'e.reminders',
        'e.resends',
        'e.resolved_by as resolvedBy',
        'm.id as messageId',
        'm.msg_id as msgId',
        'm.msg_type as msgType',
        'm.conversation_id as conversationId',
        'm.bydel',
        'm.receiver_l1_her_id',
        'm.receiver_l2_her_id',
        'm.gen_date as genDate',
        'm.created_at as createdAt',
        'm.apprec_errors as appRecErrors',
        'm.transport_errors as transportErrors',
      ])
      .where('e.id', 'in', ids)
      .orderBy('e.id')
      .execute();
    return rows.map(({ receiver_l1_her_id, receiver_l2_her_id, kind, ...r }) => ({
      ...r,
      kind: kind as ConditionKind,
      receiverHerId: receiver_l2_her_id ?? receiver_l1_her_id,
    }));
  }

  private alertColumns(step: Transition, c: ConditionContext, alert: Alert, now: Date): TransitionColumns {
    const at = now.toISOString();
    const next = () => nextReminderAt(c, now, this.policy)?.toISOString() ?? null;
    switch (step) {
      case 'firing':
        return { alert_state: 'firing', alert_id: alert.id, last_alert_at: at, next_alert_at: next() };
      case 'reminder':
        return { reminders: c.reminders + 1, last_alert_at: at, next_alert_at: next() };
      case 'resolved':
        return { alert_state: 'resolved', last_alert_at: at, next_alert_at: null };
    }
  }

  private async emit(tx: StoreTransaction, c: ConditionContext, alert: Alert, step: Transition): Promise<Emission> {
    const item = alertItem(this.options.broker, alert);
    const [id] = await insertOutboxItems(tx.trx, c.messageId, [item], this.options.lease(), tx.now);
    await insertEvents(
      tx.trx,
      c.messageId,
      [{ stage: 'deadline', event: `alert-${step}`, detail: { kind: alert.kind, alertId: alert.id, severity: alert.severity, replica: this.options.replica } }],
      tx.now,
    );
    return { alert, item: { ...item, id, message_id: c.messageId, attempts: 0 } };
  }
}
