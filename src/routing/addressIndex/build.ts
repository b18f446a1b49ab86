// Kartverket's address export + bydel polygons → address index file and a build summary.
// Every address gets the bydel that serves it: the polygon it lies in (Sentrum → St. Hanshaugen),
// or, outside every polygon (Marka), the nearest polygon, flagged `marka`. Addresses of other
// kommuner, or implausibly far from every bydel, are outside Oslo: skipped and counted.
import { getOrCreate } from '../../shared/maps.js';
import { SENTRUM, serviceBydel } from '../bydeler.js';
import type { BydelLocator, Placement } from './bydelPolygons.js';
import { type AddressIndexFile, INDEX_FORMAT, INDEX_VERSION, type IndexEntry } from './indexFile.js';
import { type AddressRow, type ColumnMap, readHeader, readRow } from './kartverketCsv.js';
import { houseKey, normaliseStreetName } from './normalise.js';
import { isSupportedEpsg, toWgs84 } from './projection.js';

export const OSLO_KOMMUNE = '0301';
/** Oslo's Marka reaches about 17 km beyond the nearest bydel polygon; further out is bad data. */
export const DEFAULT_MAX_MARKA_KM = 20;

export interface BuildOptions {
  validFrom: string;
  validTo?: string;
  /** coordinate system of rows that do not name one */
  defaultEpsg: number;
  /** further than this from every bydel polygon is outside Oslo (see DEFAULT_MAX_MARKA_KM) */
  maxMarkaKm: number;
  builtAt: Date;
  source: AddressIndexFile['source'];
  names: Record<string, string>;
}

export interface PostcodeSpan {
  postcode: string;
  addresses: number;
  /** how many serving bydeler the postcode's addresses belong to */
  bydeler: number;
  perBydel: Record<string, number>;
}

export interface BuildSummary {
  read: number;
  indexed: number;
  perBydel: Record<string, number>;
  marka: { total: number; perBydel: Record<string, number> };
  sentrum: number;
  skipped: { outsideOslo: number; notStreetAddress: number };
  bad: { total: number; reasons: Record<string, number>; firstLines: number[] };
  /** listed more than once with the same bydel: indexed once */
  duplicates: number;
  notIndexed: { ambiguousStreetNames: number; ambiguousAddresses: number; conflictingAddresses: number };
  postcodes: PostcodeSpan[];
}

type Slot = IndexEntry | 'conflict';
type Placed = { kind: 'entry'; entry: IndexEntry } | { kind: 'outside-oslo' } | { kind: 'bad'; reason: string };
const sameEntry = (a: IndexEntry, b: IndexEntry) => a.bydel === b.bydel && a.marka === b.marka && a.sentrum === b.sentrum;
const bump = (counts: Record<string, number>, key: string, by = 1) => (counts[key] = (counts[key] ?? 0) + by);

/** Accumulates rows; the index and the summary are derived from what is left at the end. */
class IndexBuilder {
  /** `postcode|street` → house key → entry */
  private readonly streets = new Map<string, Map<string, Slot>>();
  /** `postcode|street` → the distinct Kartverket streets that normalise to it */
  private readonly identities = new Map<string, Set<string>>();
  private read = 0;
  private duplicates = 0;
  private readonly skipped = { outsideOslo: 0, notStreetAddress: 0 };
  private readonly bad = { total: 0, reasons: {} as Record<string, number>, firstLines: [] as number[] };

  constructor(
    private readonly locator: BydelLocator,
    private readonly options: BuildOptions,
  ) {}

  line(text: string, lineNumber: number, columns: ColumnMap): void {
    this.read++;
    const result = readRow(text, lineNumber, columns);
    if (result.kind === 'bad') this.badRow(result.line, result.reason);
    else if (result.kind === 'not-street-address') this.skipped.notStreetAddress++;
    else this.address(result.row);
  }

  private badRow(line: number, reason: string): void {
    this.bad.total++;
    bump(this.bad.reasons, reason);
    if (this.bad.firstLines.length < 10) this.bad.firstLines.push(line);
  }

  private address(row: AddressRow): void {
    const placed = this.place(row);
    if (placed.kind === 'outside-oslo') this.skipped.outsideOslo++;
    else if (placed.kind === 'bad') this.badRow(row.line, placed.reason);
    else this.store(row, placed.entry);
  }

  private place(row: AddressRow): Placed {
    if (row.kommune !== undefined && row.kommune !== OSLO_KOMMUNE) return { kind: 'outside-oslo' };
    const epsg = row.epsg ?? this.options.defaultEpsg;
    if (!isSupportedEpsg(epsg)) return { kind: 'bad', reason: 'coordinate system is not supported' };
    const lonLat = toWgs84(epsg)(row.east, row.north);
    if (!lonLat.every(Number.isFinite)) return { kind: 'bad', reason: 'coordinates cannot be transformed' };
    const entry = this.entryFor(this.locator.place(lonLat));
    return entry ? { kind: 'entry', entry } : { kind: 'outside-oslo' };
  }

