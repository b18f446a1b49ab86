// Street addresses as EPJs write them ("Kjelsåsvn. 10 b") and as Kartverket lists them
// ("Kjelsåsveien", 10, "B") reduced to one comparable key. The same function runs on both
// sides, so over-normalising can only make two real streets collide, and the index marks such
// collisions ambiguous instead of choosing one.

/** Acute and grave accents only (allé/alle): æ, ø and å, and ü in Grüners gate, stay letters of their own. */
const ACCENTS = /[\u0300\u0301]/g;

/** Written-together, abbreviated and long forms of the common street-type suffixes. */
const SUFFIXES: [RegExp, string][] = [
  [/(?:gata|gate|gt\.?)$/, 'gate'],
  [/(?:veien|vei|vn\.?|v\.)$/, 'veien'],
];

/**
 * Case, spaces, hyphens and apostrophes do not distinguish Oslo streets ("Thorvald Meyers gate"
 * is also sent as "Thorvald Meyersgate"); `gata`/`gate`/`gt.` and `veien`/`vei`/`vn.`/`v.` at
 * the end of the name are one suffix each.
 */
export function normaliseStreetName(name: string): string {
  let n = name.normalize('NFD').replace(ACCENTS, '').normalize('NFC').toLocaleLowerCase('nb');
  n = n
    .replace(/['’´`]/g, '')
    .replace(/[\s-]+/g, '')
    .replace(/,+$/, '');
  for (const [suffix, canonical] of SUFFIXES) n = n.replace(suffix, canonical);
  return n.replace(/[.,]/g, '');
}

/** House number and entrance letter as one key: `12 B`, `12b` and `012B` are all `12b`. */
export const houseKey = (number: number, letter?: string): string => `${number}${(letter ?? '').trim().toLocaleLowerCase('nb')}`;

export interface StreetAddress {
  /** the street name as written (never logged) */
  name: string;
  number: number;
  letter?: string;
}

/** A trailing bolignummer (H0201, U0101, K0101, L0101) names a flat, not an entrance. */
const BOLIGNUMMER = /[\s,]+[HUKL]\d{4}$/i;
const STREET_ADDRESS = /^(.*\p{L}.*?)[\s,]*(\d{1,5})\s*(\p{L})?$/u;

/**
 * MsgHead StreetAdr ("Storgata 12 B") as street name, number and letter. A range ("12-14"),
 * a postbox or free text does not parse: such an address cannot be matched exactly.
 */
export function parseStreetAddress(text: string): StreetAddress | undefined {
  const m = STREET_ADDRESS.exec(text.trim().replace(BOLIGNUMMER, '').trim());
  if (!m) return undefined;
  const name = m[1].replace(/[\s,]+$/, '');
  if (/\d[\s-]*$/.test(name)) return undefined;
  return { name, number: Number(m[2]), letter: m[3] };
}
