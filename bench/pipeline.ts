// `npm run bench`: N valid PLO messages through the whole path (parse, validate, route, sign,
// store, publish with confirms), measured from the EPJ's publish to arrival at the bydel's
// queue; and, for scale, a bare confirmed consume→publish relay on the same broker.
// Payloads are encrypted for the bydel as in production (BENCH_PAYLOAD=plain sends them in clear,
// to compare), and the CPU cost of that encryption alone is measured beside it.
// Prints one JSON line: {n, payload, seconds, msgsPerSec, p50Ms, p99Ms, relayMsgsPerSec, ratioToRelay, encryptMsPerMessage}.
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp, { type ConfirmChannel } from 'amqplib';
import { loadConfig } from '../src/config/config.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/observability/log.js';
import { encryptEnveloped } from '../src/outbound/cms.js';
import { loadRouting } from '../src/routing/load.js';
import { readdressToOslo, readSample } from '../test/support/samples.js';

const n = Number(process.env.BENCH_N ?? process.argv[2] ?? 5000);
const loaded = loadConfig();
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const config = loaded.config;
const run = `bench${randomUUID().slice(0, 6)}`;
config.broker.queues = { epjOutbound: `${run}.epj.outbound`, epjInbound: `${run}.epj.inbound`, nhnInbound: `${run}.nhn.inbound`, dlq: `${run}.gateway.dlq` };
config.broker.exchanges = { nhnOutbound: `${run}.nhn.outbound`, alerts: `${run}.gateway.alerts` };
config.broker.receiverQueuePrefix = `${run}.bydel.`;
config.database.url = `sqlite:${join(mkdtempSync(join(tmpdir(), 'gw-bench-')), 'bench.db')}`;
const TARGET = '9920005'; // Frogner, Saksbehandling
const payload = process.env.BENCH_PAYLOAD === 'plain' ? 'plain' : 'encrypted';
config.encryption.outbound.payload = payload;

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function sendAll(ch: ConfirmChannel, queue: string, bodies: Buffer[], sentAt: Map<string, number>, ids: string[]) {
  for (let i = 0; i < bodies.length; i++) {
    sentAt.set(ids[i], performance.now());
    if (!ch.sendToQueue(queue, bodies[i], { persistent: true, messageId: ids[i] })) await new Promise((r) => ch.once('drain', r));
    if (i % 200 === 199) await ch.waitForConfirms();
  }
  await ch.waitForConfirms();
}

/** Consumes `count` messages from `queue`, returning per-message latency keyed by `idOf`. */
function collect(ch: amqp.Channel, queue: string, count: number, idOf: (m: amqp.ConsumeMessage) => string, sentAt: Map<string, number>) {
  const latencies: number[] = [];
  return new Promise<number[]>((resolve) => {
    void ch.consume(queue, (m) => {
      if (!m) return;
      const t0 = sentAt.get(idOf(m));
      if (t0 !== undefined) latencies.push(performance.now() - t0);
      ch.ack(m);
      if (latencies.length === count) resolve(latencies);
    });
  });
}

/** The bench leaves nothing behind on the broker: every queue of this run goes. */
async function deleteRunQueues(conn: amqp.ChannelModel) {
  const ch = await conn.createChannel();
  const services = loadRouting(config).register.parties.filter((p) => p.type === 'Service');
  const queues = [...Object.values(config.broker.queues), ...services.map((p) => `${config.broker.receiverQueuePrefix}${p.herId}`)];
  for (const q of queues) await ch.deleteQueue(q);
  for (const ex of Object.values(config.broker.exchanges)) await ch.deleteExchange(ex);
  await ch.close();
}

async function gatewayRun() {
  const gateway = new Gateway(config, createLogger('warn'));
  await gateway.start({ http: false });
  const conn = await amqp.connect(config.broker.url);
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await sub.prefetch(200);
  const template = readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');
  const ids: string[] = [];
  const bodies = Array.from({ length: n }, () => {
    const { xml, msgId } = readdressToOslo(template, { postalCode: '0350' });
    ids.push(msgId);
    return Buffer.from(xml);
  });
  const sentAt = new Map<string, number>();
  const started = performance.now();
  const done = collect(sub, `${config.broker.receiverQueuePrefix}${TARGET}`, n, (m) => String(m.properties.headers?.['msg-id']), sentAt);
  await sendAll(pub, config.broker.queues.epjOutbound, bodies, sentAt, ids);
  const latencies = (await done).sort((a, b) => a - b);
  const seconds = (performance.now() - started) / 1000;
  await gateway.stop();
  await deleteRunQueues(conn);
  await conn.close();
  return { seconds, latencies };
}

async function relayRun() {
  const conn = await amqp.connect(config.broker.url);
  const setup = await conn.createChannel();
  const [from, to] = [`${run}.relay.in`, `${run}.relay.out`];
  for (const q of [from, to]) await setup.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  const relayIn = await conn.createChannel();
  await relayIn.prefetch(config.broker.prefetch);
  const relayOut = await conn.createConfirmChannel();
  await relayIn.consume(from, (m) => {
    if (!m) return;
    relayOut.publish('', to, m.content, { persistent: true, messageId: m.properties.messageId }, (err) => (err ? relayIn.nack(m) : relayIn.ack(m)));
  });
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await sub.prefetch(200);
  const body = Buffer.from(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
  const ids = Array.from({ length: n }, () => randomUUID());
  const sentAt = new Map<string, number>();
  const started = performance.now();
  const done = collect(sub, to, n, (m) => String(m.properties.messageId), sentAt);
  await sendAll(
    pub,
    from,
    ids.map(() => body),
    sentAt,
    ids,
  );
  await done;
  const seconds = (performance.now() - started) / 1000;
  for (const q of [from, to]) await setup.deleteQueue(q);
  await conn.close();
  return seconds;
}

/** Milliseconds of CMS encryption (AES-256-CBC, RSA PKCS#1 v1.5) per message, for the bench's document. */
function encryptionCost(): number {
  const cert = loadRouting(config).register.get(TARGET)?.encryptionCertificate;
  if (!cert) throw new Error(`the register has no encryption certificate for ${TARGET}`);
  const doc = Buffer.from(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
  const rounds = 200;
  encryptEnveloped(doc, cert);
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) encryptEnveloped(doc, cert);
  return (performance.now() - t0) / rounds;
}

const encryptMsPerMessage = encryptionCost();
const relaySeconds = await relayRun();
const { seconds, latencies } = await gatewayRun();
const msgsPerSec = n / seconds;
const relayMsgsPerSec = n / relaySeconds;
console.log(
  JSON.stringify({
    n,
    payload,
    seconds: Number(seconds.toFixed(2)),
    msgsPerSec: Math.round(msgsPerSec),
    p50Ms: Number(quantile(latencies, 0.5).toFixed(1)),
    p99Ms: Number(quantile(latencies, 0.99).toFixed(1)),
    relayMsgsPerSec: Math.round(relayMsgsPerSec),
    ratioToRelay: Number((msgsPerSec / relayMsgsPerSec).toFixed(3)),
    encryptMsPerMessage: Number(encryptMsPerMessage.toFixed(2)),
  }),
);
process.exit(0);
