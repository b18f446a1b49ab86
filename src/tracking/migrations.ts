// biome-ignore-all lint/suspicious/noExplicitAny: a migration sees the schema as it was then, not today's typed Schema (Kysely's documented form)
import { type ColumnDefinitionBuilder, type Kysely, type Migration, sql } from 'kysely';
import type { DialectName } from './db.js';

// Migrations live in code (not files read at run time) so that the compiled gateway and the
// container carry them without extra assets. They are forward-only: a deployed store is fixed
// by a new migration, never rolled back.

/** The schema history, keyed by name; Kysely applies them in name order. */
export function migrations(dialect: DialectName): Record<string, Migration> {
  const pgsql = dialect === 'postgres';
  // AUTOINCREMENT keeps SQLite from reusing the id of a pruned row: ids are shown to ops
  // (`dlq show <id>`) and must never point at a different message later.
  const id = (c: ColumnDefinitionBuilder) => (pgsql ? c.primaryKey() : c.primaryKey().autoIncrement());
  const idType = pgsql ? 'bigserial' : 'integer';
  const refType = pgsql ? 'bigint' : 'integer';
  const blobType = pgsql ? 'bytea' : 'blob';

  return {
    '001_init': {
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('messages')
          .addColumn('id', idType, id)
          .addColumn('msg_id', 'text', (c) => c.notNull())
          .addColumn('direction', 'text', (c) => c.notNull().check(sqlIn('direction', ['out', 'in'])))
          .addColumn('sender_her_id', 'text')
          .addColumn('msg_type', 'text')
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('conversation_id', 'text')
          .addColumn('conversation_ref', 'text')
          .addColumn('bydel', 'text')
          .addColumn('route_rule', 'text')
          .addColumn('receiver_l1_her_id', 'text')
          .addColumn('receiver_l2_her_id', 'text')
          .addColumn('content_hash', 'text')
          .addColumn('error_code', 'text')
          .addColumn('error_reason', 'text')
          .addColumn('gen_date', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          // The dedupe key (DESIGN §6). A NULL sender never collides (NULLs are distinct in
          // UNIQUE on both dialects); such messages dedupe by content hash only.
          .addUniqueConstraint('messages_dedupe', ['direction', 'sender_her_id', 'msg_id'])
          .execute();
        await db.schema.createIndex('messages_content_hash').on('messages').columns(['content_hash']).execute();
        await db.schema.createIndex('messages_state').on('messages').columns(['state']).execute();
        await db.schema.createIndex('messages_msg_id').on('messages').columns(['msg_id']).execute();
        await db.schema.createIndex('messages_conversation_id').on('messages').columns(['conversation_id']).execute();

        // Bodies are kept apart from metadata so they can expire on their own schedule
        // (LESSONS §9.9). Children cascade: nothing of a message outlives its metadata row.
        await db.schema
          .createTable('payloads')
          .addColumn('id', idType, id)
          .addColumn('message_id', refType, (c) => c.notNull().references('messages.id').onDelete('cascade'))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('content_type', 'text', (c) => c.notNull())
          .addColumn('body', blobType, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('payloads_message_id').on('payloads').columns(['message_id']).execute();

        await db.schema
          .createTable('events')
          .addColumn('id', idType, id)
          .addColumn('message_id', refType, (c) => c.notNull().references('messages.id').onDelete('cascade'))
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('stage', 'text', (c) => c.notNull())
          .addColumn('event', 'text', (c) => c.notNull())
          .addColumn('detail', 'text')
          .execute();
        await db.schema.createIndex('events_message_id').on('events').columns(['message_id', 'at']).execute();

        await db.schema
          .createTable('outbox')
          .addColumn('id', idType, id)
          .addColumn('message_id', refType, (c) => c.references('messages.id').onDelete('cascade'))
          .addColumn('purpose', 'text', (c) => c.notNull())
          .addColumn('exchange', 'text', (c) => c.notNull())
          .addColumn('routing_key', 'text', (c) => c.notNull())
          .addColumn('headers', 'text', (c) => c.notNull())
          .addColumn('content_type', 'text', (c) => c.notNull())
          .addColumn('message_id_prop', 'text')
          .addColumn('body', blobType, (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull().check(sqlIn('state', ['pending', 'published'])))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('last_error', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('published_at', 'text')
          .execute();
        await db.schema.createIndex('outbox_due').on('outbox').columns(['state', 'next_attempt_at']).execute();
        await db.schema.createIndex('outbox_message_id').on('outbox').columns(['message_id']).execute();

        await db.schema
          .createTable('audit')
          .addColumn('id', idType, id)
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('target', 'text')
          .addColumn('reason', 'text')
          .addColumn('detail', 'text')
          .execute();
        await db.schema.createIndex('audit_at').on('audit').columns(['at']).execute();
      },
    },
    '002_tracking': {
      async up(db: Kysely<any>) {
        // What came back for an outgoing message (transport ack, AppRec, the kommune's answer),
        // and the keys to correlate it: the ebXML MessageId (for RefToMessageId) and a keyed hash
        // of the patient's id (the fallback match for an answer without ConversationRef).
        const columns = [
          'ebxml_message_id',
          'patient_key',
          'transport_state',
          'transport_at',
          'apprec_status',
          'apprec_at',
          'apprec_errors',
          'answer_state',
          'answered_at',
          'answer_msg_id',
          'answer_rule',
          'closed_by',
        ];
        for (const c of columns) await db.schema.alterTable('messages').addColumn(c, 'text').execute();
        await db.schema.createIndex('messages_ebxml_message_id').on('messages').columns(['ebxml_message_id']).execute();
        await db.schema.createIndex('messages_patient_key').on('messages').columns(['patient_key', 'bydel']).execute();

        // Every expectation is a row with a due time; the deadline engine only queries due rows.
        await db.schema
          .createTable('expectations')
          .addColumn('id', idType, id)
          .addColumn('message_id', refType, (c) => c.notNull().references('messages.id').onDelete('cascade'))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('due_at', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('resolved_at', 'text')
          .addColumn('resolved_by', 'text')
          .addColumn('alert_state', 'text')
          .addColumn('last_alert_at', 'text')
          .addColumn('reminders', 'integer', (c) => c.notNull().defaultTo(0))
          .addUniqueConstraint('expectations_message_kind', ['message_id', 'kind'])
          .execute();
        await db.schema.createIndex('expectations_due').on('expectations').columns(['state', 'due_at']).execute();
      },
    },
    '003_deadlines': {
      async up(db: Kysely<any>) {
        // The alert lifecycle of an expectation: the id of its firing alert (reminders and the
        // resolution refer to it) and when the next reminder is due, so that the scheduler only
        // queries rows that are due.
        await db.schema.alterTable('expectations').addColumn('alert_id', 'text').execute();
        await db.schema.alterTable('expectations').addColumn('next_alert_at', 'text').execute();
        await db.schema.createIndex('expectations_alerting').on('expectations').columns(['alert_state', 'next_alert_at']).execute();
        // A rejected AppRec raises its alert from the scheduler, which finds such messages here.
        await db.schema.createIndex('messages_apprec_status').on('messages').columns(['apprec_status']).execute();
        // The TidspunktForHendelse of the message's own Hendelsekode (e.g. 3 for utskrivningsklar,
        // 2 for utskrevet) as sent: the overtid ledger counts days from and to these dates.
        await db.schema.alterTable('messages').addColumn('event_time', 'text').execute();
        await db.schema.createIndex('messages_type_created').on('messages').columns(['msg_type', 'created_at']).execute();

        // Webhook deliveries: every alert in the outbox is copied here once and POSTed from here,
        // a queue of its own, so a failing webhook never holds up the broker outbox.
        await db.schema
          .createTable('webhook_deliveries')
          .addColumn('id', idType, id)
          .addColumn('outbox_id', refType, (c) => c.notNull().unique().references('outbox.id').onDelete('cascade'))
          .addColumn('alert_id', 'text', (c) => c.notNull())
          .addColumn('body', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull().check(sqlIn('state', ['pending', 'delivered', 'failed'])))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('last_error', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('delivered_at', 'text')
          .execute();
        await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['state', 'next_attempt_at']).execute();
        await db.schema.createIndex('outbox_purpose_created').on('outbox').columns(['purpose', 'created_at']).execute();
      },
    },
    '004_ops': {
      async up(db: Kysely<any>) {
        // Every message that reaches gateway.dlq, recorded so that ops can list, inspect, replay
        // and discard a chosen one (a queue cannot). Metadata only; the body lives apart so that
        // payload retention can expire it.
        await db.schema
          .createTable('dead_letters')
          .addColumn('id', idType, id)
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull().check(sqlIn('state', ['open', 'replayed', 'discarded'])))
          .addColumn('origin', 'text', (c) => c.notNull().check(sqlIn('origin', ['gateway', 'broker', 'unknown'])))
          .addColumn('source_queue', 'text')
          .addColumn('code', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('stage', 'text')
          .addColumn('msg_id', 'text')
          .addColumn('msg_type', 'text')
          .addColumn('bydel', 'text')
          .addColumn('conversation_id', 'text')
          .addColumn('from_her_id', 'text')
          .addColumn('to_her_id', 'text')
          .addColumn('attempts', 'integer')
          .addColumn('first_failed_at', 'text')
          .addColumn('headers', 'text', (c) => c.notNull())
          .addColumn('content_type', 'text')
          .addColumn('amqp_message_id', 'text')
          // the same broker message delivered twice (redelivery after a crash) is one dead letter
          .addColumn('dedupe_key', 'text', (c) => c.notNull().unique())
          .addColumn('skip_dedupe', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('resolved_at', 'text')
          .addColumn('resolved_by', 'text')
          .addColumn('resolution_reason', 'text')
          .execute();
        await db.schema.createIndex('dead_letters_state_code').on('dead_letters').columns(['state', 'code']).execute();
        await db.schema.createIndex('dead_letters_msg_id').on('dead_letters').columns(['msg_id']).execute();
        await db.schema
          .createTable('dead_letter_bodies')
          .addColumn('dead_letter_id', refType, (c) => c.primaryKey().references('dead_letters.id').onDelete('cascade'))
          .addColumn('body', blobType, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();

        // Switches ops set from the CLI or API (e.g. pausing a batch replay), read between items.
        await db.schema
          .createTable('ops_flags')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('value', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addColumn('updated_by', 'text', (c) => c.notNull())
          .execute();

        // The state of each ops alert condition (dlq-not-empty, queue-backlog per queue,
        // no-traffic): one firing and one resolved alert per episode, across restarts and replicas.
        await db.schema
          .createTable('ops_alerts')
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('subject', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull().check(sqlIn('state', ['firing', 'resolved'])))
          .addColumn('alert_id', 'text', (c) => c.notNull())
          .addColumn('changed_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('ops_alerts_pk', ['kind', 'subject'])
          .execute();

        // "No traffic during working hours" asks for the newest message in each direction.
        await db.schema.createIndex('messages_direction_created').on('messages').columns(['direction', 'created_at']).execute();
      },
    },
    '005_outbox_lease': {
      async up(db: Kysely<any>) {
        // Who holds a pending item until its next_attempt_at: a publish in progress (in this
        // process or another replica) is left alone; one whose holder crashed is claimed after
        // the lease runs out (outbox/table.ts).
        await db.schema.alterTable('outbox').addColumn('claimed_by', 'text').execute();
      },
    },
    '006_transport_errors': {
      async up(db: Kysely<any>) {
        // The ebMS error codes of a MessageError, for its alert (metadata: codes, never descriptions).
        await db.schema.alterTable('messages').addColumn('transport_errors', 'text').execute();
      },
    },
    '007_transport_resends': {
      async up(db: Kysely<any>) {
        // Reliable messaging out: how often an unacknowledged message was sent again.
        await db.schema
          .alterTable('expectations')
          .addColumn('resends', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
      },
    },
    '008_register_cache': {
      async up(db: Kysely<any>) {
        // What NHN's Adresseregister answered, per HER-id, shared by replicas and restarts
        // (src/routing/ar/cache.ts): the party as the snapshot shapes it, or that AR knows none.
        await db.schema
          .createTable('register_cache')
          .addColumn('her_id', 'text', (c) => c.primaryKey())
          .addColumn('found', 'integer', (c) => c.notNull())
          .addColumn('party', 'text')
          .addColumn('fetched_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '009_agreements': {
      async up(db: Kysely<any>) {
        // What NHN's CPPA register answered per pair of parties (src/outbound/agreements/cache.ts):
        // the agreement's terms, or that the two have none.
        await db.schema
          .createTable('agreement_cache')
          .addColumn('our_her_id', 'text', (c) => c.notNull())
          .addColumn('partner_her_id', 'text', (c) => c.notNull())
          .addColumn('found', 'integer', (c) => c.notNull())
          .addColumn('agreement', 'text')
          .addColumn('fetched_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('agreement_cache_pk', ['our_her_id', 'partner_her_id'])
          .execute();
        // A CPA's reliable messaging, fixed per message when it was sent (null: the configured transportRetry).
        await db.schema.alterTable('expectations').addColumn('resend_limit', 'integer').execute();
        await db.schema.alterTable('expectations').addColumn('resend_interval_ms', 'integer').execute();
      },
    },
    '010_crl_cache': {
      async up(db: Kysely<any>) {
        // The CRLs fetched for partner certificates (src/outbound/revocation.ts), shared by replicas
        // and restarts; a row's signature is checked again before use.
        await db.schema
          .createTable('crl_cache')
          .addColumn('url', 'text', (c) => c.primaryKey())
          .addColumn('der', 'text', (c) => c.notNull())
          .addColumn('this_update', 'text')
          .addColumn('next_update', 'text', (c) => c.notNull())
          .addColumn('fetched_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '011_deadline_scan_indexes': {
      async up(db: Kysely<any>) {
        // The scheduler's due-row queries (tables/expectations.ts DUE, dueForResend,
        // closeRoutedHolds; deadlineRepository.ts raiseRefusals) read only what is due, also over
        // a million open rows (`npm run bench:scan`). Partial indexes, each holding only the rows
        // its query can want: closed rows, the most in a store that has run a while, are in none
        // of them, and a firing alert's row (due long ago, so first in due_at order) is not in
        // the due-row ones. Each lists the columns its query compares for equality before the
        // one it orders by: PostgreSQL reads such an index in order (not past an IS NULL), and
        // SQLite, without statistics (the gateway never runs ANALYZE), picks the index that
        // constrains the most columns.
        const unalerted = sql<boolean>`${sql.ref('state')} = 'open' and ${sql.ref('alert_state')} is null`;
        // firing: open, not alerted, due_at <= now, oldest first
        await db.schema.createIndex('expectations_unalerted_due').on('expectations').columns(['state', 'due_at']).where(unalerted).execute();
        // resend: open transport-acks, not alerted, due_at <= now, oldest first
        await db.schema.createIndex('expectations_unalerted_kind_due').on('expectations').columns(['kind', 'state', 'due_at']).where(unalerted).execute();
        // closeRoutedHolds: the open routing/certificate rows of held messages
        await db.schema
          .createIndex('expectations_open_holds')
          .on('expectations')
          .columns(['kind', 'state'])
          .where(sql<boolean>`${sql.ref('state')} = 'open' and ${sql.ref('kind')} in ('routing', 'certificate')`)
          .execute();
        // resolved: a firing alert whose condition has closed, by id
        await db.schema
          .createIndex('expectations_to_resolve')
          .on('expectations')
          .columns(['alert_state', 'id'])
          .where(sql<boolean>`${sql.ref('alert_state')} = 'firing' and ${sql.ref('state')} <> 'open'`)
          .execute();
        // raiseRefusals('transport-error'): the messages a MessageError refused, by id
        await db.schema
          .createIndex('messages_transport_error')
          .on('messages')
          .columns(['transport_state', 'id'])
          .where(sql<boolean>`${sql.ref('transport_state')} = 'error'`)
          .execute();
      },
    },
    '012_stay_routing': {
      async up(db: Kysely<any>) {
        // A stay (docs/routing.md): a delivered LOG_INNLAGT begins it, a LOG_UTSKREVET, LOG_DOD or
        // the admission's cancellation ends it, for one patient (patient_key) from one hospital
        // (sender_l1_her_id). address_key is a keyed hash of the address the message was routed
        // by, so a later message can tell whether it carries the stay's address; never the address.
        await db.schema.alterTable('messages').addColumn('sender_l1_her_id', 'text').execute();
        await db.schema.alterTable('messages').addColumn('address_key', 'text').execute();
        await db.schema
          .alterTable('messages')
          .addColumn('stay_role', 'text', (c) => c.check(sqlIn('stay_role', ['begin', 'end'])))
          .execute();
        // the newest stay message of a patient: only rows that begin or end a stay
        await db.schema
          .createIndex('messages_stay')
          .on('messages')
          .columns(['patient_key', 'created_at'])
          .where(sql<boolean>`${sql.ref('stay_role')} is not null`)
          .execute();
      },
    },
    '014_users': {
      async up(db: Kysely<any>) {
        // The people who use the ops API and console (src/ops/users.ts): a token is stored only as
        // its SHA-256 (a random 256-bit secret needs no slow hash); a revoked user's row stays, so
        // the audit trail's names keep meaning someone. One active user per name.
        await db.schema
          .createTable('users')
          .addColumn('id', idType, id)
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull().check(sqlIn('role', ['viewer', 'operator', 'admin'])))
          .addColumn('payload_access', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .addColumn('revoked_by', 'text')
          .execute();
        await db.schema
          .createIndex('users_active_name')
          .on('users')
          .column('name')
          .unique()
          .where(sql<boolean>`${sql.ref('revoked_at')} is null`)
          .execute();
        // Console logins: a cookie's session id, stored as its SHA-256, with the CSRF token its forms carry.
        await db.schema
          .createTable('user_sessions')
          .addColumn('id_hash', 'text', (c) => c.primaryKey())
          .addColumn('user_id', refType, (c) => c.notNull().references('users.id').onDelete('cascade'))
          .addColumn('csrf', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '013_ledger': {
      async up(db: Kysely<any>) {
        // The overtid ledger's settlements (docs/deadlines-and-alerts.md "Overtid ledger"): the date
        // a caseworker recorded that the kommune offered a place for an answered utskrivningsklar
        // notice; døgn from that date on are not payable. A later settlement of the same notice
        // replaces an earlier one (the newest row counts); every one is audited.
        await db.schema
          .createTable('overtid_settlements')
          .addColumn('id', idType, id)
          .addColumn('message_id', refType, (c) => c.notNull().references('messages.id'))
          .addColumn('offered_date', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('overtid_settlements_message').on('overtid_settlements').columns(['message_id', 'id']).execute();
      },
    },
  };
}

/** CHECK constraint for the columns whose values are fixed by the code, not extended later. */
function sqlIn(column: string, values: string[]) {
  return sql`${sql.ref(column)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
}
