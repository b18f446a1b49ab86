// SIGTERM while the EPJ's messages pour in: the gateway process (`plo-gateway start`, as the
// container runs it) stops consuming, finishes what it holds, flushes and exits 0 within its
// grace period. Every MsgId sent reaches the bydel, now or after the next start: none is lost,
// also when the grace period is too short and the process exits 1 half-way.
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { spawnGateway } from '../support/gatewayProcess.js';
import { Peer, startGateway, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';
const N = 400;

async function sendLoad(peer: Peer, config: GatewayConfig): Promise<Set<string>> {
  const template = readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');
  const sent = new Set<string>();
  for (let i = 0; i < N; i++) {
    const { xml, msgId } = readdressToOslo(template, { postalCode: '0350' });
    sent.add(msgId);
    peer.ch.sendToQueue(config.broker.queues.epjOutbound, Buffer.from(xml), { persistent: true });
  }
  await (peer.ch as import('amqplib').ConfirmChannel).waitForConfirms();
  return sent;
}

/** Takes from the bydel queue until `want` MsgIds have arrived (or the time runs out). */
async function collect(peer: Peer, config: GatewayConfig, arrived: Set<string>, want: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (arrived.size < want && Date.now() < deadline) {
    for (const m of await peer.take(`${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, 50, 500)) arrived.add(String(m.properties.headers?.['msg-id']));
  }
}

async function sigtermUnderLoad(grace: string): Promise<{ code: number | null; deliveredBefore: number; lost: string[]; output: string }> {
  const config = testConfig((c) => {
    c.logLevel = 'warn'; // no start-up line: the test waits for the consumer instead
    c.shutdownGrace = grace;
  });
  const peer = await Peer.connect();
  // the first start declares the queues, then the load arrives while it consumes
  const first = await spawnGateway(config, {}, { awaitStart: false });
  try {
    await untilConsuming(peer, config);
    const sent = await sendLoad(peer, config);
    const arrived = new Set<string>();
    await collect(peer, config, arrived, 30, 60000);
    first.kill('SIGTERM');
    const code = await first.exited;
    const deliveredBefore = arrived.size;

    // the next start delivers whatever was still queued or stored
    const { gateway } = await startGateway(config);
    await collect(peer, config, arrived, sent.size, 90000);
    await gateway.stop();
    await peer.deleteRun(config);
    return { code, deliveredBefore, lost: [...sent].filter((id) => !arrived.has(id)), output: first.output.slice(-20).join('\n') };
  } finally {
    if (first.proc.exitCode === null) first.kill('SIGKILL');
    await peer.close();
  }
}

/** The started process has declared its queues once epj.outbound has a consumer. */
async function untilConsuming(peer: Peer, config: GatewayConfig): Promise<void> {
  await eventually(
    'the gateway process to consume epj.outbound',
    () =>
      peer.conn
        .createChannel()
        .then(async (ch) => {
          ch.on('error', () => {}); // a queue not declared yet closes the channel: try again
          const q = await ch.checkQueue(config.broker.queues.epjOutbound);
          await ch.close();
          return q.consumerCount > 0;
        })
        .catch(() => false),
    60_000,
    200,
  );
}

describe('graceful shutdown under load (a real `plo-gateway start` process)', function () {
  this.timeout(240000);

  it('SIGTERM: the process exits 0 within its grace period and no delivery is lost', async () => {
    const r = await sigtermUnderLoad('PT30S');
    expect(r.code, r.output).to.equal(0);
    expect(r.deliveredBefore).to.be.at.least(30);
    expect(r.lost, `${r.lost.length} of ${N} lost`).to.have.length(0);
  });

  it('a grace period too short to finish: the process exits 1, and still nothing is lost', async () => {
    const r = await sigtermUnderLoad('PT0.001S');
    expect(r.code, r.output).to.equal(1);
    expect(r.lost, `${r.lost.length} of ${N} lost`).to.have.length(0);
  });
});
