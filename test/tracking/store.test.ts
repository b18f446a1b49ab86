import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { sql } from 'kysely';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { migrations } from '../../src/tracking/migrations.js';
import { DuplicateMessageError, type NewMessage, type NewOutboxItem, Store } from '../../src/tracking/store.js';
import { postgresBackend, sqliteBackend } from '../support/databases.js';

const ALL_MIGRATIONS = Object.keys(migrations('sqlite')).sort();

// The same suite runs against both stores the gateway supports: SQLite (embedded default) and
// PostgreSQL (production). Each run gets its own SQLite directory and its own PostgreSQL
// database, removed afterwards.

const run = promisify(execFile);

async function openInChildProcess(url: string): Promise<void> {
  const dbModule = new URL('../../src/tracking/db.ts', import.meta.url).href;
  const script = `const { openDatabase } = await import(${JSON.stringify(dbModule)});
    const db = await openDatabase(process.argv[1]);
    await db.kysely.destroy();`;
  await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, url]);
}

const T0 = new Date('2026-11-23T08:00:00.000Z');
const seconds = (n: number) => new Date(T0.getTime() + n * 1000);

function outgoing(overrides: Partial<NewMessage> = {}): NewMessage {
  return {
    msg_id: randomUUID(),
    direction: 'out',
    sender_her_id: '8142519',
    msg_type: 'LOG_UTSKRIVNINGSKLAR',
    state: 'received',
    conversation_id: randomUUID(),
    content_hash: randomBytes(32).toString('hex'),
    gen_date: '2026-11-23T09:00:00',
    ...overrides,
  };
}

function deliver(routingKey: string, overrides: Partial<NewOutboxItem> = {}): NewOutboxItem {
  return {
    purpose: 'deliver',
    exchange: 'nhn.outbound',
    routing_key: routingKey,
    headers: { 'msg-type': 'LOG_UTSKRIVNINGSKLAR', 'to-her-id': routingKey },
    content_type: 'application/xml',
    message_id_prop: randomUUID(),
    body: Buffer.from('<signed/>'),
    ...overrides,
  };
}

