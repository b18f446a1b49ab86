// The broker closes every connection while a thousand messages are in flight: the gateway
// reconnects, and every MsgId still reaches its bydel (repeats allowed, losses not).
import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import sinon from 'sinon';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { OutcomeRecorder } from '../../src/tracking/recorder.js';
import { AMQP_URL, type LogCapture, Peer, startGateway, testConfig } from '../support/harness.js';
import { sleep } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';

describe('the broker drops every connection while 1,000 messages flow', function () {
  this.timeout(180000);
  let config: GatewayConfig;
  let gateway: Gateway;

  // A vhost of its own, so that closing every connection cannot disturb anything else on the broker.
  const vhost = `plo-resilience-${process.pid}-${Date.now()}`;
  const url = `${AMQP_URL.replace(/\/+$/, '')}/${encodeURIComponent(vhost)}`;

  before(async () => {
    execFileSync('rabbitmqctl', ['add_vhost', vhost], { stdio: 'ignore' });
    execFileSync('rabbitmqctl', ['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*'], { stdio: 'ignore' });
    config = testConfig((c) => {
      c.logLevel = 'warn';
      c.broker.url = url;
    });
    ({ gateway } = await startGateway(config));
  });

  after(async () => {
    await gateway?.stop();
    execFileSync('rabbitmqctl', ['delete_vhost', vhost], { stdio: 'ignore' });
  });

  it('every MsgId reaches the bydel queue; none is lost, none dead-lettered', async () => {
    const template = readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');
    const sent = new Set<string>();
    const sender = await Peer.connect(url);
    for (let i = 0; i < 1000; i++) {
      const { xml, msgId } = readdressToOslo(template, { postalCode: '0350' });
      sent.add(msgId);
      sender.ch.sendToQueue(config.broker.queues.epjOutbound, Buffer.from(xml), { persistent: true });
    }
    await (sender.ch as import('amqplib').ConfirmChannel).waitForConfirms();
    await sender.close();

    for (const pause of [700, 1500]) {
      await sleep(pause);
      execFileSync('rabbitmqctl', ['close_all_connections', '--vhost', vhost, 'resilience test: broker closed the connection'], { stdio: 'ignore' });
    }

    const receiver = await Peer.connect(url);
    const arrived = new Set<string>();
    let copies = 0;
    const deadline = Date.now() + 120000;
    while (arrived.size < sent.size && Date.now() < deadline) {
      const batch = await receiver.take(`${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, 100, 2000);
      for (const m of batch) {
        arrived.add(String(m.properties.headers?.['msg-id']));
        copies++;
      }
    }
    const missing = [...sent].filter((id) => !arrived.has(id));
    expect(missing, `${missing.length} of 1000 lost`).to.have.length(0);
    expect(copies).to.be.at.least(1000);
    expect(await receiver.take(config.broker.queues.dlq, 1, 500)).to.have.length(0);
    await receiver.close();
  });
});

describe('the database fails for a moment', function () {
  this.timeout(60000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let peer: Peer;
  let logs: LogCapture;
  const sandbox = sinon.createSandbox();

  before(async () => {
    config = testConfig((c) => {
      c.retry = { initialDelay: 'PT0.05S', maxDelay: 'PT0.2S', maxAttempts: 10 };
    });
    ({ gateway, logs } = await startGateway(config));
    peer = await Peer.connect();
  });

  after(async () => {
    sandbox.restore();
    await gateway?.stop();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it('the message waits and is retried, never dead-lettered, then goes through', async () => {
    const write = sandbox.stub(OutcomeRecorder.prototype, 'record');
    write.onFirstCall().rejects(new Error('SQLITE_BUSY: database is locked'));
    write.onSecondCall().rejects(new Error('SQLITE_BUSY: database is locked'));
    write.callThrough();
    const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    expect(write.callCount).to.equal(3);
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
    expect(await peer.take(config.broker.queues.epjInbound, 1, 300)).to.have.length(0);
    expect(logs.lines.filter((l) => l.includes('"GW-1201"'))).to.have.length(2);
  });
});
