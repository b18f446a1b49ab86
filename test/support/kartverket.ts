// Synthetic address registers in Kartverket's CSV format, placed on the real Oslo bydel
// polygons: inside known polygons, a few metres either side of a border, in Marka, and outside
// Oslo. Where a point "really" is comes from a small even-odd test written here, independent of
// the geometry library the gateway uses, so the tests check the gateway against a second opinion.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import proj4 from 'proj4';
import { SHARED } from './paths.js';

export const BYDEL_POLYGONS = resolve(SHARED, 'data/oslokommune-bydelsfakta_oslo_bydeler2_PBE2013.geojson');
export const SSB_CODES = resolve(SHARED, 'data/ssb_bydeler_klass1168_navikt-digihot-oppslag.csv');
const NOR_MAPS_BYDELER = resolve(SHARED, 'data/nor-maps_bydel_xl.geojson');
const NOR_MAPS_POSTCODES = resolve(SHARED, 'data/nor-maps_zip_xl_oslo-subset.geojson');

/** The header of Geonorge's "Matrikkelen - Adresse" CSV export (vegadresse columns). */
export const KARTVERKET_HEADER =
  'lokalId;kommunenummer;kommunenavn;adressetype;adressetilleggsnavn;adressetilleggsnavnKilde;adressekode;adressenavn;nummer;bokstav;gardsnummer;bruksnummer;festenummer;undernummer;adresseTekst;adresseTekstUtenAdressetilleggsnavn;EPSG-kode;Nord;Øst;postnummer;poststed;oppdateringsdato';

type Ring = [number, number][];
type Rings = Ring[]; // outer ring, then holes
export interface Area {
  code: string;
  polygons: Rings[];
  bbox: [number, number, number, number];
}

/** Deterministic pseudo-random numbers (mulberry32), so a failing case can be rerun. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function inRing([x, y]: [number, number], ring: Ring): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

export const inArea = (p: [number, number], a: Area): boolean =>
  p[0] >= a.bbox[0] &&
  p[0] <= a.bbox[2] &&
  p[1] >= a.bbox[1] &&
  p[1] <= a.bbox[3] &&
  a.polygons.some((rings) => inRing(p, rings[0]) && !rings.slice(1).some((h) => inRing(p, h)));

function toArea(code: string, geometry: { type: string; coordinates: unknown }): Area {
  const polygons = (geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates) as Rings[];
  const xs = polygons.flatMap((r) => r[0].map((c) => c[0]));
  const ys = polygons.flatMap((r) => r[0].map((c) => c[1]));
  return { code, polygons, bbox: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] };
}

type Geometry = { type: string; coordinates: unknown };
/** The features of a GeoJSON FeatureCollection file, with the properties `P` the tests read. */
const features = <P>(file: string): { properties: P; geometry: Geometry }[] => JSON.parse(readFileSync(file, 'utf8')).features;

/** Oslo kommune's polygons, named `bnavn`, coded here by exact name from the SSB list. */
export function bydelAreas(): Area[] {
  const codes = new Map(
    readFileSync(SSB_CODES, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(';').reverse() as [string, string]),
  );
  return features<{ bnavn: string }>(BYDEL_POLYGONS).map((f) => toArea(codes.get(f.properties.bnavn)!, f.geometry));
}

export function markaArea(): Area {
  return toArea('030117', features<{ bydel_no: string }>(NOR_MAPS_BYDELER).find((f) => f.properties.bydel_no === '030117')!.geometry);
}

export function postcodeArea(postcode: string): Area {
  return toArea(postcode, features<{ zip_no: string }>(NOR_MAPS_POSTCODES).find((f) => f.properties.zip_no === postcode)!.geometry);
}

/** Metres per degree around Oslo: good to a fraction of a per cent over a few kilometres. */
const M_PER_DEG_LAT = 111_200;
const M_PER_DEG_LON = 111_320 * Math.cos((59.9 * Math.PI) / 180);

