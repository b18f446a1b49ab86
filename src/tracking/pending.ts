// What the gateway is still waiting for: open expectations, soonest due first, with the
// metadata ops need to chase them (never patient data).
import type { ExpectationKind } from '../shared/vocabulary.js';
import type { Db } from './db.js';

export interface PendingItem {
  msgId: string;
  msgType: string | null;
  bydel: string | null;
  receiverHerId: string | null;
  kind: string;
  dueAt: string;
  /** when the message was received from the EPJ */
  createdAt: string;
  /** null (not yet due or not yet alerted), 'firing' */
  alertState: string | null;
  reminders: number;
}

export interface PendingFilter {
  bydel?: string;
  kind?: ExpectationKind;
  limit: number;
}

export async function openExpectations(db: Db, filter: PendingFilter): Promise<PendingItem[]> {
  let query = db.kysely
    .selectFrom('expectations as e')
    .innerJoin('messages as m', 'm.id', 'e.message_id')
    .select([
      'm.msg_id',
      'm.msg_type',
      'm.bydel',
      'm.receiver_l1_her_id',
      'm.receiver_l2_her_id',
      'm.created_at',
      'e.kind',
      'e.due_at',
      'e.alert_state',
      'e.reminders',
    ])
    .where('e.state', '=', 'open')
    .orderBy('e.due_at')
    .orderBy('e.id')
    .limit(filter.limit);
  if (filter.bydel) query = query.where('m.bydel', '=', filter.bydel);
  if (filter.kind) query = query.where('e.kind', '=', filter.kind);
  return (await query.execute()).map((r) => ({
    msgId: r.msg_id,
    msgType: r.msg_type,
    bydel: r.bydel,
    receiverHerId: r.receiver_l2_her_id ?? r.receiver_l1_her_id,
    kind: r.kind,
    dueAt: r.due_at,
    createdAt: r.created_at,
    alertState: r.alert_state,
    reminders: r.reminders,
  }));
}
