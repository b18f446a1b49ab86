// Alerts on the gateway's own health (DESIGN §4.4, LESSONS §9.10): dead letters waiting, a queue
// backing up, and no traffic during working hours. Each check is a typed condition; the store
// keeps each condition's state, so an episode raises one `firing` and one `resolved` alert,
// across restarts and replicas, never one per check.
import type { Kysely } from 'kysely';
import type { Broker } from '../broker/connection.js';
import { durationMs, type GatewayConfig } from '../config/config.js';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import type { Metrics } from '../observability/metrics.js';
import { alertItem, type Publishable } from '../outbox/items.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import { insertOutboxItems } from '../outbox/table.js';
import type { ArAvailability } from '../routing/ar/liveRegister.js';
import { type Alert, type AlertKind, buildAlert } from '../tracking/alerts.js';
import type { Store } from '../tracking/store.js';
import type { WorkingCalendar } from '../tracking/workingTime.js';
import type { DeadLetterRepository } from './deadLetters/repository.js';
import { type OpsAlertRow, type OpsSchema, opsKysely, opsTrx } from './schema.js';

/** One evaluated condition: whether it holds now, and what its alert says either way. */
export interface Condition {
  kind: Extract<
    AlertKind,
    'dlq-not-empty' | 'queue-backlog' | 'no-traffic' | 'address-register-unavailable' | 'crl-unavailable' | 'cppa-unavailable' | 'certificate-expiring'
  >;
  /** what it is about (a queue name), '' for the gateway as a whole */
  subject: string;
  firing: boolean;
  severity: Alert['severity'];
  text: string;
}

export interface QueueState {
  queue: string;
  messages: number;
  consumers: number;
}

export type OpsThresholds = GatewayConfig['ops'];

const EVENT_IDS: Record<Condition['kind'], string> = {
  'dlq-not-empty': EVENTS.alertDlqNotEmpty,
  'queue-backlog': EVENTS.alertQueueBacklog,
  'no-traffic': EVENTS.alertNoTraffic,
  'address-register-unavailable': EVENTS.alertAddressRegisterUnavailable,
  'crl-unavailable': EVENTS.alertCrlUnavailable,
  'cppa-unavailable': EVENTS.alertCppaUnavailable,
  'certificate-expiring': EVENTS.alertCertificateExpiring,
};

/** A partner certificate's CRL could not be fetched or checked: messages are accepted unchecked (soft-fail) or wait (hard-fail). */
export function crlCondition(failing: { since: Date; reason: string } | undefined, mode: 'soft-fail' | 'hard-fail'): Condition {
  return {
    kind: 'crl-unavailable',
    subject: '',
    firing: failing !== undefined,
    severity: mode === 'hard-fail' ? 'critical' : 'warning',
    text: failing
      ? `A certificate revocation list cannot be had since ${failing.since.toISOString()} (${failing.reason}); ${mode === 'hard-fail' ? 'messages from that partner wait' : 'messages are accepted without the revocation check'}.`
      : 'Certificate revocation lists can be had again.',
  };
}

/** One of NHN's registers not answering: what it cached serves meanwhile, nothing is rejected for it. */
function registerCondition(kind: Extract<Condition['kind'], 'address-register-unavailable' | 'cppa-unavailable'>, register: string, meanwhile: string) {
  return (a: ArAvailability): Condition => {
    const firing = a.configured && a.unavailableSince !== undefined;
    return {
      kind,
      subject: '',
      firing,
      severity: 'warning',
      text: firing ? `${register} has not answered since ${a.unavailableSince?.toISOString()} (${a.reason}); ${meanwhile}.` : `${register} answers again.`,
    };
  };
}

export const addressRegisterCondition = registerCondition(
  'address-register-unavailable',
  'The address register (AR)',
  'cached answers and the snapshot serve, and messages that need AR wait',
);

export const cppaCondition = registerCondition(
  'cppa-unavailable',
  'The CPPA register',
  'cached agreements serve, and messages to a partner whose agreement is not known yet wait',
);