function segmentDistanceM(p: [number, number], a: [number, number], b: [number, number]): number {
  const [px, py] = [(p[0] - a[0]) * M_PER_DEG_LON, (p[1] - a[1]) * M_PER_DEG_LAT];
  const [bx, by] = [(b[0] - a[0]) * M_PER_DEG_LON, (b[1] - a[1]) * M_PER_DEG_LAT];
  const t = Math.max(0, Math.min(1, (px * bx + py * by) / (bx * bx + by * by || 1)));
  return Math.hypot(px - t * bx, py - t * by);
}

export const distanceM = (p: [number, number], a: Area): number =>
  Math.min(...a.polygons.flatMap((rings) => rings.flatMap((r) => r.slice(1).map((c, i) => segmentDistanceM(p, r[i], c)))));

export interface PlacedAddress {
  street: string;
  number: number;
  letter?: string;
  postcode: string;
  lonLat: [number, number];
  kommune: string;
  /** what the index should say: the polygon's code (Sentrum and Marka before the service rules) */
  expected: { code: string; marka?: boolean } | 'outside-oslo';
}

function sampleIn(area: Area, rnd: () => number, accept: (p: [number, number]) => boolean = () => true): [number, number] {
  for (;;) {
    const p: [number, number] = [area.bbox[0] + rnd() * (area.bbox[2] - area.bbox[0]), area.bbox[1] + rnd() * (area.bbox[3] - area.bbox[1])];
    if (inArea(p, area) && accept(p)) return p;
  }
}

/** n random points inside one bydel polygon and no other (the 2013 polygons have slivers). */
export function interiorPoints(areas: Area[], area: Area, n: number, rnd: () => number): [number, number][] {
  return Array.from({ length: n }, () => sampleIn(area, rnd, (p) => areas.filter((a) => inArea(p, a)).length === 1));
}

/**
 * Pairs of points `offsetM` metres either side of a shared border: the midpoint of a segment of
 * one polygon, moved along the segment's normal both ways, kept when each side lies in exactly one
 * polygon and the two differ.
 */
export function borderPairs(areas: Area[], perArea: number, offsetM: number, rnd: () => number): { p: [number, number]; code: string }[] {
  const out: { p: [number, number]; code: string }[] = [];
  const only = (p: [number, number]) => {
    const hits = areas.filter((a) => inArea(p, a));
    return hits.length === 1 ? hits[0].code : undefined;
  };
  for (const area of areas) {
    const ring = area.polygons[0][0];
    let found = 0;
    for (let tries = 0; tries < 400 && found < perArea; tries++) {
      const i = Math.floor(rnd() * (ring.length - 1));
      const [a, b] = [ring[i], ring[i + 1]];
      const [dx, dy] = [(b[0] - a[0]) * M_PER_DEG_LON, (b[1] - a[1]) * M_PER_DEG_LAT];
      const len = Math.hypot(dx, dy);
      if (len < 4 * offsetM) continue;
      const mid: [number, number] = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      const shift = (sign: number): [number, number] => [
        mid[0] + (sign * -dy * offsetM) / len / M_PER_DEG_LON,
        mid[1] + (sign * dx * offsetM) / len / M_PER_DEG_LAT,
      ];
      const [left, right] = [shift(1), shift(-1)];
      const [l, r] = [only(left), only(right)];
      if (!l || !r || l === r) continue;
      out.push({ p: left, code: l }, { p: right, code: r });
      found++;
    }
  }
  return out;
}

/** Points in Marka, outside every bydel polygon, whose nearest polygon is clear by `marginM`. */
export function markaPoints(areas: Area[], n: number, marginM: number, rnd: () => number): { p: [number, number]; nearest: string }[] {
  const marka = markaArea();
  const out: { p: [number, number]; nearest: string }[] = [];
  while (out.length < n) {
    const p = sampleIn(marka, rnd, (q) => !areas.some((a) => inArea(q, a)));
    const [first, second] = areas.map((a) => ({ code: a.code, d: distanceM(p, a) })).sort((x, y) => x.d - y.d);
    if (second.d - first.d >= marginM) out.push({ p, nearest: first.code });
  }
  return out;
}

