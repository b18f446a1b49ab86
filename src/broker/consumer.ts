import type { Channel, ConsumeMessage, MessageProperties, MessagePropertyHeaders } from 'amqplib';
import type { Logger } from 'pino';
import { durationMs } from '../config/config.js';
import type { Broker, ManagedChannel } from './connection.js';

export interface Delivery {
  readonly queue: string;
  readonly body: Buffer;
  readonly properties: MessageProperties;
  readonly headers: MessagePropertyHeaders;
  readonly redelivered: boolean;
  /** the channel this delivery came on; a settlement is only sent while it is still the current one */
  readonly generation: number;
  /**
   * Settle the delivery. Each returns false and does nothing when the delivery was already settled
   * or its channel is gone: a delivery tag is only valid on its own channel (acking it on a new one
   * closes that channel with PRECONDITION_FAILED), and the broker redelivers it anyway.
   */
  ack(): boolean;
  nack(requeue: boolean): boolean;
  /** nack without requeue: dead-letters on queues with a DLX */
  reject(): boolean;
}

export type Handler = (delivery: Delivery) => Promise<void>;

/**
 * One consumer on its own channel (so prefetch and delivery tags are per consumer). Re-subscribes
 * after reconnects and after the broker cancels it. Failure policy belongs to the handler: this
 * only nacks with requeue when the handler throws, as a last resort (the queue's delivery limit
 * then dead-letters a message that keeps failing).
 */
export class Consumer {
  readonly queue: string;
  private readonly broker: Broker;
  private readonly handler: Handler;
  private readonly logger: Logger;
  private managed: ManagedChannel<Channel> | null = null;
  private consumerTag: string | null = null;
  private paused = false;
  private running = 0;
  private idle: (() => void)[] = [];

  constructor(broker: Broker, queue: string, handler: Handler) {
    this.broker = broker;
    this.queue = queue;
    this.handler = handler;
    this.logger = broker.logger.child({ component: 'consumer', queue });
  }

  async start(): Promise<void> {
    this.managed = await this.broker.channel<Channel>({
      name: `consumer:${this.queue}`,
      open: (model) => model.createChannel(),
      setup: async (ch, generation) => {
        this.consumerTag = null;
        await ch.prefetch(this.broker.config.prefetch);
        if (!this.paused) await this.subscribe(ch, generation);
      },
    });
  }

  /** Stops new deliveries (basic.cancel); handlers in flight may still settle theirs. Never throws. */
  async pause(): Promise<void> {
    this.paused = true;
    const ch = this.managed?.channel;
    const tag = this.consumerTag;
    this.consumerTag = null;
    // if the channel is closing, the consumer goes with it and `paused` keeps it from coming back
    if (ch && tag) await ch.cancel(tag).catch((err) => this.logger.debug({ err }, 'cancel failed'));
  }

  async resume(): Promise<void> {
    this.paused = false;
    const mc = this.managed;
    if (mc?.channel && !this.consumerTag) await this.subscribe(mc.channel, mc.generation);
  }

  /** Number of deliveries whose handler has not finished. */
  inFlight(): number {
    return this.running;
  }

  /** Resolves when no handler is running. */
  drain(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Graceful stop: cancel, let running handlers finish, close the channel (unacked messages return to the queue). */
  async close(): Promise<void> {
    await this.pause();
    await this.drain();
    await this.managed?.close();
    this.managed = null;
  }

  private async subscribe(ch: Channel, generation: number): Promise<void> {
    const { consumerTag } = await ch.consume(this.queue, (msg) => (msg ? this.onMessage(ch, generation, msg) : this.onCancelled(ch, generation)));
    if (this.paused) return void (await ch.cancel(consumerTag)); // paused while basic.consume was in flight
    this.consumerTag = consumerTag;
    this.logger.debug({ generation }, 'consuming');
  }

  /** The broker cancelled us (queue deleted, leader lost…): subscribe again on the same channel. */
  private onCancelled(ch: Channel, generation: number): void {
    this.consumerTag = null;
    this.logger.warn({ generation }, 'consumer cancelled by the broker; re-subscribing');
    setTimeout(() => {
      if (this.managed?.channel !== ch || this.paused || this.consumerTag) return;
      // if the queue is gone, the failed basic.consume closes the channel and the managed
      // channel's reopen-with-backoff takes over
      this.subscribe(ch, generation).catch((err) => this.logger.warn({ err }, 're-subscribing failed'));
    }, durationMs(this.broker.config.reconnectInitialDelay));
  }

  private onMessage(ch: Channel, generation: number, msg: ConsumeMessage): void {
    const log = { generation, deliveryTag: msg.fields.deliveryTag, messageId: msg.properties.messageId };
    let settled = false;
    const settle = (action: string, send: () => void): boolean => {
      if (settled) {
        this.logger.debug({ ...log, action }, 'delivery already settled; ignored');
        return false;
      }
      settled = true;
      if (this.managed?.channel !== ch) {
        this.logger.debug({ ...log, action }, 'stale delivery (channel gone); broker will redeliver');
        return false;
      }
      try {
        send();
        return true;
      } catch (err) {
        // the channel started closing after the check above
        this.logger.debug({ ...log, action, err }, 'settling failed; broker will redeliver');
        return false;
      }
    };
    const delivery: Delivery = {
      queue: this.queue,
      body: msg.content,
      properties: msg.properties,
      headers: msg.properties.headers ?? {},
      redelivered: msg.fields.redelivered,
      generation,
      ack: () => settle('ack', () => ch.ack(msg)),
      nack: (requeue) => settle(requeue ? 'nack-requeue' : 'nack', () => ch.nack(msg, false, requeue)),
      reject: () => settle('reject', () => ch.reject(msg, false)),
    };

    this.running++;
    Promise.resolve()
      .then(() => this.handler(delivery))
      .catch((err) => {
        this.logger.error({ ...log, err }, 'handler threw; requeueing the delivery');
        delivery.nack(true);
      })
      .finally(() => {
        if (!settled) this.logger.warn(log, 'handler finished without settling the delivery');
        if (--this.running === 0) for (const resolve of this.idle.splice(0)) resolve();
      });
  }
}

/** Starts consuming `queue`; see Consumer. */
export async function consume(broker: Broker, queue: string, handler: Handler): Promise<Consumer> {
  const consumer = new Consumer(broker, queue, handler);
  await consumer.start();
  return consumer;
}
