// Prometheus metrics (prom-client, a registry per gateway so that tests can run several). Stage
// counters and latencies come from one hook: every stage outcome is logged through `logStage`,
// which calls `observeStage`; the delivery being handled (direction, when its previous stage
// ended) travels in an AsyncLocalStorage context opened by `Metrics.track`. Labels hold only
// codes from fixed lists, never message content.
import { AsyncLocalStorage } from 'node:async_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { isBydelCode } from '../routing/bydeler.js';
import { EVENTS } from './events.js';
import type { StageLog } from './log.js';

export type Direction = 'out' | 'in';

/** The store's view for the gauges, read at scrape time. */
export interface OpsSnapshot {
  deadLettersOpen: number;
  expectationsOpen: Record<string, number>;
  /** age in seconds of the oldest unfinished item of each kind (outbox, held, expectation, dead-letter) */
  oldestPendingSeconds: Record<string, number>;
  alertsFiring: Record<string, number>;
}

interface StageContext {
  metrics: Metrics;
  direction: Direction;
  /** performance.now() when the previous stage of this delivery ended */
  last: number;
}

const context = new AsyncLocalStorage<StageContext>();

/** Called by `logStage` for every stage outcome; outside a tracked delivery it does nothing. */
export function observeStage(entry: StageLog): void {
  const c = context.getStore();
  c?.metrics.stageDone(c, entry);
}

/** Outcome label per event id: the catalogue is fixed, so the label set stays bounded. */
const OUTCOMES: Record<string, string> = {
  [EVENTS.stagePassed]: 'passed',
  [EVENTS.delivered]: 'delivered',
  [EVENTS.held]: 'held',
  [EVENTS.heldForCertificate]: 'held-certificate',
  [EVENTS.releasedFromHold]: 'released',
  [EVENTS.duplicate]: 'duplicate',
  [EVENTS.rejected]: 'rejected',
  [EVENTS.routedManually]: 'routed-manually',
  [EVENTS.inboundStagePassed]: 'passed',
  [EVENTS.inboundForwarded]: 'forwarded',
  [EVENTS.inboundCorrelated]: 'correlated',
  [EVENTS.inboundUncorrelated]: 'uncorrelated',
  [EVENTS.inboundDuplicate]: 'duplicate',
  [EVENTS.inboundRejected]: 'rejected',
  [EVENTS.inboundForged]: 'forged',
};

// A message type comes from the message: anything not shaped like a code of list 8279 is
// folded into one label, so a malformed message cannot create label values at will.
const typeLabel = (t: unknown) => (typeof t === 'string' && /^[A-Z][A-Z0-9_]{0,39}$/.test(t) ? t : t === undefined ? 'unknown' : 'other');
const stageLabel = (s: string) => (/^[a-z][a-z-]{0,29}$/.test(s) ? s : 'other');
const bydelLabel = (b: unknown) => (typeof b === 'string' && isBydelCode(b) ? b : '');

