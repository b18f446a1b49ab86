// The file side of building an index: read the export, the polygons and the code list, write
// the index. Kept apart so that building itself stays a function of lines and polygons.
import { createReadStream, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { BYDELER } from '../bydeler.js';
import { type BuildSummary, buildAddressIndex, DEFAULT_MAX_MARKA_KM, OSLO_KOMMUNE } from './build.js';
import { BydelLocator, parseBydelPolygons, parseCodeList } from './bydelPolygons.js';
import type { AddressIndexFile } from './indexFile.js';
import { DEFAULT_EPSG } from './projection.js';

export interface BuildFiles {
  addresses: string;
  polygons: string;
  /** SSB Klass "code;name" list; default: the built-in code list 3403 */
  codeList?: string;
  validFrom: string;
  validTo?: string;
  defaultEpsg?: number;
  maxMarkaKm?: number;
  builtAt?: Date;
}

export async function buildAddressIndexFromFiles(f: BuildFiles): Promise<{ file: AddressIndexFile; summary: BuildSummary }> {
  const names = osloOnly(f.codeList ? parseCodeList(readFileSync(f.codeList, 'utf8')) : BYDELER);
  const locator = new BydelLocator(parseBydelPolygons(readFileSync(f.polygons, 'utf8'), names));
  const input = createReadStream(f.addresses, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    return await buildAddressIndex(lines, locator, {
      validFrom: f.validFrom,
      validTo: f.validTo,
      defaultEpsg: f.defaultEpsg ?? DEFAULT_EPSG,
      maxMarkaKm: f.maxMarkaKm ?? DEFAULT_MAX_MARKA_KM,
      builtAt: f.builtAt ?? new Date(),
      source: {
        addresses: basename(f.addresses),
        polygons: basename(f.polygons),
        codeList: f.codeList ? basename(f.codeList) : 'built-in code list 3403',
        defaultEpsg: f.defaultEpsg ?? DEFAULT_EPSG,
      },
      names,
    });
  } finally {
    lines.close();
    input.destroy();
  }
}

/** SSB's list covers every city with bydeler; only Oslo's (0301xx) may name a polygon here. */
const osloOnly = (names: Record<string, string>) => Object.fromEntries(Object.entries(names).filter(([code]) => code.startsWith(OSLO_KOMMUNE)));

/** Written beside the target and renamed, so a gateway starting meanwhile never reads half a file. */
export function writeAddressIndex(file: AddressIndexFile, out: string): void {
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(file));
  renameSync(tmp, out);
}
