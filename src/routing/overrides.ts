// Ops' manual override table: street address → bydel. It wins over every other rule.
// File format (JSON array): [{ "street": "Storgata 1", "postalCode": "0155", "bydel": "030101", "note": "…" }]
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { isBydelCode } from './bydeler.js';

const overrideSchema = z.array(
  z.object({
    street: z.string().min(1),
    postalCode: z.string().regex(/^\d{4}$/),
    bydel: z.string().refine(isBydelCode, 'must be a bydel code 030101–030117'),
    note: z.string().optional(),
  }),
);

export type OverrideTable = Map<string, string>;

/** Case, spacing and punctuation differences must not defeat a manual override. */
export const normaliseStreet = (street: string): string => street.toLocaleLowerCase('nb').replace(/[.,]/g, ' ').replace(/\s+/g, ' ').trim();

const key = (street: string, postalCode: string) => `${normaliseStreet(street)}|${postalCode.trim()}`;

export function parseOverrides(json: string): OverrideTable {
  const rows = overrideSchema.parse(JSON.parse(json));
  return new Map(rows.map((r) => [key(r.street, r.postalCode), r.bydel]));
}

export const loadOverrides = (file: string | undefined): OverrideTable => (file ? parseOverrides(readFileSync(file, 'utf8')) : new Map());

export function lookupOverride(table: OverrideTable, street: string | undefined, postalCode: string | undefined): string | undefined {
  if (!street || !postalCode) return undefined;
  return table.get(key(street, postalCode));
}
