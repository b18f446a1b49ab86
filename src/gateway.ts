// Composition root: start-up reads as a list of steps, shutdown as their reverse.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Broker } from './broker/connection.js';
import { type Consumer, type Delivery, consume } from './broker/consumer.js';
import { Publisher } from './broker/publisher.js';
import { assertReceiverQueue } from './broker/topology.js';
import { durationMs, type GatewayConfig } from './config/config.js';
import { HospitalToBydelFlow } from './flows/hospitalToBydel.js';
import { loadSchemaSet, type SchemaSet } from './inbound/schemas.js';
import { EVENTS } from './observability/events.js';
import type { Logger } from './observability/log.js';
import { startHttpServer } from './ops/http.js';
import { OutboxPublisher } from './outbound/outboxRelay.js';
import { AddressRegister } from './routing/addressRegister.js';
import { loadOverrides } from './routing/overrides.js';
import { loadPostcodeIndex } from './routing/postcodeIndex.js';
import type { RoutingContext } from './routing/route.js';
import { openDatabase } from './tracking/db.js';
import { Store } from './tracking/store.js';

export function loadRouting(config: GatewayConfig): RoutingContext {
  const register = AddressRegister.load(config.routing.addressRegisterFile);
  return {
    register,
    overrides: loadOverrides(config.routing.overridesFile),
    postcodes: loadPostcodeIndex(config.routing.postcodeIndexFile),
    postcodeMinShare: config.routing.postcodeMinShare,
    routeByBydel: new Set(config.routing.routeByBydel ?? register.osloKommuneHerIds()),
    serviceByType: config.routing.serviceByType,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Gateway {
  private broker?: Broker;
  private publisher?: Publisher;
  private consumer?: Consumer;
  private outbox?: OutboxPublisher;
  private store?: Store;
  private schemas?: SchemaSet;
  private http?: Server;
  private stopping = false;

  constructor(
    private readonly config: GatewayConfig,
    private readonly log: Logger,
  ) {}

  async start(options: { http?: boolean } = {}): Promise<void> {
    const { config, log } = this;
    this.schemas = await loadSchemaSet(config.schemaDir);
    const routing = loadRouting(config);
    const signing = { keyPem: readFileSync(config.signing.keyFile, 'utf8'), certPem: readFileSync(config.signing.certFile, 'utf8') };
    this.store = new Store(await openDatabase(config.database.url));

    this.broker = new Broker(config.broker, log);
    await this.broker.connect();
    if (config.broker.receiverQueuePrefix) await this.declareReceiverQueues(routing, config.broker.receiverQueuePrefix);
    this.publisher = new Publisher(this.broker);
    await this.publisher.start();

    const publisher = this.publisher;
    this.outbox = new OutboxPublisher(
      this.store,
      (exchange, routingKey, body, o) => publisher.publish(exchange, routingKey, body, { ...o, messageId: o.messageId ?? '' }),
      log,
      { initialDelayMs: durationMs(config.retry.initialDelay), maxDelayMs: durationMs(config.retry.maxDelay), intervalMs: 1000, batchSize: 100 },
    );
    this.outbox.start();

    const flow = new HospitalToBydelFlow({ config, log, store: this.store, schemas: this.schemas, routing, signing, outbox: this.outbox });
    this.consumer = await consume(this.broker, config.broker.queues.epjOutbound, (d) => this.handleEpjDelivery(flow, d));

    if (options.http !== false) {
      this.http = await startHttpServer(config.http.port, [
        { name: 'broker', check: () => this.broker?.isConnected() ?? false },
        { name: 'database', check: async () => (await this.store?.ping(), true) },
        { name: 'schemas', check: () => this.schemas !== undefined },
      ]);
    }
    log.info({ event: EVENTS.started, httpPort: this.httpPort() }, 'gateway started');
  }

  httpPort(): number | undefined {
    return (this.http?.address() as AddressInfo | null)?.port;
  }

  /**
   * Transient failures (database or broker down) are retried in place with backoff: the
   * delivery stays unacked, so nothing is lost if the process dies meanwhile. After the last
   * attempt it goes back to the queue, never to the DLQ as if the message were bad.
   */
  private async handleEpjDelivery(flow: HospitalToBydelFlow, d: Delivery): Promise<void> {
    const { retry } = this.config;
    const hint = d.headers['x-bydel'];
    for (let attempt = 1; ; attempt++) {
      try {
        await flow.handle({
          body: d.body,
          contentType: d.properties.contentType,
          bydelHint: typeof hint === 'string' ? hint : Buffer.isBuffer(hint) ? hint.toString('utf8') : undefined,
          amqpMessageId: d.properties.messageId,
          redelivered: d.redelivered,
        });
        d.ack();
        return;
      } catch (e) {
        const reason = (e as Error).message;
        if (attempt >= retry.maxAttempts || this.stopping) {
          this.log.error({ event: EVENTS.transientGiveUp, attempt, reason }, 'transient failure: returning the delivery to its queue');
          d.nack(true);
          return;
        }
        const delay = Math.min(durationMs(retry.maxDelay), durationMs(retry.initialDelay) * 2 ** (attempt - 1));
        this.log.warn({ event: EVENTS.transientRetry, attempt, retryInMs: delay, reason }, 'transient failure: retrying');
        await sleep(delay);
      }
    }
  }

  private async declareReceiverQueues(routing: RoutingContext, prefix: string): Promise<void> {
    const services = routing.register.parties.filter((p) => p.type === 'Service' && p.active);
    await this.broker!.withChannel(async (ch) => {
      for (const s of services) await assertReceiverQueue(ch, prefix, s.herId, this.config.broker.exchanges.nhnOutbound);
    });
  }

  /** Stop consuming, let in-flight messages finish, flush the outbox, then close. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer?.pause();
    await this.consumer?.drain();
    await this.outbox?.stop();
    await this.outbox?.relayOnce().catch(() => 0);
    await this.consumer?.close();
    await this.publisher?.close();
    await this.broker?.close();
    await this.store?.close();
    this.schemas?.close();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.log.info({ event: EVENTS.stopped }, 'gateway stopped');
  }
}
