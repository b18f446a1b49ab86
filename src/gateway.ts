// Composition root: start-up reads as a list of steps, shutdown as their reverse.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Broker } from './broker/connection.js';
import { type Consumer, consume, type Delivery } from './broker/consumer.js';
import { Publisher } from './broker/publisher.js';
import { assertReceiverQueue } from './broker/topology.js';
import { ownCertificateProblems, productionProblems } from './config/check.js';
import { durationMs, type GatewayConfig } from './config/config.js';
import { BydelToHospitalFlow, type NhnDelivery } from './flows/bydelToHospital.js';
import { type EpjDelivery, HospitalToBydelFlow } from './flows/hospitalToBydel.js';
import { loadSchemaSet, type SchemaSet } from './inbound/schemas.js';
import { EVENTS } from './observability/events.js';
import type { Logger } from './observability/log.js';
import { startHttpServer } from './ops/http.js';
import { OpsRuntime } from './ops/runtime.js';
import { Agreements } from './outbound/agreements/agreements.js';
import { trustStoreFor } from './outbound/certificates.js';
import { RevocationChecker } from './outbound/revocation.js';
import { OutboxPublisher, relayPolicy } from './outbox/relay.js';
import { LiveRegister } from './routing/ar/liveRegister.js';
import { loadRouting } from './routing/load.js';
import type { RoutingContext } from './routing/route.js';
import { backoffDelay } from './shared/backoff.js';
import { openDatabase } from './tracking/db.js';
import { DeadlineRepository } from './tracking/deadlineRepository.js';
import { alertPolicy } from './tracking/deadlines.js';
import { DeadlineScheduler } from './tracking/scheduler.js';
import { Store } from './tracking/store.js';
import { WebhookRelay } from './tracking/webhook.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An AMQP header as text: amqplib gives a string, or a Buffer for a binary value. */
function headerText(d: Delivery, name: string): string | undefined {
  const value = d.headers[name];
  return typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
}

const epjDelivery = (d: Delivery): EpjDelivery => ({
  body: d.body,
  contentType: d.properties.contentType,
  bydelHint: headerText(d, 'x-bydel'),
  amqpMessageId: d.properties.messageId,
  redelivered: d.redelivered,
});

const nhnDelivery = (d: Delivery): NhnDelivery => ({
  body: d.body,
  contentType: d.properties.contentType,
  fromHerId: headerText(d, 'from-her-id'),
  amqpMessageId: d.properties.messageId,
  redelivered: d.redelivered,
});

