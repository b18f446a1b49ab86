// What must come back for a delivered message, and by when (DESIGN §3 C). Due times here are
// plain durations after sending; the deadline engine refines the answer deadline to working time.
import { createHmac } from 'node:crypto';
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { MsgHeadModel } from '../mapping/model.js';
import type { NewExpectation } from './store.js';

type Tracking = GatewayConfig['tracking'];

export function expectationsFor(msgType: string, sentAt: Date, tracking: Tracking): NewExpectation[] {
  const after = (iso: string) => new Date(sentAt.getTime() + durationMs(iso));
  const d = tracking.deadlines;
  const list: NewExpectation[] = [
    { kind: 'transport-ack', dueAt: after(d.transportAck) },
    { kind: 'apprec', dueAt: after(d.appRec) },
  ];
  if (msgType === 'LOG_UTSKRIVNINGSKLAR') list.push({ kind: 'answer', dueAt: after(d.answer) });
  if (msgType === 'LOG_INNLAGT') list.push({ kind: 'innleggelsesrapport', dueAt: after(d.innleggelsesrapport) });
  return list;
}

const PATIENT_ID_TYPES = ['FNR', 'DNR', 'HNR', 'FHN'];

/**
 * A keyed hash of the patient's national id: lets an answer without ConversationRef be matched
 * to its notice, without storing the id itself in metadata.
 */
export function patientKey(model: MsgHeadModel, secret: string): string | null {
  const ident = model.patient?.idents.find((i) => PATIENT_ID_TYPES.includes(i.type));
  return ident ? createHmac('sha256', secret).update(ident.id.trim()).digest('hex') : null;
}
