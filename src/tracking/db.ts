import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { type Generated, Kysely, Migrator, PostgresDialect, type Selectable, type SqliteDatabase, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { OutboxTable } from '../outbox/table.js';
import type {
  AnswerState,
  AppRecStatus,
  ErrorCode,
  ExpectationAlertState,
  ExpectationKind,
  ExpectationState,
  GatewayErrorCode,
  MatchRule,
  MessageState,
  PayloadKind,
  Stage,
  TimelineEvent,
  TransportState,
} from '../shared/vocabulary.js';
import { migrations } from './migrations.js';

export type DialectName = 'sqlite' | 'postgres';

/** 'out' = hospital → bydel, 'in' = bydel/NHN → hospital. */
export type Direction = 'out' | 'in';

export type { OutboxRow, OutboxState, OutboxTable } from '../outbox/table.js';

// Timestamps are ISO-8601 strings in UTC (`Date.prototype.toISOString`, fixed width), so they
// compare and sort the same way as text on both dialects. No column other than payload and
// outbox bodies may hold personal data.

export interface MessagesTable {
  id: Generated<number>;
  msg_id: string;
  direction: Direction;
  /** null only when the message could not be parsed far enough to know its sender */
  sender_her_id: string | null;
  msg_type: string | null;
  state: MessageState;
  /** ebXML ConversationId */
  conversation_id: string | null;
  /** MsgHead ConversationRef/RefToConversation */
  conversation_ref: string | null;
  bydel: string | null;
  /** which routing rule chose the bydel (e.g. override, address, postcode) */
  route_rule: string | null;
  receiver_l1_her_id: string | null;
  receiver_l2_her_id: string | null;
  content_hash: string | null;
  error_code: ErrorCode | GatewayErrorCode | null;
  error_reason: string | null;
  gen_date: string | null;
  created_at: string;
  updated_at: string;
  /** the ebXML MessageId we sent it under: Acknowledgment/MessageError refer to it */
  ebxml_message_id: string | null;
  /** keyed hash of the patient's fnr/dnr: matches an answer without ConversationRef; not reversible without the key */
  patient_key: string | null;
  transport_state: TransportState | null;
  transport_at: string | null;
  /** JSON list of the ebMS error codes of a MessageError (e.g. SecurityFailure) */
  transport_errors: string | null;
  apprec_status: AppRecStatus | null;
  apprec_at: string | null;
  /** JSON list of { code, text } from the AppRec (8221 codes) */
  apprec_errors: string | null;
  /** for LOG_UTSKRIVNINGSKLAR */
  answer_state: AnswerState | null;
  answered_at: string | null;
  answer_msg_id: string | null;
  answer_rule: MatchRule | null;
  /** what closed the wait: e.g. LOG_AVMELDING, LOG_UTSKREVET, LOG_DOD, cancellation */
  closed_by: string | null;
  /** for Pasientlogistikk: TidspunktForHendelse of the message's own Hendelsekode, as sent (local date or date-time) */
  event_time: string | null;
  /** the sender's level-1 (hospital organisation) HER-id: a stay is per patient and hospital */
  sender_l1_her_id: string | null;
  /** keyed hash of the patient address the message was routed by (never the address) */
  address_key: string | null;
  /** a delivered message that begins (LOG_INNLAGT) or ends (LOG_UTSKREVET, LOG_DOD, the admission's cancellation) a stay */
  stay_role: 'begin' | 'end' | null;
}

export interface ExpectationsTable {
  id: Generated<number>;
  message_id: number;
  kind: ExpectationKind;
  due_at: string;
  state: ExpectationState;
  created_at: string;
  resolved_at: string | null;
  resolved_by: string | null;
  /** set once an alert was raised for it */
  alert_state: ExpectationAlertState | null;
  last_alert_at: string | null;
  reminders: Generated<number>;
  /** transport-ack: how often the message was resent with the same eb:MessageId */
  resends: Generated<number>;
  /** transport-ack: resends the partner's CPA allows (Retries), and their interval; null: `tracking.transportRetry` */
  resend_limit: number | null;
  resend_interval_ms: number | null;
  /** the id of the firing alert: its reminders and its resolution carry it as `firingId` */
  alert_id: string | null;
  /** when the next reminder is due while the alert is firing */
  next_alert_at: string | null;
}

export interface WebhookDeliveriesTable {
  id: Generated<number>;
  /** the alert's outbox item: each is delivered to the webhook once */
  outbox_id: number;
  alert_id: string;
  /** the alert JSON (DESIGN §4.4): no personal data */
  body: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: string;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
}

export interface PayloadsTable {
  id: Generated<number>;
  message_id: number;
  kind: PayloadKind;
  content_type: string;
  body: Buffer;
  created_at: string;
}

export interface EventsTable {
  id: Generated<number>;
  message_id: number;
  at: string;
  stage: Stage;
  event: TimelineEvent;
  /** JSON object; never personal data */
  detail: string | null;
}

export interface AuditTable {
  id: Generated<number>;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  reason: string | null;
  /** JSON object */
  detail: string | null;
}

/** The date the kommune offered a place, recorded for an answered utskrivningsklar notice (migration 013_ledger). */
export interface OvertidSettlementsTable {
  id: Generated<number>;
  message_id: number;
  /** local date (YYYY-MM-DD) from which the døgn are not payable */
  offered_date: string;
  reason: string;
  actor: string;
  at: string;
}

export interface Schema {
  messages: MessagesTable;
  payloads: PayloadsTable;
  events: EventsTable;
  outbox: OutboxTable;
  audit: AuditTable;
  expectations: ExpectationsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  overtid_settlements: OvertidSettlementsTable;
}

export type MessageRow = Selectable<MessagesTable>;
export type PayloadRow = Selectable<PayloadsTable>;
export type EventRow = Selectable<EventsTable>;
export type AuditRow = Selectable<AuditTable>;
export type ExpectationRow = Selectable<ExpectationsTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;

export interface Db {
  readonly kysely: Kysely<Schema>;
  readonly dialect: DialectName;
}

const PG_INT8_OID = 20;

/**
 * Opens the store named by `database.url` (`sqlite:<path>` or `postgres://…`) and brings its
 * schema up to date. Safe to call from several processes at once (replicas, the CLI beside a
 * running gateway): the migration runs under a lock.
 */
export async function openDatabase(url: string): Promise<Db> {
  return url.startsWith('sqlite:') ? openSqlite(url.slice('sqlite:'.length)) : openPostgres(url);
}

/** Statements the hot path runs for every message: prepared once, not per query (a few hundred distinct SQL texts). */
const STATEMENT_CACHE = 500;

/**
 * Kysely prepares every query anew; better-sqlite3 statements can be run again and again. Kysely
 * runs one query at a time on its single SQLite connection, so a cached statement is never busy.
 */
function reusingStatements(sqlite: Database.Database): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (statement) {
        // most recently used last, so the oldest is the one dropped
        cache.delete(sql);
      } else {
        statement = sqlite.prepare(sql);
        if (cache.size >= STATEMENT_CACHE) cache.delete(cache.keys().next().value as string);
      }
      cache.set(sql, statement);
      return statement;
    },
  };
}

