import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { pino } from 'pino';
import { Broker } from '../../src/broker/connection.js';
import { consume, type Delivery } from '../../src/broker/consumer.js';
import { PublishError, Publisher } from '../../src/broker/publisher.js';
import { alertsQueueName, assertReceiverQueue, assertTopology, type BrokerConfig, topologyFor } from '../../src/broker/topology.js';
import { eventually, sleep } from '../support/poll.js';

// Runs against the real RabbitMQ, in a vhost of its own that is deleted afterwards, so forced
// disconnects (`rabbitmqctl close_all_connections`) hit only this file's connections.
const run = `${process.pid}-${Date.now().toString(36)}`;
const vhost = `plo-broker-test-${run}`;
const logger = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const exec = promisify(execFile);
const rabbitmqctl = (...args: string[]) => exec('rabbitmqctl', ['--quiet', ...args]);
const closeAllConnections = () => rabbitmqctl('close_all_connections', '--vhost', vhost, 'test');

function url(): string {
  const u = new URL(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');
  u.pathname = `/${encodeURIComponent(vhost)}`;
  return u.toString();
}

let suffix = 0;
/** a fresh set of names for each test, so no test sees another's messages */
function brokerConfig(overrides: Partial<BrokerConfig> = {}): BrokerConfig {
  const s = `.${++suffix}`;
  return {
    url: url(),
    prefetch: 10,
    confirmTimeout: 'PT5S',
    reconnectInitialDelay: 'PT0.1S',
    reconnectMaxDelay: 'PT1S',
    deliveryLimit: 2,
    queues: { epjOutbound: `epj.outbound${s}`, epjInbound: `epj.inbound${s}`, nhnInbound: `nhn.inbound${s}`, dlq: `gateway.dlq${s}` },
    exchanges: { nhnOutbound: `nhn.outbound${s}`, alerts: `gateway.alerts${s}` },
    receiverQueuePrefix: `nhn.outbound${s}.`,
    ...overrides,
  };
}

const brokers: Broker[] = [];
async function connect(cfg: BrokerConfig): Promise<Broker> {
  const broker = new Broker(cfg, logger);
  brokers.push(broker);
  await broker.connect();
  return broker;
}

async function receiverQueue(broker: Broker, herId: string): Promise<string> {
  const { receiverQueuePrefix, exchanges } = broker.config;
  return broker.withChannel((ch) => assertReceiverQueue(ch, receiverQueuePrefix!, herId, exchanges.nhnOutbound));
}

describe('broker adapter (real RabbitMQ)', function () {
  this.timeout(30_000);

  before(async () => {
    await rabbitmqctl('add_vhost', vhost);
    await rabbitmqctl('set_permissions', '--vhost', vhost, 'guest', '.*', '.*', '.*');
  });

  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });

  after(async () => {
    await rabbitmqctl('delete_vhost', vhost);
  });

  it('declares the quorum queues and exchanges of DESIGN §4.3, idempotently and with their arguments', async () => {
    const cfg = brokerConfig();
    const broker = await connect(cfg);
    const { stdout } = await rabbitmqctl('list_queues', '--vhost', vhost, 'name', 'type', 'arguments', '--formatter', 'json');
    const queues = new Map<string, { type: string; args: Record<string, unknown> }>(
      (JSON.parse(stdout) as { name: string; type: string; arguments: [string, string, unknown][] }[]).map((q) => [
        q.name,
        { type: q.type, args: Object.fromEntries(q.arguments.map(([k, , v]) => [k, v])) },
      ]),
    );
    const dlx = { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': cfg.queues.dlq };
    expect(queues.get(cfg.queues.epjOutbound)).to.deep.equal({
      type: 'quorum',
      args: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2, ...dlx },
    });
    expect(queues.get(cfg.queues.nhnInbound)).to.deep.equal({
      type: 'quorum',
      args: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2, ...dlx },
    });
    expect(queues.get(cfg.queues.epjInbound)).to.deep.equal({ type: 'quorum', args: { 'x-queue-type': 'quorum' } });
    expect(queues.get(cfg.queues.dlq)).to.deep.equal({ type: 'quorum', args: { 'x-queue-type': 'quorum' } });
    // every alert kind has a route: a bounded classic queue bound with '#'
    expect(queues.get(alertsQueueName(cfg))).to.deep.equal({
      type: 'classic',
      args: { 'x-queue-type': 'classic', 'x-max-length': 10000, 'x-overflow': 'drop-head' },
    });
    const { stdout: bs } = await rabbitmqctl('list_bindings', '--vhost', vhost, 'source_name', 'destination_name', 'routing_key', '--formatter', 'json');
    expect(JSON.parse(bs)).to.deep.include({ source_name: cfg.exchanges.alerts, destination_name: alertsQueueName(cfg), routing_key: '#' });

    const { stdout: xs } = await rabbitmqctl('list_exchanges', '--vhost', vhost, 'name', 'type', 'durable', '--formatter', 'json');
    const exchanges = JSON.parse(xs) as { name: string; type: string; durable: boolean }[];
    expect(exchanges).to.deep.include({ name: cfg.exchanges.nhnOutbound, type: 'direct', durable: true });
    expect(exchanges).to.deep.include({ name: cfg.exchanges.alerts, type: 'topic', durable: true });

    // re-running every step is a no-op …
    await broker.withChannel((ch) => assertTopology(ch, topologyFor(cfg), logger));
    // … while a drifted argument is refused rather than silently ignored
    const changed = await broker
      .withChannel((ch) => assertTopology(ch, topologyFor({ ...cfg, deliveryLimit: 99 }), logger))
      .then(
        () => null,
        (err: { code?: number }) => err,
      );
    expect(changed?.code).to.equal(406); // PRECONDITION_FAILED
  });

  it('a confirmed publish reaches the receiver queue bound to the HER-id, persistent and with its headers', async () => {
    const broker = await connect(brokerConfig());
    const publisher = new Publisher(broker);
    await publisher.start();
    const queue = await receiverQueue(broker, '9920001');

    await publisher.publish(broker.config.exchanges.nhnOutbound, '9920001', Buffer.from('<ebxml/>'), {
      messageId: 'm-1',
      contentType: 'text/xml',
      headers: { 'msg-type': 'LOG_UTSKRIVNINGSKLAR' },
    });

    const msg = await broker.withChannel((ch) => ch.get(queue, { noAck: true }));
    expect(msg).to.not.equal(false);
    if (!msg) return;
    expect(msg.content.toString()).to.equal('<ebxml/>');
    expect(msg.properties).to.include({ messageId: 'm-1', contentType: 'text/xml', deliveryMode: 2 });
    expect(msg.properties.headers).to.include({ 'msg-type': 'LOG_UTSKRIVNINGSKLAR' });
  });

  it('a mandatory publish to a HER-id nobody is bound to is rejected as returned, without affecting a routable one', async () => {
    const broker = await connect(brokerConfig());
    const publisher = new Publisher(broker);
    await publisher.start();
    await receiverQueue(broker, '9920002');
    const exchange = broker.config.exchanges.nhnOutbound;

    const [unroutable, routable] = await Promise.allSettled([
      publisher.publish(exchange, '123456', Buffer.from('x'), { messageId: 'same-id' }),
      publisher.publish(exchange, '9920002', Buffer.from('y'), { messageId: 'same-id' }),
    ]);

    expect(unroutable.status).to.equal('rejected');
    const err = (unroutable as PromiseRejectedResult).reason;
    expect(err).to.be.instanceOf(PublishError);
    expect(err.kind).to.equal('returned');
    expect(err.message).to.match(/312 NO_ROUTE/);
    expect(routable.status).to.equal('fulfilled');
  });

  it('a burst larger than the channel write buffer is confirmed in full (publishers wait for drain)', async () => {
    const broker = await connect(brokerConfig());
    const publisher = new Publisher(broker);
    await publisher.start();
    const { epjInbound } = broker.config.queues;

    const burst = Array.from({ length: 3000 }, (_, i) => publisher.publish('', epjInbound, Buffer.alloc(1024), { messageId: `burst-${i}` }));
    await Promise.all(burst);

    expect((await broker.withChannel((ch) => ch.checkQueue(epjInbound))).messageCount).to.equal(3000);
  });

  it("publishing to a missing exchange fails with the broker's reason, and the publisher gets a new channel", async () => {
    const broker = await connect(brokerConfig());
    const publisher = new Publisher(broker);
    await publisher.start();

    const err = await publisher.publish('no.such.exchange', 'k', Buffer.from('x'), { messageId: 'lost' }).then(
      () => null,
      (e: unknown) => e as PublishError,
    );
    expect(err?.kind).to.equal('disconnected');
    expect(err?.message).to.match(/404 \(NOT-FOUND\)/);

    // only the channel died, not the connection; the publisher re-opens it on its own
    expect(broker.isConnected()).to.equal(true);
    const { epjInbound } = broker.config.queues;
    await eventually('the publisher channel is back', () =>
      publisher.publish('', epjInbound, Buffer.from('x'), { messageId: 'ok' }).then(
        () => true,
        () => false,
      ),
    );
  });

  it('a consumer cancelled by the broker (its queue deleted and re-created) subscribes again', async () => {
    const cfg = brokerConfig();
    const broker = await connect(cfg);
    const { epjInbound } = cfg.queues;
    const received: string[] = [];
    await consume(broker, epjInbound, async (d) => {
      received.push(d.properties.messageId);
      d.ack();
    });

    await broker.withChannel((ch) => ch.deleteQueue(epjInbound));
    // Give the cancel time to arrive, so the first re-subscribe fails on the missing queue and the
    // channel's reopen-with-backoff is exercised too. (Re-declaring a quorum queue within a few ms
    // of deleting it leaves RabbitMQ 3.10 with a ghost consumer and no cancel at all.)
    await sleep(300);
    await broker.withChannel((ch) => assertTopology(ch, topologyFor(cfg), logger));
    const publisher = new Publisher(broker);
    await publisher.start();
    await publisher.publish('', epjInbound, Buffer.from('x'), { messageId: 'after-cancel' });

    await eventually('delivery after re-subscribing', () => received.includes('after-cancel'));
  });

  it('a message that keeps failing is dead-lettered to the DLQ once it exceeds the delivery limit', async () => {
    const broker = await connect(brokerConfig({ deliveryLimit: 2 }));
    const { epjOutbound, dlq } = broker.config.queues;
    const publisher = new Publisher(broker);
    await publisher.start();
    let attempts = 0;
    // a handler that throws: the adapter logs it and nacks with requeue as a last resort
    await consume(broker, epjOutbound, async () => {
      attempts++;
      throw new Error('poison');
    });

    await publisher.publish('', epjOutbound, Buffer.from('poison'), { messageId: 'poison-1' });

    const d = await eventually('the message in the DLQ', () => broker.withChannel((ch) => ch.get(dlq, { noAck: true })));
    expect(attempts).to.equal(3); // the first delivery plus `deliveryLimit` redeliveries
    expect(d.properties.messageId).to.equal('poison-1');
    expect(d.properties.headers).to.include({ 'x-first-death-reason': 'delivery_limit', 'x-first-death-queue': epjOutbound });
  });

  it('after a forced disconnect, acking the old delivery is a no-op and the message is redelivered on the new channel', async () => {
    const broker = await connect(brokerConfig());
    const { nhnInbound } = broker.config.queues;
    const publisher = new Publisher(broker);
    await publisher.start();
    const deliveries: Delivery[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await consume(broker, nhnInbound, async (d) => {
      deliveries.push(d);
      if (deliveries.length === 1)
        await held; // still processing when the connection dies
      else d.ack();
    });

    await publisher.publish('', nhnInbound, Buffer.from('a'), { messageId: 'a' });
    await eventually('first delivery', () => deliveries.length === 1);
    const reconnected = once(broker, 'connected');
    await closeAllConnections();
    await reconnected;
    await eventually('redelivery', () => deliveries.length === 2);

    const [stale, again] = deliveries;
    expect(again.redelivered).to.equal(true);
    expect(again.generation).to.be.greaterThan(stale.generation);
    expect(stale.ack()).to.equal(false);
    release();

    // the new channel survived the stale ack: the next message arrives on the same generation
    await publisher.publish('', nhnInbound, Buffer.from('b'), { messageId: 'b' });
    await eventually('next delivery', () => deliveries.length === 3);
    expect(deliveries[2].generation).to.equal(again.generation);
    await eventually('queue drained', async () => (await broker.withChannel((ch) => ch.checkQueue(nhnInbound))).messageCount === 0);
  });

  it('relaying 1,000 messages (consume → confirmed publish → ack) through close_all_connections loses none', async function () {
    const broker = await connect(brokerConfig({ prefetch: 20 }));
    const { epjOutbound } = broker.config.queues;
    const exchange = broker.config.exchanges.nhnOutbound;
    const publisher = new Publisher(broker);
    await publisher.start();
    const target = await receiverQueue(broker, '9920003');
    const ids = Array.from({ length: 1000 }, (_, i) => `relay-${i}`);
    await Promise.all(ids.map((id) => publisher.publish('', epjOutbound, Buffer.from(id), { messageId: id })));

    let disconnects = 0;
    let arrivedAtDisconnect = -1;
    broker.on('disconnected', () => {
      if (disconnects++ === 0) arrivedAtDisconnect = arrived.size;
    });
    const arrived = new Set<string>();
    let copies = 0;
    await consume(broker, target, async (d) => {
      arrived.add(d.properties.messageId);
      copies++;
      d.ack();
    });
    await consume(broker, epjOutbound, async (d) => {
      await sleep(10); // roughly the time real processing takes, so the cut lands mid-stream
      try {
        await publisher.publish(exchange, '9920003', d.body, { messageId: d.properties.messageId });
        d.ack();
      } catch {
        d.nack(true); // a no-op after the disconnect: the broker redelivers anyway
      }
    });

    await eventually('relay under way', () => arrived.size >= 100);
    await closeAllConnections();
    await eventually('every message at the target', () => arrived.size === ids.length, 20_000);

    expect(disconnects).to.be.greaterThan(0);
    expect(arrivedAtDisconnect).to.be.lessThan(ids.length); // the cut really happened mid-stream
    expect([...arrived].sort()).to.deep.equal([...ids].sort());
    this.test!.title += ` (cut after ${arrivedAtDisconnect}, ${copies - ids.length} duplicates)`;
  });

  it('publishing while disconnected fails fast with kind "disconnected" instead of buffering', async () => {
    // a long reconnect delay keeps the broker down long enough to look
    const broker = await connect(brokerConfig({ reconnectInitialDelay: 'PT2S', reconnectMaxDelay: 'PT2S' }));
    const publisher = new Publisher(broker);
    await publisher.start();
    const { epjInbound } = broker.config.queues;

    const down = once(broker, 'disconnected');
    await closeAllConnections();
    await down;
    expect(broker.isConnected()).to.equal(false);

    const started = Date.now();
    const err = await publisher.publish('', epjInbound, Buffer.from('x'), { messageId: 'while-down' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(Date.now() - started).to.be.lessThan(50);
    expect(err).to.be.instanceOf(PublishError);
    expect((err as PublishError).kind).to.equal('disconnected');

    await once(broker, 'connected');
    await publisher.publish('', epjInbound, Buffer.from('x'), { messageId: 'after-reconnect' });
  });
});
