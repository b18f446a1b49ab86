// An ops alert is raised once when its condition starts and resolved once when it clears, however
// many checks run in between, and its state survives a restart (it lives in the store).
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Broker } from '../../src/broker/connection.js';
import { createLogger } from '../../src/observability/log.js';
import { Metrics } from '../../src/observability/metrics.js';
import { classifyDeadLetter } from '../../src/ops/deadLetters/classify.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { OpsChecker } from '../../src/ops/opsAlerts.js';
import type { OutboxPublisher } from '../../src/outbox/relay.js';
import { openDatabase } from '../../src/tracking/db.js';
import { workingCalendar } from '../../src/tracking/deadlines.js';
import { Store } from '../../src/tracking/store.js';
import { testConfig } from '../support/harness.js';

const SATURDAY = new Date('2026-11-21T10:00:00Z');

describe('ops alerts: one firing, one resolved', function () {
  this.timeout(30000);
  const config = testConfig();
  let store: Store;
  let deadLetters: DeadLetterRepository;
  // no broker: queue checks are skipped, as while RabbitMQ is down
  const broker = { withChannel: async () => Promise.reject(new Error('not connected')) } as unknown as Broker;
  const outbox = { publishNow: async () => true, lease: () => ({ owner: 'ops-test', until: SATURDAY }) } as unknown as OutboxPublisher;
  const checker = () =>
    new OpsChecker({
      config,
      store,
      deadLetters,
      broker,
      outbox,
      calendar: workingCalendar(config),
      metrics: new Metrics(),
      log: createLogger('silent'),
      now: () => SATURDAY,
    });
  const alerts = async () =>
    (await store.db.kysely.selectFrom('outbox').select('body').where('purpose', '=', 'alert').orderBy('id').execute()).map((r) =>
      JSON.parse(Buffer.from(r.body).toString('utf8')),
    );

  before(async () => {
    store = new Store(await openDatabase(config.database.url));
    deadLetters = new DeadLetterRepository(store.db);
  });
  after(() => store?.close());

  it('dlq-not-empty fires once for a waiting dead letter, and resolves once when it is discarded', async () => {
    const id = await deadLetters.record(
      classifyDeadLetter({ 'x-error-code': 'T01', 'x-source-queue': 'epj.outbound' }, randomUUID(), Buffer.from('x')),
      Buffer.from('x'),
      {},
    );
    for (let i = 0; i < 3; i++) await checker().checkOnce();
    let sent = await alerts();
    expect(sent.map((a) => `${a.kind}:${a.state}`)).to.deep.equal(['dlq-not-empty:firing']);
    expect(sent[0]).to.include({ eventId: 'GW-4101', severity: 'warning' });

    await deadLetters.resolve(id!, 'discarded', { actor: 'test', action: 'dlq.discard', reason: 'test' });
    for (let i = 0; i < 3; i++) await checker().checkOnce();
    sent = await alerts();
    expect(sent.map((a) => `${a.kind}:${a.state}`)).to.deep.equal(['dlq-not-empty:firing', 'dlq-not-empty:resolved']);
    expect(sent[1].firingId).to.equal(sent[0].id);
  });

  it('no traffic is not an alert on a Saturday', async () => {
    expect((await alerts()).filter((a) => a.kind === 'no-traffic')).to.have.length(0);
  });
});
