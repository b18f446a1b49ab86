// Alerts in the contract format (DESIGN §4.4). Built only from metadata: never patient data.
import { randomUUID } from 'node:crypto';

import type { AlertKind } from '../shared/vocabulary.js';

export type { AlertKind };

export interface Alert {
  id: string;
  kind: AlertKind;
  state: 'firing' | 'resolved';
  severity: 'info' | 'warning' | 'critical';
  eventId: string;
  msgId?: string;
  conversationId?: string;
  msgType?: string;
  bydel?: string;
  receiverHerId?: string;
  dueAt?: string;
  firedAt: string;
  text: string;
  /** on reminders and on the resolution: the id of the firing alert they belong to */
  firingId?: string;
  /** on reminders: how many have been sent for this condition, this one included */
  reminder?: number;
}

export function buildAlert(fields: Omit<Alert, 'id' | 'firedAt'> & { firedAt?: Date }): Alert {
  const { firedAt, ...rest } = fields;
  return { id: randomUUID(), ...rest, firedAt: (firedAt ?? new Date()).toISOString() };
}
