// /readyz tells the orchestrator when the gateway cannot work: the broker lost (here its vhost
// becomes unusable, so nothing else on the machine's RabbitMQ is disturbed) or the database not
// answering; and 200 again once they are back.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import sinon from 'sinon';
import type { GatewayConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import { Store } from '../../src/tracking/store.js';
import { AMQP_URL, testConfig } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';

const execFileAsync = promisify(execFile);

const rabbitmqctl = (...args: string[]) => execFileSync('rabbitmqctl', args, { stdio: 'ignore' });

describe('readiness follows the broker and the database', function () {
  this.timeout(90000);
  const vhost = `plo-readyz-${process.pid}-${Date.now()}`;
  let config: GatewayConfig;
  let gateway: Gateway;
  const sandbox = sinon.createSandbox();

  const readyz = async () => {
    const r = await fetch(`http://127.0.0.1:${gateway.httpPort()}/readyz`);
    return { status: r.status, body: await r.json() };
  };
  const untilStatus = (status: number) => eventually(`/readyz ${status}`, async () => ((await readyz()).status === status ? readyz() : undefined), 30000);

  before(async () => {
    rabbitmqctl('add_vhost', vhost);
    rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
    config = testConfig((c) => {
      c.broker.url = `${AMQP_URL.replace(/\/+$/, '')}/${encodeURIComponent(vhost)}`;
      c.broker.reconnectInitialDelay = 'PT0.2S';
      c.broker.reconnectMaxDelay = 'PT1S';
      c.logLevel = 'silent';
      // no bydel queues: the fewer quorum queues in the vhost, the faster it is deleted afterwards
      c.broker.receiverQueuePrefix = undefined;
    });
    gateway = new Gateway(config, createLogger(config.logLevel));
    await gateway.start();
  });

  after(async function () {
    // CI once spent more than 90 s here on a busy broker: each step is bounded and says which one ran over
    this.timeout(150000);
    sandbox.restore();
    rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
    await Promise.race([gateway?.stop(), sleep(45000).then(() => Promise.reject(new Error('gateway.stop() took more than 45 s')))]);
    // the vhost's queues go with it; one left behind on a throwaway machine harms nothing, so a slow delete is not waited for past 60 s
    await execFileAsync('rabbitmqctl', ['delete_vhost', vhost], { timeout: 60000 }).catch((e: Error) => console.warn(`delete_vhost ${vhost}: ${e.message}`));
  });

  it('is 200 when everything is up, and /healthz is 200 throughout', async () => {
    expect((await readyz()).status).to.equal(200);
    expect((await fetch(`http://127.0.0.1:${gateway.httpPort()}/healthz`)).status).to.equal(200);
  });

  it('goes 503 naming the broker while the broker is unreachable, and 200 again when it returns', async () => {
    rabbitmqctl('clear_permissions', '-p', vhost, 'guest');
    rabbitmqctl('close_all_connections', '--vhost', vhost, 'readiness test: broker gone');
    const down = await untilStatus(503);
    expect(down.body.failing).to.deep.equal(['broker']);
    expect(down.body.reasons.broker).to.match(/not connected/);
    expect((await fetch(`http://127.0.0.1:${gateway.httpPort()}/healthz`)).status).to.equal(200);

    rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
    await untilStatus(200);
  });

  it('goes 503 naming the database while it does not answer', async () => {
    const ping = sandbox.stub(Store.prototype, 'ping').rejects(new Error('connection refused'));
    const down = await readyz();
    expect(down.status).to.equal(503);
    expect(down.body.failing).to.deep.equal(['database']);
    ping.restore();
    expect((await readyz()).status).to.equal(200);
  });
});
