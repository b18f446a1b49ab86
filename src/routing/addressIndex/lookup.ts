// Exact address match: normalised street name + number + letter + postcode. Anything short of
// one certain bydel falls through to the next rule; reasons never quote the address.
import type { AddressIndex, IndexEntry } from './indexFile.js';
import { houseKey, normaliseStreetName, parseStreetAddress } from './normalise.js';

export type AddressMatch =
  | {
      found: true;
      entry: IndexEntry;
      /** the EPJ left out the letter; every entrance of the number is in the same bydel */
      letterMissing: boolean;
    }
  | { found: false; reason: string };

const miss = (reason: string): AddressMatch => ({ found: false, reason });

const STREET_MISS: Record<'unknown-postcode' | 'ambiguous' | 'unknown-street', string> = {
  'unknown-postcode': 'the postcode has no street addresses in the address index',
  ambiguous: 'the street name matches several streets in the postcode',
  'unknown-street': 'the street is not in the address index for the postcode',
};

export function lookupAddress(index: AddressIndex, streetAdr: string, postcode: string): AddressMatch {
  const address = parseStreetAddress(streetAdr);
  if (!address) return miss('the street address cannot be read as street name, number and letter');
  const houses = index.street(postcode.trim(), normaliseStreetName(address.name));
  if (typeof houses === 'string') return miss(STREET_MISS[houses]);
  const exact = houses.get(houseKey(address.number, address.letter));
  if (exact) return { found: true, entry: exact, letterMissing: false };
  if (address.letter) return miss('the house number with that letter is not in the address index');
  return anyEntrance(houses, address.number);
}

/**
 * "Storgata 12" when only 12 A, or 12 A and 12 B, exist: the letter does not matter as long
 * as every entrance of the number lies in the same bydel.
 */
function anyEntrance(houses: Map<string, IndexEntry>, number: number): AddressMatch {
  const prefix = String(number);
  const entrances = [...houses].filter(([key]) => key.startsWith(prefix) && /^\p{L}+$/u.test(key.slice(prefix.length))).map(([, e]) => e);
  if (entrances.length === 0) return miss('the house number is not in the address index');
  if (new Set(entrances.map((e) => e.bydel)).size > 1) return miss('the letter is missing and the entrances of the house number lie in different bydeler');
  return { found: true, entry: entrances[0], letterMissing: true };
}
