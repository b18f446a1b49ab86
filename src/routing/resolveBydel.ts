// Which bydel is responsible for the patient, and which rule decided (issue: route order).
import type { Patient, PatientAddress } from '../mapping/model.js';
import type { AddressIndex, AddressIndexSet } from './addressIndex/indexFile.js';
import { type AddressMatch, lookupAddress } from './addressIndex/lookup.js';
import { bydelName, isBydelCode, MARKA, SENTRUM, serviceBydel } from './bydeler.js';
import { lookupOverride, type OverrideTable } from './overrides.js';
import { lookupPostcode, type PostcodeIndex } from './postcodeIndex.js';

export type BydelRule = 'override' | 'epj-hint' | 'address' | 'postcode';

export interface BydelDecision {
  decided: true;
  /** the bydel whose services receive the message (Sentrum → St. Hanshaugen) */
  bydel: string;
  /** the geographic bydel the rule produced, when it differs */
  geographicBydel: string;
  rule: BydelRule;
  /** one sentence for the timeline; never the address itself */
  explanation: string;
}

export interface BydelUndecided {
  decided: false;
  /** every rule's verdict, for the timeline and ops */
  verdicts: string[];
  /** the same, machine-readable: what callers decide on (never on the sentences) */
  reasons: VerdictReason[];
}

/** Why a rule did not decide (or 'decided'). */
export type VerdictReason =
  | 'decided'
  /** the rule had nothing to go on: no override entry, no hint */
  | 'no-entry'
  | 'none-given'
  | 'not-a-bydel-code'
  | 'served-by-several'
  | 'no-address-index'
  | 'no-street-address'
  | 'no-message-date'
  | 'no-index-valid'
  | 'not-in-address-index'
  | 'no-postcode'
  | 'postcode-undecided'
  /** the route stage's stay rule (route.ts): the message says something new, so the rules decide */
  | 'stay-hint-given'
  | 'stay-address-changed';

/** Reasons that say a rule had no input at all, as opposed to input it could not use. */
export const ABSENT_INPUT: ReadonlySet<VerdictReason> = new Set(['no-entry', 'none-given']);

export interface RoutingData {
  overrides: OverrideTable;
  postcodes: PostcodeIndex;
  postcodeMinShare: number;
  /** address index files by validity period; absent or empty: the address rule never decides */
  addressIndexes?: AddressIndexSet;
}

/** One rule's outcome: a decision, or the sentence saying why it could not decide. */
export interface RuleVerdict {
  rule: BydelRule;
  decision?: BydelDecision;
  reason: VerdictReason;
  verdict: string;
}

interface RuleInput {
  address?: PatientAddress;
  addressKind: string;
  hint?: string;
  data: RoutingData;
  /** the message's day in Oslo (YYYY-MM-DD): picks the address index valid then */
  day?: string;
}

const ADDRESS_PREFERENCE = ['TMP', 'H', 'HP', 'BOA', undefined];

/** The temporary (stay) address wins over the home address; any address beats none. */
export function chooseAddress(patient: Patient | undefined): PatientAddress | undefined {
  const usable = (patient?.addresses ?? []).filter((a) => a.postalCode || a.street);
  for (const type of ADDRESS_PREFERENCE) {
    const hit = usable.find((a) => a.type === type);
    if (hit) return hit;
  }
  return usable[0];
}

function decide(geographic: string, rule: BydelRule, why: string): BydelDecision | string {
  const served = serviceBydel(geographic);
  if (!served) return `${why} gives ${bydelName(geographic)} (${geographic}), which is served by several bydeler`;
  const via = served === geographic ? '' : `, served by ${bydelName(served)} (${served})`;
  return { decided: true, bydel: served, geographicBydel: geographic, rule, explanation: `${why} gives ${bydelName(geographic)} (${geographic})${via}` };
}

const fromDecide = (rule: BydelRule, d: BydelDecision | string): RuleVerdict =>
  typeof d === 'string'
    ? { rule, reason: 'served-by-several', verdict: `${rule}: ${d}` }
    : { rule, decision: d, reason: 'decided', verdict: `${rule}: ${d.explanation}` };

function overrideRule({ address, addressKind, data }: RuleInput): RuleVerdict {
  const override = address && lookupOverride(data.overrides, address.street, address.postalCode);
  if (!override) return { rule: 'override', reason: 'no-entry', verdict: 'override: no entry for this address' };
  return fromDecide('override', decide(override, 'override', `the ops override for the patient's ${addressKind}`));
}

function hintRule({ hint }: RuleInput): RuleVerdict {
  if (hint === undefined) return { rule: 'epj-hint', reason: 'none-given', verdict: 'epj-hint: none given' };
  const h = hint.trim();
  if (!isBydelCode(h)) return { rule: 'epj-hint', reason: 'not-a-bydel-code', verdict: `epj-hint: "${h.slice(0, 12)}" is not a bydel code (030101–030117)` };
  return fromDecide('epj-hint', decide(h, 'epj-hint', 'the EPJ bydel hint'));
}