const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();
  private readonly messages: Counter<'direction' | 'stage' | 'outcome' | 'type' | 'bydel'>;
  private readonly stageSeconds: Histogram<'direction' | 'stage'>;
  private readonly handledSeconds: Histogram<'direction'>;
  private readonly queueMessages: Gauge<'queue'>;
  private readonly queueConsumers: Gauge<'queue'>;
  private readonly resends: Counter;
  private cached?: { at: number; value: Promise<OpsSnapshot | undefined> };

  constructor(private readonly snapshotSource?: () => Promise<OpsSnapshot>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'plo_gateway_' });
    this.messages = new Counter({
      name: 'plo_gateway_messages_total',
      help: 'Stage outcomes of messages, by direction, stage, outcome, message type and bydel',
      labelNames: ['direction', 'stage', 'outcome', 'type', 'bydel'],
      registers,
    });
    this.stageSeconds = new Histogram({
      name: 'plo_gateway_stage_duration_seconds',
      help: 'Time each pipeline stage took (from the end of the previous stage of the same delivery)',
      labelNames: ['direction', 'stage'],
      buckets: STAGE_BUCKETS,
      registers,
    });
    this.handledSeconds = new Histogram({
      name: 'plo_gateway_delivery_duration_seconds',
      help: 'Time from taking a delivery off its queue to its durable outcome',
      labelNames: ['direction'],
      buckets: STAGE_BUCKETS,
      registers,
    });
    this.queueMessages = new Gauge({
      name: 'plo_gateway_queue_messages',
      help: 'Messages ready in a queue at the last ops check',
      labelNames: ['queue'],
      registers,
    });
    this.queueConsumers = new Gauge({
      name: 'plo_gateway_queue_consumers',
      help: 'Consumers of a queue at the last ops check',
      labelNames: ['queue'],
      registers,
    });
    this.resends = new Counter({
      name: 'plo_gateway_transport_resends_total',
      help: 'Outgoing messages resent with the same eb:MessageId because no transport Acknowledgment came',
      registers,
    });
    this.storeGauge('plo_gateway_dlq_open', 'Dead letters recorded and not yet replayed or discarded', [], (s, g) => g.set(s.deadLettersOpen));
    this.storeGauge('plo_gateway_expectations_open', 'Open expectations (receipts, answers, reports, routing) by kind', ['kind'], (s, g) =>
      setAll(g, 'kind', s.expectationsOpen),
    );
    this.storeGauge('plo_gateway_oldest_pending_seconds', 'Age of the oldest unfinished item: outbox, held, expectation, dead-letter', ['what'], (s, g) =>
      setAll(g, 'what', s.oldestPendingSeconds),
    );
    this.storeGauge('plo_gateway_alerts_firing', 'Alert conditions currently firing, by alert kind', ['kind'], (s, g) => setAll(g, 'kind', s.alertsFiring));
  }

  /** One resend of an unacknowledged message (reliable messaging out). */
  transportResent(): void {
    this.resends.inc();
  }

  /** Runs the handling of one delivery so that its stage outcomes are counted and timed. */
  async track<T>(direction: Direction, handle: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await context.run({ metrics: this, direction, last: start }, handle);
    } finally {
      this.handledSeconds.observe({ direction }, (performance.now() - start) / 1000);
    }
  }

  /** @internal via observeStage */
  stageDone(c: StageContext, entry: StageLog): void {
    const now = performance.now();
    const stage = stageLabel(entry.stage);
    this.messages.inc({
      direction: c.direction,
      stage,
      outcome: OUTCOMES[entry.event] ?? entry.event,
      type: typeLabel(entry.type),
      bydel: bydelLabel(entry.bydel),
    });
    this.stageSeconds.observe({ direction: c.direction, stage }, (now - c.last) / 1000);
    c.last = now;
  }

  setQueue(queue: string, messages: number, consumers: number): void {
    this.queueMessages.set({ queue }, messages);
    this.queueConsumers.set({ queue }, consumers);
  }

  /** The queue depths and consumers of the last ops check (the console's overview). */
  async queues(): Promise<{ queue: string; messages: number; consumers: number }[]> {
    const [messages, consumers] = await Promise.all([this.queueMessages.get(), this.queueConsumers.get()]);
    const count = new Map(consumers.values.map((v) => [String(v.labels.queue), v.value]));
    return messages.values.map((v) => ({ queue: String(v.labels.queue), messages: v.value, consumers: count.get(String(v.labels.queue)) ?? 0 }));
  }

  /** Prometheus text exposition format. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private storeGauge(name: string, help: string, labelNames: string[], set: (s: OpsSnapshot, g: Gauge<string>) => void): void {
    const metrics = this;
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        const s = await metrics.snapshot();
        if (s) set(s, this);
      },
    });
  }

  /** One store read per scrape, shared by the gauges prom-client collects in parallel. */
  private snapshot(): Promise<OpsSnapshot | undefined> {
    if (!this.snapshotSource) return Promise.resolve(undefined);
    const now = Date.now();
    if (!this.cached || now - this.cached.at > 1000) {
      // the store being down must not break the scrape: the gauges keep their last values
      this.cached = { at: now, value: this.snapshotSource().catch(() => undefined) };
    }
    return this.cached.value;
  }
}

/** Replaces the label values: a kind that went away disappears instead of keeping its last value. */
function setAll(g: Gauge<string>, label: string, values: Record<string, number>): void {
  g.reset();
  for (const [k, v] of Object.entries(values)) g.set({ [label]: k }, v);
}
