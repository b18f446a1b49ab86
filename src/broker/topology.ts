import type { Channel } from 'amqplib';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/config.js';

export type BrokerConfig = GatewayConfig['broker'];

export interface ExchangeSpec {
  name: string;
  type: 'direct' | 'topic';
}

export interface QueueSpec {
  name: string;
  /** `x-*` queue arguments; compared by RabbitMQ on every re-declare, so they must never drift */
  arguments: Record<string, string | number>;
}

export interface BindingSpec {
  queue: string;
  exchange: string;
  routingKey: string;
}

export interface Topology {
  exchanges: ExchangeSpec[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
}

/**
 * DESIGN §4.3 as data. Only the queues the gateway itself consumes get a delivery limit, and
 * always together with a dead-letter target: a quorum queue drops a message that exceeds its
 * limit unless it can dead-letter it, so a limit on epj.inbound (read by the EPJ) or on the DLQ
 * would silently lose messages.
 */
/**
 * The durable queue every alert kind is bound to, so that a (mandatory) alert publish always has a
 * route and no alert is retried for ever for want of a binding; its length is bounded
 * (ALERTS_QUEUE_MAX, oldest dropped first), for whoever reads it: an alert manager, or ops with
 * the management UI.
 */
export const alertsQueueName = (cfg: BrokerConfig) => cfg.queues.alerts ?? `${cfg.exchanges.alerts}.all`;
export const ALERTS_QUEUE_MAX = 10_000;

export function topologyFor(cfg: BrokerConfig): Topology {
  const { queues, exchanges } = cfg;
  const workQueue = (name: string): QueueSpec => ({
    name,
    arguments: {
      'x-queue-type': 'quorum',
      'x-delivery-limit': cfg.deliveryLimit,
      // default exchange + the DLQ's name as routing key: no extra exchange or binding to maintain
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': queues.dlq,
    },
  });
  const plainQueue = (name: string): QueueSpec => ({ name, arguments: { 'x-queue-type': 'quorum' } });
  return {
    exchanges: [
      { name: exchanges.nhnOutbound, type: 'direct' },
      { name: exchanges.alerts, type: 'topic' },
    ],
    queues: [
      workQueue(queues.epjOutbound),
      workQueue(queues.nhnInbound),
      plainQueue(queues.epjInbound),
      plainQueue(queues.dlq),
      // classic: a log of alerts needs no replication of its own, and costs the broker no Raft group
      { name: alertsQueueName(cfg), arguments: { 'x-queue-type': 'classic', 'x-max-length': ALERTS_QUEUE_MAX, 'x-overflow': 'drop-head' } },
    ],
    bindings: [{ queue: alertsQueueName(cfg), exchange: exchanges.alerts, routingKey: '#' }],
  };
}

// One idempotent step per kind of object (the Rascal task list); each is safe to re-run after
// every reconnect, and a changed argument surfaces as PRECONDITION_FAILED instead of being ignored.

export async function assertExchanges(ch: Channel, exchanges: ExchangeSpec[]): Promise<void> {
  for (const x of exchanges) await ch.assertExchange(x.name, x.type, { durable: true });
}

export async function assertQueues(ch: Channel, queues: QueueSpec[]): Promise<void> {
  // quorum queues must be durable, non-exclusive and not auto-delete
  for (const q of queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
}

export async function applyBindings(ch: Channel, bindings: BindingSpec[]): Promise<void> {
  for (const b of bindings) await ch.bindQueue(b.queue, b.exchange, b.routingKey);
}

export async function assertTopology(ch: Channel, topology: Topology, logger: Logger): Promise<void> {
  await assertExchanges(ch, topology.exchanges);
  await assertQueues(ch, topology.queues);
  await applyBindings(ch, topology.bindings);
  logger.debug({ exchanges: topology.exchanges.length, queues: topology.queues.length, bindings: topology.bindings.length }, 'topology asserted');
}

/**
 * Stands in for a receiving service (bydel) in demos and tests: a quorum queue `<prefix><herId>`
 * bound to the outbound direct exchange with the HER-id as routing key.
 */
export async function assertReceiverQueue(ch: Channel, prefix: string, herId: string, exchange: string): Promise<string> {
  const name = `${prefix}${herId}`;
  // Classic, not quorum: these stand in for the NHN side in demos and tests, one per service
  // (dozens per run), and a broker with hundreds of Raft groups on two cores grinds to a halt.
  await assertQueues(ch, [{ name, arguments: { 'x-queue-type': 'classic' } }]);
  await applyBindings(ch, [{ queue: name, exchange, routingKey: herId }]);
  return name;
}