/** The index already holds the serving bydel: Sentrum and Marka were resolved when it was built. */
function addressDecision(match: Extract<AddressMatch, { found: true }>, index: AddressIndex, addressKind: string): BydelDecision {
  const { bydel, marka, sentrum } = match.entry;
  const name = (code: string) => `${index.names[code] ?? bydelName(code)} (${code})`;
  const where = sentrum ? `Sentrum (${SENTRUM}), served by ${name(bydel)}` : marka ? `Marka, served by the nearest bydel ${name(bydel)}` : name(bydel);
  const letter = match.letterMissing ? '; the letter is missing, but every entrance of the number is there' : '';
  return {
    decided: true,
    bydel,
    geographicBydel: sentrum ? SENTRUM : marka ? MARKA : bydel,
    rule: 'address',
    explanation: `the address index (${index.period}) places the patient's ${addressKind} in ${where}${letter}`,
  };
}

function addressRule({ address, addressKind, data, day }: RuleInput): RuleVerdict {
  const miss = (reason: VerdictReason, why: string): RuleVerdict => ({ rule: 'address', reason, verdict: `address: ${why}` });
  if (!data.addressIndexes?.size) return miss('no-address-index', 'no address index is configured');
  if (!address?.street || !address.postalCode) return miss('no-street-address', 'the patient has no street address with a postcode');
  if (!day) return miss('no-message-date', 'no message date to choose an address index by');
  const index = data.addressIndexes.validOn(day);
  if (!index) return miss('no-index-valid', 'no address index is valid on the message date');
  const match = lookupAddress(index, address.street, address.postalCode);
  if (!match.found) return miss('not-in-address-index', match.reason);
  const decision = addressDecision(match, index, addressKind);
  return { rule: 'address', decision, reason: 'decided', verdict: `address: ${decision.explanation}` };
}

function postcodeRule({ address, addressKind, data }: RuleInput): RuleVerdict {
  if (!address?.postalCode) return { rule: 'postcode', reason: 'no-postcode', verdict: 'postcode: the patient has no address with a postcode' };
  const p = lookupPostcode(data.postcodes, address.postalCode.trim(), data.postcodeMinShare);
  if (!p.decided) return { rule: 'postcode', reason: 'postcode-undecided', verdict: `postcode: ${p.reason}` };
  const geo = p.geographic.map((b) => `${bydelName(b)} (${b})`).join(' and ');
  const via = p.geographic.length === 1 && p.geographic[0] === p.bydel ? '' : `, served by ${bydelName(p.bydel)} (${p.bydel})`;
  const explanation = `the postcode of the patient's ${addressKind} gives ${geo} (${Math.round(p.share * 100)} %)${via}`;
  return {
    rule: 'postcode',
    decision: { decided: true, bydel: p.bydel, geographicBydel: p.geographic[0], rule: 'postcode', explanation },
    reason: 'decided',
    verdict: `postcode: ${explanation}`,
  };
}

/** The resolution order: ops override → EPJ hint → exact address → postcode → held. */
const RULES = [overrideRule, hintRule, addressRule, postcodeRule];

function ruleInput(patient: Patient | undefined, hint: string | undefined, data: RoutingData, day: string | undefined): RuleInput {
  const address = chooseAddress(patient);
  return { address, addressKind: address?.type === 'TMP' ? 'temporary address' : 'home address', hint, data, day };
}

/** The first rule that decides wins; `day` is the message's day (see validity.ts messageDay). */
export function resolveBydel(patient: Patient | undefined, hint: string | undefined, data: RoutingData, day?: string): BydelDecision | BydelUndecided {
  const input = ruleInput(patient, hint, data, day);
  const verdicts: RuleVerdict[] = [];
  for (const rule of RULES) {
    const v = rule(input);
    if (v.decision) return v.decision;
    verdicts.push(v);
  }
  return undecided(verdicts);
}

/** Every rule's verdict, also those after the deciding one: for `routing explain`. */
export function explainBydel(
  patient: Patient | undefined,
  hint: string | undefined,
  data: RoutingData,
  day?: string,
): { decision: BydelDecision | BydelUndecided; verdicts: RuleVerdict[] } {
  const input = ruleInput(patient, hint, data, day);
  const verdicts = RULES.map((rule) => rule(input));
  const decision = verdicts.find((v) => v.decision)?.decision;
  return { decision: decision ?? undecided(verdicts), verdicts };
}

const undecided = (verdicts: RuleVerdict[]): BydelUndecided => ({
  decided: false,
  verdicts: verdicts.map((v) => v.verdict),
  reasons: verdicts.map((v) => v.reason),
});
