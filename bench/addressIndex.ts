// `npm run bench:address`: builds an address index from a synthetic Kartverket export of N
// addresses (default 100,000: about Oslo's size) on the real bydel polygons, then times the
// address rule per message. Prints one JSON line:
// {addresses, build: {seconds, indexed, marka, outsideOslo, indexBytes, loadSeconds}, lookup: {messages, meanMs, p50Ms, p99Ms, maxMs}}
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAddressIndexFromFiles, writeAddressIndex } from '../src/routing/addressIndex/files.js';
import { loadAddressIndexes } from '../src/routing/addressIndex/indexFile.js';
import { loadPostcodeIndex } from '../src/routing/postcodeIndex.js';
import { resolveBydel } from '../src/routing/resolveBydel.js';
import { addressesAt, BYDEL_POLYGONS, bydelAreas, interiorPoints, markaPoints, type PlacedAddress, random, toCsv } from '../test/support/kartverket.js';
import { POSTCODE_INDEX } from '../test/support/paths.js';

const n = Number(process.env.BENCH_ADDRESSES ?? process.argv[2] ?? 100_000);
const messages = Number(process.env.BENCH_MESSAGES ?? 20_000);
const rnd = random(100_000);

/** About 1 % of Oslo's addresses lie in Marka; a few rows of a national extract lie elsewhere. */
function syntheticExport(): PlacedAddress[] {
  const areas = bydelAreas();
  const nMarka = Math.round(n * 0.01);
  const nOutside = Math.round(n * 0.005);
  const perArea = Math.ceil((n - nMarka - nOutside) / areas.length);
  const inside = areas.flatMap((a) => interiorPoints(areas, a, perArea, rnd).map((p) => ({ p, expected: { code: a.code } }))).slice(0, n - nMarka - nOutside);
  const marka = markaPoints(areas, nMarka, 0, rnd).map(({ p, nearest }) => ({ p, expected: { code: nearest, marka: true } }));
  const outside = Array.from({ length: nOutside }, () => ({
    p: [10.4 + rnd() * 0.08, 59.85 + rnd() * 0.1] as [number, number],
    kommune: '3201',
    expected: 'outside-oslo' as const,
  }));
  // Shuffle, so that streets and postcodes mix bydeler as real ones near borders do.
  const points = [...inside, ...marka, ...outside]
    .map((x) => ({ x, k: rnd() }))
    .sort((a, b) => a.k - b.k)
    .map(({ x }) => x);
  return addressesAt(
    points.map((pt, i) => ({ ...pt, postcode: String(100 + Math.floor(i / 200)).padStart(4, '0') })),
    0,
    8,
  );
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

const dir = mkdtempSync(join(tmpdir(), 'gw-bench-address-'));
const addresses = syntheticExport();
writeFileSync(join(dir, 'adresser.csv'), toCsv(addresses));

let t = performance.now();
const { file, summary } = await buildAddressIndexFromFiles({ addresses: join(dir, 'adresser.csv'), polygons: BYDEL_POLYGONS, validFrom: '2026-01-01' });
writeAddressIndex(file, join(dir, 'index.json'));
const buildSeconds = (performance.now() - t) / 1000;

t = performance.now();
const addressIndexes = loadAddressIndexes([join(dir, 'index.json')]);
const loadSeconds = (performance.now() - t) / 1000;

// Messages as EPJs write them, for indexed addresses: the rule order up to and including the address rule.
const data = { overrides: new Map(), postcodes: loadPostcodeIndex(POSTCODE_INDEX), postcodeMinShare: 0.95, addressIndexes };
const oslo = addresses.filter((a) => a.expected !== 'outside-oslo');
const patients = Array.from({ length: messages }, (_, i) => {
  const a = oslo[Math.floor(rnd() * oslo.length)];
  const street = i % 2 === 0 ? a.street : a.street.toUpperCase();
  return { idents: [], addresses: [{ type: 'H', street: `${street} ${a.number}${a.letter ? ` ${a.letter}` : ''}`, postalCode: a.postcode }] };
});
for (const patient of patients.slice(0, 200)) resolveBydel(patient, undefined, data, '2026-06-01'); // JIT warm-up, not measured
const times: number[] = [];
let decidedByAddress = 0;
for (const patient of patients) {
  const start = performance.now();
  const d = resolveBydel(patient, undefined, data, '2026-06-01');
  times.push(performance.now() - start);
  if (d.decided && d.rule === 'address') decidedByAddress++;
}
times.sort((a, b) => a - b);

const round = (x: number, digits = 4) => Number(x.toFixed(digits));
console.log(
  JSON.stringify({
    addresses: n,
    build: {
      seconds: round(buildSeconds, 2),
      indexed: summary.indexed,
      marka: summary.marka.total,
      outsideOslo: summary.skipped.outsideOslo,
      indexBytes: statSync(join(dir, 'index.json')).size,
      loadSeconds: round(loadSeconds, 2),
    },
    lookup: {
      messages,
      decidedByAddress,
      meanMs: round(times.reduce((s, x) => s + x, 0) / times.length),
      p50Ms: round(quantile(times, 0.5)),
      p99Ms: round(quantile(times, 0.99)),
      maxMs: round(times[times.length - 1]),
    },
  }),
);