export function dlqCondition(open: number): Condition {
  return {
    kind: 'dlq-not-empty',
    subject: '',
    firing: open > 0,
    severity: 'warning',
    text: open > 0 ? `${open} dead letter(s) wait for ops: see \`plo-gateway dlq list\`.` : 'The DLQ has no open dead letters any more.',
  };
}

/**
 * A queue is backed up when it holds more than `queueDepthMax` messages, or when messages have
 * waited in it without any consumer for `queueWaitMax`. The age of the oldest message is not
 * read: peeking (get + requeue) would count as a delivery on a quorum queue and bring the
 * message closer to its delivery limit. `waitingSinceMs` is when this process first saw it so.
 */
export function queueCondition(q: QueueState, waitingSinceMs: number | undefined, nowMs: number, t: OpsThresholds): Condition {
  const deep = q.messages > t.queueDepthMax;
  const stale = waitingSinceMs !== undefined && nowMs - waitingSinceMs >= durationMs(t.queueWaitMax);
  const text = deep
    ? `${q.queue} holds ${q.messages} messages (threshold ${t.queueDepthMax}).`
    : stale
      ? `${q.messages} message(s) have waited in ${q.queue} for over ${t.queueWaitMax} with no consumer.`
      : `${q.queue} is below its thresholds again (${q.messages} messages, ${q.consumers} consumers).`;
  return { kind: 'queue-backlog', subject: q.queue, firing: deep || stale, severity: deep ? 'critical' : 'warning', text };
}

/** No message from the EPJ for `noTrafficFor` of working time (08–15 Mon–Fri, Oslo, by default). */
export function trafficCondition(lastTraffic: Date, now: Date, calendar: WorkingCalendar, t: OpsThresholds): Condition {
  const quiet = calendar.workingTimeBetween(lastTraffic, now) >= durationMs(t.noTrafficFor);
  return {
    kind: 'no-traffic',
    subject: '',
    firing: quiet,
    severity: 'warning',
    text: quiet
      ? `No message from the EPJ for ${t.noTrafficFor} of working time (last one ${lastTraffic.toISOString()}); check the EPJ's sending side.`
      : 'Messages from the EPJ arrive again.',
  };
}

export interface OpsCheckerDeps {
  config: GatewayConfig;
  store: Store;
  deadLetters: DeadLetterRepository;
  broker: Broker;
  outbox: OutboxPublisher;
  calendar: WorkingCalendar;
  metrics: Metrics;
  log: Logger;
  now?: () => Date;
}

export class OpsChecker {
  private readonly now: () => Date;
  private readonly startedAt: Date;
  /** per queue: when this process first saw messages in it with no consumer */
  private readonly waitingSince = new Map<string, number>();

  constructor(private readonly deps: OpsCheckerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.startedAt = this.now();
  }

  async checkOnce(): Promise<void> {
    const now = this.now();
    const { queues } = this.deps.config.broker;
    const states = await this.queueStates();
    // recorded and open, plus any still in the queue (the recorder is off, or cannot store)
    const dlqDepth = states.find((q) => q.queue === queues.dlq)?.messages ?? 0;
    const conditions = [dlqCondition((await this.deps.deadLetters.countOpen()) + dlqDepth)];
    for (const q of states.filter((s) => s.queue !== queues.dlq))
      conditions.push(queueCondition(q, this.waiting(q, now.getTime()), now.getTime(), this.deps.config.ops));
    conditions.push(trafficCondition((await this.lastTraffic()) ?? this.startedAt, now, this.deps.calendar, this.deps.config.ops));
    for (const c of conditions) await this.apply(c, now);
  }

  private waiting(q: QueueState, nowMs: number): number | undefined {
    if (q.messages === 0 || q.consumers > 0) {
      this.waitingSince.delete(q.queue);
      return undefined;
    }
    if (!this.waitingSince.has(q.queue)) this.waitingSince.set(q.queue, nowMs);
    return this.waitingSince.get(q.queue);
  }

