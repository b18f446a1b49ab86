// The deadline engine's database work. Each transition (an expectation's alert fires, is
// repeated, is resolved) claims its rows and writes the new alert state, the outbox item and the
// timeline event in ONE transaction, so an alert is published exactly when its state change is
// committed. On PostgreSQL the claim is `FOR UPDATE SKIP LOCKED`: replicas share the due rows
// and never act on the same one. Every update also re-checks the claim condition, which keeps
// a single SQLite writer (and any race) to exactly once. The webhook takes alerts from the
// outbox (webhook.ts), so it needs nothing here.
import type { Expression, ExpressionBuilder, SqlBool, Transaction } from 'kysely';
import type { GatewayConfig } from '../config/config.js';
import { alertItem } from '../outbound/outboxItems.js';
import type { Publishable } from '../outbound/outboxRelay.js';
import type { Alert } from './alerts.js';
import type { Schema } from './db.js';
import { type AlertPolicy, type ConditionContext, type ConditionKind, conditionAlert, nextReminderAt, type Transition } from './deadlines.js';
import type { Store, StoreTransaction } from './store.js';

/** An alert whose state change is committed, with its stored outbox item to publish now. */
export interface Emission {
  alert: Alert;
  item: Publishable;
}

export interface DeadlineRepositoryOptions {
  broker: GatewayConfig['broker'];
  /** how long the outbox relay leaves a just-stored item to the live path */
  graceMs: number;
  /** who acted (host:pid), recorded on the message's timeline */
  replica: string;
}

type Where = (eb: ExpressionBuilder<Schema, 'expectations'>, now: string) => Expression<SqlBool>;

/** Which rows each transition acts on; also re-checked by the update that claims a row. */
const DUE: Record<Transition, Where> = {
  firing: (eb, now) => eb.and([eb('state', '=', 'open'), eb('alert_state', 'is', null), eb('due_at', '<=', now)]),
  reminder: (eb, now) => eb.and([eb('state', '=', 'open'), eb('alert_state', '=', 'firing'), eb('next_alert_at', '<=', now)]),
  resolved: (eb) => eb.and([eb('alert_state', '=', 'firing'), eb('state', '<>', 'open')]),
};

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

  /** Fires, repeats or resolves up to `limit` due conditions. */
  async transition(step: Transition, now: Date, limit: number): Promise<Emission[]> {
    const at = now.toISOString();
    return this.store.inTransaction(async (tx) => {
      let due = tx.trx
        .selectFrom('expectations')
        .select('id')
        .where((eb) => DUE[step](eb, at))
        .orderBy(ORDER[step])
        .limit(limit);
      if (this.postgres) due = due.forUpdate().skipLocked();
      const ids = (await due.execute()).map((r) => r.id);
      const emissions: Emission[] = [];
      for (const c of await this.contexts(tx.trx, ids)) {
        const alert = conditionAlert(step, c, now, this.policy);
        const claimed = await tx.trx
          .updateTable('expectations')
          .set(this.alertColumns(step, c, alert, now))
          .where('id', '=', c.expectationId)
          .where((eb) => DUE[step](eb, at))
          .executeTakeFirst();
        if (claimed.numUpdatedRows === 1n) emissions.push(await this.emit(tx, c, alert, step, now));
      }
      return emissions;
    });
  }

  /**
   * A rejected AppRec (status 2, recorded by the inbound path as `apprec_status = 'rejected'`)
   * raises `apprec-rejected` once. The row that records it is unique per message, so of several
   * replicas finding the same rejection only the one whose insert lands raises it.
   */
  async raiseRejectedAppRecs(now: Date, limit: number): Promise<Emission[]> {
    const at = now.toISOString();
    return this.store.inTransaction(async (tx) => {
      const rejected = await tx.trx
        .selectFrom('messages as m')
        .select(['m.id', 'm.apprec_at'])
        .where('m.direction', '=', 'out')
        .where('m.apprec_status', '=', 'rejected')
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('expectations as e').select('e.id').whereRef('e.message_id', '=', 'm.id').where('e.kind', '=', 'apprec-rejected'))),
        )
        .orderBy('m.id')
        .limit(limit)
        .execute();
      const emissions: Emission[] = [];
      for (const m of rejected) {
        const inserted = await tx.trx
          .insertInto('expectations')
          // Nothing more to wait for: the row is closed at once and only records that the
          // rejection was raised ('raised': a single alert that no later event resolves).
          .values({
            message_id: m.id,
            kind: 'apprec-rejected',
            due_at: m.apprec_at ?? at,
            state: 'closed',
            created_at: at,
            resolved_at: at,
            resolved_by: 'apprec:rejected',
            alert_state: 'raised',
            last_alert_at: at,
          })
          .onConflict((oc) => oc.columns(['message_id', 'kind']).doNothing())
          .returning('id')
          .executeTakeFirst();
        if (!inserted) continue;
        const [c] = await this.contexts(tx.trx, [inserted.id]);
        const alert = conditionAlert('firing', c, now, this.policy);
        await tx.trx.updateTable('expectations').set({ alert_id: alert.id }).where('id', '=', inserted.id).execute();
        emissions.push(await this.emit(tx, c, alert, 'firing', now));
      }
      return emissions;
    });
  }

  /** A held message that ops routed (or discarded) no longer waits: its routing row is met. */
  async closeRoutedHolds(now: Date): Promise<number> {
    const result = await this.store.db.kysely
      .updateTable('expectations')
      .set({ state: 'met', resolved_at: now.toISOString(), resolved_by: 'no-longer-held' })
      .where('kind', '=', 'routing')
      .where('state', '=', 'open')
      .where(({ exists, selectFrom }) =>
        exists(selectFrom('messages as m').select('m.id').whereRef('m.id', '=', 'expectations.message_id').where('m.state', '<>', 'held')),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  private async contexts(trx: Transaction<Schema>, ids: number[]): Promise<ConditionContext[]> {
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

  private alertColumns(step: Transition, c: ConditionContext, alert: Alert, now: Date) {
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

  private async emit(tx: StoreTransaction, c: ConditionContext, alert: Alert, step: Transition, now: Date): Promise<Emission> {
    const item = alertItem(this.options.broker, now, this.options.graceMs, alert);
    const id = await tx.addOutbox(c.messageId, item);
    await tx.addEvent(c.messageId, {
      stage: 'deadline',
      event: `alert-${step}`,
      detail: { kind: alert.kind, alertId: alert.id, severity: alert.severity, replica: this.options.replica },
    });
    return { alert, item: { ...item, id, message_id: c.messageId, attempts: 0 } };
  }
}
