// `report overtid`: per bydel, how the kommune answered utskrivningsklar notices and how many
// overtidige døgn that made (README "Overtid report"). CSV and JSON for machines, HTML to mail.
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DateTime } from 'luxon';
import { AddressRegister } from '../../routing/addressRegister.js';
import { bydelName } from '../../routing/bydeler.js';
import { openDatabase } from '../../tracking/db.js';
import { workingCalendar } from '../../tracking/deadlines.js';
import { loadLedger, type OvertidRow, overtidReport } from '../../tracking/overtid.js';
import { Store } from '../../tracking/store.js';
import { configOrExit } from './common.js';

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

export function toCsv(rows: OvertidRow[]): string {
  return [COLUMNS.join(','), ...rows.map(withName).map((r) => COLUMNS.map((c) => csvCell(r[c])).join(','))].join('\n');
}

const html = (s: unknown) => String(s ?? '').replace(/[&<>"]/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot' }[c]};`);

export function toHtml(rows: OvertidRow[], from: string, to: string): string {
  const head = COLUMNS.map((c) => `<th>${html(c)}</th>`).join('');
  const body = rows
    .map(withName)
    .map((r) => `<tr>${COLUMNS.map((c) => `<td>${html(r[c])}</td>`).join('')}</tr>`)
    .join('\n');
  return `<!doctype html>\n<html lang="no"><meta charset="utf-8"><title>Overtid ${html(from)}–${html(to)}</title>\n<table>\n<tr>${head}</tr>\n${body}\n</table></html>`;
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
  program
    .command('report')
    .description('reports from the store')
    .command('overtid')
    .description('utskrivningsklar notices per bydel: answered within deadline, median/p90 answer time (working time), unanswered, avmeldt, overtidige døgn')
    .requiredOption('--from <date>', 'first notice date (YYYY-MM-DD, local)', localDate)
    .requiredOption('--to <date>', 'last notice date (YYYY-MM-DD, local), inclusive', localDate)
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'json', 'html']).default('csv'))
    .action(async (opts: { from: string; to: string; format: 'csv' | 'json' | 'html' }) => {
      if (opts.from > opts.to) throw new InvalidArgumentError('--from must not be after --to');
      const config = configOrExit();
      const store = new Store(await openDatabase(config.database.url));
      try {
        const entries = await loadLedger(store, workingCalendar(config), {
          from: opts.from,
          to: opts.to,
          now: new Date(),
          bydelOfHerId: bydelLookup(config.routing.addressRegisterFile),
        });
        const rows = overtidReport(entries);
        if (opts.format === 'json') console.log(JSON.stringify({ from: opts.from, to: opts.to, bydeler: rows.map(withName), notices: entries }, null, 2));
        else console.log(opts.format === 'csv' ? toCsv(rows) : toHtml(rows, opts.from, opts.to));
      } finally {
        await store.close();
      }
    });
}
