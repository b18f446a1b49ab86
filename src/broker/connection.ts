import { EventEmitter } from 'node:events';
import type { Channel, ChannelModel, RecoveringChannelModel } from 'amqplib';
import amqp from 'amqplib';
import type { Logger } from 'pino';
import { durationMs } from '../config/config.js';
import { backoffDelay } from '../shared/backoff.js';
import { assertTopology, type BrokerConfig, topologyFor } from './topology.js';

export interface BrokerEvents {
  connected: [];
  disconnected: [err: Error];
  reconnecting: [info: { attempt: number; delayMs: number }];
}

/** Thrown by operations that need a live connection; transient by nature. */
export class NotConnectedError extends Error {
  override readonly name = 'NotConnectedError';
  constructor() {
    super('not connected to the message broker');
  }
}

/**
 * Owns the one AMQP connection. Reconnecting is amqplib's built-in recovery (exponential backoff
 * with jitter); its `setup` hook re-asserts the topology and then re-opens every managed channel
 * (consumers re-subscribe, the publisher gets a fresh confirm channel) before `connected` fires.
 */
export class Broker extends EventEmitter<BrokerEvents> {
  readonly config: BrokerConfig;
  readonly logger: Logger;
  private conn: RecoveringChannelModel | null = null;
  /** the connection managed channels open on; set in setup once the topology is in place, before `connected` */
  private model: ChannelModel | null = null;
  private connected = false;
  private readonly channels = new Set<Pick<ManagedChannel<Channel>, 'attach' | 'detach'>>();
  private generations = 0;

  constructor(config: BrokerConfig, logger: Logger) {
    super();
    this.config = config;
    this.logger = logger.child({ component: 'broker' });
  }

  /** Resolves once connected and set up; until then keeps retrying with backoff (logged). */
  async connect(): Promise<void> {
    if (this.conn) throw new Error('Broker.connect() called twice');
    const conn = await amqp.connect(this.config.url, {
      recovery: {
        initialDelay: durationMs(this.config.reconnectInitialDelay),
        maxDelay: durationMs(this.config.reconnectMaxDelay),
        // listeners must be in place before the first attempt, so startup retries are visible too
        waitForConnect: false,
        setup: (model: ChannelModel) => this.setup(model),
      },
    });
    this.conn = conn;
    conn.on('connect', () => {
      this.connected = true;
      this.logger.info('connected');
      this.emit('connected');
    });
    conn.on('disconnect', (err) => {
      this.connected = false;
      this.model = null;
      this.logger.warn({ err }, 'disconnected');
      this.emit('disconnected', err);
    });
    conn.on('connect-failed', (err) => {
      this.model = null;
      this.logger.warn({ err }, 'connection attempt failed');
    });
    conn.on('reconnect-scheduled', ({ attempt, delay }) => {
      this.logger.info({ attempt, delayMs: delay }, 'reconnect scheduled');
      this.emit('reconnecting', { attempt, delayMs: delay });
    });
    conn.on('reconnect-failed', (err) => this.logger.error({ err }, 'gave up reconnecting'));
    conn.on('blocked', (reason) => this.logger.warn({ reason }, 'broker blocked publishing (resource alarm)'));
    conn.on('unblocked', () => this.logger.info('broker unblocked publishing'));
    // an 'error' without a listener would crash the process; fatal connection errors (heartbeat
    // timeout, protocol errors) arrive here just before the disconnect, which recovery handles
    conn.on('error', (err) => this.logger.warn({ err }, 'connection error'));
    await conn.waitForConnect();
  }

  isConnected(): boolean {
    return this.connected;
  }

  async close(): Promise<void> {
    for (const mc of [...this.channels]) mc.detach();
    this.connected = false;
    this.model = null;
    const conn = this.conn;
    this.conn = null;
    await conn?.close();
  }

