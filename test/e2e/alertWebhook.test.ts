// The alert webhook is down: alerts still reach gateway.alerts at once, messages still flow,
// and the webhook gets every alert once it answers, after retries with backoff.
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import type { Alert } from '../../src/tracking/alerts.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { freePort } from '../support/freePort.js';
import { LogCapture, Peer, testConfig } from '../support/harness.js';
import { eventually, sleep } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const WEBHOOK_SECRET = 'a-webhook-secret-of-this-test';

describe('alert webhook down (RabbitMQ + SQLite)', function () {
  this.timeout(60000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let db: Db;
  let webhook: Server | undefined;
  const received: Alert[] = [];
  const tap = `t${randomUUID().slice(0, 8)}.webhook-tap`;

  before(async () => {
    const port = await freePort(); // nothing listens there yet: the webhook is down
    config = testConfig((c) => {
      c.alerts.webhookUrl = `http://127.0.0.1:${port}/alerts`;
      c.alerts.webhookSecret = WEBHOOK_SECRET;
      c.alerts.webhookTimeout = 'PT2S';
      c.alerts.webhookRetry = { initialDelay: 'PT0.2S', maxDelay: 'PT1S', maxAttempts: 1000 };
      // the overdue acknowledgment alerts at once, without resends first
      c.tracking.transportRetry = { interval: 'PT30M', count: 0 };
    });
    logs = new LogCapture();
    gateway = new Gateway(config, createLogger(config.logLevel, logs));
    await gateway.start({ http: false, deadlines: false });
    peer = await Peer.connect();
    await peer.ch.assertQueue(tap, { exclusive: true });
    await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
    db = await openDatabase(config.database.url);
  });

  after(async () => {
    await db?.kysely.destroy();
    await gateway?.stop();
    await new Promise((r) => (webhook ? webhook.close(r) : r(undefined)));
    await peer?.ch.deleteQueue(tap).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
  });

  const tapped = async (n: number) => {
    const got: Alert[] = [];
    return eventually(
      `${n} alerts on gateway.alerts`,
      async () => {
        const m = await peer.ch.get(tap, { noAck: true });
        if (m) got.push(JSON.parse(m.content.toString('utf8')));
        return got.length >= n ? got : undefined;
      },
      20_000,
    );
  };

  let published: Alert[] = [];

  it('alerts reach gateway.alerts and messages still flow while the webhook is down', async () => {
    const held = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0484' });
    await peer.send(config.broker.queues.epjOutbound, held.xml);
    const delivered = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, delivered.xml);
    expect(await peer.take(`${config.broker.receiverQueuePrefix}9920005`, 1)).to.have.length(1);

    // The transport ack is overdue now: the next tick fires it.
    const row = await eventually(
      'the delivered message',
      () => db.kysely.selectFrom('messages').select('id').where('msg_id', '=', delivered.msgId).executeTakeFirst(),
      20_000,
    );
    await db.kysely
      .updateTable('expectations')
      .set({ due_at: new Date(Date.now() - 1000).toISOString() })
      .where('message_id', '=', row.id)
      .where('kind', '=', 'transport-ack')
      .execute();
    await gateway.deadlines!.tick();

    published = await tapped(2);
    expect(published.map((a) => `${a.kind}/${a.msgId}`).sort()).to.deep.equal([`transport-ack-missing/${delivered.msgId}`, `unroutable/${held.msgId}`].sort());
  });

  it('webhook deliveries are retried with backoff while it is down', async () => {
    const retried = await eventually(
      'three failed attempts each',
      async () => {
        const rows = await db.kysely.selectFrom('webhook_deliveries').selectAll().execute();
        return rows.length === 2 && rows.every((r) => r.attempts >= 3 && r.state === 'pending') ? rows : undefined;
      },
      20_000,
    );
    expect(retried.every((r) => /ECONNREFUSED|fetch failed/.test(r.last_error ?? ''))).to.equal(true);
    expect(logs.text()).to.contain('"event":"GW-3202"');
  });

  it('once the webhook answers, it receives every alert exactly as published, each signed', async () => {
    let refusals = 1;
    let badSignatures = 0;
    webhook = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        // First it is up but unhealthy: one 503, which is retried like a refused connection.
        if (refusals-- > 0) return void res.writeHead(503).end();
        expect(req.headers['content-type']).to.equal('application/json');
        // the receiver checks the signature over the body exactly as it came
        const expected = `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')}`;
        if (req.headers['x-plo-gateway-signature'] !== expected) badSignatures++;
        received.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    const port = Number(new URL(config.alerts.webhookUrl!).port);
    await new Promise<void>((r) => webhook!.listen(port, '127.0.0.1', r));

    await eventually('both alerts at the webhook', () => received.length >= 2, 20_000);
    expect(received.map((a) => a.id).sort()).to.deep.equal(published.map((a) => a.id).sort());
    expect(received.find((a) => a.kind === 'unroutable')).to.deep.equal(published.find((a) => a.kind === 'unroutable'));
    const rows = await eventually(
      'rows marked delivered',
      async () => {
        const r = await db.kysely.selectFrom('webhook_deliveries').selectAll().execute();
        return r.every((x) => x.state === 'delivered') ? r : undefined;
      },
      20_000,
    );
    expect(rows.every((r) => r.attempts >= 4)).to.equal(true);
    expect(logs.text()).to.contain('"event":"GW-3201"');
    await sleep(1500);
    expect(received).to.have.length(2);
    expect(badSignatures, 'every request signed with HMAC-SHA256 of its body').to.equal(0);
  });
});
