// Working time as the kommune's answer deadline counts it: 08:00–15:00 on Norwegian working days,
// Europe/Oslo wall-clock time. Years are chosen so that the calendar (date-holidays) decides.
import { expect } from 'chai';
import { DateTime } from 'luxon';
import { WorkingCalendar } from '../../src/tracking/workingTime.js';

const OSLO = {
  timeZone: 'Europe/Oslo',
  start: '08:00',
  end: '15:00',
  weekdays: [1, 2, 3, 4, 5],
  holidayCountry: 'NO',
  halfDays: { '12-24': '12:00', '12-31': '12:00' },
};
const calendar = new WorkingCalendar(OSLO);
const H = 3600_000;

/** Oslo wall-clock time → instant, and back, so expectations read like the procedure. */
const oslo = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toJSDate();
const local = (d: Date) => DateTime.fromJSDate(d, { zone: 'Europe/Oslo' }).toFormat("yyyy-MM-dd'T'HH:mm");
const dueAfter = (sent: string, ms = 2 * H) => local(calendar.addWorkingTime(oslo(sent), ms));

describe('working time (08:00–15:00 Mon–Fri, Europe/Oslo, Norwegian public holidays)', () => {
  it('a notice sent Friday 14:30 with PT2H is due Monday 09:30', () => {
    expect(dueAfter('2026-03-13T14:30')).to.equal('2026-03-16T09:30');
  });

  it('over the spring DST weekend the deadline stays 09:30 local (07:30Z, not 08:30Z)', () => {
    const due = calendar.addWorkingTime(oslo('2026-03-27T14:30'), 2 * H);
    expect(local(due)).to.equal('2026-03-30T09:30');
    expect(due.toISOString()).to.equal('2026-03-30T07:30:00.000Z');
  });

  it('over the autumn DST weekend likewise (08:30Z after clocks go back)', () => {
    const due = calendar.addWorkingTime(oslo('2026-10-23T14:30'), 2 * H);
    expect(local(due)).to.equal('2026-10-26T09:30');
    expect(due.toISOString()).to.equal('2026-10-26T08:30:00.000Z');
  });

  it('16 May 17:00 → 17 May is a holiday → the clock starts 18 May 08:00 (2028: Tue, Wed, Thu)', () => {
    expect(calendar.isWorkingDay(DateTime.fromISO('2028-05-16', { zone: 'Europe/Oslo' }))).to.equal(true);
    expect(calendar.isWorkingDay(DateTime.fromISO('2028-05-17', { zone: 'Europe/Oslo' }))).to.equal(false);
    expect(local(calendar.periodAtOrAfter(oslo('2028-05-16T17:00')).start)).to.equal('2028-05-18T08:00');
    expect(dueAfter('2028-05-16T17:00')).to.equal('2028-05-18T10:00');
  });

  it('in 2024 the same notice waits for Tuesday 21 May: 17 May is a Friday, 20 May is 2. pinsedag', () => {
    expect(dueAfter('2024-05-16T17:00')).to.equal('2024-05-21T10:00');
  });

  it('a notice sent on skjærtorsdag starts its clock on the Tuesday after Easter (2026)', () => {
    expect(dueAfter('2026-04-02T10:00')).to.equal('2026-04-07T10:00');
  });

  it('a notice sent the afternoon before skjærtorsdag has one hour left for after Easter', () => {
    expect(dueAfter('2026-04-01T14:00')).to.equal('2026-04-07T09:00');
  });

  it('a notice sent early in the morning starts at 08:00; one sent at 08:00 exactly too', () => {
    expect(dueAfter('2026-03-10T06:12')).to.equal('2026-03-10T10:00');
    expect(dueAfter('2026-03-10T08:00')).to.equal('2026-03-10T10:00');
  });

  it('a deadline that ends exactly at 15:00 stays on that day', () => {
    expect(dueAfter('2026-03-10T13:00')).to.equal('2026-03-10T15:00');
  });

  it('a long duration spans several working days (PT24H of working time = 3 days and 3 hours)', () => {
    expect(dueAfter('2026-03-09T08:00', 24 * H)).to.equal('2026-03-12T11:00');
  });

  it('measures working time between two instants (Friday 14:30 → Monday 09:30 = 2 h)', () => {
    expect(calendar.workingTimeBetween(oslo('2026-03-27T14:30'), oslo('2026-03-30T09:30'))).to.equal(2 * H);
    expect(calendar.workingTimeBetween(oslo('2026-03-30T09:30'), oslo('2026-03-27T14:30'))).to.equal(0);
  });

  it('julaften afternoon is not working time: a notice sent 11:00 on 24 December 2026 with PT2H is due Monday 28 December 09:00', () => {
    expect(dueAfter('2026-12-24T11:00')).to.equal('2026-12-28T09:00');
    expect(dueAfter('2026-12-24T13:00'), 'sent in the afternoon: the clock starts after Christmas').to.equal('2026-12-28T10:00');
  });

  it('nyttårsaften likewise: sent 13:00 on 31 December 2026, the clock starts Monday 4 January 2027', () => {
    expect(dueAfter('2026-12-31T13:00')).to.equal('2027-01-04T10:00');
    expect(calendar.workingTimeBetween(oslo('2026-12-31T08:00'), oslo('2026-12-31T15:00'))).to.equal(4 * H);
  });

  it('half-days are configurable: without them julaften is a whole working day; one ending at or before the start is no working day', () => {
    const whole = new WorkingCalendar({ ...OSLO, halfDays: {} });
    expect(local(whole.addWorkingTime(oslo('2026-12-24T11:00'), 2 * H))).to.equal('2026-12-24T13:00');
    const closed = new WorkingCalendar({ ...OSLO, halfDays: { '12-24': '08:00' } });
    expect(local(closed.addWorkingTime(oslo('2026-12-24T11:00'), 2 * H))).to.equal('2026-12-28T10:00');
    expect(() => new WorkingCalendar({ ...OSLO, halfDays: { '24-12': '12:00' } })).to.throw(/MM-DD/);
  });

  it('hours, weekdays and zone are configurable', () => {
    const late = new WorkingCalendar({ ...OSLO, start: '09:00', end: '17:00', weekdays: [1, 2, 3, 4, 5, 6] });
    expect(local(late.addWorkingTime(oslo('2026-03-13T16:30'), 2 * H))).to.equal('2026-03-14T10:30');
    const helsinki = new WorkingCalendar({ ...OSLO, timeZone: 'Europe/Helsinki', holidayCountry: 'FI' });
    expect(helsinki.addWorkingTime(oslo('2026-03-10T06:00'), H).toISOString()).to.equal('2026-03-10T07:00:00.000Z');
  });

  it('reads message times without offset in the zone, and refuses a calendar without working time', () => {
    expect(calendar.parseLocal('2026-03-27T14:30:00')?.toISOString()).to.equal('2026-03-27T13:30:00.000Z');
    expect(calendar.parseLocal('2026-03-27T14:30:00+00:00')?.toISOString()).to.equal('2026-03-27T14:30:00.000Z');
    expect(() => new WorkingCalendar({ ...OSLO, start: '15:00', end: '08:00' })).to.throw(/ends/);
  });
});