  /** Runs `fn` on a short-lived channel (admin work: receiver queues, DLQ browsing, tests). */
  async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    if (!this.connected || !this.model) throw new NotConnectedError();
    const ch = await this.model.createChannel();
    ch.on('error', (err) => this.logger.warn({ err }, 'admin channel error'));
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {}); // already closed by a channel error: nothing to release
    }
  }

  /** A channel that is opened now (if connected) and again after every reconnect, running `setup` each time. */
  async channel<C extends Channel>(options: ManagedChannelOptions<C>): Promise<ManagedChannel<C>> {
    const mc = new ManagedChannel(this, options);
    this.channels.add(mc);
    if (this.model) await mc.attach(this.model);
    return mc;
  }

  /** @internal */
  forget(mc: Pick<ManagedChannel<Channel>, 'attach' | 'detach'>): void {
    this.channels.delete(mc);
  }

  /** @internal monotonically increasing id of each channel opened by this broker */
  nextGeneration(): number {
    return ++this.generations;
  }

  /** @internal is `model` still the connection the broker runs on? */
  isCurrent(model: ChannelModel): boolean {
    return this.model === model;
  }

  private async setup(model: ChannelModel): Promise<void> {
    // everything depends on the topology: failing here fails the attempt and recovery retries it
    const ch = await model.createChannel();
    ch.on('error', (err) => this.logger.error({ err }, 'topology assertion failed'));
    await assertTopology(ch, topologyFor(this.config), this.logger);
    await ch.close();
    this.model = model;
    // a channel that fails to set up retries on its own, without taking the connection down
    for (const mc of this.channels) await mc.attach(model);
  }
}

export interface ManagedChannelOptions<C extends Channel> {
  name: string;
  open(model: ChannelModel): Promise<C>;
  /** prefetch, consume, listeners…; runs on every new channel */
  setup(ch: C, generation: number): Promise<void>;
}

/**
 * A channel that may not exist right now. The broker attaches it after each (re)connect. If only
 * the channel dies (a channel-level error such as publishing to a missing exchange, or a failed
 * consume), it re-opens itself on the same connection with backoff.
 */
export class ManagedChannel<C extends Channel> {
  /** null while there is no open channel; cleared before amqplib fails the channel's pending confirms */
  channel: C | null = null;
  generation = 0;
  private readonly broker: Broker;
  private readonly options: ManagedChannelOptions<C>;
  private readonly logger: Logger;
  /** the connection this channel belongs to; attaching twice to the same one is a no-op */
  private model: ChannelModel | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private detached = false;

  constructor(broker: Broker, options: ManagedChannelOptions<C>) {
    this.broker = broker;
    this.options = options;
    this.logger = broker.logger.child({ channel: options.name });
  }

  /** @internal called by the broker for each new connection; never throws */
  async attach(model: ChannelModel): Promise<void> {
    if (this.detached || this.model === model) return;
    this.model = model;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.open(model);
  }

  /** Stops re-opening and closes the channel. */
  async close(): Promise<void> {
    const ch = this.detach();
    await ch?.close().catch(() => {});
  }

  /** @internal */
  detach(): C | null {
    this.detached = true;
    clearTimeout(this.retryTimer);
    this.broker.forget(this);
    const ch = this.channel;
    this.channel = null;
    return ch;
  }

  private async open(model: ChannelModel): Promise<void> {
    let ch: C | undefined;
    try {
      ch = await this.options.open(model);
      // a newer connection may have been attached while this one was opening
      if (this.detached || this.model !== model) {
        await ch.close().catch(() => {});
        return;
      }
      const generation = this.broker.nextGeneration();
      const opened = ch;
      opened.on('error', (err) => this.logger.warn({ err, generation }, 'channel error'));
      // prepended so `channel` is null before amqplib's own close listener fails pending confirms
      opened.prependListener('close', () => this.onClose(opened, model));
      this.channel = opened;
      this.generation = generation;
      await this.options.setup(opened, generation);
      this.failures = 0;
      this.logger.debug({ generation }, 'channel open');
    } catch (err) {
      this.logger.warn({ err }, 'opening channel failed');
      if (ch && this.channel === ch) {
        this.channel = null;
        await ch.close().catch(() => {});
      }
      this.scheduleReopen(model);
    }
  }

  private onClose(ch: C, model: ChannelModel): void {
    if (this.channel !== ch) return;
    this.channel = null;
    this.logger.debug('channel closed');
    this.scheduleReopen(model);
  }

  private scheduleReopen(model: ChannelModel): void {
    if (this.detached || this.retryTimer) return;
    const { reconnectInitialDelay, reconnectMaxDelay } = this.broker.config;
    const delay = backoffDelay({ initialMs: durationMs(reconnectInitialDelay), maxMs: durationMs(reconnectMaxDelay) }, this.failures++);
    // When the whole connection drops its channels close first; by the time this fires the broker
    // has let go of that connection (or replaced it and re-attached us), so nothing happens.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.detached || this.channel || this.model !== model || !this.broker.isCurrent(model)) return;
      void this.open(model);
    }, delay);
  }
}