async function rowCounts(db: Db) {
  const count = async (table: 'messages' | 'payloads' | 'events' | 'outbox' | 'audit') =>
    (
      await db.kysely
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n;
  return {
    messages: await count('messages'),
    payloads: await count('payloads'),
    events: await count('events'),
    outbox: await count('outbox'),
    audit: await count('audit'),
  };
}

for (const backend of [sqliteBackend(), postgresBackend()]) {
  describe(`tracking store on ${backend.dialect}`, () => {
    let url: string;
    let db: Db;
    let store: Store;
    let now: Date;

    before(async () => {
      url = await backend.create();
      db = await openDatabase(url);
      store = new Store(db, () => now);
    });

    after(async () => {
      await store?.close();
      await backend.removeAll();
    });

    beforeEach(async () => {
      now = T0;
      for (const table of ['outbox', 'events', 'payloads', 'expectations', 'audit', 'messages'] as const) {
        await db.kysely.deleteFrom(table).execute();
      }
    });

    it('opening the store again finds the schema in place and applies nothing twice', async () => {
      const { messageId } = await store.recordMessage({ message: outgoing(), payloads: [], events: [], outbox: [] });
      const again = await openDatabase(url);
      try {
        const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(again.kysely);
        expect(applied.rows.map((r) => r.name).sort()).to.deep.equal(ALL_MIGRATIONS);
        expect(await new Store(again).getMessage(messageId)).to.include({ id: messageId });
      } finally {
        await again.kysely.destroy();
      }
    });

    it('two processes opening an empty database at once both come up (gateway and CLI, or two replicas)', async () => {
      const fresh = await backend.create();
      // Separate processes, as in production: SQLite's file lock blocks the whole thread.
      await Promise.all([openInChildProcess(fresh), openInChildProcess(fresh)]);
      const db2 = await openDatabase(fresh);
      try {
        const applied = await sql<{ name: string }>`select name from kysely_migration`.execute(db2.kysely);
        expect(applied.rows.map((r) => r.name).sort()).to.deep.equal(ALL_MIGRATIONS);
      } finally {
        await db2.kysely.destroy();
      }
    });

    it('a received message is stored with its payloads, timeline and outbox in one go', async () => {
      const message = outgoing({ bydel: '030105', route_rule: 'address', receiver_l1_her_id: '1001', receiver_l2_her_id: '1005' });
      const { messageId, outboxIds } = await store.recordMessage({
        message,
        payloads: [
          { kind: 'original', content_type: 'application/xml', body: Buffer.from('<MsgHead/>') },
          { kind: 'signed', content_type: 'application/xml', body: Buffer.from('<Envelope/>') },
        ],
        events: [
          { stage: 'receive', event: 'received', detail: { queue: 'epj.outbound' } },
          { stage: 'route', event: 'routed', detail: { bydel: '030105', rule: 'address' } },
        ],
        outbox: [deliver('1005'), deliver('1005', { purpose: 'apprec', exchange: '', routing_key: 'epj.inbound' })],
      });

      expect(messageId).to.be.a('number');
      expect(outboxIds).to.have.length(2);
      expect(outboxIds.every((id) => typeof id === 'number')).to.equal(true);
      expect(outboxIds[0]).to.be.lessThan(outboxIds[1]);

      const row = await store.getMessage(messageId);
      expect(row).to.deep.include({ ...message, id: messageId, created_at: T0.toISOString(), updated_at: T0.toISOString() });
      expect(row?.error_code).to.equal(null);

      expect((await store.payloads(messageId)).map((p) => [p.kind, p.body.toString()])).to.deep.equal([
        ['original', '<MsgHead/>'],
        ['signed', '<Envelope/>'],
      ]);

      const outbox = await store.outboxForMessage(messageId);
      expect(outbox.map((o) => o.id)).to.deep.equal(outboxIds);
      expect(outbox[0]).to.deep.include({
        message_id: messageId,
        purpose: 'deliver',
        exchange: 'nhn.outbound',
        routing_key: '1005',
        state: 'pending',
        attempts: 0,
        next_attempt_at: T0.toISOString(),
        published_at: null,
      });
      expect(JSON.parse(outbox[0].headers)).to.deep.equal({ 'msg-type': 'LOG_UTSKRIVNINGSKLAR', 'to-her-id': '1005' });
      expect(outbox[1].purpose).to.equal('apprec');

      const [entry] = await store.timeline(message.msg_id);
      expect(entry.events.map((e) => [e.event, JSON.parse(e.detail ?? 'null')])).to.deep.equal([
        ['received', { queue: 'epj.outbound' }],
        ['routed', { bydel: '030105', rule: 'address' }],
      ]);
    });

    it('a resent message (same sender HER-id and MsgId) is refused and nothing of it is written', async () => {
      const message = outgoing();
      const first = await store.recordMessage({
        message,
        payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('first') }],
        events: [{ stage: 'receive', event: 'received' }],
        outbox: [deliver('1005')],
      });
      const before = await rowCounts(db);

      const resend = store.recordMessage({
        message: { ...message, content_hash: 'another' },
        payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('second') }],
        events: [{ stage: 'receive', event: 'received' }],
        outbox: [deliver('1005')],
      });
      const error = await resend.then(
        () => expect.fail('a duplicate was accepted'),
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(DuplicateMessageError);
      expect(error).to.include({ existingId: first.messageId, direction: 'out', senderHerId: message.sender_her_id, msgId: message.msg_id });
      expect(await rowCounts(db)).to.deep.equal(before);
      expect((await store.payloads(first.messageId)).map((p) => p.body.toString())).to.deep.equal(['first']);

      // The store still works after the refused transaction (nothing half-open on the connection).
      await store.recordMessage({ message: { ...message, sender_her_id: '999' }, payloads: [], events: [], outbox: [] });
      await store.recordMessage({ message: { ...message, direction: 'in' }, payloads: [], events: [], outbox: [] });
      expect(await store.findByMsgId(message.msg_id)).to.have.length(3);
    });

    it('a write that fails halfway leaves nothing behind', async () => {
      const message = outgoing();
      const broken = { ...deliver('1005'), exchange: null as unknown as string };
      await store
        .recordMessage({
          message,
          payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('x') }],
          events: [{ stage: 'receive', event: 'received' }],
          outbox: [deliver('1005'), broken],
        })
        .then(
          () => expect.fail('the NOT NULL violation was not reported'),
          (e: unknown) => expect(e).not.to.be.instanceOf(DuplicateMessageError),
        );
      expect(await rowCounts(db)).to.deep.equal({ messages: 0, payloads: 0, events: 0, outbox: 0, audit: 0 });

      // the dedupe key is free: the retry of the same delivery is stored normally
      await store.recordMessage({ message, payloads: [], events: [], outbox: [deliver('1005')] });
      expect(await store.findMessage('out', message.sender_her_id!, message.msg_id)).to.include({ msg_id: message.msg_id });
    });

    it('messages whose sender could not be read are kept, and never collide with each other', async () => {
      const message = outgoing({ sender_her_id: null, msg_type: null, state: 'rejected', error_code: 'T01' });
      await store.recordMessage({ message, payloads: [], events: [], outbox: [] });
      await store.recordMessage({ message, payloads: [], events: [], outbox: [] });
      expect((await store.findByMsgId(message.msg_id)).map((m) => m.sender_her_id)).to.deep.equal([null, null]);
    });

    it('the outbox hands out due items longest-waiting first, retries deferred ones later and forgets published ones', async () => {
      const first = await store.recordMessage({ message: outgoing(), payloads: [], events: [], outbox: [deliver('1005')] });
      now = seconds(1);
      const second = await store.recordMessage({
        message: outgoing(),
        payloads: [],
        events: [],
        outbox: [deliver('1006'), deliver('1007', { next_attempt_at: seconds(600) })],
      });
      const [o1] = first.outboxIds;
      const [o2, o3] = second.outboxIds;
      const due = async (at: Date, limit = 10) => (await store.pendingOutbox(at, limit)).map((o) => o.id);

      expect(await due(seconds(2))).to.deep.equal([o1, o2]);
      expect(await due(seconds(2), 1)).to.deep.equal([o1]);

      await store.deferOutbox(o1, seconds(300), 'confirm timeout');
      await store.deferOutbox(o1, seconds(300), 'channel closed');
      expect(await due(seconds(2))).to.deep.equal([o2]);
      expect(await due(seconds(300))).to.deep.equal([o2, o1]);
      const [deferred] = await store.outboxForMessage(first.messageId);
      expect(deferred).to.include({ attempts: 2, last_error: 'channel closed', next_attempt_at: seconds(300).toISOString(), state: 'pending' });

      now = seconds(3);
      await store.markOutboxPublished(o2, { stage: 'publish', event: 'published', detail: { routingKey: '1006' } });
      expect(await due(seconds(3600))).to.deep.equal([o1, o3]);
      const published = (await store.outboxForMessage(second.messageId))[0];
      expect(published).to.include({ state: 'published', published_at: seconds(3).toISOString() });
      const [entry] = await store.timeline((await store.getMessage(second.messageId))!.msg_id);
      expect(entry.events.map((e) => [e.event, e.at])).to.deep.equal([['published', seconds(3).toISOString()]]);
    });

    it('an alert can be queued without a message, and publishing it writes no timeline event', async () => {
      const id = await store.enqueueOutbox(null, {
        purpose: 'alert',
        exchange: 'gateway.alerts',
        routing_key: 'dlq-not-empty',
        headers: {},
        content_type: 'application/json',
        body: Buffer.from('{"kind":"dlq-not-empty"}'),
      });
      expect((await store.pendingOutbox(T0, 10)).map((o) => [o.id, o.message_id])).to.deep.equal([[id, null]]);
      await store.markOutboxPublished(id, { stage: 'publish', event: 'published' });
      expect(await store.pendingOutbox(T0, 10)).to.deep.equal([]);
      expect((await rowCounts(db)).events).to.equal(0);
    });

    it('a held message routed later changes state, gets its event and its delivery in one go', async () => {
      const message = outgoing({ state: 'held' });
      const { messageId } = await store.recordMessage({ message, payloads: [], events: [{ stage: 'route', event: 'held' }], outbox: [] });
      now = seconds(60);
      const outboxIds = await store.updateMessage(
        messageId,
        { state: 'published', bydel: '030103', route_rule: 'manual' },
        { stage: 'route', event: 'routed-manually', detail: { bydel: '030103' } },
        [deliver('1003')],
      );
      expect(outboxIds).to.have.length(1);
      expect(await store.getMessage(messageId)).to.include({
        state: 'published',
        bydel: '030103',
        route_rule: 'manual',
        created_at: T0.toISOString(),
        updated_at: seconds(60).toISOString(),
      });
      expect((await store.outboxForMessage(messageId)).map((o) => o.id)).to.deep.equal(outboxIds);

      await store.updateMessage(messageId, { error_code: null });
      expect((await store.timeline(message.msg_id))[0].events.map((e) => e.event)).to.deep.equal(['held', 'routed-manually']);
      await store.updateMessage(-1, { state: 'x' }).then(
        () => expect.fail('updating a missing message succeeded'),
        (e: Error) => expect(e.message).to.match(/does not exist/),
      );
    });

    it('the timeline shows every row of a MsgId with its events in the order they happened', async () => {
      const message = outgoing();
      const out = await store.recordMessage({
        message,
        payloads: [],
        events: [
          { stage: 'receive', event: 'received', at: seconds(0) },
          { stage: 'validate', event: 'validated', at: seconds(0) },
          { stage: 'route', event: 'routed', at: seconds(1) },
        ],
        outbox: [],
      });
      // an AppRec that echoes the MsgId comes back from the bydel
      const back = await store.recordMessage({
        message: { ...message, direction: 'in', sender_her_id: '1005', msg_type: 'APPREC' },
        payloads: [],
        events: [{ stage: 'receive', event: 'received', at: seconds(30) }],
        outbox: [],
      });
      await store.addEvent(out.messageId, { stage: 'publish', event: 'published', at: seconds(2) });
      // recorded late, but it happened before the AppRec arrived
      await store.addEvent(out.messageId, { stage: 'transport', event: 'acknowledged', at: seconds(20) });
      now = seconds(40);
      await store.addEvent(out.messageId, { stage: 'receipt', event: 'apprec-ok' });
      await store.addEvent(out.messageId, { stage: 'transport', event: 'ack-late', at: seconds(10) });

      const timeline = await store.timeline(message.msg_id);
      expect(timeline.map((t) => t.message.id)).to.deep.equal([out.messageId, back.messageId]);
      expect(timeline[0].events.map((e) => e.event)).to.deep.equal(['received', 'validated', 'routed', 'published', 'ack-late', 'acknowledged', 'apprec-ok']);
      expect(timeline[1].events.map((e) => e.event)).to.deep.equal(['received']);
      expect(await store.timeline('no-such-msg-id')).to.deep.equal([]);
    });

    it('payload and outbox bodies come back byte for byte', async () => {
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const notUtf8 = Buffer.from([0xef, 0xbb, 0xbf, 0x3c, 0x00, 0xc3, 0x28, 0xff, 0xfe, 0x0d, 0x0a, 0x00]);
      const large = randomBytes(2 * 1024 * 1024);
      // a view into a larger buffer, not a Buffer of its own
      const view = new Uint8Array(randomBytes(64).buffer, 16, 32);
      const bodies = [everyByte, notUtf8, large, Buffer.alloc(0), view];
      const { messageId } = await store.recordMessage({
        message: outgoing(),
        payloads: bodies.map((body, i) => ({ kind: `part${i}`, content_type: 'application/octet-stream', body })),
        events: [],
        outbox: [deliver('1005', { body: notUtf8 })],
      });
      const stored = await store.payloads(messageId);
      expect(stored.map((p) => p.kind)).to.deep.equal(['part0', 'part1', 'part2', 'part3', 'part4']);
      stored.forEach((p, i) => {
        expect(Buffer.isBuffer(p.body)).to.equal(true);
        expect(Buffer.compare(p.body, Buffer.from(bodies[i])), p.kind).to.equal(0);
      });
      expect(Buffer.compare((await store.outboxForMessage(messageId))[0].body, notUtf8)).to.equal(0);
    });

    it('messages are found by dedupe key, by content hash and by MsgId', async () => {
      const hash = 'a'.repeat(64);
      const a = await store.recordMessage({ message: outgoing({ content_hash: hash }), payloads: [], events: [], outbox: [] });
      // the EPJ resends the same content under a new MsgId
      const b = await store.recordMessage({ message: outgoing({ content_hash: hash }), payloads: [], events: [], outbox: [] });
      await store.recordMessage({ message: outgoing({ direction: 'in', content_hash: hash }), payloads: [], events: [], outbox: [] });

      expect((await store.findByContentHash('out', hash)).map((m) => m.id)).to.deep.equal([a.messageId, b.messageId]);
      expect(await store.findByContentHash('out', 'b'.repeat(64))).to.deep.equal([]);
      const first = (await store.getMessage(a.messageId))!;
      expect(await store.findMessage('out', '8142519', first.msg_id)).to.deep.equal(first);
      expect(await store.findMessage('in', '8142519', first.msg_id)).to.equal(undefined);
      expect(await store.findByMsgId(first.msg_id)).to.deep.equal([first]);
      expect(await store.getMessage(999_999)).to.equal(undefined);
    });

    it('ops actions are audited', async () => {
      now = seconds(5);
      const id = await store.audit({ actor: 'ops:kari', action: 'dlq.discard', target: 'dlq:17', reason: 'test message', detail: { count: 1 } });
      const row = await db.kysely.selectFrom('audit').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      expect(row).to.deep.include({ at: seconds(5).toISOString(), actor: 'ops:kari', action: 'dlq.discard', target: 'dlq:17', reason: 'test message' });
      expect(JSON.parse(row.detail!)).to.deep.equal({ count: 1 });
      await store.audit({ actor: 'cli', action: 'config.check' });
      expect((await rowCounts(db)).audit).to.equal(2);
    });

    it('answers a ping', async () => {
      await store.ping();
    });

    if (backend.dialect === 'sqlite') {
      it('the SQLite file is created with its directory, in WAL mode with synchronous=FULL', async () => {
        expect(existsSync(url.slice('sqlite:'.length))).to.equal(true);
        const journal = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(db.kysely);
        const sync = await sql<{ synchronous: number }>`pragma synchronous`.execute(db.kysely);
        const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(db.kysely);
        expect([journal.rows[0].journal_mode, sync.rows[0].synchronous, fk.rows[0].foreign_keys]).to.deep.equal(['wal', 2, 1]);
      });
    }

    if (backend.dialect === 'postgres') {
      it('BIGINT ids and counts come back as numbers, as on SQLite', async () => {
        const { messageId } = await store.recordMessage({ message: outgoing(), payloads: [], events: [], outbox: [] });
        const types = await sql<{ t: string }>`select pg_typeof(id)::text as t from messages limit 1`.execute(db.kysely);
        expect(types.rows[0].t).to.equal('bigint');
        expect(messageId).to.be.a('number');
        expect((await rowCounts(db)).messages).to.equal(1);
      });
    }
  });
}
