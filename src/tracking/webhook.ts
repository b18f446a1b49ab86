// Optional webhook for alerts (config `alerts.webhookUrl`). Every alert the gateway stores in the
// outbox — deadline alerts, `unroutable`, and any later kind — is copied once into
// `webhook_deliveries` and POSTed from there as JSON, retried with exponential backoff. That
// queue is separate from the broker outbox, so a webhook that is down delays nothing else: the
// same alerts still reach `gateway.alerts`. With `alerts.webhookSecret` every request carries
// `x-plo-gateway-signature: sha256=<hex HMAC-SHA256 of the body>`, so the receiver can tell the
// gateway's alerts from anyone else's POST.
import { createHmac } from 'node:crypto';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import { backoffDelay } from '../shared/backoff.js';
import { Periodic } from '../shared/periodic.js';
import type { WebhookDeliveryRow } from './db.js';
import type { Store } from './store.js';

export interface WebhookPolicy {
  url: string;
  timeoutMs: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** after this many failed attempts a delivery is given up (logged GW-3203) */
  maxAttempts: number;
  /** how often the relay looks for due deliveries */
  intervalMs: number;
  batchSize: number;
  /** the HMAC-SHA256 key of the signature header; no header without it */
  secret?: string;
}

export const SIGNATURE_HEADER = 'x-plo-gateway-signature';

/** `sha256=<hex>`: the HMAC-SHA256 of the body as sent, keyed with the configured secret. */
export const webhookSignature = (secret: string, body: string) => `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;

/** Alerts older than this when the relay first sees them are not sent (the relay was off). */
const PICKUP_WINDOW_MS = 7 * 24 * 60 * 60 * 1000;

export class WebhookRelay {
  private loop?: Periodic;
  private readonly postgres: boolean;

  constructor(
    private readonly store: Store,
    private readonly policy: WebhookPolicy,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.postgres = store.db.dialect === 'postgres';
  }

  /** One pass: take up new alerts, then POST those due. Returns how many were delivered. */
  async relayOnce(): Promise<number> {
    await this.pickUpAlerts();
    let delivered = 0;
    for (const row of await this.claimDue()) if (await this.deliver(row)) delivered++;
    return delivered;
  }

  start(): void {
    this.loop = new Periodic(
      this.policy.intervalMs,
      async () => void (await this.relayOnce()),
      (e) => this.log.error({ event: EVENTS.webhookDeferred, err: e.message }, 'webhook relay pass failed'),
    );
    this.loop.start(0);
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** Copies alert outbox items not yet queued; `outbox_id` is unique, so replicas copy each once. */
  private async pickUpAlerts(): Promise<void> {
    const now = this.now();
    const since = new Date(now.getTime() - PICKUP_WINDOW_MS).toISOString();
    const kysely = this.store.db.kysely;
    const fresh = await kysely
      .selectFrom('outbox as o')
      .select(['o.id', 'o.message_id_prop', 'o.body'])
      .where('o.purpose', '=', 'alert')
      .where('o.created_at', '>=', since)
      .where(({ not, exists, selectFrom }) => not(exists(selectFrom('webhook_deliveries as w').select('w.id').whereRef('w.outbox_id', '=', 'o.id'))))
      .orderBy('o.id')
      .limit(this.policy.batchSize)
      .execute();
    if (fresh.length === 0) return;
    const at = now.toISOString();
    await kysely
      .insertInto('webhook_deliveries')
      .values(
        fresh.map((o) => ({
          outbox_id: o.id,
          alert_id: o.message_id_prop ?? '',
          body: Buffer.from(o.body).toString('utf8'),
          state: 'pending' as const,
          attempts: 0,
          next_attempt_at: at,
          created_at: at,
        })),
      )
      .onConflict((oc) => oc.column('outbox_id').doNothing())
      .execute();
  }

  /**
   * Due deliveries, each leased for one POST: its next attempt moves past the request timeout,
   * so another replica does not post it meanwhile, and a crash mid-request retries it later.
   */
  private async claimDue(): Promise<WebhookDeliveryRow[]> {
    const now = this.now();
    const lease = new Date(now.getTime() + 2 * this.policy.timeoutMs).toISOString();
    return this.store.db.kysely.transaction().execute(async (trx) => {
      let due = trx
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('state', '=', 'pending')
        .where('next_attempt_at', '<=', now.toISOString())
        .orderBy('next_attempt_at')
        .limit(this.policy.batchSize);
      if (this.postgres) due = due.forUpdate().skipLocked();
      const rows = await due.execute();
      if (rows.length > 0) {
        await trx
          .updateTable('webhook_deliveries')
          .set({ next_attempt_at: lease })
          .where(
            'id',
            'in',
            rows.map((r) => r.id),
          )
          .execute();
      }
      return rows;
    });
  }

  private async deliver(row: WebhookDeliveryRow): Promise<boolean> {
    const failure = await this.post(row.body);
    const kysely = this.store.db.kysely;
    if (failure === undefined) {
      await kysely
        .updateTable('webhook_deliveries')
        .set({ state: 'delivered', delivered_at: this.now().toISOString(), attempts: row.attempts + 1 })
        .where('id', '=', row.id)
        .execute();
      this.log.info({ event: EVENTS.webhookDelivered, alertId: row.alert_id, attempts: row.attempts + 1 }, 'alert delivered to the webhook');
      return true;
    }
    const attempts = row.attempts + 1;
    if (attempts >= this.policy.maxAttempts) {
      await kysely.updateTable('webhook_deliveries').set({ state: 'failed', attempts, last_error: failure }).where('id', '=', row.id).execute();
      this.log.error({ event: EVENTS.webhookGaveUp, alertId: row.alert_id, attempts, reason: failure }, 'webhook delivery given up');
      return false;
    }
    const delay = backoffDelay({ initialMs: this.policy.initialDelayMs, maxMs: this.policy.maxDelayMs }, row.attempts);
    const next = new Date(this.now().getTime() + delay).toISOString();
    await kysely.updateTable('webhook_deliveries').set({ attempts, next_attempt_at: next, last_error: failure }).where('id', '=', row.id).execute();
    this.log.warn({ event: EVENTS.webhookDeferred, alertId: row.alert_id, attempts, retryInMs: delay, reason: failure }, 'webhook delivery deferred');
    return false;
  }

  /** undefined when the webhook took the alert (2xx); otherwise why not, in one line. */
  private async post(body: string): Promise<string | undefined> {
    try {
      const res = await fetch(this.policy.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.policy.secret ? { [SIGNATURE_HEADER]: webhookSignature(this.policy.secret, body) } : {}) },
        body,
        signal: AbortSignal.timeout(this.policy.timeoutMs),
      });
      await res.body?.cancel();
      return res.ok ? undefined : `HTTP ${res.status}`;
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      return cause ? `${(e as Error).message} (${cause})` : (e as Error).message;
    }
  }
}
