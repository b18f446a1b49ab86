// Validity periods of versioned routing data (address index files, address register entries),
// so that a change of bydel borders or receiving services is a data change with a start date.
// Days are Oslo calendar days (YYYY-MM-DD). validFrom is inclusive and validTo exclusive, as in
// SSB Klass versions: one period ends on the day the next one begins.
import { z } from 'zod';

export const isoDay = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a day written YYYY-MM-DD')
  .refine((s) => !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) && new Date(`${s}T00:00:00Z`).toISOString().startsWith(s), 'is not a calendar day');

export interface ValidityPeriod {
  validFrom?: string;
  validTo?: string;
}

/** ISO days compare correctly as strings. */
export const isValidOn = (period: ValidityPeriod, day: string): boolean =>
  (period.validFrom === undefined || period.validFrom <= day) && (period.validTo === undefined || day < period.validTo);

const OSLO_DAY = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Oslo', year: 'numeric', month: '2-digit', day: '2-digit' });

/** The calendar day in Oslo at an instant (en-CA formats as YYYY-MM-DD). */
export const osloDay = (instant: Date): string => OSLO_DAY.format(instant);

/**
 * The day a message belongs to: its GenDate. A GenDate without a zone is Norwegian local time
 * (as EPJs write it), so its date part is the day; one with a zone is converted to Oslo time.
 * Without a readable GenDate the message belongs to the day it is processed.
 */
export function messageDay(genDate: string | undefined, now: Date): string {
  const local = /^(\d{4}-\d{2}-\d{2})(T[\d:.]+)?$/.exec(genDate?.trim() ?? '');
  if (local && isoDay.safeParse(local[1]).success) return local[1];
  const instant = genDate ? new Date(genDate) : undefined;
  return instant && !Number.isNaN(instant.getTime()) ? osloDay(instant) : osloDay(now);
}
