// `npm run bench`: N valid PLO messages through the whole path (parse, validate, route, sign,
// encrypt, store, publish with confirms), measured from the EPJ's publish to arrival at the
// bydel's queue; and, for scale, a bare confirmed consume→publish relay on the same broker in
// the same run, carrying the very bodies the gateway delivered.
// Payloads are encrypted for the bydel as in production (BENCH_PAYLOAD=plain sends them in clear,
// to compare), and the CPU cost of that encryption alone is measured beside it.
//
// Throughput (the default; BENCH_N, default 5,000): everything is offered at once, so p50/p99
// are mostly queueing. Prints one JSON line: {mode: 'throughput', n, payload, seconds,
// msgsPerSec, p50Ms, p99Ms, relayMsgsPerSec, ratioToRelay, relay, epjBodyBytes,
// deliveredBodyBytes, encryptMsPerMessage}.
//
// The relay is as good as a plain amqplib one gets: prefetch BENCH_RELAY_PREFETCH (default 200),
// each message published on a confirm channel as it arrives and acked when its confirm comes
// back (pipelined: as many in flight as the prefetch lets through, no waiting per message or per
// batch), from a quorum queue (as epj.outbound) to a classic durable queue (as the bydel's).
// The EPJ side publishes the same way for both runs: up to BENCH_WINDOW (500) unconfirmed.
//
// Latency at a steady offered load (`npm run bench:latency`, or BENCH_RATE set): BENCH_RATE
// messages per second (default 200) for BENCH_SECONDS (default 60), after 50 warm-up messages
// that are not counted; then up to BENCH_DRAIN_SECONDS (default 120) for the rest to arrive.
// Prints {mode: 'latency', payload, offeredRate, seconds, sent, sendRate, arrived, arrivedRate,
// notArrived, p50Ms, p90Ms, p99Ms, maxMs, targetP99Ms, ok}: latency from each message's publish to its
// arrival at the bydel's queue, measured in this process (which also runs the gateway).
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { Gateway } from '../src/gateway.js';
import { encryptEnveloped } from '../src/outbound/cms.js';
import { loadRouting } from '../src/routing/load.js';
import {
  benchConfig,
  benchLogger,
  bydelQueue,
  consumeArrivals,
  deleteRunQueues,
  epjMessage,
  msgIdHeader,
  Publisher,
  quantile,
  removeStore,
  round1,
  sampleDocument,
  sleep,
  TARGET,
} from './harness.js';

const latencyMode = process.argv.includes('--latency') || process.env.BENCH_RATE !== undefined;
const n = Number(process.env.BENCH_N ?? 5000);
const window = Number(process.env.BENCH_WINDOW ?? 500);
const relayPrefetch = Number(process.env.BENCH_RELAY_PREFETCH ?? 200);
const config = benchConfig();
const payload = config.encryption.outbound.payload;

async function startGateway() {
  const gateway = new Gateway(config, benchLogger());
  await gateway.start({ http: false });
  const conn = await amqp.connect(config.broker.url);
  const publisher = new Publisher(await conn.createConfirmChannel(), config.broker.queues.epjOutbound, window);
  const stop = async () => {
    await gateway.stop();
    removeStore();
    await deleteRunQueues(conn, config);
    await conn.close();
  };
  return { conn, publisher, stop };
}

/** All N at once; also keeps one delivered body for the relay. */
async function gatewayRun() {
  const { conn, publisher, stop } = await startGateway();
  const messages = Array.from({ length: n }, epjMessage);
  const latencies: number[] = [];
  let delivered: Buffer | undefined;
  let deliveredBytes = 0;
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  await consumeArrivals(await conn.createChannel(), bydelQueue(config), msgIdHeader, publisher.sentAt, (ms, m) => {
    if (ms === undefined) return;
    latencies.push(ms);
    delivered ??= m.content;
    deliveredBytes += m.content.length;
    if (latencies.length === n) resolve();
  });
  const started = performance.now();
  for (const m of messages) await publisher.send(m.body, m.msgId);
  await done;
  const seconds = (performance.now() - started) / 1000;
  await stop();
  if (!delivered) throw new Error('nothing arrived');
  const epjBodyBytes = Math.round(messages.reduce((a, m) => a + m.body.length, 0) / n);
  return { seconds, latencies: latencies.sort((a, b) => a - b), delivered, epjBodyBytes, deliveredBodyBytes: Math.round(deliveredBytes / n) };
}