async function openSqlite(location: string): Promise<Db> {
  // Accept `sqlite:///abs/path` as well as `sqlite:relative/path` and `sqlite:/abs/path`.
  const file = location.replace(/^\/\//, '');
  if (file !== ':memory:') mkdirSync(dirname(resolve(file)), { recursive: true });
  const sqlite = new Database(file);
  // A message is acked to the broker once its row is committed, so a commit must survive a
  // power cut: WAL with synchronous=FULL fsyncs the log on every commit.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  // The CLI and a running gateway may open the same file; wait for the writer instead of failing.
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');
  const db: Db = { kysely: new Kysely<Schema>({ dialect: new SqliteDialect({ database: reusingStatements(sqlite) }) }), dialect: 'sqlite' };
  // Kysely migrates SQLite without a transaction or lock, assuming a single connection. Two
  // processes opening a new file at once would then both create the tables. Holding SQLite's
  // write lock for the whole run makes the second opener wait (busy_timeout) and then find the
  // schema current; it also makes each run all-or-nothing.
  sqlite.exec('begin immediate');
  try {
    await migrate(db);
    sqlite.exec('commit');
  } catch (e) {
    if (sqlite.inTransaction) sqlite.exec('rollback');
    await db.kysely.destroy();
    throw e;
  }
  return db;
}

async function openPostgres(url: string): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    // Ids are BIGINT and count() returns BIGINT; pg gives those as strings, SQLite as numbers.
    // Ids stay far below 2^53, so parse them as numbers on this pool only (no global parser).
    types: {
      getTypeParser: (oid, format) => (oid === PG_INT8_OID && format !== 'binary' ? Number : pg.types.getTypeParser(oid, format)),
    },
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that
  // would crash the process. The pool drops the client, and the next query reports the outage
  // to its caller as an ordinary (transient) error.
  pool.on('error', () => {});
  const db: Db = { kysely: new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) }), dialect: 'postgres' };
  try {
    // Kysely runs PostgreSQL migrations in a transaction under an advisory lock.
    await migrate(db);
  } catch (e) {
    await db.kysely.destroy();
    throw e;
  }
  return db;
}

async function migrate(db: Db): Promise<void> {
  const { error, results } = await new Migrator({
    db: db.kysely,
    provider: { getMigrations: async () => migrations(db.dialect) },
  }).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'bookkeeping';
    throw new Error(`database migration ${failed} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