  private entryFor(placement: Placement): IndexEntry | undefined {
    if (placement.kind === 'inside') {
      const bydel = serviceBydel(placement.code) ?? placement.code;
      return placement.code === SENTRUM ? { bydel, sentrum: true } : { bydel };
    }
    if (placement.distanceKm > this.options.maxMarkaKm) return undefined;
    return { bydel: serviceBydel(placement.nearest) ?? placement.nearest, marka: true };
  }

  private store(row: AddressRow, entry: IndexEntry): void {
    const street = `${row.postcode}|${normaliseStreetName(row.street)}`;
    const identity = `${row.streetCode ?? ''}|${row.street.trim()}`;
    getOrCreate(this.identities, street, () => new Set<string>()).add(identity);
    const houses = getOrCreate(this.streets, street, () => new Map<string, Slot>());
    const house = houseKey(row.number, row.letter);
    const existing = houses.get(house);
    if (existing === undefined) houses.set(house, entry);
    else if (existing !== 'conflict' && sameEntry(existing, entry)) this.duplicates++;
    else houses.set(house, 'conflict');
  }

  finish(): { file: AddressIndexFile; summary: BuildSummary } {
    const { options } = this;
    const entries: AddressIndexFile['entries'] = {};
    const ambiguous: AddressIndexFile['ambiguous'] = {};
    const notIndexed = { ambiguousStreetNames: 0, ambiguousAddresses: 0, conflictingAddresses: 0 };
    const tally = new Tally();
    for (const [street, houses] of [...this.streets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const [postcode, name] = street.split('|');
      if ((this.identities.get(street)?.size ?? 0) > 1) {
        ambiguous[postcode] ??= [];
        ambiguous[postcode].push(name);
        notIndexed.ambiguousStreetNames++;
        notIndexed.ambiguousAddresses += houses.size;
        continue;
      }
      for (const [house, slot] of [...houses].sort(byHouse)) {
        if (slot === 'conflict') {
          notIndexed.conflictingAddresses++;
          continue;
        }
        entries[postcode] ??= {};
        entries[postcode][name] ??= {};
        entries[postcode][name][house] = slot;
        tally.add(postcode, slot);
      }
    }
    const file: AddressIndexFile = {
      format: INDEX_FORMAT,
      version: INDEX_VERSION,
      validFrom: options.validFrom,
      ...(options.validTo ? { validTo: options.validTo } : {}),
      builtAt: options.builtAt.toISOString(),
      source: options.source,
      names: options.names,
      entries,
      ambiguous,
    };
    const summary: BuildSummary = { read: this.read, ...tally.summary(), skipped: this.skipped, bad: this.bad, duplicates: this.duplicates, notIndexed };
    return { file, summary };
  }
}

const houseOrder = (key: string): [number, string] => {
  const m = /^(\d+)(.*)$/.exec(key);
  return m ? [Number(m[1]), m[2]] : [Number.MAX_SAFE_INTEGER, key];
};
const byHouse = ([a]: [string, unknown], [b]: [string, unknown]) => {
  const [na, la] = houseOrder(a);
  const [nb, lb] = houseOrder(b);
  return na - nb || la.localeCompare(lb, 'nb');
};

/** Counts of what ended up in the index: per bydel, Marka, Sentrum and per postcode. */
class Tally {
  private indexed = 0;
  private sentrum = 0;
  private readonly perBydel: Record<string, number> = {};
  private readonly marka = { total: 0, perBydel: {} as Record<string, number> };
  private readonly byPostcode = new Map<string, Record<string, number>>();

  add(postcode: string, entry: IndexEntry): void {
    this.indexed++;
    bump(this.perBydel, entry.bydel);
    if (entry.marka) {
      this.marka.total++;
      bump(this.marka.perBydel, entry.bydel);
    }
    if (entry.sentrum) this.sentrum++;
    const counts = getOrCreate(this.byPostcode, postcode, () => ({}));
    bump(counts, entry.bydel);
  }

  summary(): Pick<BuildSummary, 'indexed' | 'perBydel' | 'marka' | 'sentrum' | 'postcodes'> {
    const postcodes = [...this.byPostcode]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([postcode, perBydel]) => ({
        postcode,
        addresses: Object.values(perBydel).reduce((s, n) => s + n, 0),
        bydeler: Object.keys(perBydel).length,
        perBydel: sortedKeys(perBydel),
      }));
    return {
      indexed: this.indexed,
      perBydel: sortedKeys(this.perBydel),
      marka: { total: this.marka.total, perBydel: sortedKeys(this.marka.perBydel) },
      sentrum: this.sentrum,
      postcodes,
    };
  }
}

const sortedKeys = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));

/** Reads the export line by line (a whole-country file does not fit comfortably in memory). */
export async function buildAddressIndex(
  lines: AsyncIterable<string> | Iterable<string>,
  locator: BydelLocator,
  options: BuildOptions,
): Promise<{ file: AddressIndexFile; summary: BuildSummary }> {
  const builder = new IndexBuilder(locator, options);
  let columns: ColumnMap | undefined;
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    if (!columns) columns = readHeader(line);
    else builder.line(line, lineNumber, columns);
  }
  if (!columns) throw new Error('the address file is empty');
  return builder.finish();
}
