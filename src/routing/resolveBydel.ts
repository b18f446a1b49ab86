// Which bydel is responsible for the patient, and which rule decided (issue: route order).
import type { Patient, PatientAddress } from '../mapping/model.js';
import { bydelName, isBydelCode, serviceBydel } from './bydeler.js';
import { lookupOverride, type OverrideTable } from './overrides.js';
import { lookupPostcode, type PostcodeIndex } from './postcodeIndex.js';

export type BydelRule = 'override' | 'epj-hint' | 'postcode';

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
}

export interface RoutingData {
  overrides: OverrideTable;
  postcodes: PostcodeIndex;
  postcodeMinShare: number;
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

export function resolveBydel(patient: Patient | undefined, hint: string | undefined, data: RoutingData): BydelDecision | BydelUndecided {
  const verdicts: string[] = [];
  const address = chooseAddress(patient);
  const addressKind = address?.type === 'TMP' ? 'temporary address' : 'home address';

  const override = address && lookupOverride(data.overrides, address.street, address.postalCode);
  if (override) {
    const d = decide(override, 'override', `the ops override for the patient's ${addressKind}`);
    if (typeof d !== 'string') return d;
    verdicts.push(d);
  } else verdicts.push('override: no entry for this address');

  if (hint !== undefined) {
    const h = hint.trim();
    if (isBydelCode(h)) {
      const d = decide(h, 'epj-hint', 'the EPJ bydel hint');
      if (typeof d !== 'string') return d;
      verdicts.push(d);
    } else verdicts.push(`epj-hint: "${h.slice(0, 12)}" is not a bydel code (030101–030117)`);
  } else verdicts.push('epj-hint: none given');

  if (address?.postalCode) {
    const p = lookupPostcode(data.postcodes, address.postalCode.trim(), data.postcodeMinShare);
    if (p.decided) {
      const geo = p.geographic.map((b) => `${bydelName(b)} (${b})`).join(' and ');
      const via = p.geographic.length === 1 && p.geographic[0] === p.bydel ? '' : `, served by ${bydelName(p.bydel)} (${p.bydel})`;
      return {
        decided: true,
        bydel: p.bydel,
        geographicBydel: p.geographic[0],
        rule: 'postcode',
        explanation: `the postcode of the patient's ${addressKind} gives ${geo} (${Math.round(p.share * 100)} %)${via}`,
      };
    }
    verdicts.push(`postcode: ${p.reason}`);
  } else verdicts.push('postcode: the patient has no address with a postcode');

  return { decided: false, verdicts };
}
