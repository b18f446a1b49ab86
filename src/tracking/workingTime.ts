// Working time for deadlines (DESIGN §3 C): by default 08:00–15:00 Monday–Friday in
// Europe/Oslo, Norwegian public holidays excluded. Every boundary is computed in the zone's
// wall-clock time (luxon), never with a fixed UTC offset, so a daylight-saving change moves no
// deadline: 08:00 is 08:00 on both sides of the switch.
import Holidays from 'date-holidays';
import { DateTime } from 'luxon';
import { isoDate } from '../shared/dates.js';

export interface WorkingTimeConfig {
  /** IANA zone the working hours are in */
  timeZone: string;
  /** "HH:MM", local wall-clock time */
  start: string;
  end: string;
  /** ISO weekdays that are working days: 1 = Monday … 7 = Sunday */
  weekdays: number[];
  /** ISO 3166 country whose public holidays (date-holidays, type "public") are not working days */
  holidayCountry: string;
  /**
   * days that end early, "MM-DD" → "HH:MM" (julaften and nyttårsaften: 12:00 by default); an end at
   * or before `start` makes the day no working day
   */
  halfDays?: Record<string, string>;
}

export interface WorkingPeriod {
  start: Date;
  end: Date;
}

/** Far more than any gap between working days; only a calendar without working days reaches it. */
const MAX_DAYS_SEARCHED = 370;

const minutesOf = (hhmm: string): number => {
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm);
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59) throw new Error(`working time "${hhmm}" is not HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
};

export class WorkingCalendar {
  private readonly holidays: Holidays;
  private readonly holidaysByYear = new Map<number, Set<string>>();
  private readonly startMinute: number;
  private readonly endMinute: number;

  constructor(private readonly config: WorkingTimeConfig) {
    this.startMinute = minutesOf(config.start);
    this.endMinute = minutesOf(config.end);
    if (this.endMinute <= this.startMinute) throw new Error(`working time ends (${config.end}) before it starts (${config.start})`);
    if (!DateTime.now().setZone(config.timeZone).isValid) throw new Error(`unknown time zone ${config.timeZone}`);
    if (config.weekdays.length === 0) throw new Error('working time needs at least one weekday');
    for (const [day, end] of Object.entries(config.halfDays ?? {})) {
      if (!/^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/.test(day)) throw new Error(`half-day "${day}" is not MM-DD`);
      minutesOf(end);
    }
    this.holidays = new Holidays(config.holidayCountry);
  }

  get timeZone(): string {
    return this.config.timeZone;
  }

  /** A working day: one of the configured weekdays, not a public holiday (`day` in the zone), and not a half-day that ends before it starts. */
  isWorkingDay(day: DateTime): boolean {
    return this.config.weekdays.includes(day.weekday) && !this.publicHolidays(day.year).has(isoDate(day)) && this.endMinuteOn(day) > this.startMinute;
  }

  /** The working period that contains `at`, or else the first one after it. */
  periodAtOrAfter(at: Date): WorkingPeriod {
    let day = DateTime.fromJSDate(at, { zone: this.config.timeZone }).startOf('day');
    for (let i = 0; i < MAX_DAYS_SEARCHED; i++, day = day.plus({ days: 1 })) {
      if (!this.isWorkingDay(day)) continue;
      const period = this.periodOn(day);
      if (at < period.end) return period;
    }
    throw new Error(`no working day within ${MAX_DAYS_SEARCHED} days of ${at.toISOString()}`);
  }

  /**
   * `durationMs` of working time after `start`. Time outside the working periods does not count,
   * so a notice sent in the evening, at a weekend or on a holiday starts its clock at the next
   * working period.
   */
  addWorkingTime(start: Date, durationMs: number): Date {
    let cursor = start;
    let left = durationMs;
    for (;;) {
      const period = this.periodAtOrAfter(cursor);
      const from = Math.max(cursor.getTime(), period.start.getTime());
      const available = period.end.getTime() - from;
      if (left <= available) return new Date(from + left);
      left -= available;
      cursor = period.end;
    }
  }

  /** How much working time lies between `from` and `to` (0 when `to` is not after `from`). */
  workingTimeBetween(from: Date, to: Date): number {
    let total = 0;
    let cursor = from;
    while (cursor < to) {
      const period = this.periodAtOrAfter(cursor);
      if (period.start >= to) break;
      const start = Math.max(cursor.getTime(), period.start.getTime());
      const end = Math.min(to.getTime(), period.end.getTime());
      total += end - start;
      cursor = period.end;
    }
    return total;
  }

  /** The calendar date of `at` in the working-time zone (YYYY-MM-DD). */
  localDate(at: Date): string {
    return isoDate(DateTime.fromJSDate(at, { zone: this.config.timeZone }));
  }

  /**
   * An instant from a time as messages carry it (MsgHead GenDate, TidspunktForHendelse): a local
   * date-time without offset is read in the working-time zone; one with an offset is taken as is.
   */
  parseLocal(text: string): Date | undefined {
    const parsed = DateTime.fromISO(text, { zone: this.config.timeZone, setZone: false });
    return parsed.isValid ? parsed.toJSDate() : undefined;
  }

  private periodOn(day: DateTime): WorkingPeriod {
    const at = (minute: number) => day.set({ hour: Math.floor(minute / 60), minute: minute % 60, second: 0, millisecond: 0 }).toJSDate();
    return { start: at(this.startMinute), end: at(this.endMinuteOn(day)) };
  }

  private endMinuteOn(day: DateTime): number {
    const early = this.config.halfDays?.[day.toFormat('MM-dd')];
    return early === undefined ? this.endMinute : Math.min(this.endMinute, minutesOf(early));
  }

  private publicHolidays(year: number): Set<string> {
    let set = this.holidaysByYear.get(year);
    if (!set) {
      // date-holidays gives each holiday's local date as "YYYY-MM-DD 00:00:00".
      set = new Set(
        this.holidays
          .getHolidays(year)
          .filter((h) => h.type === 'public')
          .map((h) => h.date.slice(0, 10)),
      );
      this.holidaysByYear.set(year, set);
    }
    return set;
  }
}
