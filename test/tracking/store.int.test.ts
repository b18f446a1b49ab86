import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { sql } from 'kysely';
import { createLogger } from '../../src/observability/log.js';
import type { NewOutboxItem } from '../../src/outbox/items.js';
import { OutboxPublisher } from '../../src/outbox/relay.js';
import { insertOutboxItems } from '../../src/outbox/table.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { migrations } from '../../src/tracking/migrations.js';
import { type Outcome, outcome } from '../../src/tracking/outcome.js';
import { Receipts } from '../../src/tracking/receipts.js';
import { OutcomeRecorder, type Recorded } from '../../src/tracking/recorder.js';
import { type NewMessage, Store } from '../../src/tracking/store.js';
import { postgresBackend, sqliteBackend } from '../support/databases.js';
import { eventually } from '../support/poll.js';

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

type Parts = Partial<Omit<Outcome, 'kind' | 'message' | 'log'>>;

/** An outcome with a new message row, as a flow builds one. */
const inserting = (message: NewMessage, parts: Parts = {}) =>
  outcome('delivered', { insert: message }, { event: 'GW-TEST', stage: 'store', decision: 'test' }, parts);

function stored(r: Recorded): { messageId: number; outboxIds: number[] } {
  if (!r.stored) throw new Error(`not stored: ${r.conflict}`);
  return { messageId: r.messageId, outboxIds: r.items.map((i) => i.id) };
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
    let recorder: OutcomeRecorder;
    let now: Date;
    const record = async (o: Outcome) => stored(await recorder.record(o));

    before(async () => {
      url = await backend.create();
      db = await openDatabase(url);
      store = new Store(db, () => now);
      // no publisher: what is stored is due for a relay at once
      recorder = new OutcomeRecorder({ store, receipts: new Receipts(db.kysely, { answerFallbackWindow: 'P14D' }), log: createLogger('silent') });
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
      const { messageId } = await record(inserting(outgoing()));
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

    it('an outcome is stored with its payloads, timeline, expectations and outbox in one go', async () => {
      const message = outgoing({ bydel: '030105', route_rule: 'address', receiver_l1_her_id: '1001', receiver_l2_her_id: '1005' });
      const { messageId, outboxIds } = await record(
        inserting(message, {
          payloads: [
            { kind: 'original', content_type: 'application/xml', body: Buffer.from('<MsgHead/>') },
            { kind: 'signed', content_type: 'application/xml', body: Buffer.from('<Envelope/>') },
          ],
          events: [
            { stage: 'receive', event: 'received', detail: { queue: 'epj.outbound' } },
            { stage: 'route', event: 'routed', detail: { bydel: '030105', rule: 'address' } },
          ],
          expectations: [{ kind: 'apprec', dueAt: seconds(3600) }],
          outbox: [deliver('1005'), deliver('1005', { purpose: 'apprec', exchange: '', routing_key: 'epj.inbound' })],
        }),
      );

      expect(messageId).to.be.a('number');
      expect(outboxIds).to.have.length(2);
      expect(outboxIds[0]).to.be.lessThan(outboxIds[1]);

      const row = await store.getMessage(messageId);
      expect(row).to.deep.include({ ...message, id: messageId, created_at: T0.toISOString(), updated_at: T0.toISOString() });
      expect(row?.error_code).to.equal(null);

      expect((await store.payloads(messageId)).map((p) => [p.kind, p.body.toString()])).to.deep.equal([
        ['original', '<MsgHead/>'],
        ['signed', '<Envelope/>'],
      ]);
      expect(await store.expectation(messageId, 'apprec')).to.include({ state: 'open', due_at: seconds(3600).toISOString(), alert_state: null });

      const outbox = await store.outboxForMessage(messageId);
      expect(outbox.map((o) => o.id)).to.deep.equal(outboxIds);
      expect(outbox[0]).to.deep.include({
        message_id: messageId,
        purpose: 'deliver',
        exchange: 'nhn.outbound',
        routing_key: '1005',
        state: 'pending',
        attempts: 0,
        // no publisher in this process: due for the relay at once, held by no one
        next_attempt_at: T0.toISOString(),
        claimed_by: null,
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

    it('a resent message (same sender HER-id and MsgId) conflicts and nothing of it is written', async () => {
      const message = outgoing();
      const first = await record(
        inserting(message, {
          payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('first') }],
          events: [{ stage: 'receive', event: 'received' }],
          outbox: [deliver('1005')],
        }),
      );
      const before = await rowCounts(db);

      const resend = await recorder.record(
        inserting(
          { ...message, content_hash: 'another' },
          {
            payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('second') }],
            events: [{ stage: 'receive', event: 'received' }],
            outbox: [deliver('1005')],
          },
        ),
      );
      expect(resend).to.deep.equal({ stored: false, conflict: 'duplicate', existingId: first.messageId });
      expect(await rowCounts(db)).to.deep.equal(before);
      expect((await store.payloads(first.messageId)).map((p) => p.body.toString())).to.deep.equal(['first']);

      // The store still works after the refused transaction (nothing half-open on the connection).
      await record(inserting({ ...message, sender_her_id: '999' }));
      await record(inserting({ ...message, direction: 'in' }));
      expect(await store.findByMsgId(message.msg_id)).to.have.length(3);
    });

    it('a write that fails halfway leaves nothing behind', async () => {
      const message = outgoing();
      const broken = { ...deliver('1005'), exchange: null as unknown as string };
      await recorder
        .record(
          inserting(message, {
            payloads: [{ kind: 'original', content_type: 'application/xml', body: Buffer.from('x') }],
            events: [{ stage: 'receive', event: 'received' }],
            expectations: [{ kind: 'apprec', dueAt: seconds(60) }],
            outbox: [deliver('1005'), broken],
          }),
        )
        .then(
          () => expect.fail('the NOT NULL violation was not reported'),
          (e: unknown) => expect(String(e)).to.match(/null|NOT NULL/i),
        );
      expect(await rowCounts(db)).to.deep.equal({ messages: 0, payloads: 0, events: 0, outbox: 0, audit: 0 });

      // the dedupe key is free: the retry of the same delivery is stored normally
      await record(inserting(message, { outbox: [deliver('1005')] }));
      expect(await store.findMessage('out', message.sender_her_id!, message.msg_id)).to.include({ msg_id: message.msg_id });
    });

    it('messages whose sender could not be read are kept, and never collide with each other', async () => {
      const message = outgoing({ sender_her_id: null, msg_type: null, state: 'rejected', error_code: 'T01' });
      await record(inserting(message));
      await record(inserting(message));
      expect((await store.findByMsgId(message.msg_id)).map((m) => m.sender_her_id)).to.deep.equal([null, null]);
    });

    it('an update in place holds only while its guard does: a held message is routed once', async () => {
      const message = outgoing({ state: 'held' });
      const { messageId } = await record(inserting(message, { events: [{ stage: 'route', event: 'held-unroutable' }] }));
      now = seconds(60);
      const routed = (by: string) =>
        outcome(
          'routed',
          { update: messageId, patch: { state: 'received', bydel: '030103', route_rule: 'manual' }, guard: { state: 'held' } },
          { event: 'GW-TEST', stage: 'route', decision: 'test' },
          {
            events: [{ stage: 'route', event: 'routed', detail: { bydel: '030103' } }],
            outbox: [deliver('1003')],
            effects: [{ effect: 'audit', entry: { actor: by, action: 'message.route', target: `message:${message.msg_id}` } }],
          },
        );
      const first = await record(routed('ops:kari'));
      expect(first.outboxIds).to.have.length(1);
      expect(await store.getMessage(messageId)).to.include({
        state: 'received',
        bydel: '030103',
        route_rule: 'manual',
        created_at: T0.toISOString(),
        updated_at: seconds(60).toISOString(),
      });

      const before = await rowCounts(db);
      expect(await recorder.record(routed('ops:ola'))).to.deep.equal({ stored: false, conflict: 'changed' });
      expect(await rowCounts(db)).to.deep.equal(before);
      expect((await store.timeline(message.msg_id))[0].events.map((e) => e.event)).to.deep.equal(['held-unroutable', 'routed']);
      expect((await db.kysely.selectFrom('audit').select('actor').execute()).map((a) => a.actor)).to.deep.equal(['ops:kari']);
    });

    it('a repeat adds to the stored message only: its timeline and an item to publish again', async () => {
      const { messageId } = await record(inserting(outgoing(), { outbox: [deliver('1005')] }));
      const again = await record(
        outcome(
          'duplicate',
          { existing: messageId },
          { event: 'GW-TEST', stage: 'dedupe', decision: 'test' },
          {
            events: [{ stage: 'dedupe', event: 'duplicate-answered-again' }],
            outbox: [deliver('1005', { purpose: 'receipt' })],
          },
        ),
      );
      expect(again.messageId).to.equal(messageId);
      expect((await store.outboxForMessage(messageId)).map((o) => o.purpose)).to.deep.equal(['deliver', 'receipt']);
      expect((await rowCounts(db)).messages).to.equal(1);
    });

    it('an expectation the outcome resolves is met, with its firing alert resolved in the same transaction', async () => {
      const { messageId } = await record(
        inserting(outgoing({ state: 'held' }), { expectations: [{ kind: 'routing', dueAt: T0, firing: { alertId: 'a-1', nextAlertAt: seconds(3600) } }] }),
      );
      expect(await store.expectation(messageId, 'routing')).to.include({
        state: 'open',
        alert_state: 'firing',
        alert_id: 'a-1',
        next_alert_at: seconds(3600).toISOString(),
      });
      now = seconds(10);
      await record(
        outcome(
          'routed',
          { update: messageId, patch: { state: 'received' } },
          { event: 'GW-TEST', stage: 'route', decision: 'test' },
          {
            effects: [{ effect: 'resolve', kind: 'routing', by: 'manual-route', alertResolved: true }],
          },
        ),
      );
      expect(await store.expectation(messageId, 'routing')).to.include({
        state: 'met',
        resolved_by: 'manual-route',
        resolved_at: seconds(10).toISOString(),
        alert_state: 'resolved',
        next_alert_at: null,
      });
    });

    it('the outbox hands out due items longest-waiting first, retries deferred ones later and forgets published ones', async () => {
      const first = await record(inserting(outgoing(), { outbox: [deliver('1005')] }));
      now = seconds(1);
      const second = await record(inserting(outgoing(), { outbox: [deliver('1006'), deliver('1007')] }));
      const [o1] = first.outboxIds;
      const [o2, o3] = second.outboxIds;
      const due = async (at: Date, limit = 10) => (await store.dueOutbox(at, limit)).map((o) => o.id);

      expect(await due(seconds(2))).to.deep.equal([o1, o2, o3]);
      expect(await due(seconds(2), 1)).to.deep.equal([o1]);

      await store.deferOutbox(o1, seconds(300), 'confirm timeout');
      await store.deferOutbox(o1, seconds(300), 'channel closed');
      await store.deferOutbox(o3, seconds(600), 'channel closed');
      expect(await due(seconds(2))).to.deep.equal([o2]);
      expect(await due(seconds(300))).to.deep.equal([o2, o1]);
      const [deferred] = await store.outboxForMessage(first.messageId);
      expect(deferred).to.include({
        attempts: 2,
        last_error: 'channel closed',
        next_attempt_at: seconds(300).toISOString(),
        state: 'pending',
        claimed_by: null,
      });

      now = seconds(3);
      const [item] = (await store.outboxForMessage(second.messageId)).map((r) => ({ ...r, headers: JSON.parse(r.headers) }));
      await store.markOutboxPublished(item);
      expect(await due(seconds(3600))).to.deep.equal([o1, o3]);
      const published = (await store.outboxForMessage(second.messageId))[0];
      expect(published).to.include({ state: 'published', published_at: seconds(3).toISOString() });
      const message = (await store.getMessage(second.messageId))!;
      expect(message.state).to.equal('published');
      const [entry] = await store.timeline(message.msg_id);
      expect(entry.events.map((e) => [e.event, e.at])).to.deep.equal([['deliver-published', seconds(3).toISOString()]]);
    });

    it('an item is leased to the process that stored it: another claims it only once the lease has run out, and only one of many does', async () => {
      const policy = { initialDelayMs: 1000, maxDelayMs: 60000, intervalMs: 1000, batchSize: 10, leaseMs: 20000 };
      const sent: string[] = [];
      // the live publish is held at the broker until the test lets it go
      let confirm: () => void = () => {};
      const confirmed = new Promise<void>((r) => (confirm = r));
      const live = new OutboxPublisher(
        store,
        () => confirmed,
        createLogger('silent'),
        policy,
        () => now,
      );
      const other = () =>
        new OutboxPublisher(
          store,
          async (_e, key) => void sent.push(key),
          createLogger('silent'),
          policy,
          () => now,
        );
      const liveRecorder = new OutcomeRecorder({
        store,
        receipts: new Receipts(db.kysely, { answerFallbackWindow: 'P14D' }),
        log: createLogger('silent'),
        outbox: live,
      });

      const recording = liveRecorder.record(inserting(outgoing(), { outbox: [deliver('1005')] }));
      let row = await eventually('the stored item', async () => (await store.dueOutbox(seconds(3600), 10))[0]);
      expect(row).to.include({ state: 'pending', claimed_by: live.owner, next_attempt_at: seconds(20).toISOString() });
      const messageId = row.message_id!;

      // a second copy arriving meanwhile finds the publish in progress and leaves it alone
      now = seconds(5);
      expect(await other().resume(messageId)).to.deep.equal({ published: 0, inProgress: 1, deferred: 0 });
      expect(sent).to.deep.equal([]);

      // the live publish confirms: the item is published once, and there is nothing left to resume
      confirm();
      expect((await recording).stored).to.equal(true);
      expect(await other().resume(messageId)).to.deep.equal({ published: 0, inProgress: 0, deferred: 0 });

      // a holder that died: after its lease, exactly one of five replicas takes the item over
      now = seconds(100);
      const crashed = new OutboxPublisher(
        store,
        () => new Promise(() => {}),
        createLogger('silent'),
        policy,
        () => now,
      );
      void new OutcomeRecorder({
        store,
        receipts: new Receipts(db.kysely, { answerFallbackWindow: 'P14D' }),
        log: createLogger('silent'),
        outbox: crashed,
      }).record(inserting(outgoing(), { outbox: [deliver('1006')] }));
      row = await eventually("the crashed holder's item", async () => (await store.dueOutbox(seconds(3600), 10)).find((o) => o.routing_key === '1006'));
      expect(row.claimed_by).to.equal(crashed.owner);
      now = seconds(119);
      expect((await Promise.all([1, 2, 3, 4, 5].map(() => other().resume(row.message_id!)))).map((r) => r.inProgress)).to.deep.equal([1, 1, 1, 1, 1]);
      now = seconds(121);
      const results = await Promise.all([1, 2, 3, 4, 5].map(() => other().resume(row.message_id!)));
      expect(results.map((r) => r.published).reduce((a, b) => a + b)).to.equal(1);
      expect(sent).to.deep.equal(['1006']);
      expect((await store.outboxForMessage(row.message_id!))[0].state).to.equal('published');
    });

    it('an alert without a message is relayed without a timeline event', async () => {
      const alert = { ...deliver('dlq-not-empty'), purpose: 'alert' as const, exchange: 'gateway.alerts' };
      const [id] = await insertOutboxItems(db.kysely, null, [alert], { owner: null, until: T0 }, T0.toISOString());
      const sent: string[] = [];
      const relay = new OutboxPublisher(
        store,
        async (_e, key) => void sent.push(key),
        createLogger('silent'),
        { initialDelayMs: 1000, maxDelayMs: 60000, intervalMs: 1000, batchSize: 10, leaseMs: 20000 },
        () => now,
      );
      expect(await relay.relayOnce()).to.equal(1);
      expect(sent).to.deep.equal(['dlq-not-empty']);
      expect((await db.kysely.selectFrom('outbox').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state).to.equal('published');
      expect((await rowCounts(db)).events).to.equal(0);
    });

    it('the timeline shows every row of a MsgId with its events in the order they happened', async () => {
      const message = outgoing();
      const out = await record(
        inserting(message, {
          events: [
            { stage: 'receive', event: 'received', at: seconds(0) },
            { stage: 'validate', event: 'validated', at: seconds(0) },
            { stage: 'route', event: 'routed', at: seconds(1) },
          ],
        }),
      );
      // an AppRec that echoes the MsgId comes back from the bydel
      const back = await record(
        inserting(
          { ...message, direction: 'in', sender_her_id: '1005', msg_type: 'APPREC' },
          { events: [{ stage: 'receive', event: 'received', at: seconds(30) }] },
        ),
      );
      const later = (events: Parts['events']) =>
        record(outcome('duplicate', { existing: out.messageId }, { event: 'GW-TEST', stage: 'store', decision: 'test' }, { events }));
      await later([{ stage: 'publish', event: 'deliver-published', at: seconds(2) }]);
      // recorded late, but it happened before the AppRec arrived
      await later([{ stage: 'transport', event: 'transport-acked', at: seconds(20) }]);
      now = seconds(40);
      await later([{ stage: 'apprec', event: 'apprec-ok' }]);
      await later([{ stage: 'transport', event: 'transport-signal-repeated', at: seconds(10) }]);

      const timeline = await store.timeline(message.msg_id);
      expect(timeline.map((t) => t.message.id)).to.deep.equal([out.messageId, back.messageId]);
      expect(timeline[0].events.map((e) => e.event)).to.deep.equal([
        'received',
        'validated',
        'routed',
        'deliver-published',
        'transport-signal-repeated',
        'transport-acked',
        'apprec-ok',
      ]);
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
      const { messageId } = await record(
        inserting(outgoing(), {
          payloads: bodies.map((body) => ({ kind: 'original' as const, content_type: 'application/octet-stream', body })),
          outbox: [deliver('1005', { body: notUtf8 })],
        }),
      );
      const stored = await store.payloads(messageId);
      expect(stored).to.have.length(5);
      stored.forEach((p, i) => {
        expect(Buffer.isBuffer(p.body)).to.equal(true);
        expect(Buffer.compare(p.body, Buffer.from(bodies[i])), `part ${i}`).to.equal(0);
      });
      expect(Buffer.compare((await store.outboxForMessage(messageId))[0].body, notUtf8)).to.equal(0);
      expect(Buffer.compare((await store.latestPayload(messageId, 'original'))!.body, Buffer.from(view))).to.equal(0);
    });

    it('messages are found by dedupe key, by content hash and by MsgId', async () => {
      const hash = 'a'.repeat(64);
      const a = await record(inserting(outgoing({ content_hash: hash })));
      // the EPJ resends the same content under a new MsgId
      const b = await record(inserting(outgoing({ content_hash: hash })));
      await record(inserting(outgoing({ direction: 'in', content_hash: hash })));

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
        const { messageId } = await record(inserting(outgoing()));
        const types = await sql<{ t: string }>`select pg_typeof(id)::text as t from messages limit 1`.execute(db.kysely);
        expect(types.rows[0].t).to.equal('bigint');
        expect(messageId).to.be.a('number');
        expect((await rowCounts(db)).messages).to.equal(1);
      });
    }
  });
}
