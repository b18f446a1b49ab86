// Address indexes built in memory from synthetic Kartverket rows, the way `routing build-index`
// builds them from a file.
import { readFileSync } from 'node:fs';
import { type BuildSummary, buildAddressIndex, DEFAULT_MAX_MARKA_KM } from '../../src/routing/addressIndex/build.js';
import { BydelLocator, parseBydelPolygons } from '../../src/routing/addressIndex/bydelPolygons.js';
import { AddressIndex, type AddressIndexFile } from '../../src/routing/addressIndex/indexFile.js';
import { BYDELER } from '../../src/routing/bydeler.js';
import { BYDEL_POLYGONS } from './kartverket.js';

let locator: BydelLocator | undefined;
export const osloLocator = (): BydelLocator => (locator ??= new BydelLocator(parseBydelPolygons(readFileSync(BYDEL_POLYGONS, 'utf8'), BYDELER)));

export async function buildFromCsv(
  csv: string,
  period: { validFrom: string; validTo?: string } = { validFrom: '2026-01-01' },
): Promise<{ file: AddressIndexFile; summary: BuildSummary; index: AddressIndex }> {
  const { file, summary } = await buildAddressIndex(csv.split('\n'), osloLocator(), {
    ...period,
    defaultEpsg: 25833,
    maxMarkaKm: DEFAULT_MAX_MARKA_KM,
    builtAt: new Date('2026-01-01T00:00:00Z'),
    source: { addresses: 'test.csv', polygons: 'oslo_bydeler2.geojson', codeList: 'built-in', defaultEpsg: 25833 },
    names: BYDELER,
  });
  return { file, summary, index: new AddressIndex(file, `test ${period.validFrom}`) };
}
