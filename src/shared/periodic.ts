// A task that runs every `intervalMs`, never overlapping itself, and whose stop waits for the
// run in progress: the ops checks and retention must not be cut off half-way by shutdown.
import type { Logger } from '../observability/log.js';

export class Periodic {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly intervalMs: number,
    private readonly task: () => Promise<void>,
    private readonly onError: (e: Error) => void,
  ) {}

  /** The first run follows `firstDelayMs` after start (default: one interval). */
  start(firstDelayMs = this.intervalMs): void {
    this.timer = setTimeout(() => this.tick(), firstDelayMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private tick(): void {
    this.running = this.task()
      .catch((e) => this.onError(e as Error))
      .finally(() => {
        if (!this.stopped) this.timer = setTimeout(() => this.tick(), this.intervalMs);
      });
  }
}

/** The usual error handler: one warn line with the event id, no stack of message data. */
export const logFailure = (log: Logger, event: string, what: string) => (e: Error) => log.warn({ event, reason: e.message }, `${what} failed`);
