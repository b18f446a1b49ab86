// Two gateway processes on one PostgreSQL database, both ticking every second: each due row
// yields exactly one firing alert on gateway.alerts (FOR UPDATE SKIP LOCKED + a guarded claim),
// and both replicas take part.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Alert } from '../../src/tracking/alerts.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { postgresBackend } from '../support/databases.js';
import { type GatewayProcess, spawnGateway } from '../support/gatewayProcess.js';
import { Peer, testConfig } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';
import { seedMessage } from '../support/seed.js';

const DUE_NOTICES = 40;
const REJECTED = 10;

describe('deadline scheduler with two gateway processes on one PostgreSQL', function () {
  this.timeout(120000);
  const backend = postgresBackend();
  let config: GatewayConfig;
  let peer: Peer;
  const replicas: GatewayProcess[] = [];
  const tap = `t${randomUUID().slice(0, 8)}.replica-alerts`;

  before(async () => {
    const url = await backend.create();
    config = testConfig((c) => {
      c.database.url = url;
      c.tracking.scheduler = { cron: '* * * * * *', batchSize: 5 };
      c.logLevel = 'info'; // the start-up line (GW-2100) tells spawnGateway a replica is up
    });
    for (let i = 0; i < 2; i++) replicas.push(await spawnGateway(config));
    peer = await Peer.connect();
    await peer.ch.assertQueue(tap, { exclusive: true });
    await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
  });

  after(async () => {
    for (const r of replicas) r.kill('SIGTERM');
    await Promise.all(replicas.map((r) => r.exited));
    await peer?.ch.deleteQueue(tap).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
    await backend.removeAll();
  });

  it('each due row yields exactly one firing alert, and both replicas act', async () => {
    const store = new Store(await openDatabase(config.database.url));
    const past = new Date(Date.now() - 60_000);
    for (let i = 0; i < DUE_NOTICES + REJECTED; i++) {
      const rejected = i >= DUE_NOTICES;
      await seedMessage(store, {
        message: {
          msg_id: randomUUID(),
          direction: 'out',
          sender_her_id: '90998',
          msg_type: 'LOG_UTSKRIVNINGSKLAR',
          state: 'published',
          bydel: '030105',
          receiver_l2_her_id: '9920005',
          ...(rejected ? { apprec_status: 'rejected', apprec_at: past.toISOString() } : {}),
        },
        payloads: [],
        events: [],
        outbox: [],
        expectations: rejected
          ? []
          : [
              { kind: 'transport-ack', dueAt: past },
              { kind: 'apprec', dueAt: past },
            ],
      });
    }
    const expected = DUE_NOTICES * 2 + REJECTED;

    const alerts: Alert[] = [];
    const take = async () => {
      for (let m = await peer.ch.get(tap, { noAck: true }); m; m = await peer.ch.get(tap, { noAck: true })) alerts.push(JSON.parse(m.content.toString('utf8')));
      return alerts.length >= expected;
    };
    await eventually(`${expected} alerts`, take, 60_000);
    await sleep(3000); // later ticks of either replica must add nothing
    await take();

    expect(alerts).to.have.length(expected);
    expect(alerts.every((a) => a.state === 'firing' && a.reminder === undefined)).to.equal(true);
    const keys = new Set(alerts.map((a) => `${a.msgId}/${a.kind}`));
    expect(keys.size).to.equal(expected);
    expect(alerts.filter((a) => a.kind === 'apprec-rejected')).to.have.length(REJECTED);

    const kysely = store.db.kysely;
    const outbox = await kysely
      .selectFrom('outbox')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('purpose', '=', 'alert')
      .executeTakeFirstOrThrow();
    expect(Number(outbox.n)).to.equal(expected);
    const events = await kysely.selectFrom('events').select('detail').where('stage', '=', 'deadline').execute();
    const byReplica = new Map<string, number>();
    for (const e of events) {
      const replica = JSON.parse(e.detail ?? '{}').replica as string;
      byReplica.set(replica, (byReplica.get(replica) ?? 0) + 1);
    }
    expect([...byReplica.values()].reduce((a, b) => a + b, 0)).to.equal(expected);
    expect(byReplica.size, JSON.stringify([...byReplica])).to.equal(2);
    await store.close();
  });
});
