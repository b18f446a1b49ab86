// The scheduler's timing (node-cron under sinon fake timers) and the reminder rules, without a
// database: the deadline repository is a stub that counts what it is asked.
import { expect } from 'chai';
import { DateTime } from 'luxon';
import sinon from 'sinon';
import { createLogger } from '../../src/observability/log.js';
import type { OutboxPublisher } from '../../src/outbox/relay.js';
import type { DeadlineRepository } from '../../src/tracking/deadlineRepository.js';
import { type AlertPolicy, type ConditionContext, conditionAlert, nextReminderAt } from '../../src/tracking/deadlines.js';
import { DeadlineScheduler } from '../../src/tracking/scheduler.js';
import { WorkingCalendar } from '../../src/tracking/workingTime.js';

const oslo = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toJSDate();
const local = (d: Date | null) => (d ? DateTime.fromJSDate(d, { zone: 'Europe/Oslo' }).toFormat("yyyy-MM-dd'T'HH:mm") : null);
const calendar = new WorkingCalendar({ timeZone: 'Europe/Oslo', start: '08:00', end: '15:00', weekdays: [1, 2, 3, 4, 5], holidayCountry: 'NO' });
const endOfDay: AlertPolicy = { calendar, reminder: 'end-of-working-day', appRecNegativeAfterMs: 96 * 3600_000 };

const condition = (over: Partial<ConditionContext> = {}): ConditionContext => ({
  expectationId: 1,
  kind: 'answer',
  dueAt: oslo('2026-03-30T09:30').toISOString(),
  alertId: 'a-1',
  reminders: 0,
  resolvedBy: null,
  messageId: 1,
  msgId: 'm-1',
  msgType: 'LOG_UTSKRIVNINGSKLAR',
  conversationId: 'c-1',
  bydel: '030105',
  receiverHerId: '9920005',
  genDate: '2026-03-30T08:00:00',
  createdAt: oslo('2026-03-30T08:00').toISOString(),
  appRecErrors: null,
  transportErrors: null,
  ...over,
});

describe('deadline scheduler timing (node-cron, fake timers)', () => {
  let clock: sinon.SinonFakeTimers;
  afterEach(() => clock?.restore());

  it('ticks every 30 s by default: ten ticks in five minutes, each step once per tick', async () => {
    clock = sinon.useFakeTimers({ now: oslo('2026-03-30T09:00') });
    const calls: string[] = [];
    const repository = {
      resendUnacknowledged: async () => {
        calls.push('resend');
        return [];
      },
      raiseRefusals: async (kind: string) => {
        calls.push(kind);
        return [];
      },
      closeRoutedHolds: async () => {
        calls.push('routed');
        return 0;
      },
      transition: async (step: string) => {
        calls.push(step);
        return [];
      },
    } as unknown as DeadlineRepository;
    const scheduler = new DeadlineScheduler(repository, {} as OutboxPublisher, createLogger('silent'), { cron: '*/30 * * * * *', batchSize: 10 });
    scheduler.start();
    await clock.tickAsync(5 * 60_000);
    await scheduler.stop();
    expect(calls.filter((c) => c === 'firing')).to.have.length(10);
    expect(calls.slice(0, 7)).to.deep.equal(['resend', 'apprec-rejected', 'transport-error', 'routed', 'firing', 'reminder', 'resolved']);
    await clock.tickAsync(60_000);
    expect(calls.filter((c) => c === 'firing')).to.have.length(10);
  });

  it('a failing tick is logged and the next tick runs', async () => {
    clock = sinon.useFakeTimers({ now: oslo('2026-03-30T09:00') });
    let ticks = 0;
    const repository = {
      resendUnacknowledged: async () => {
        ticks++;
        throw new Error('database is down');
      },
    } as unknown as DeadlineRepository;
    const scheduler = new DeadlineScheduler(repository, {} as OutboxPublisher, createLogger('silent'), { cron: '*/30 * * * * *', batchSize: 10 });
    scheduler.start();
    await clock.tickAsync(90_000);
    await scheduler.stop();
    expect(ticks).to.equal(3);
  });
});

describe('reminder rules', () => {
  it('end of the working day, but never within an hour of the previous alert', () => {
    expect(local(nextReminderAt(condition(), oslo('2026-03-30T09:31'), endOfDay))).to.equal('2026-03-30T15:00');
    expect(local(nextReminderAt(condition(), oslo('2026-03-30T14:50'), endOfDay))).to.equal('2026-03-31T15:00');
    expect(local(nextReminderAt(condition(), oslo('2026-04-01T15:00'), endOfDay))).to.equal('2026-04-07T15:00');
  });

  it('or a fixed interval from config', () => {
    const hourly: AlertPolicy = { ...endOfDay, reminder: { everyMs: 3600_000 } };
    expect(local(nextReminderAt(condition(), oslo('2026-03-30T09:31'), hourly))).to.equal('2026-03-30T10:31');
  });

  it('a missing AppRec is repeated exactly when it turns negative (96 h after GenDate)', () => {
    const c = condition({ kind: 'apprec', genDate: '2026-03-30T08:00:00' });
    expect(local(nextReminderAt(c, oslo('2026-04-02T15:00'), endOfDay))).to.equal('2026-04-03T08:00');
    const before = conditionAlert('reminder', c, oslo('2026-04-03T07:59'), endOfDay);
    const after = conditionAlert('reminder', c, oslo('2026-04-03T08:00'), endOfDay);
    expect([before.severity, after.severity]).to.deep.equal(['warning', 'critical']);
  });

  it('a rejected AppRec is a single alert; its error texts never reach the alert', () => {
    const c = condition({ kind: 'apprec-rejected', appRecErrors: JSON.stringify([{ code: 'E35', text: 'Pasient Kari Hansen finnes ikke' }]) });
    expect(nextReminderAt(c, oslo('2026-03-30T10:00'), endOfDay)).to.equal(null);
    const alert = conditionAlert('firing', c, oslo('2026-03-30T10:00'), endOfDay);
    expect(alert).to.include({ kind: 'apprec-rejected', severity: 'critical', eventId: 'GW-3004' });
    expect(alert.text).to.contain('(E35)').and.not.to.contain('Kari');
  });

  it('a resolution names a coded cause only', () => {
    const coded = conditionAlert('resolved', condition({ resolvedBy: 'LOG_AVMELDING' }), new Date(), endOfDay);
    const free = conditionAlert('resolved', condition({ resolvedBy: 'svar fra Kari Hansen' }), new Date(), endOfDay);
    expect(coded.text).to.match(/^Resolved by LOG_AVMELDING\./);
    expect(free.text)
      .to.match(/^Resolved\./)
      .and.not.to.contain('Kari');
    expect(coded).to.include({ state: 'resolved', firingId: 'a-1' });
  });
});
