// The deadline scheduler (DESIGN §3 C): a node-cron tick that only queries rows that are due.
// Each tick raises rejected AppRecs, fires overdue expectations, repeats alerts whose reminder
// is due and resolves those whose condition cleared; each step takes at most one batch, the
// rest waits for the next tick. Alerts go out through the outbox right after their transaction
// commits (the relay retries them if the broker is down) and are logged with their event id.
import cron, { type ScheduledTask } from 'node-cron';
import { EVENTS } from '../observability/events.js';
import type { Logger } from '../observability/log.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import type { DeadlineRepository, Emission } from './deadlineRepository.js';
import type { Transition } from './deadlines.js';

export interface SchedulerOptions {
  /** told of each resend of an unacknowledged message (the metrics count them) */
  onResent?: () => void;
  /** node-cron expression with seconds, e.g. every 30 s */
  cron: string;
  batchSize: number;
}

export type TickSummary = Record<Transition | 'resent' | 'rejected' | 'refusedByTransport' | 'routed', number>;

const STEPS: Transition[] = ['firing', 'reminder', 'resolved'];

export class DeadlineScheduler {
  private task?: ScheduledTask;
  private running?: Promise<void>;

  constructor(
    private readonly repository: DeadlineRepository,
    private readonly outbox: OutboxPublisher,
    private readonly log: Logger,
    private readonly options: SchedulerOptions,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  start(): void {
    // noOverlap: a slow tick (database down) is skipped over, never run twice at once.
    this.task = cron.schedule(this.options.cron, () => (this.running = this.tickLogged()), { name: 'deadlines', noOverlap: true, logger: this.cronLogger() });
  }

  /** Stops the timer and waits for a tick in progress, so the store can close after it. */
  async stop(): Promise<void> {
    await this.task?.destroy();
    this.task = undefined;
    await this.running;
  }

  /** One pass over everything that is due now. */
  async tick(): Promise<TickSummary> {
    const now = this.clock();
    const { batchSize } = this.options;
    const summary: TickSummary = { resent: 0, rejected: 0, refusedByTransport: 0, routed: 0, firing: 0, reminder: 0, resolved: 0 };
    // Before the alerts: a resend moves the transport-ack deadline on, so it does not fire meanwhile.
    for (const item of await this.repository.resendUnacknowledged(now, batchSize)) {
      this.log.warn(
        { event: EVENTS.transportResent, outboxId: item.id, msgId: item.headers['msg-id'], toHerId: item.routing_key },
        'no transport acknowledgment: resent',
      );
      await this.outbox.publishNow(item);
      this.options.onResent?.();
      summary.resent++;
    }
    summary.rejected = await this.publish(await this.repository.raiseRefusals('apprec-rejected', now, batchSize), 'firing');
    summary.refusedByTransport = await this.publish(await this.repository.raiseRefusals('transport-error', now, batchSize), 'firing');
    summary.routed = await this.repository.closeRoutedHolds(now);
    for (const step of STEPS) summary[step] = await this.publish(await this.repository.transition(step, now, batchSize), step);
    return summary;
  }

  private async tickLogged(): Promise<void> {
    try {
      await this.tick();
    } catch (e) {
      // The rows stay due, so the next tick does the work; nothing is lost by waiting.
      this.log.error({ event: EVENTS.deadlineTickFailed, reason: (e as Error).message }, 'deadline tick failed; the next tick retries');
    }
  }

  private async publish(emissions: Emission[], step: Transition): Promise<number> {
    for (const { alert, item } of emissions) {
      const level = step === 'resolved' ? 'info' : alert.severity === 'critical' ? 'error' : 'warn';
      this.log[level](
        {
          event: alert.eventId,
          alertId: alert.id,
          alertKind: alert.kind,
          alertState: alert.state,
          transition: step,
          severity: alert.severity,
          msgId: alert.msgId,
          type: alert.msgType,
          bydel: alert.bydel,
          dueAt: alert.dueAt,
        },
        `alert ${alert.kind} ${step}`,
      );
      await this.outbox.publishNow(item);
    }
    return emissions.length;
  }

  /** node-cron logs to the console by default; its warnings belong in the JSON log. */
  private cronLogger() {
    const log = this.log.child({ component: 'node-cron' });
    return {
      info: (m: string) => log.debug(m),
      warn: (m: string) => log.warn(m),
      error: (m: string | Error) => log.error(String(m)),
      debug: (m: string | Error) => log.debug(String(m)),
    };
  }
}