export class Gateway {
  private broker?: Broker;
  private publisher?: Publisher;
  private consumer?: Consumer;
  private inboundConsumer?: Consumer;
  private outbox?: OutboxPublisher;
  private store?: Store;
  private scheduler?: DeadlineScheduler;
  private webhooks?: WebhookRelay;
  private ops?: OpsRuntime;
  private schemas?: SchemaSet;
  private http?: Server;
  private stopping = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly log: Logger,
  ) {}

  /** `deadlines: false` builds the deadline scheduler without its timer (tests call `deadlines.tick()`). */
  async start(options: { http?: boolean; deadlines?: boolean } = {}): Promise<void> {
    const { config, log } = this;
    const expired = [...productionProblems(config), ...ownCertificateProblems(config)];
    if (expired.length > 0) throw new Error(expired.join('\n'));
    this.schemas = await loadSchemaSet(config.schemaDir);
    const routing = loadRouting(config);
    const signing = { keyPem: readFileSync(config.signing.keyFile, 'utf8'), certPem: readFileSync(config.signing.certFile, 'utf8') };
    this.store = new Store(await openDatabase(config.database.url));
    // what AR answered before (the cache the replicas share) serves from the first message on
    const live = new LiveRegister({ config, db: this.store.db, register: routing.register, log });
    await live.sync();
    const agreements = new Agreements({ config, db: this.store.db, log });
    await agreements.sync();
    // CRLs fetched by any replica (or an earlier run) serve here too
    const revocation = new RevocationChecker(trustStoreFor(config.trust), durationMs(config.trust.crl.timeout), { db: this.store.db });

    this.broker = new Broker(config.broker, log);
    await this.broker.connect();
    if (config.broker.receiverQueuePrefix) await this.declareReceiverQueues(this.broker, routing, config.broker.receiverQueuePrefix);
    this.publisher = new Publisher(this.broker);
    await this.publisher.start();

    const publisher = this.publisher;
    this.outbox = new OutboxPublisher(
      this.store,
      (exchange, routingKey, body, o) => publisher.publish(exchange, routingKey, body, { ...o, messageId: o.messageId ?? '' }),
      log,
      relayPolicy(config),
    );
    this.outbox.start();
    // before the consumers: every delivery is counted and timed from the first one on
    const ops = new OpsRuntime({
      config,
      log,
      store: this.store,
      broker: this.broker,
      publisher,
      outbox: this.outbox,
      routing,
      live,
      agreements,
      revocation,
      signing,
    });
    this.ops = ops;
    this.startDeadlines(this.store, this.outbox, options.deadlines !== false, () => ops.metrics.transportResent());
    const flow = new HospitalToBydelFlow({
      config,
      log,
      store: this.store,
      schemas: this.schemas,
      routing,
      live,
      agreements,
      revocation,
      signing,
      outbox: this.outbox,
    });
    this.consumer = await consume(this.broker, config.broker.queues.epjOutbound, (d) =>
      this.settle(d, () =>
        ops.metrics.track('out', async () => flow.handle({ ...epjDelivery(d), skipDedupeFor: await ops.skipDedupeFor((name) => headerText(d, name)) })),
      ),
    );
    const inbound = new BydelToHospitalFlow({
      config,
      log,
      store: this.store,
      schemas: this.schemas,
      register: routing.register,
      live,
      agreements,
      revocation,
      signing,
      decryption: config.encryption.keys.map((k) => ({ keyPem: readFileSync(k.keyFile, 'utf8'), certPem: readFileSync(k.certFile, 'utf8') })),
      outbox: this.outbox,
    });
    this.inboundConsumer = await consume(this.broker, config.broker.queues.nhnInbound, (d) =>
      this.settle(d, () => ops.metrics.track('in', () => inbound.handle(nhnDelivery(d)))),
    );
    await ops.start();

    if (options.http !== false) {
      this.http = await startHttpServer(
        config.http.port,
        [
          { name: 'broker', reason: 'not connected to the message broker', check: () => this.broker?.isConnected() ?? false },
          {
            name: 'database',
            reason: 'the database does not answer',
            check: async () => {
              await this.store?.ping();
              return true;
            },
          },
          { name: 'schemas', reason: 'the XSD schemas are not loaded', check: () => this.schemas !== undefined },
          { name: 'running', reason: 'shutting down', check: () => !this.stopping },
        ],
        ops.http,
        { host: config.http.host, tls: config.http.tls },
      );
    }
    log.info({ event: EVENTS.started, httpPort: this.httpPort() }, 'gateway started');
  }

  /** The deadline scheduler (for tests and ops tooling that run a tick on demand). */
  get deadlines(): DeadlineScheduler | undefined {
    return this.scheduler;
  }

  /** Deadlines and alerts (issue 4): the scheduler, and the webhook relay when a URL is set. */
  private startDeadlines(store: Store, outbox: OutboxPublisher, timer: boolean, onResent: () => void): void {
    const { config, log } = this;
    const repository = new DeadlineRepository(store, alertPolicy(config), {
      broker: config.broker,
      lease: () => outbox.lease(),
      replica: `${hostname()}:${process.pid}`,
    });
    this.scheduler = new DeadlineScheduler(repository, outbox, log, { ...config.tracking.scheduler, onResent });
    if (timer) this.scheduler.start();
    const { webhookUrl, webhookTimeout, webhookRetry, webhookSecret } = config.alerts;
    if (!webhookUrl) return;
    this.webhooks = new WebhookRelay(
      store,
      {
        url: webhookUrl,
        timeoutMs: durationMs(webhookTimeout),
        initialDelayMs: durationMs(webhookRetry.initialDelay),
        maxDelayMs: durationMs(webhookRetry.maxDelay),
        maxAttempts: webhookRetry.maxAttempts,
        intervalMs: 1000,
        batchSize: config.tracking.scheduler.batchSize,
        secret: webhookSecret,
      },
      log,
    );
    this.webhooks.start();
  }

  httpPort(): number | undefined {
    return (this.http?.address() as AddressInfo | null)?.port;
  }

  /**
   * Runs a flow on one delivery and acks it once the outcome is durable. Both consumers share this.
   * Transient failures (database or broker down) are retried in place with backoff: the
   * delivery stays unacked, so nothing is lost if the process dies meanwhile. After the last
   * attempt it goes back to the queue, never to the DLQ as if the message were bad.
   */
  private async settle(d: Delivery, handle: () => Promise<unknown>): Promise<void> {
    const { retry } = this.config;
    for (let attempt = 1; ; attempt++) {
      try {
        await handle();
        d.ack();
        return;
      } catch (e) {
        const reason = (e as Error).message;
        if (attempt >= retry.maxAttempts || this.stopping) {
          this.log.error({ event: EVENTS.transientGiveUp, attempt, reason }, 'transient failure: returning the delivery to its queue');
          d.nack(true);
          return;
        }
        const delay = backoffDelay({ initialMs: durationMs(retry.initialDelay), maxMs: durationMs(retry.maxDelay) }, attempt - 1);
        this.log.warn({ event: EVENTS.transientRetry, attempt, retryInMs: delay, reason }, 'transient failure: retrying');
        await sleep(delay);
      }
    }
  }

  private async declareReceiverQueues(broker: Broker, routing: RoutingContext, prefix: string): Promise<void> {
    const services = routing.register.parties.filter((p) => p.type === 'Service' && p.active);
    await broker.withChannel(async (ch) => {
      for (const s of services) await assertReceiverQueue(ch, prefix, s.herId, this.config.broker.exchanges.nhnOutbound);
    });
  }

  /** Stop consuming, let in-flight messages finish, flush the outbox, then close. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.ops?.stop();
    const consumers = [this.consumer, this.inboundConsumer];
    for (const c of consumers) await c?.pause();
    for (const c of consumers) await c?.drain();
    await this.scheduler?.stop();
    await this.webhooks?.stop();
    await this.outbox?.stop();
    await this.outbox?.relayOnce().catch(() => 0);
    for (const c of consumers) await c?.close();
    await this.publisher?.close();
    await this.broker?.close();
    await this.store?.close();
    this.schemas?.close();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.log.info({ event: EVENTS.stopped }, 'gateway stopped');
  }
}
