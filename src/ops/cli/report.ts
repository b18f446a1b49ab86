// `report overtid`: per bydel, how the kommune answered utskrivningsklar notices, the candidate and
// payable overliggerdøgn inside the period, and the indicators beside Helsedirektoratet's national
// figures (docs/deadlines-and-alerts.md "Overtid report"). CSV and JSON for machines, HTML to mail.
// `report overtid settle`: the date the kommune offered a place, recorded by a caseworker.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DateTime } from 'luxon';
import { AddressRegister } from '../../routing/addressRegister.js';
import { bydelName } from '../../routing/bydeler.js';
import { openDatabase } from '../../tracking/db.js';
import { workingCalendar } from '../../tracking/deadlines.js';
import { NATIONAL, NATIONAL_NOTICES_2019_2020, NATIONAL_SOURCE } from '../../tracking/nationalFigures.js';
import { loadPeriodLedger, nationalRow, type OvertidRow, overtidReport } from '../../tracking/overtid.js';
import { Store } from '../../tracking/store.js';
import { toHtmlReport } from '../overtidHtml.js';
import { settleNotice } from '../overtidSettle.js';
import { configOrExit } from './common.js';
import { actorName, failed, printJson, withStore } from './opsContext.js';

const COLUMNS: (keyof OvertidRow | 'bydelName')[] = [
  'bydel',
  'bydelName',
  'notices',
  'answeredWithinDeadline',
  'medianAnswerWorkingMinutes',
  'p90AnswerWorkingMinutes',
  'unanswered',
  'avmeldt',
  'overtidigeDogn',
  'carriedOver',
  'candidateDogn',
  'payableDogn',
  'unsettledDogn',
  'preconditionsMissing',
  'preconditionsUnknown',
  'sentDayPct',
  'sentEveningPct',
  'sentNightPct',
  'avmeldtPct',
  'discharged24hPct',
  'discharged2to7dPct',
  'discharged8to30dPct',
  'dischargedOver30dPct',
  'diedPct',
  'answeredWithinDeadlinePct',
];

const localDate = (value: string) => {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || !DateTime.fromISO(value).isValid) throw new InvalidArgumentError('expected a date YYYY-MM-DD');
  return value;
};

const withName = (r: OvertidRow) => ({ ...r, bydelName: r.bydel === 'alle' ? 'Alle bydeler' : bydelName(r.bydel) });

const csvCell = (v: unknown) => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** One line per bydel, the total `alle`, then `nasjonalt`: Helsedirektoratet's percentages (the other cells empty). */
export function toCsv(rows: OvertidRow[]): string {
  const national: Partial<Record<(typeof COLUMNS)[number], unknown>> = {
    bydel: 'nasjonalt',
    bydelName: 'Hele Norge (Helsedirektoratet; NPR 2019–2020)',
    ...nationalRow(),
  };
  const lines = rows.map(withName).map((r) => COLUMNS.map((c) => csvCell(r[c])).join(','));
  return [COLUMNS.join(','), ...lines, COLUMNS.map((c) => csvCell(national[c])).join(',')].join('\n');
}

/** The bydel of a receiver kept as the EPJ addressed it: from the address register, if it loads. */
function bydelLookup(file: string): (herId: string) => string | undefined {
  try {
    const register = AddressRegister.load(file);
    return (herId) => register.get(herId)?.bydel ?? undefined;
  } catch {
    return () => undefined;
  }
}

export function registerReportCommands(program: Command): void {
  const overtid = program
    .command('report')
    .description('reports from the store')
    .command('overtid')
    .description(
      'utskrivningsklar notices per bydel: answer times, candidate and payable overliggerdøgn inside the period, preconditions, indicators beside the national figures',
    )
    // required, but not by commander: `report overtid settle` does not take them
    .option('--from <date>', 'first date of the period (YYYY-MM-DD, local); required', localDate)
    .option('--to <date>', 'last date of the period (YYYY-MM-DD, local), inclusive; required', localDate)
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'json', 'html']).default('csv'))
    .action(async (opts: { from?: string; to?: string; format: 'csv' | 'json' | 'html' }) => {
      if (!opts.from || !opts.to) return overtid.error(`error: required option '--${opts.from ? 'to' : 'from'} <date>' not specified`);
      if (opts.from > opts.to) throw new InvalidArgumentError('--from must not be after --to');
      const config = configOrExit();
      const store = new Store(await openDatabase(config.database.url));
      try {
        const ledger = await loadPeriodLedger(store, workingCalendar(config), {
          from: opts.from,
          to: opts.to,
          now: new Date(),
          bydelOfHerId: bydelLookup(config.routing.addressRegisterFile),
        });
        const rows = overtidReport(ledger.entries, ledger.carriedOver);
        if (opts.format === 'json')
          console.log(
            JSON.stringify(
              {
                from: opts.from,
                to: opts.to,
                bydeler: rows.map(withName),
                national: { source: NATIONAL_SOURCE, notices: NATIONAL_NOTICES_2019_2020, figures: NATIONAL },
                notices: ledger.entries,
                carriedOver: ledger.carriedOver,
              },
              null,
              2,
            ),
          );
        else console.log(opts.format === 'csv' ? toCsv(rows) : toHtmlReport(rows.map(withName), ledger, opts.from, opts.to));
      } finally {
        await store.close();
      }
    });
  overtid
    .command('settle')
    .description('record the date the kommune offered a place for an answered notice: døgn from then on are not payable (audited, on the timeline)')
    .argument('<msgId>', 'MsgId of the utskrivningsklar notice (the one in force for the stay)')
    .requiredOption('--offered <date>', 'the date the kommune offered a place (YYYY-MM-DD, local)', localDate)
    .requiredOption('--reason <text>', 'what the kommune answered, in short (audited; no personal data)')
    .option('--actor <name>', 'who records it, for the audit trail (default: the OS user)')
    .option('--json', 'machine-readable output')
    .action((msgId: string, o: { offered: string; reason: string; actor?: string; json?: boolean }) =>
      withStore(async ({ store }) => {
        const r = await settleNotice(store, msgId, o.offered, { actor: actorName(o.actor), via: 'cli', reason: o.reason });
        if (!r.ok) return failed(r, o.json === true);
        if (o.json) return printJson(r.value);
        console.log(`${msgId} settled: place offered ${o.offered}${r.value.replaced ? ` (was ${r.value.replaced})` : ''}; døgn from then on are not payable`);
      }),
    );
}
