// An EPJ that sends each message twice in quick succession (a client retry after a slow confirm):
// the second copy finds the first one stored while it is still being published. It must not be
// published again, neither by one gateway nor by two gateway processes on one PostgreSQL.
import type { ConfirmChannel } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { type Backend, postgresBackend, sqliteBackend } from '../support/databases.js';
import { type GatewayProcess, spawnGateway } from '../support/gatewayProcess.js';
import { Peer, testConfig } from '../support/harness.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';
const PAIRS = 50;

/**
 * Each copy follows its first `lag` messages later: 0 sends the pairs side by side; with two
 * consumers a lag lets the first copy be stored while the second is still on its way.
 */
async function sendPairs(peer: Peer, queue: string, lag: number): Promise<string[]> {
  const template = readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');
  const bodies = Array.from({ length: PAIRS }, () => readdressToOslo(template, { postalCode: '0350' }));
  const send = (i: number) => peer.ch.sendToQueue(queue, Buffer.from(bodies[i].xml), { persistent: true, contentType: 'application/xml' });
  for (let i = 0; i < PAIRS + lag; i++) {
    if (i < PAIRS) send(i);
    if (i - lag >= 0) send(i - lag);
  }
  await (peer.ch as ConfirmChannel).waitForConfirms();
  return bodies.map((b) => b.msgId);
}

/** Every copy that reaches the bydel, by MsgId, until `quietMs` pass with nothing new after all arrived. */
async function arrivals(peer: Peer, queue: string, ids: string[], timeoutMs: number, quietMs: number): Promise<Map<string, number>> {
  const count = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  let lastArrival = Date.now();
  while (Date.now() < deadline) {
    const got = await peer.take(queue, 100, 200);
    for (const m of got) {
      const id = String(m.properties.headers?.['msg-id']);
      count.set(id, (count.get(id) ?? 0) + 1);
    }
    if (got.length > 0) lastArrival = Date.now();
    if (ids.every((id) => count.has(id)) && Date.now() - lastArrival > quietMs) break;
  }
  return count;
}

function expectEachOnce(count: Map<string, number>, ids: string[]) {
  const missing = ids.filter((id) => !count.has(id));
  const twice = [...count].filter(([, n]) => n > 1).map(([id]) => id);
  expect({ missing: missing.length, deliveredMoreThanOnce: twice.length, distinct: count.size }).to.deep.equal({
    missing: 0,
    deliveredMoreThanOnce: 0,
    distinct: PAIRS,
  });
}

const setups: { name: string; backend: () => Backend; processes: number; lag: number }[] = [
  { name: 'one gateway on SQLite', backend: sqliteBackend, processes: 1, lag: 0 },
  { name: 'two gateway processes on one PostgreSQL', backend: postgresBackend, processes: 2, lag: 1 },
];

for (const setup of setups) {
  describe(`the same MsgId sent twice back to back, ${PAIRS} times (${setup.name})`, function () {
    this.timeout(120000);
    const backend = setup.backend();
    let config: GatewayConfig;
    let peer: Peer;
    const gateways: GatewayProcess[] = [];

    before(async () => {
      const url = await backend.create();
      config = testConfig((c) => {
        c.database.url = url;
        c.logLevel = 'info';
      });
      peer = await Peer.connect();
      for (let i = 0; i < setup.processes; i++) gateways.push(await spawnGateway(config));
    });

    after(async () => {
      for (const g of gateways) g.kill('SIGTERM');
      await Promise.all(gateways.map((g) => g.exited));
      await peer?.deleteRun(config);
      await peer?.close();
      await backend.removeAll();
    });

    it('each message reaches the bydel exactly once, and the second copy is recorded as a duplicate', async () => {
      const ids = await sendPairs(peer, config.broker.queues.epjOutbound, setup.lag);
      const count = await arrivals(peer, `${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, ids, 60000, 3000);
      expectEachOnce(count, ids);
      const duplicates = gateways.flatMap((g) => g.output).filter((l) => l.includes('"GW-1003"'));
      expect(duplicates.length).to.equal(PAIRS);
    });
  });
}
