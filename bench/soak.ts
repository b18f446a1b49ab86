// `npm run bench:soak`: the gateway's memory over a long run. Valid PLO messages go through the
// whole path (as `npm run bench`) without pause, at most BENCH_SOAK_INFLIGHT (default 1,000)
// sent and not yet arrived at the bydel's queue, so the broker holds no backlog; at each count
// in BENCH_SOAK_N (default 20000,200000: comma-separated, ascending) of arrived messages the
// process's memory is sampled. The first checkpoint is the baseline the issue's "RSS within
// ± 10 %" is measured against. At ~120 msgs/s the default takes about half an hour and a few GB
// of SQLite file while it runs (payloads and outbox bodies are kept; retention is not run),
// removed at the end.
// Prints one JSON line: {mode: 'soak', payload, checkpoints: [{messages, seconds, msgsPerSec,
// rssMb, heapUsedMb, externalMb}], rssChangePct, withinTenPct}. RSS is this process's, which
// also runs the EPJ and bydel sides (a few MB; bounded by the in-flight limit).
import amqp from 'amqplib';
import { Gateway } from '../src/gateway.js';
import {
  benchConfig,
  benchLogger,
  bydelQueue,
  consumeArrivals,
  deleteRunQueues,
  epjMessage,
  msgIdHeader,
  Publisher,
  removeStore,
  round1,
  sleep,
} from './harness.js';

const checkpoints = (process.env.BENCH_SOAK_N ?? '20000,200000').split(',').map((x) => Number(x.trim()));
if (checkpoints.some((c, i) => !(c > 0) || (i > 0 && c <= checkpoints[i - 1]))) throw new Error('BENCH_SOAK_N: ascending positive counts, e.g. 20000,200000');
const inflight = Number(process.env.BENCH_SOAK_INFLIGHT ?? 1000);
const total = checkpoints[checkpoints.length - 1];

const config = benchConfig();
const gateway = new Gateway(config, benchLogger());
await gateway.start({ http: false });
const conn = await amqp.connect(config.broker.url);
const publisher = new Publisher(await conn.createConfirmChannel(), config.broker.queues.epjOutbound, 500);

const mb = (bytes: number) => round1(bytes / 1024 / 1024);
const samples: { messages: number; seconds: number; msgsPerSec: number; rssMb: number; heapUsedMb: number; externalMb: number }[] = [];
const started = performance.now();
let arrived = 0;
let previous = { at: started, messages: 0 };
await consumeArrivals(await conn.createChannel(), bydelQueue(config), msgIdHeader, publisher.sentAt, () => {
  arrived++;
  if (arrived !== checkpoints[samples.length]) return;
  const now = performance.now();
  const memory = process.memoryUsage();
  samples.push({
    messages: arrived,
    seconds: Math.round((now - started) / 1000),
    msgsPerSec: Math.round((arrived - previous.messages) / ((now - previous.at) / 1000)),
    rssMb: mb(memory.rss),
    heapUsedMb: mb(memory.heapUsed),
    externalMb: mb(memory.external),
  });
  previous = { at: now, messages: arrived };
});

for (let sent = 0; sent < total; sent++) {
  while (sent - arrived >= inflight) await sleep(2);
  const m = epjMessage();
  await publisher.send(m.body, m.msgId);
}
while (arrived < total) await sleep(20);
await gateway.stop();
removeStore();
await deleteRunQueues(conn, config);
await conn.close();

const first = samples[0].rssMb;
const last = samples[samples.length - 1].rssMb;
const rssChangePct = round1(((last - first) / first) * 100);
console.log(
  JSON.stringify({ mode: 'soak', payload: config.encryption.outbound.payload, checkpoints: samples, rssChangePct, withinTenPct: Math.abs(rssChangePct) <= 10 }),
);
process.exit(0);
