import type { ConfirmChannel, Message } from 'amqplib';
import amqp from 'amqplib';
import type { Logger } from 'pino';
import { durationMs } from '../config/config.js';
import type { Broker, ManagedChannel } from './connection.js';

export type PublishFailure = 'nack' | 'returned' | 'timeout' | 'disconnected';

/** Why a publish was not confirmed. Every kind means "not known to be stored": keep it in the outbox. */
export class PublishError extends Error {
  override readonly name = 'PublishError';
  readonly kind: PublishFailure;
  constructor(kind: PublishFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}

export interface PublishOptions {
  /** required: it is how a mandatory return is matched to its publish */
  messageId: string;
  headers?: Record<string, unknown>;
  contentType?: string;
  /** default true: an unroutable message is an error, not a silent drop */
  mandatory?: boolean;
}

interface Pending {
  messageId: string;
  channel: ConfirmChannel | null;
  returned: string | null;
  done: boolean;
  settle(err?: Error): void;
}

/**
 * Confirmed, persistent publishing on one confirm channel. Nothing is buffered while the channel
 * is down: publish fails at once with `disconnected` and the caller's durable outbox retries.
 */
export class Publisher {
  private readonly broker: Broker;
  private readonly logger: Logger;
  private readonly confirmTimeoutMs: number;
  private managed: ManagedChannel<ConfirmChannel> | null = null;
  /** publishes on the current channel awaiting their confirm, by messageId, in publish order */
  private readonly pending = new Map<string, Pending[]>();
  /** set while the channel's write buffer is full; later publishes wait for it to drain */
  private drained: Promise<void> | null = null;
  /** why the broker closed the channel (e.g. 404 for a missing exchange), for the rejections that follow */
  private lastChannelError: Error | null = null;

  constructor(broker: Broker) {
    this.broker = broker;
    this.logger = broker.logger.child({ component: 'publisher' });
    this.confirmTimeoutMs = durationMs(broker.config.confirmTimeout);
  }

  async start(): Promise<void> {
    this.managed = await this.broker.channel<ConfirmChannel>({
      name: 'publisher',
      open: (model) => model.createConfirmChannel(),
      setup: async (ch) => {
        this.lastChannelError = null;
        ch.on('error', (err) => (this.lastChannelError = err));
        ch.on('return', (msg) => this.onReturn(ch, msg));
      },
    });
  }

  async close(): Promise<void> {
    await this.managed?.close();
    this.managed = null;
  }

  /**
   * Resolves when the broker has confirmed the message (routed to at least one queue and, for
   * persistent messages on durable queues, written). Rejects with a PublishError otherwise.
   */
  publish(exchange: string, routingKey: string, body: Buffer, options: PublishOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const log = { exchange, routingKey, messageId: options.messageId };
      const p: Pending = {
        messageId: options.messageId,
        channel: null,
        returned: null,
        done: false,
        settle: (err) => {
          if (p.done) return;
          p.done = true;
          clearTimeout(timer);
          this.untrack(p);
          if (err) {
            this.logger.debug({ ...log, err }, 'publish not confirmed');
            reject(err);
          } else resolve();
        },
      };
      // covers the whole publish, including any wait for the write buffer to drain
      const timer = setTimeout(() => p.settle(new PublishError('timeout', `no confirm within ${this.confirmTimeoutMs} ms`)), this.confirmTimeoutMs);
      void this.send(exchange, routingKey, body, options, p);
    });
  }

  private async send(exchange: string, routingKey: string, body: Buffer, options: PublishOptions, p: Pending): Promise<void> {
    while (this.drained && this.managed?.channel) await this.drained;
    if (p.done) return; // timed out while waiting for the buffer
    const ch = this.managed?.channel;
    if (!ch) return p.settle(new PublishError('disconnected', 'no open channel to the broker'));
    p.channel = ch;
    this.track(p);
    try {
      const ok = ch.publish(
        exchange,
        routingKey,
        body,
        {
          persistent: true,
          mandatory: options.mandatory ?? true,
          messageId: options.messageId,
          headers: options.headers,
          contentType: options.contentType,
        },
        (err) => {
          // a closed channel is not a nack: `channel` is cleared before amqplib fails its callbacks
          if (err) p.settle(this.managed?.channel === ch ? new PublishError('nack', 'broker nacked the message') : this.closed(err));
          else if (p.returned) p.settle(new PublishError('returned', `returned as unroutable: ${p.returned}`));
          else p.settle();
        },
      );
      if (!ok) this.waitForDrain(ch);
    } catch (err) {
      // channel closing under us, or a caller error such as headers too large to encode
      p.settle(err instanceof amqp.IllegalOperationError ? this.closed(err) : (err as Error));
    }
  }

  /** basic.return arrives before the basic.ack of the same publish; remember it for the ack. */
  private onReturn(ch: ConfirmChannel, msg: Message): void {
    const { replyCode, replyText } = msg.fields as unknown as { replyCode: number; replyText: string };
    const p = this.pending.get(msg.properties.messageId)?.find((q) => q.channel === ch && !q.returned);
    if (p) p.returned = `${replyCode} ${replyText}`;
    else this.logger.warn({ messageId: msg.properties.messageId, replyCode }, 'return for an unknown publish');
  }

  private waitForDrain(ch: ConfirmChannel): void {
    if (this.drained) return;
    this.drained = new Promise((resolve) => {
      const done = () => {
        ch.off('drain', done);
        ch.off('close', done);
        this.drained = null;
        resolve();
      };
      ch.on('drain', done);
      ch.on('close', done);
    });
  }

  private closed(cause: unknown): PublishError {
    const reason = this.lastChannelError ? `: ${this.lastChannelError.message}` : '';
    return new PublishError('disconnected', `channel closed before the broker confirmed${reason}`, { cause });
  }

  private track(p: Pending): void {
    const list = this.pending.get(p.messageId);
    if (list) list.push(p);
    else this.pending.set(p.messageId, [p]);
  }

  private untrack(p: Pending): void {
    const list = this.pending.get(p.messageId);
    if (!list) return;
    const rest = list.filter((q) => q !== p);
    if (rest.length) this.pending.set(p.messageId, rest);
    else this.pending.delete(p.messageId);
  }
}
