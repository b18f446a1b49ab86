// A stay (docs/routing.md#the-stay-rule): the messages a hospital sends about one patient
// between the admission notice and the discharge. Its later messages go where its LOG_INNLAGT
// went, unless they carry another address. What the store keeps to find a stay, and the keyed
// address hash that tells "the same address" without storing the address.
import { createHmac } from 'node:crypto';
import type { MsgHeadModel } from '../mapping/model.js';
import { normaliseStreetName, parseStreetAddress } from './addressIndex/normalise.js';
import { chooseAddress } from './resolveBydel.js';

/** The stay a message belongs to, as the flow found it in the store: the route stage's typed input. */
export interface Stay {
  /** the serving bydel the stay's LOG_INNLAGT was (last) delivered to */
  bydel: string;
  /** MsgId of that LOG_INNLAGT */
  admissionMsgId: string;
  /** keyed hash of the address it was routed by; null when it had none */
  addressKey: string | null;
}

/** Message types that end a stay once delivered (a discharge, a death). */
const ENDS_A_STAY = new Set(['LOG_UTSKREVET', 'LOG_DOD']);

/**
 * What a delivered message is to its patient's stay: a LOG_INNLAGT begins one; a discharge, a
 * death, or the admission notice's cancellation ends it; anything else belongs to it.
 */
export function stayRole(m: Pick<MsgHeadModel, 'type' | 'forsendelsesstatus'>): 'begin' | 'end' | null {
  if (m.type === 'LOG_INNLAGT') return m.forsendelsesstatus === 'C' ? 'end' : 'begin';
  if (ENDS_A_STAY.has(m.type) && m.forsendelsesstatus !== 'C') return 'end';
  return null;
}

/** Whether a message can follow its stay at all: not the admission that begins one. */
export const followsStay = (m: Pick<MsgHeadModel, 'type'>): boolean => m.type !== 'LOG_INNLAGT';

/**
 * A keyed hash of the address routing uses (TMP before home), normalised as the address index
 * matches it ("Storgata 12 B" = "storgata 12b"), with its postcode; null without one. Not
 * reversible without the key, like `patient_key`.
 */
export function addressKey(m: Pick<MsgHeadModel, 'patient'>, secret: string): string | null {
  const address = chooseAddress(m.patient);
  if (!address) return null;
  const street = address.street?.trim() ?? '';
  const parsed = street ? parseStreetAddress(street) : undefined;
  const normalised = parsed ? `${normaliseStreetName(parsed.name)} ${parsed.number}${(parsed.letter ?? '').toLowerCase()}` : normaliseStreetName(street);
  return createHmac('sha256', secret)
    .update(`address\u0000${normalised}\u0000${address.postalCode?.trim() ?? ''}`)
    .digest('hex');
}
