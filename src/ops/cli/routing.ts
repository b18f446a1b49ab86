// `routing build-index` (Kartverket's address export → address index file) and `routing explain`
// (which bydel an address goes to, and every rule's verdict). Exit codes: 0 ok, 1 failure, 2 usage.
import type { Command } from 'commander';
import { type BuildSummary, DEFAULT_MAX_MARKA_KM } from '../../routing/addressIndex/build.js';
import { buildAddressIndexFromFiles, writeAddressIndex } from '../../routing/addressIndex/files.js';
import { isSupportedEpsg } from '../../routing/addressIndex/projection.js';
import { bydelName } from '../../routing/bydeler.js';
import { loadRoutingData } from '../../routing/load.js';
import { explainBydel } from '../../routing/resolveBydel.js';
import { isoDay, osloDay } from '../../routing/validity.js';
import { configOrExit, printTable } from './common.js';

interface BuildOptions {
  addresses: string;
  polygons: string;
  out: string;
  codes?: string;
  validFrom?: string;
  validTo?: string;
  epsg: string;
  maxMarkaKm: string;
  json?: boolean;
}

interface ExplainOptions {
  street: string;
  postcode: string;
  hint?: string;
  date?: string;
  json?: boolean;
}

/** Usage errors go through commander, so they exit with 2 like unknown options do. */
const usage = (cmd: Command, message: string): never => cmd.error(`error: ${message}`, { exitCode: 2, code: 'plo.usage' });

function dayOption(cmd: Command, name: string, value: string | undefined): string | undefined {
  if (value !== undefined && !isoDay.safeParse(value).success) usage(cmd, `${name} must be a day written YYYY-MM-DD`);
  return value;
}

const label = (code: string) => `${code} ${bydelName(code)}`;

function printBuildSummary(out: string, period: string, s: BuildSummary): void {
  console.log(`address index written to ${out} (${period})`);
  const rows: Record<string, unknown>[] = [
    { what: 'addresses read', count: s.read },
    { what: 'indexed', count: s.indexed },
    ...Object.entries(s.perBydel).map(([code, n]) => ({ what: `  ${label(code)}`, count: n })),
    { what: '  of them in Sentrum (served by St. Hanshaugen)', count: s.sentrum },
    { what: '  of them in Marka (nearest bydel, flagged)', count: s.marka.total },
    { what: 'skipped: outside Oslo', count: s.skipped.outsideOslo },
    { what: 'skipped: not a street address', count: s.skipped.notStreetAddress },
    { what: 'bad rows', count: s.bad.total },
    ...Object.entries(s.bad.reasons).map(([reason, n]) => ({ what: `  ${reason}`, count: n })),
    { what: 'not indexed: street name shared by several streets in a postcode', count: s.notIndexed.ambiguousAddresses },
    { what: 'not indexed: listed twice with different bydeler', count: s.notIndexed.conflictingAddresses },
    { what: 'listed twice with the same bydel (indexed once)', count: s.duplicates },
  ];
  printTable(rows, ['what', 'count']);
  if (s.bad.firstLines.length > 0) console.log(`first bad rows at lines ${s.bad.firstLines.join(', ')}`);
  const split = s.postcodes.filter((p) => p.bydeler > 1).length;
  console.log(`\n${s.postcodes.length} postcodes, ${split} of them span several bydeler:`);
  printTable(
    s.postcodes.map((p) => ({
      postcode: p.postcode,
      addresses: p.addresses,
      bydeler: p.bydeler,
      split: Object.entries(p.perBydel)
        .sort(([, a], [, b]) => b - a)
        .map(([code, n]) => `${label(code)} ${n}`)
        .join(', '),
    })),
    ['postcode', 'addresses', 'bydeler', 'split'],
  );
}

