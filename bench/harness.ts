// What the gateway benches share: a configuration on queues of their own (and a fresh SQLite
// file), the EPJ's messages, a confirmed publisher with a window of unconfirmed messages, the
// bydel's side that notes when each message arrives, and the clean-up.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type amqp from 'amqplib';
import type { ConfirmChannel } from 'amqplib';
import pino from 'pino';
import { alertsQueueName } from '../src/broker/topology.js';
import { type GatewayConfig, loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/observability/log.js';
import { loadRouting } from '../src/routing/load.js';
import { readdressToOslo, readSample } from '../test/support/samples.js';

/** Frogner, Saksbehandling: where the bench's messages (postcode 0350) are routed. */
export const TARGET = '9920005';
const TEMPLATE = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';

let storeDir: string | undefined;

/** Removes the bench's SQLite store (a soak leaves GBs), once the gateway has stopped. */
export function removeStore(): void {
  if (storeDir) rmSync(storeDir, { recursive: true, force: true });
}

/** The gateway's configuration for one bench run: its own queues and exchanges, a new SQLite store. */
export function benchConfig(): GatewayConfig {
  const loaded = loadConfig();
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const config = loaded.config;
  const run = `bench${randomUUID().slice(0, 6)}`;
  config.broker.queues = { epjOutbound: `${run}.epj.outbound`, epjInbound: `${run}.epj.inbound`, nhnInbound: `${run}.nhn.inbound`, dlq: `${run}.gateway.dlq` };
  config.broker.exchanges = { nhnOutbound: `${run}.nhn.outbound`, alerts: `${run}.gateway.alerts` };
  config.broker.receiverQueuePrefix = `${run}.bydel.`;
  storeDir = mkdtempSync(join(tmpdir(), 'gw-bench-'));
  config.database.url = `sqlite:${join(storeDir, 'bench.db')}`;
  config.encryption.outbound.payload = process.env.BENCH_PAYLOAD === 'plain' ? 'plain' : 'encrypted';
  return config;
}

/** The gateway's warnings go to stderr: stdout carries only the bench's JSON line. */
export const benchLogger = () => createLogger('warn', pino.destination(2));

export const bydelQueue = (config: GatewayConfig) => `${config.broker.receiverQueuePrefix}${TARGET}`;

const template = readSample(TEMPLATE);

/** A new valid PLO 1.6 utskrivningsklar notice for a patient in Frogner, under a new MsgId. */
export function epjMessage(): { body: Buffer; msgId: string } {
  const { xml, msgId } = readdressToOslo(template, { postalCode: '0350' });
  return { body: Buffer.from(xml), msgId };
}

/** The raw sample (for the CMS cost figure). */
export const sampleDocument = () => Buffer.from(template);

export const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
export const round1 = (x: number) => Number(x.toFixed(1));

/**
 * Publishes with confirms, pipelined: up to `window` messages unconfirmed at a time, each
 * confirm a callback (never a stop-and-wait batch); `sentAt` notes when each was handed over.
 */
export class Publisher {
  readonly sentAt = new Map<string, number>();
  private unconfirmed = 0;
  private readonly waiting: (() => void)[] = [];
  failed = 0;

  constructor(
    private readonly ch: ConfirmChannel,
    private readonly queue: string,
    private readonly window: number,
  ) {}

  async send(body: Buffer, id: string): Promise<void> {
    while (this.unconfirmed >= this.window) await new Promise<void>((r) => this.waiting.push(r));
    this.unconfirmed++;
    this.sentAt.set(id, performance.now());
    const ok = this.ch.sendToQueue(this.queue, body, { persistent: true, messageId: id }, (err) => {
      if (err) this.failed++;
      this.unconfirmed--;
      this.waiting.shift()?.();
    });
    if (!ok) await new Promise((r) => this.ch.once('drain', r));
  }

  async confirmed(): Promise<void> {
    await this.ch.waitForConfirms();
  }
}

/**
 * Consumes `queue`, calling `arrived` with each message's latency since its publish (by `idOf`),
 * acking in batches (acks of everything up to a delivery tag).
 */
export async function consumeArrivals(
  ch: amqp.Channel,
  queue: string,
  idOf: (m: amqp.ConsumeMessage) => string,
  sentAt: Map<string, number>,
  arrived: (latencyMs: number | undefined, m: amqp.ConsumeMessage) => void,
): Promise<void> {
  await ch.prefetch(500);
  let unacked: amqp.ConsumeMessage | undefined;
  let count = 0;
  const timer = setInterval(() => {
    try {
      if (unacked) ch.ack(unacked, true);
    } catch {
      clearInterval(timer); // the channel closed: the run is over
    }
    unacked = undefined;
    count = 0;
  }, 20).unref();
  await ch.consume(queue, (m) => {
    if (!m) return;
    const id = idOf(m);
    const t0 = sentAt.get(id);
    sentAt.delete(id);
    arrived(t0 === undefined ? undefined : performance.now() - t0, m);
    unacked = m;
    if (++count >= 100) {
      ch.ack(m, true);
      unacked = undefined;
      count = 0;
    }
  });
}

export const msgIdHeader = (m: amqp.ConsumeMessage) => String(m.properties.headers?.['msg-id']);

/** The bench leaves nothing behind on the broker: every queue and exchange of its run goes. */
export async function deleteRunQueues(conn: amqp.ChannelModel, config: GatewayConfig): Promise<void> {
  const ch = await conn.createChannel();
  const services = loadRouting(config).register.parties.filter((p) => p.type === 'Service');
  const queues = [
    ...Object.values(config.broker.queues),
    alertsQueueName(config.broker),
    ...services.map((p) => `${config.broker.receiverQueuePrefix}${p.herId}`),
  ];
  for (const q of queues) await ch.deleteQueue(q);
  for (const ex of Object.values(config.broker.exchanges)) await ch.deleteExchange(ex);
  await ch.close();
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
