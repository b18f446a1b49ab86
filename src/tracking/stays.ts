// The stay a message belongs to (docs/routing.md#the-stay-rule), read from the store for the
// route stage: the patient's newest delivered message that begins or ends a stay, from the
// same hospital, within `routing.stayWindow`. A LOG_INNLAGT there is a stay still running.
import type { Kysely } from 'kysely';
import type { Stay } from '../routing/stay.js';
import type { Schema } from './db.js';

export interface StayQuery {
  /** the keyed hash of the patient's id */
  patientKey: string;
  /** the hospital organisation (MsgHead Sender level 1) */
  hospitalHerId: string | null;
  /** the sender's most specific HER-id: matches rows stored before the hospital's was kept */
  senderHerId: string | null;
  /** the message being routed (a resend of an admission must not find itself) */
  msgId: string;
  /** ISO-8601: the oldest admission that still counts */
  since: string;
}

/** The running stay of the patient at the hospital, or undefined (none, ended, or too old). */
export async function findStay(db: Kysely<Schema>, q: StayQuery): Promise<Stay | undefined> {
  const sameHospital = [q.hospitalHerId, q.senderHerId].filter((h): h is string => !!h);
  if (sameHospital.length === 0) return undefined;
  const row = await db
    .selectFrom('messages')
    .select(['msg_id', 'bydel', 'address_key', 'stay_role'])
    .where('patient_key', '=', q.patientKey)
    .where('stay_role', 'is not', null)
    .where('created_at', '>=', q.since)
    .where('direction', '=', 'out')
    .where('bydel', 'is not', null)
    .where('ebxml_message_id', 'is not', null)
    .where('state', 'in', ['received', 'published'])
    .where('msg_id', '<>', q.msgId)
    .where((eb) =>
      eb.or([...(q.hospitalHerId ? [eb('sender_l1_her_id', '=', q.hospitalHerId)] : []), ...(q.senderHerId ? [eb('sender_her_id', '=', q.senderHerId)] : [])]),
    )
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (row?.stay_role !== 'begin' || !row.bydel) return undefined;
  return { bydel: row.bydel, admissionMsgId: row.msg_id, addressKey: row.address_key };
}
