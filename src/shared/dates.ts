// luxon returns null from its formatters when a DateTime is invalid. Where the DateTime comes
// from a valid instant or an already validated date, an invalid one is a programming error:
// these say so instead of letting a null through as a string.
import type { DateTime } from 'luxon';

function valid(dt: DateTime, text: string | null): string {
  if (text === null) throw new Error(`invalid date-time: ${dt.invalidReason ?? 'unknown reason'}`);
  return text;
}

/** The calendar date of a valid DateTime (YYYY-MM-DD). */
export const isoDate = (dt: DateTime): string => valid(dt, dt.toISODate());

/** The ISO-8601 date-time of a valid DateTime. */
export const isoDateTime = (dt: DateTime): string => valid(dt, dt.toISO());