/** A bare confirmed relay: quorum queue → classic durable queue, `body` N times. */
async function relayRun(body: Buffer) {
  const conn = await amqp.connect(config.broker.url);
  const setup = await conn.createChannel();
  const run = `relay${randomUUID().slice(0, 6)}`;
  const [from, to] = [`${run}.in`, `${run}.out`];
  await setup.assertQueue(from, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await setup.assertQueue(to, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  const relayIn = await conn.createChannel();
  await relayIn.prefetch(relayPrefetch);
  const relayOut = await conn.createConfirmChannel();
  await relayIn.consume(from, (m) => {
    if (!m) return;
    relayOut.publish('', to, m.content, { persistent: true, messageId: m.properties.messageId }, (err) => (err ? relayIn.nack(m) : relayIn.ack(m)));
  });
  const publisher = new Publisher(await conn.createConfirmChannel(), from, window);
  let arrived = 0;
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  await consumeArrivals(
    await conn.createChannel(),
    to,
    (m) => String(m.properties.messageId),
    publisher.sentAt,
    () => {
      if (++arrived === n) resolve();
    },
  );
  const ids = Array.from({ length: n }, () => randomUUID());
  const started = performance.now();
  for (const id of ids) await publisher.send(body, id);
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
  const doc = sampleDocument();
  const rounds = 200;
  encryptEnveloped(doc, cert);
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) encryptEnveloped(doc, cert);
  return (performance.now() - t0) / rounds;
}

async function throughput() {
  const encryptMsPerMessage = encryptionCost();
  const { seconds, latencies, delivered, epjBodyBytes, deliveredBodyBytes } = await gatewayRun();
  const relaySeconds = await relayRun(delivered);
  const msgsPerSec = n / seconds;
  const relayMsgsPerSec = n / relaySeconds;
  return {
    mode: 'throughput',
    n,
    payload,
    seconds: Number(seconds.toFixed(2)),
    msgsPerSec: Math.round(msgsPerSec),
    p50Ms: round1(quantile(latencies, 0.5)),
    p99Ms: round1(quantile(latencies, 0.99)),
    relayMsgsPerSec: Math.round(relayMsgsPerSec),
    ratioToRelay: Number((msgsPerSec / relayMsgsPerSec).toFixed(3)),
    relay: { prefetch: relayPrefetch, bodyBytes: delivered.length, from: 'quorum', to: 'classic', confirms: 'per message, pipelined', publishWindow: window },
    epjBodyBytes,
    deliveredBodyBytes,
    encryptMsPerMessage: Number(encryptMsPerMessage.toFixed(2)),
  };
}

async function latency() {
  const rate = Number(process.env.BENCH_RATE ?? 200);
  const seconds = Number(process.env.BENCH_SECONDS ?? 60);
  const drainSeconds = Number(process.env.BENCH_DRAIN_SECONDS ?? 120);
  const warmup = 50;
  const { conn, publisher, stop } = await startGateway();
  const total = Math.round(rate * seconds);
  const messages = Array.from({ length: warmup + total }, epjMessage);
  const latencies: number[] = [];
  let arrived = 0;
  let lastArrival = 0;
  await consumeArrivals(await conn.createChannel(), bydelQueue(config), msgIdHeader, publisher.sentAt, (ms) => {
    arrived++;
    lastArrival = performance.now();
    if (ms !== undefined && arrived > warmup) latencies.push(ms);
  });
  for (const m of messages.slice(0, warmup)) await publisher.send(m.body, m.msgId);
  while (arrived < warmup) await sleep(5);

  // Paced by the clock, not by a fixed sleep: each pass sends what is due by now, so a late
  // timer is caught up at once and the offered rate stays `rate` on average.
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (sent < due) {
      const m = messages[warmup + sent++];
      await publisher.send(m.body, m.msgId);
    }
    await sleep(1);
  }
  const sendSeconds = (performance.now() - started) / 1000;
  const deadline = performance.now() + drainSeconds * 1000;
  while (arrived < warmup + total && performance.now() < deadline) await sleep(20);
  await stop();
  const sorted = latencies.sort((a, b) => a - b);
  const p99Ms = round1(quantile(sorted, 0.99));
  return {
    mode: 'latency',
    payload,
    offeredRate: rate,
    seconds,
    sent: total,
    sendRate: Math.round(total / sendSeconds),
    arrived: arrived - warmup,
    arrivedRate: Math.round((arrived - warmup) / ((lastArrival - started) / 1000)),
    notArrived: warmup + total - arrived,
    p50Ms: round1(quantile(sorted, 0.5)),
    p90Ms: round1(quantile(sorted, 0.9)),
    p99Ms,
    maxMs: round1(sorted[sorted.length - 1]),
    targetP99Ms: 50,
    ok: p99Ms <= 50 && arrived === warmup + total,
  };
}

console.log(JSON.stringify(latencyMode ? await latency() : await throughput()));
process.exit(0);