/** Up to `perBydel` points in each bydel that a (split) postcode's area reaches into. */
export function pointsInPostcode(areas: Area[], postcode: string, perBydel: number, rnd: () => number): { p: [number, number]; code: string }[] {
  const zip = postcodeArea(postcode);
  const byBydel = new Map<string, [number, number][]>();
  for (let tries = 0; tries < 5000; tries++) {
    const p = sampleIn(zip, rnd);
    const hits = areas.filter((a) => inArea(p, a));
    if (hits.length !== 1) continue;
    const list = byBydel.get(hits[0].code) ?? [];
    if (list.length < perBydel) list.push(p);
    byBydel.set(hits[0].code, list);
  }
  return [...byBydel].flatMap(([code, points]) => points.map((p) => ({ p, code })));
}

/** A street name per block of addresses, with æ/ø/å and the usual suffixes, never ending in a digit. */
const SYLLABLES = ['ber', 'dal', 'fjell', 'gran', 'haug', 'kløv', 'li', 'mo', 'nes', 'rud', 'sjø', 'tå', 'vik', 'ås', 'bæk', 'øy'];
const SUFFIXES = ['veien', 'gata', 'tunet', 'bakken', ' allé', 'stien', 'løkka', 'lia', ' plass', 'svingen'];
export function streetName(i: number): string {
  const s = SYLLABLES.length;
  const w = Math.floor(i / SUFFIXES.length);
  const word = SYLLABLES[w % s] + SYLLABLES[Math.floor(w / s) % s] + SYLLABLES[Math.floor(w / s / s) % s];
  return `${word[0].toLocaleUpperCase('nb')}${word.slice(1)}${SUFFIXES[i % SUFFIXES.length]}`;
}

const toUtm33 = proj4('+proj=utm +zone=33 +ellps=GRS80 +towgs84=0,0,0,0,0,0,0 +units=m +no_defs', 'EPSG:4326');

/** Kartverket's adressekode: one per street within the kommune (1000–99998). */
const streetCode = (name: string) => 1000 + ([...name].reduce((h, c) => (h * 31 + c.codePointAt(0)!) >>> 0, 7) % 98999);

/** One CSV row as Kartverket writes it: EUREF89 UTM 33 (EPSG:25833), centimetres. */
export function csvRow(a: PlacedAddress, id: number): string {
  const [east, north] = toUtm33.inverse(a.lonLat);
  const text = `${a.street} ${a.number}${a.letter ?? ''}`;
  const kommunenavn = a.kommune === '0301' ? 'Oslo' : 'Annen';
  return [
    id,
    a.kommune,
    kommunenavn,
    'vegadresse',
    '',
    '',
    streetCode(a.street),
    a.street,
    a.number,
    a.letter ?? '',
    1,
    id,
    0,
    0,
    text,
    text,
    25833,
    north.toFixed(2),
    east.toFixed(2),
    a.postcode,
    'OSLO',
    '2026-01-01',
  ].join(';');
}

export const toCsv = (addresses: PlacedAddress[], extraRows: string[] = []): string =>
  `${[KARTVERKET_HEADER, ...addresses.map((a, i) => csvRow(a, i + 1)), ...extraRows].join('\n')}\n`;

/** Consecutive addresses share a street, numbered 1, 2, 3 … with an occasional letter. */
export function addressesAt(
  points: { p: [number, number]; expected: PlacedAddress['expected']; postcode?: string; kommune?: string }[],
  firstStreet: number,
  perStreet = 6,
): PlacedAddress[] {
  return points.map((pt, i) => ({
    street: streetName(firstStreet + Math.floor(i / perStreet)),
    number: (i % perStreet) + 1,
    letter: i % 5 === 4 ? 'B' : undefined,
    postcode: pt.postcode ?? '0999',
    lonLat: pt.p,
    kommune: pt.kommune ?? '0301',
    expected: pt.expected,
  }));
}