function registerBuildIndex(routing: Command): void {
  routing
    .command('build-index')
    .description("build an address index from Kartverket's address export (CSV) and bydel polygons (GeoJSON)")
    .requiredOption('--addresses <csv>', "Kartverket's semicolon-separated address file (Geonorge: Matrikkelen - Adresse, CSV)")
    .requiredOption('--polygons <geojson>', 'bydel polygons in WGS84, named or coded (e.g. oslo_bydeler2.geojson)')
    .requiredOption('--out <file>', 'where to write the index (JSON)')
    .option('--codes <csv>', 'SSB Klass code list "code;name" for the polygon names (default: the built-in code list 3403)')
    .option('--valid-from <day>', 'first day the index applies (default: today)')
    .option('--valid-to <day>', 'first day it no longer applies (default: open-ended)')
    .option('--epsg <code>', 'coordinate system of rows without an EPSG column', '25833')
    .option('--max-marka-km <km>', 'further than this from every bydel polygon counts as outside Oslo', String(DEFAULT_MAX_MARKA_KM))
    .option('--json', 'machine-readable summary')
    .action(async (opts: BuildOptions, cmd: Command) => {
      const validFrom = dayOption(cmd, '--valid-from', opts.validFrom) ?? osloDay(new Date());
      const validTo = dayOption(cmd, '--valid-to', opts.validTo);
      if (validTo !== undefined && validTo <= validFrom) usage(cmd, '--valid-to must be after --valid-from');
      const epsg = Number(opts.epsg);
      if (!isSupportedEpsg(epsg)) usage(cmd, `--epsg ${opts.epsg} is not a supported coordinate system (25832, 25833, 25835, 5972, 5973, 5975, 4258, 4326)`);
      const maxMarkaKm = Number(opts.maxMarkaKm);
      if (!(maxMarkaKm > 0)) usage(cmd, '--max-marka-km must be a positive number');

      const { file, summary } = await buildAddressIndexFromFiles({
        addresses: opts.addresses,
        polygons: opts.polygons,
        codeList: opts.codes,
        validFrom,
        validTo,
        defaultEpsg: epsg,
        maxMarkaKm,
      });
      writeAddressIndex(file, opts.out);
      const period = `valid from ${validFrom}${validTo ? ` until ${validTo}` : ', open-ended'}`;
      if (opts.json) console.log(JSON.stringify({ out: opts.out, validFrom, validTo: validTo ?? null, summary }, null, 2));
      else printBuildSummary(opts.out, period, summary);
    });
}

function registerExplain(routing: Command): void {
  routing
    .command('explain')
    .description("which bydel an address is routed to, with every rule's verdict (uses the configured overrides and indexes)")
    .requiredOption('--street <address>', 'street name, number and letter as the EPJ writes it, e.g. "Storgata 12 B"')
    .requiredOption('--postcode <code>', 'four-digit postcode')
    .option('--hint <bydel>', 'an EPJ bydel hint (x-bydel), to see how it would weigh')
    .option('--date <day>', 'the message date, which picks the valid address index (default: today)')
    .option('--json', 'machine-readable output')
    .action((opts: ExplainOptions, cmd: Command) => {
      if (!/^\d{4}$/.test(opts.postcode.trim())) usage(cmd, '--postcode must be four digits');
      const day = dayOption(cmd, '--date', opts.date) ?? osloDay(new Date());
      const data = loadRoutingData(configOrExit());
      const patient = { idents: [], addresses: [{ type: 'H', street: opts.street, postalCode: opts.postcode.trim() }] };
      const { decision, verdicts } = explainBydel(patient, opts.hint, data, day);
      const index = data.addressIndexes?.validOn(day);
      const addressIndex = index ? { file: index.origin, validFrom: index.validFrom, validTo: index.validTo ?? null, builtAt: index.builtAt } : null;
      if (opts.json) {
        console.log(
          JSON.stringify(
            { day, decision, rules: verdicts.map((v) => ({ rule: v.rule, decided: Boolean(v.decision), verdict: v.verdict })), addressIndex },
            null,
            2,
          ),
        );
        return;
      }
      console.log(decision.decided ? `decision: ${label(decision.bydel)}, by rule ${decision.rule}` : 'decision: held for manual routing (no rule decides)');
      console.log(`rules in order, for ${day}:`);
      const winner = verdicts.find((v) => v.decision);
      printTable(
        verdicts.map((v) => ({ rule: v.rule, decides: v === winner ? 'yes (wins)' : v.decision ? 'yes' : 'no', verdict: v.verdict.replace(/^[a-z-]+: /, '') })),
        ['rule', 'decides', 'verdict'],
      );
      console.log(index ? `address index: ${index.origin} (${index.period})` : 'address index: none valid on that day');
    });
}

export function registerRoutingCommands(program: Command): Command {
  const routing = program.command('routing').description('address-level routing: build the address index, explain a decision');
  registerBuildIndex(routing);
  registerExplain(routing);
  return routing;
}
