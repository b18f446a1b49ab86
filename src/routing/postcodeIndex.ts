// Postal code → bydel shares, in the CSV format of DERIVED_oslo_postnr_bydel_estimate.csv.
// A postcode decides only when one bydel holds at least `minShare` of its residents.
// Verdicts never quote the postcode: with the rest of a message it is personal data.
import { readFileSync } from 'node:fs';
import { splitDelimited } from '../shared/csv.js';
import { serviceBydel } from './bydeler.js';

export interface PostcodeEntry {
  postcode: string;
  shares: { bydel: string; share: number }[];
}

export type PostcodeIndex = Map<string, PostcodeEntry>;

const splitCsvLine = (line: string): string[] => splitDelimited(line, ',');

export function parsePostcodeIndex(csv: string): PostcodeIndex {
  const lines = csv.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = splitCsvLine(lines[0]);
  const col = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`postcode index: column ${name} is missing`);
    return i;
  };
  const postnr = col('postnr');
  const bydelCols = [1, 2, 3].map((n) => [col(`bydel${n}_no`), col(`bydel${n}_share`)] as const);
  const index: PostcodeIndex = new Map();
  for (const line of lines.slice(1)) {
    const cells = splitCsvLine(line);
    const shares = bydelCols
      .map(([b, s]) => ({ bydel: cells[b]?.trim(), share: Number(cells[s]) }))
      .filter((x) => x.bydel && Number.isFinite(x.share) && x.share > 0);
    index.set(cells[postnr].trim(), { postcode: cells[postnr].trim(), shares });
  }
  return index;
}

export const loadPostcodeIndex = (file: string): PostcodeIndex => parsePostcodeIndex(readFileSync(file, 'utf8'));

export type PostcodeVerdict = { decided: true; bydel: string; share: number; geographic: string[] } | { decided: false; reason: string };

/**
 * Shares are summed per *serving* bydel first: a postcode split between St. Hanshaugen and
 * Sentrum is served entirely by St. Hanshaugen and needs no manual routing.
 */
export function lookupPostcode(index: PostcodeIndex, postcode: string, minShare: number): PostcodeVerdict {
  const entry = index.get(postcode);
  if (!entry) return { decided: false, reason: 'the postcode is not in the postcode index' };
  if (entry.shares.length === 0) return { decided: false, reason: 'the postcode has no geography (postbox or service code)' };
  const served = new Map<string, { share: number; geographic: string[] }>();
  for (const { bydel, share } of entry.shares) {
    const key = serviceBydel(bydel) ?? `unserved:${bydel}`;
    const acc = served.get(key) ?? { share: 0, geographic: [] };
    acc.share += share;
    acc.geographic.push(bydel);
    served.set(key, acc);
  }
  const [bydel, top] = [...served.entries()].reduce((a, b) => (b[1].share > a[1].share ? b : a));
  if (top.share < minShare || bydel.startsWith('unserved:')) {
    return {
      decided: false,
      reason: `the postcode is split between ${entry.shares.length} bydeler (largest served share ${Math.round(top.share * 100)} %)`,
    };
  }
  return { decided: true, bydel, share: top.share, geographic: top.geographic };
}
