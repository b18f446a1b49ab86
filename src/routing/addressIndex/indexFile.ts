// The address index file written by `plo-gateway routing build-index`, and the gateway's view
// of several of them: each file carries its validity period, and a message is matched against
// the one valid on its day. A new border (the 2028 bydel reform) is a new file, not new code.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { isoDay, isValidOn } from '../validity.js';

export const INDEX_FORMAT = 'plo-gateway/address-index';
export const INDEX_VERSION = 1;

const entrySchema = z
  .object({
    /** the bydel whose services receive the message (Sentrum already → St. Hanshaugen) */
    bydel: z.string().regex(/^\d{6}$/),
    /** outside every bydel polygon: the nearest bydel serves it */
    marka: z.literal(true).optional(),
    /** in Sentrum, which has no services of its own */
    sentrum: z.literal(true).optional(),
  })
  .strict();

export type IndexEntry = z.infer<typeof entrySchema>;

export const indexFileSchema = z
  .object({
    format: z.literal(INDEX_FORMAT),
    version: z.literal(INDEX_VERSION),
    validFrom: isoDay,
    validTo: isoDay.optional(),
    builtAt: z.string(),
    source: z.object({ addresses: z.string(), polygons: z.string(), codeList: z.string(), defaultEpsg: z.number().int() }).strict(),
    /** bydel code → name, from the code list the index was built with */
    names: z.record(z.string(), z.string()),
    /** postcode → normalised street name → house key (number + letter) → entry */
    entries: z.record(z.string().regex(/^\d{4}$/), z.record(z.string(), z.record(z.string(), entrySchema))),
    /** postcode → normalised street names shared by several streets there: never matched */
    ambiguous: z.record(z.string(), z.array(z.string())),
  })
  .strict()
  .refine((f) => f.validTo === undefined || f.validFrom < f.validTo, { message: 'validTo must be after validFrom', path: ['validTo'] });

export type AddressIndexFile = z.infer<typeof indexFileSchema>;

type Houses = Map<string, IndexEntry>;

/** One index file in memory: Maps, so that no street name can hit an Object prototype key. */
export class AddressIndex {
  readonly validFrom: string;
  readonly validTo?: string;
  readonly builtAt: string;
  readonly names: Readonly<Record<string, string>>;
  private readonly postcodes = new Map<string, Map<string, Houses>>();
  private readonly ambiguous = new Set<string>();

  constructor(
    file: AddressIndexFile,
    /** where it was loaded from, for ops output */
    readonly origin: string,
  ) {
    this.validFrom = file.validFrom;
    this.validTo = file.validTo;
    this.builtAt = file.builtAt;
    this.names = file.names;
    for (const [postcode, streets] of Object.entries(file.entries)) {
      this.postcodes.set(postcode, new Map(Object.entries(streets).map(([street, houses]) => [street, new Map(Object.entries(houses))])));
    }
    for (const [postcode, streets] of Object.entries(file.ambiguous)) for (const s of streets) this.ambiguous.add(`${postcode}|${s}`);
  }

  static load(file: string): AddressIndex {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: cannot be read as JSON (${(e as Error).message})`);
    }
    const parsed = indexFileSchema.safeParse(json);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw new Error(
        `${file}: not an address index of format ${INDEX_FORMAT} v${INDEX_VERSION} (${first.path.slice(0, 2).join('.') || 'root'}: ${first.message})`,
      );
    }
    return new AddressIndex(parsed.data, file);
  }

  /** The houses of a street in a postcode, or why there are none to match. */
  street(postcode: string, normalisedStreet: string): Houses | 'unknown-postcode' | 'ambiguous' | 'unknown-street' {
    const streets = this.postcodes.get(postcode);
    if (!streets) return 'unknown-postcode';
    if (this.ambiguous.has(`${postcode}|${normalisedStreet}`)) return 'ambiguous';
    return streets.get(normalisedStreet) ?? 'unknown-street';
  }

  get period(): string {
    return `valid from ${this.validFrom}${this.validTo ? ` until ${this.validTo}` : ''}`;
  }
}

/**
 * The configured index files. Where periods overlap, the one that starts latest wins: a
 * refreshed export is simply added with today's date. Two files starting on the same day
 * would make the choice arbitrary, so they are refused.
 */
export class AddressIndexSet {
  private readonly indexes: AddressIndex[];

  constructor(indexes: AddressIndex[]) {
    this.indexes = [...indexes].sort((a, b) => b.validFrom.localeCompare(a.validFrom));
    for (let i = 1; i < this.indexes.length; i++) {
      const [a, b] = [this.indexes[i - 1], this.indexes[i]];
      if (a.validFrom === b.validFrom)
        throw new Error(`address index files ${b.origin} and ${a.origin} are both valid from ${a.validFrom}: which one applies is ambiguous`);
    }
  }

  get size(): number {
    return this.indexes.length;
  }

  validOn(day: string): AddressIndex | undefined {
    return this.indexes.find((i) => isValidOn(i, day));
  }

  list(): readonly AddressIndex[] {
    return this.indexes;
  }
}

export const loadAddressIndexes = (files: readonly string[]): AddressIndexSet => new AddressIndexSet(files.map((f) => AddressIndex.load(f)));
