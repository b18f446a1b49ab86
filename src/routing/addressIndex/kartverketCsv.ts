// Kartverket's address export (Geonorge "Matrikkelen - Adresse", CSV): semicolon-separated,
// UTF-8, one header row. Current files name their columns `lokalId;kommunenummer;…;adressenavn;
// nummer;bokstav;…;EPSG-kode;Nord;Øst;postnummer;poststed;…`; older and hand-made extracts vary
// the case and spelling, so columns are found by name, never by position.

import { splitDelimited } from '../../shared/csv.js';

export interface AddressRow {
  /** 1-based line number in the file, for bad-row reports (never the address itself) */
  line: number;
  kommune?: string;
  /** Kartverket's id of the street within the kommune: tells two equally named streets apart */
  streetCode?: string;
  street: string;
  number: number;
  letter?: string;
  postcode: string;
  north: number;
  east: number;
  /** EPSG code from the row; undefined when the file has no such column or the cell is empty */
  epsg?: number;
}

export type RowResult =
  | { kind: 'address'; row: AddressRow }
  /** a matrikkeladresse (gårds-/bruksnummer only) or a row without street name or number */
  | { kind: 'not-street-address' }
  | { kind: 'bad'; line: number; reason: string };

type Column = 'kommune' | 'type' | 'streetCode' | 'street' | 'number' | 'letter' | 'postcode' | 'north' | 'east' | 'epsg' | 'sosiCrs';

/** Header names compared without case, spaces, hyphens or underscores. */
const COLUMN_NAMES: Record<Column, string[]> = {
  kommune: ['kommunenummer', 'kommunenr'],
  type: ['adressetype'],
  streetCode: ['adressekode'],
  street: ['adressenavn', 'gatenavn'],
  number: ['nummer', 'husnummer'],
  letter: ['bokstav', 'husbokstav'],
  postcode: ['postnummer', 'postnr'],
  north: ['nord'],
  east: ['øst', 'ost', 'oest'],
  epsg: ['epsgkode', 'epsg'],
  sosiCrs: ['koordinatsystemkode', 'koordinatsystem'],
};
const REQUIRED: Column[] = ['street', 'number', 'postcode', 'north', 'east'];

/** SOSI coordinate system codes used by older exports, as EPSG codes. */
const SOSI_TO_EPSG: Record<string, number> = { '22': 25832, '23': 25833, '25': 25835, '84': 4258 };

export type ColumnMap = Partial<Record<Column, number>>;

const headerKey = (name: string) =>
  name
    .replace(/^\uFEFF/, '')
    .trim()
    .toLocaleLowerCase('nb')
    .replace(/[\s\-_"]/g, '');

/** Throws with the missing column names when the header is not an address export. */
export function readHeader(line: string): ColumnMap {
  const keys = splitRow(line).map(headerKey);
  const map: ColumnMap = {};
  for (const [column, names] of Object.entries(COLUMN_NAMES) as [Column, string[]][]) {
    const i = keys.findIndex((k) => names.includes(k));
    if (i >= 0) map[column] = i;
  }
  const missing = REQUIRED.filter((c) => map[c] === undefined).map((c) => COLUMN_NAMES[c][0]);
  if (missing.length > 0) throw new Error(`the address file has no column ${missing.join(', ')} (is it Kartverket's semicolon-separated address CSV?)`);
  return map;
}

/** Semicolon-separated cells; a cell may be double-quoted and then contain semicolons. */
export const splitRow = (line: string): string[] => splitDelimited(line, ';');

/** Norwegian exports may write decimals with a comma. */
const decimal = (s: string | undefined): number => (s === undefined || s.trim() === '' ? Number.NaN : Number(s.trim().replace(',', '.')));

function epsgOf(cell: (c: Column) => string | undefined): number | undefined | 'unknown' {
  const epsg = cell('epsg');
  if (epsg) return /^(EPSG:)?\d+$/i.test(epsg) ? Number(epsg.replace(/^EPSG:/i, '')) : 'unknown';
  const sosi = cell('sosiCrs');
  if (sosi) return SOSI_TO_EPSG[sosi] ?? 'unknown';
  return undefined;
}

export function readRow(line: string, lineNumber: number, columns: ColumnMap): RowResult {
  const cells = splitRow(line);
  const cell = (c: Column) => {
    const i = columns[c];
    const v = i === undefined ? undefined : cells[i]?.trim();
    return v === '' ? undefined : v;
  };
  const bad = (reason: string): RowResult => ({ kind: 'bad', line: lineNumber, reason });
  if (cells.length < Math.max(...(Object.values(columns) as number[])) + 1) return bad('too few columns');
  if (cell('type')?.toLocaleLowerCase('nb') === 'matrikkeladresse') return { kind: 'not-street-address' };
  const street = cell('street');
  const numberText = cell('number');
  if (!street || !numberText) return { kind: 'not-street-address' };
  if (!/^\d{1,5}$/.test(numberText)) return bad('house number is not a number');
  const postcode = cell('postcode')?.padStart(4, '0');
  if (!postcode || !/^\d{4}$/.test(postcode)) return bad('postcode is missing or not four digits');
  const north = decimal(cell('north'));
  const east = decimal(cell('east'));
  if (!Number.isFinite(north) || !Number.isFinite(east)) return bad('coordinates are missing or not numbers');
  const epsg = epsgOf(cell);
  if (epsg === 'unknown') return bad('coordinate system code is not an EPSG or SOSI code');
  const letter = cell('letter');
  const kommune = cell('kommune')?.padStart(4, '0');
  return {
    kind: 'address',
    row: { line: lineNumber, kommune, streetCode: cell('streetCode'), street, number: Number(numberText), letter, postcode, north, east, epsg },
  };
}
