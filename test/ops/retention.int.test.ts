// Payload retention with a controlled clock, on both stores: bodies of finished messages older
// than payloadDays go, metadata and timelines stay, and nothing unresolved loses its body.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createLogger } from '../../src/observability/log.js';
import { classifyDeadLetter } from '../../src/ops/deadLetters/classify.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { PayloadRetention } from '../../src/ops/retention.js';
import type { MessageState } from '../../src/shared/vocabulary.js';
import { openDatabase } from '../../src/tracking/db.js';
import { type NewMessage, Store } from '../../src/tracking/store.js';
import { type Backend, testBackends } from '../support/databases.js';
import { type Seed, seedMessage } from '../support/seed.js';

const DAY = 24 * 60 * 60 * 1000;
const T0 = new Date('2026-01-05T10:00:00.000Z');
const log = createLogger('silent');

for (const backend of testBackends()) {
  describe(`payload retention (${backend.dialect})`, function () {
    this.timeout(30000);
    let now: Date;
    let store: Store;
    let deadLetters: DeadLetterRepository;
    const clock = () => now;

    before(async () => {
      const db = await openDatabase(await backend.create());
      store = new Store(db, clock);
      deadLetters = new DeadLetterRepository(db, clock);
    });
    after(async () => {
      await store?.close();
      await (backend as Backend).removeAll();
    });

    const message = (state: MessageState, extra: Partial<NewMessage> = {}): NewMessage => ({
      msg_id: randomUUID(),
      direction: 'out',
      sender_her_id: '8142519',
      msg_type: 'LOG_INNLAGT',
      state,
      ...extra,
    });
    const original = [{ kind: 'original' as const, content_type: 'application/xml', body: Buffer.from('<MsgHead>personal data</MsgHead>') }];
    const storeAtT0 = async (state: MessageState, more: Partial<Seed> = {}) => {
      now = T0;
      const m = message(state);
      const { messageId } = await seedMessage(store, {
        message: m,
        payloads: original,
        events: [{ stage: 'receive', event: 'received' }],
        outbox: [],
        ...more,
      });
      return { messageId, msgId: m.msg_id };
    };

    it('a finished message loses its bodies after payloadDays; its metadata and timeline stay', async () => {
      const done = await storeAtT0('published', {
        outbox: [{ purpose: 'deliver', exchange: 'x', routing_key: 'k', headers: {}, content_type: 'application/xml', body: Buffer.from('<signed/>') }],
      });
      const [item] = await store.outboxForMessage(done.messageId);
      await store.markOutboxPublished({ ...item, headers: JSON.parse(item.headers) });

      now = new Date(T0.getTime() + 91 * DAY);
      const result = await new PayloadRetention(store.db, 90, log, clock).runOnce();
      expect(result.messages).to.be.at.least(1);

      expect(await store.payloads(done.messageId)).to.have.length(0);
      expect(Buffer.from((await store.outboxForMessage(done.messageId))[0].body).length).to.equal(0);
      expect(await store.getMessage(done.messageId)).to.include({ state: 'published' });
      const events = (await store.timeline(done.msgId))[0].events.map((e) => e.event);
      expect(events).to.include.members(['received', 'payload-expired']);
    });

    it('a body younger than payloadDays stays', async () => {
      const young = await storeAtT0('published');
      now = new Date(T0.getTime() + 89 * DAY);
      await new PayloadRetention(store.db, 90, log, clock).runOnce();
      expect(await store.payloads(young.messageId)).to.have.length(1);
    });

    it('nothing unresolved is purged: held, pending outbox, open expectation, open dead letter', async () => {
      const held = await storeAtT0('held');
      const pending = await storeAtT0('published', {
        outbox: [{ purpose: 'deliver', exchange: 'x', routing_key: 'k', headers: {}, content_type: 'a', body: Buffer.from('b') }],
      });
      const awaiting = await storeAtT0('published', { expectations: [{ kind: 'answer', dueAt: T0 }] });
      const rejected = await storeAtT0('rejected');
      const facts = classifyDeadLetter(
        { 'x-error-code': 'T02', 'x-source-queue': 'epj.outbound', 'msg-id': rejected.msgId },
        randomUUID(),
        Buffer.from('<bad/>'),
      );
      const deadLetterId = await deadLetters.record(facts, Buffer.from('<bad/>'), {});

      now = new Date(T0.getTime() + 400 * DAY);
      await new PayloadRetention(store.db, 90, log, clock).runOnce();
      for (const m of [held, pending, awaiting, rejected]) expect(await store.payloads(m.messageId), m.msgId).to.have.length(1);
      expect(await deadLetters.body(deadLetterId!)).to.be.instanceOf(Buffer);

      // once the dead letter is discarded, both it and the rejected message's body expire
      await deadLetters.resolve(deadLetterId!, 'discarded', { actor: 'test', action: 'dlq.discard', reason: 'test' });
      await new PayloadRetention(store.db, 90, log, clock).runOnce();
      expect(await store.payloads(rejected.messageId)).to.have.length(0);
      expect(await deadLetters.body(deadLetterId!)).to.equal(undefined);
      expect((await deadLetters.get(deadLetterId!))?.state).to.equal('discarded');
    });
  });
}
