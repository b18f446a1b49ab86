// Alerts in the contract format (DESIGN §4.4). Built only from metadata: never patient data.
import { randomUUID } from 'node:crypto';

export type AlertKind =
  | 'unroutable'
  | 'apprec-missing'
  | 'apprec-rejected'
  | 'utskrivningsklar-unanswered'
  | 'innleggelsesrapport-missing'
  | 'transport-ack-missing'
  | 'dlq-not-empty';

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
}

export function buildAlert(fields: Omit<Alert, 'id' | 'firedAt'> & { firedAt?: Date }): Alert {
  const { firedAt, ...rest } = fields;
  return { id: randomUUID(), ...rest, firedAt: (firedAt ?? new Date()).toISOString() };
}
