// The national figures a bydel compares its overtid indicators with: Helsedirektoratet's report on
// the discharge process (../shared/sources/helsedirektoratet-rapport-utskrivningsprosessen.txt),
// NPR data for 2019-2020, Helse Midt-Norge RHF left out by the report for missing data. Copied
// from the report's appendix tables as printed (counts and percentages); nothing is computed here
// except where `derived` says how. The text has no page numbers: each figure names its section
// and table. Read with docs/deadlines-and-alerts.md "Indicators beside the national figures".

export interface NationalFigure {
  /** percent, as printed in the report */
  percent: number;
  /** the count and its denominator, as printed */
  count: number;
  of: number;
  source: string;
}

export const NATIONAL_SOURCE =
  'Helsedirektoratet, «Utskrivningsprosessen» (utredning, Nasjonal helse- og sykehusplan 2020–2023), Vedlegg 3: NPR 2019–2020, Hele Norge uten Helse Midt-Norge RHF';

/** Tabell 11 / Tabell 8: utskrivningsklar notices 2019-2020 (two years). */
export const NATIONAL_NOTICES_2019_2020 = {
  count: 162079,
  source: 'Vedlegg 3.2.1 Tabell 8 and Vedlegg 3.4 Tabell 11, «Hele Norge*»: 162.079 meldinger 2019–2020',
  /** ≈81,000 a year: the two years' count halved (derived here, not printed in the report) */
  derivedPerYear: 81040,
} as const;

export const NATIONAL = {
  /** Tabell 10: time of day the notice was sent (08:00-16:00 / 16:01-00:00 / 00:01-07:59) */
  sentDay: { percent: 94.9, count: 153828, of: 162079, source: 'Vedlegg 3.3 Tabell 10: klokken 08:00–16:00, 153.828 (94,9 %)' },
  sentEvening: { percent: 2.6, count: 4149, of: 162079, source: 'Vedlegg 3.3 Tabell 10: klokken 16:01–00:00, 4.149 (2,6 %)' },
  sentNight: { percent: 2.5, count: 4102, of: 162079, source: 'Vedlegg 3.3 Tabell 10: klokken 00:01–07:59, 4.102 (2,5 %)' },
  /** Tabell 11: avmeldinger of the notices (NPR keeps the last notice of an episode, Vedlegg 3.8) */
  avmeldt: { percent: 6.1, count: 9820, of: 162079, source: 'Vedlegg 3.4 Tabell 11: 9.820 avmeldinger av 162.079 meldinger (6,1 %)' },
  /** Tabell 12: died in hospital after the notice */
  died: { percent: 0.5, count: 491, of: 96694, source: 'Vedlegg 3.5 Tabell 12: 491 døde av 96.694 meldte (0,5 %)' },
  /** Tabell 15: time from the notice to registered discharge; `of` is the sum of the row's four counts (not printed) */
  discharged24h: { percent: 90.4, count: 146387, of: 161952, source: 'Vedlegg 3.7.1 Tabell 15: innen 24 timer, 146.387 (90,4 %)' },
  discharged2to7d: { percent: 8.3, count: 13427, of: 161952, source: 'Vedlegg 3.7.1 Tabell 15: 2–7 dager, 13.427 (8,3 %)' },
  discharged8to30d: { percent: 1.1, count: 1826, of: 161952, source: 'Vedlegg 3.7.1 Tabell 15: 8–30 dager, 1.826 (1,1 %)' },
  dischargedOver30d: { percent: 0.2, count: 312, of: 161952, source: 'Vedlegg 3.7.1 Tabell 15: over 30 dager, 312 (0,2 %)' },
} as const satisfies Record<string, NationalFigure>;

export type NationalIndicator = keyof typeof NATIONAL;