  /** The queues between the gateway and its peers, and the DLQ; one that cannot be checked (broker down) is skipped. */
  private async queueStates(): Promise<QueueState[]> {
    const { queues } = this.deps.config.broker;
    const states: QueueState[] = [];
    for (const queue of [queues.epjOutbound, queues.nhnInbound, queues.epjInbound, queues.dlq]) {
      try {
        const ok = await this.deps.broker.withChannel((ch) => ch.checkQueue(queue));
        states.push({ queue, messages: ok.messageCount, consumers: ok.consumerCount });
        this.deps.metrics.setQueue(queue, ok.messageCount, ok.consumerCount);
      } catch {
        // readiness reports a lost broker; a missing queue is recreated with the topology
      }
    }
    return states;
  }

  private async lastTraffic(): Promise<Date | undefined> {
    const row = await opsKysely(this.deps.store.db)
      .selectFrom('messages')
      .select('created_at')
      .where('direction', '=', 'out')
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? new Date(row.created_at) : undefined;
  }

  private apply(c: Condition, now: Date): Promise<void> {
    return applyCondition(this.deps, c, now);
  }
}

/** A changed condition: its new state and its alert commit together; only the replica whose update lands emits. */
export async function applyCondition(deps: Pick<OpsCheckerDeps, 'config' | 'store' | 'outbox' | 'log'>, c: Condition, now: Date): Promise<void> {
  const { config } = deps;
  const emitted = await deps.store.inTransaction(async (tx): Promise<{ alert: Alert; item: Publishable } | undefined> => {
    const trx = opsTrx(tx.trx);
    const current = await trx.selectFrom('ops_alerts').selectAll().where('kind', '=', c.kind).where('subject', '=', c.subject).executeTakeFirst();
    const wasFiring = current?.state === 'firing';
    if (c.firing === wasFiring) return undefined;
    const alert = buildAlert({
      kind: c.kind,
      state: c.firing ? 'firing' : 'resolved',
      severity: c.severity,
      eventId: EVENT_IDS[c.kind],
      firedAt: now,
      text: c.text,
      ...(wasFiring ? { firingId: current.alert_id } : {}),
    });
    if (!(await claim(trx, c, current, alert, now))) return undefined;
    const item = alertItem(config.broker, alert);
    const [id] = await insertOutboxItems(tx.trx, null, [item], deps.outbox.lease(), tx.now);
    return { alert, item: { ...item, id, message_id: null, attempts: 0 } };
  });
  if (!emitted) return;
  deps.log[c.firing ? 'warn' : 'info'](
    { event: EVENT_IDS[c.kind], kind: c.kind, subject: c.subject || undefined, state: emitted.alert.state, alertId: emitted.alert.id },
    `alert ${c.kind} ${emitted.alert.state}`,
  );
  await deps.outbox.publishNow(emitted.item);
}

/**
 * Moves the stored state from what was read to the alert's, conditionally: of two replicas
 * seeing the same change, one update (or insert) lands and only that one publishes.
 */
async function claim(trx: Kysely<OpsSchema>, c: Condition, current: OpsAlertRow | undefined, alert: Alert, now: Date): Promise<boolean> {
  const at = now.toISOString();
  if (!current) {
    const inserted = await trx
      .insertInto('ops_alerts')
      .values({ kind: c.kind, subject: c.subject, state: alert.state, alert_id: alert.id, changed_at: at })
      .onConflict((oc) => oc.columns(['kind', 'subject']).doNothing())
      .executeTakeFirst();
    return inserted.numInsertedOrUpdatedRows === 1n;
  }
  const updated = await trx
    .updateTable('ops_alerts')
    .set({ state: alert.state, alert_id: alert.state === 'firing' ? alert.id : current.alert_id, changed_at: at })
    .where('kind', '=', c.kind)
    .where('subject', '=', c.subject)
    .where('state', '=', current.state)
    .executeTakeFirst();
  return updated.numUpdatedRows === 1n;
}
