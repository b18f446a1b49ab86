// The gateway is killed (-9) with a thousand messages in flight, and the database goes away
// for half a minute: every message still reaches its bydel, none is dead-lettered.
import type { ConfirmChannel } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { testBackends } from '../support/databases.js';
import { type GatewayProcess, spawnGateway } from '../support/gatewayProcess.js';
import { Peer, startGateway, testConfig } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';
import { startPrivatePostgres } from '../support/privatePostgres.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';

async function sendNotices(peer: Peer, queue: string, n: number): Promise<Set<string>> {
  const template = readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');
  const sent = new Set<string>();
  for (let i = 0; i < n; i++) {
    const { xml, msgId } = readdressToOslo(template, { postalCode: '0350' });
    sent.add(msgId);
    peer.ch.sendToQueue(queue, Buffer.from(xml), { persistent: true });
  }
  await (peer.ch as ConfirmChannel).waitForConfirms();
  return sent;
}

async function collect(peer: Peer, queue: string, expected: Set<string>, timeoutMs: number): Promise<string[]> {
  const arrived = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  while (arrived.size < expected.size && Date.now() < deadline) {
    for (const m of await peer.take(queue, 200, 1000)) arrived.add(String(m.properties.headers?.['msg-id']));
  }
  return [...expected].filter((id) => !arrived.has(id));
}

for (const backend of testBackends()) {
  describe(`kill -9 with 1,000 messages in flight (${backend.dialect})`, function () {
    this.timeout(240000);
    let config: GatewayConfig;
    let peer: Peer;
    const children: GatewayProcess[] = [];

    before(async () => {
      const url = await backend.create();
      config = testConfig((c) => {
        c.database.url = url;
        c.logLevel = 'info'; // the start-up line (GW-2100) tells spawnGateway the gateway is up
      });
      peer = await Peer.connect();
    });

    after(async () => {
      for (const c of children) c.kill();
      await peer?.deleteRun(config);
      await peer?.close();
      await backend.removeAll();
    });

    it('after a restart every message reaches its bydel; receivers can drop repeats by MsgId; none is lost', async () => {
      children.push(await spawnGateway(config));
      const bydelQueue = `${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`;
      const sent = await sendNotices(peer, config.broker.queues.epjOutbound, 1000);
      // let it get well into the batch, then pull the plug
      await eventually('150 messages at the bydel', async () => (await peer.ch.checkQueue(bydelQueue)).messageCount >= 150, 30_000);
      children[0].kill('SIGKILL');
      await children[0].exited;
      expect((await peer.ch.checkQueue(bydelQueue)).messageCount, 'killed mid-batch').to.be.lessThan(1000);

      children.push(await spawnGateway(config));
      const missing = await collect(peer, bydelQueue, sent, 180000);
      expect(missing, `${missing.length} lost`).to.have.length(0);
      expect(await peer.take(config.broker.queues.dlq, 1, 500)).to.have.length(0);
    });
  });
}

describe('PostgreSQL stopped for 30 s while messages flow', function () {
  this.timeout(180000);
  let config: GatewayConfig;
  let peer: Peer;
  let stopGateway: (() => Promise<void>) | undefined;
  let db: Awaited<ReturnType<typeof startPrivatePostgres>>;

  before(async () => {
    db = await startPrivatePostgres();
    config = testConfig((c) => {
      c.database.url = db.url;
      c.logLevel = 'warn';
      c.retry = { initialDelay: 'PT0.5S', maxDelay: 'PT5S', maxAttempts: 30 };
    });
    const { gateway } = await startGateway(config);
    stopGateway = () => gateway.stop();
    peer = await Peer.connect();
  });

  after(async () => {
    await stopGateway?.();
    await peer?.deleteRun(config);
    await peer?.close();
    db?.destroy();
  });

  it('messages wait, none is dead-lettered, and all go through after', async () => {
    const bydelQueue = `${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`;
    const first = await sendNotices(peer, config.broker.queues.epjOutbound, 50);
    expect(await collect(peer, bydelQueue, first, 30000)).to.have.length(0);

    db.stop();
    const during = await sendNotices(peer, config.broker.queues.epjOutbound, 200);
    await sleep(30000);
    expect(await peer.take(config.broker.queues.dlq, 1, 200), 'nothing dead-lettered while the database is down').to.have.length(0);
    expect(await peer.take(bydelQueue, 1, 200), 'nothing delivered without being stored').to.have.length(0);
    db.start();

    expect(await collect(peer, bydelQueue, during, 90000)).to.have.length(0);
    expect(await peer.take(config.broker.queues.dlq, 1, 500)).to.have.length(0);
    expect(await peer.take(config.broker.queues.epjInbound, 1, 200)).to.have.length(0);
  });
});
