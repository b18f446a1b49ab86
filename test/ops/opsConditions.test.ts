// The ops alert conditions as ops would phrase them: "the DLQ is not empty", "epj.outbound is
// backing up", "no messages from the EPJ this working morning".
import { expect } from 'chai';
import { dlqCondition, queueCondition, trafficCondition } from '../../src/ops/opsAlerts.js';
import { WorkingCalendar } from '../../src/tracking/workingTime.js';

const thresholds = {
  recordDeadLetters: true,
  checkInterval: 'PT1M',
  queueDepthMax: 100,
  queueWaitMax: 'PT10M',
  noTrafficFor: 'PT2H',
  certificateWarning: 'P30D',
  certificateCheckInterval: 'PT1H',
};
const calendar = new WorkingCalendar({ timeZone: 'Europe/Oslo', start: '08:00', end: '15:00', weekdays: [1, 2, 3, 4, 5], holidayCountry: 'NO' });
const MIN = 60_000;

describe('ops alert conditions', () => {
  it('the DLQ fires while dead letters are open and clears when none are', () => {
    expect(dlqCondition(3)).to.include({ kind: 'dlq-not-empty', firing: true });
    expect(dlqCondition(0)).to.include({ kind: 'dlq-not-empty', firing: false });
  });

  it('a queue over its depth threshold fires at once, as critical', () => {
    const c = queueCondition({ queue: 'epj.outbound', messages: 101, consumers: 1 }, undefined, 0, thresholds);
    expect(c).to.include({ kind: 'queue-backlog', subject: 'epj.outbound', firing: true, severity: 'critical' });
  });

  it('messages waiting without a consumer fire only after queueWaitMax', () => {
    const q = { queue: 'epj.inbound', messages: 2, consumers: 0 };
    expect(queueCondition(q, 0, 9 * MIN, thresholds).firing).to.equal(false);
    expect(queueCondition(q, 0, 10 * MIN, thresholds)).to.include({ firing: true, severity: 'warning' });
  });

  it('no traffic counts working time only: a quiet weekend does not fire on Monday morning', () => {
    const fridayAfternoon = new Date('2026-11-20T13:30:00Z'); // 14:30 in Oslo
    // Friday 14:30–15:00 and Monday from 08:00 count; the weekend does not
    expect(trafficCondition(fridayAfternoon, new Date('2026-11-23T08:00:00Z'), calendar, thresholds).firing).to.equal(false); // Monday 09:00: 1 h 30 min
    expect(trafficCondition(fridayAfternoon, new Date('2026-11-23T08:31:00Z'), calendar, thresholds).firing).to.equal(true); // Monday 09:31: 2 h 1 min
  });

  it('an evening without traffic is not an alert', () => {
    const lastAt1500 = new Date('2026-11-23T14:00:00Z');
    expect(trafficCondition(lastAt1500, new Date('2026-11-23T22:00:00Z'), calendar, thresholds).firing).to.equal(false);
  });
});
