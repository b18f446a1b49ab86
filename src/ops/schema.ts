// The ops tables of migration 004_ops, typed for Kysely. They are added to the store's schema
// with `withTables` where ops code needs them, so the tracking schema stays the flows' own.
import type { Generated, Kysely, Selectable } from 'kysely';
import type { AlertKind } from '../shared/vocabulary.js';
import type { Db, Schema } from '../tracking/db.js';

export type DeadLetterState = 'open' | 'replayed' | 'discarded';

/** Who put it in the DLQ: the gateway (x-error-* headers) or the broker (x-death: delivery limit …). */
export type DeadLetterOrigin = 'gateway' | 'broker' | 'unknown';

export interface DeadLettersTable {
  id: Generated<number>;
  received_at: string;
  state: DeadLetterState;
  origin: DeadLetterOrigin;
  /** where a replay goes: x-source-queue, or x-first-death-queue for broker dead letters */
  source_queue: string | null;
  /** list 8221 or a gateway code (GW-DELIVERY-LIMIT …) */
  code: string;
  /** one sentence, no personal data */
  reason: string;
  stage: string | null;
  msg_id: string | null;
  msg_type: string | null;
  bydel: string | null;
  conversation_id: string | null;
  from_her_id: string | null;
  to_her_id: string | null;
  attempts: number | null;
  first_failed_at: string | null;
  /** JSON object of the AMQP headers as received (metadata only, DESIGN §4.3) */
  headers: string;
  content_type: string | null;
  amqp_message_id: string | null;
  dedupe_key: string;
  /** 1 while a replay that bypasses the flow's MsgId dedupe is granted for it */
  skip_dedupe: Generated<number>;
  resolved_at: string | null;
  /** the actor who replayed or discarded it */
  resolved_by: string | null;
  resolution_reason: string | null;
}

export interface DeadLetterBodiesTable {
  dead_letter_id: number;
  body: Buffer;
  created_at: string;
}

export interface OpsFlagsTable {
  name: string;
  value: string;
  updated_at: string;
  updated_by: string;
}

export interface OpsAlertsTable {
  kind: AlertKind;
  /** what the condition is about, e.g. a queue name; '' for gateway-wide conditions */
  subject: string;
  state: 'firing' | 'resolved';
  /** the id of the firing alert; its resolution carries it as `firingId` */
  alert_id: string;
  changed_at: string;
}

export type OpsTables = {
  dead_letters: DeadLettersTable;
  dead_letter_bodies: DeadLetterBodiesTable;
  ops_flags: OpsFlagsTable;
  ops_alerts: OpsAlertsTable;
};

export type OpsSchema = Schema & OpsTables;
export type DeadLetterRow = Selectable<DeadLettersTable>;
export type OpsAlertRow = Selectable<OpsAlertsTable>;

/** The store's connection with the ops tables in its type. */
export const opsKysely = (db: Db): Kysely<OpsSchema> => db.kysely.withTables<OpsTables>();

/** The same for a transaction of `Store.inTransaction`. */
export const opsTrx = (trx: Kysely<Schema>): Kysely<OpsSchema> => trx.withTables<OpsTables>();
