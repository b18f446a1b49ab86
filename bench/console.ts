// The message path's throughput with people watching the console (issue 15): BENCH_N messages
// (default 2,000) through the whole path, as `npm run bench` offers them, once with nobody on the
// console and once with BENCH_CONSOLE_USERS (default 50) logged-in users each loading a console
// page (overview, dead letters, waiting, held, in turn) every BENCH_CONSOLE_INTERVAL_MS (default
// 1,000) while the messages flow. One JSON line: both rates, their ratio (goal ≥ 0.9), how many
// pages were served and their p50/p99 time.
import amqp from 'amqplib';
import { Gateway } from '../src/gateway.js';
import { UserStore } from '../src/ops/users.js';
import { openDatabase } from '../src/tracking/db.js';
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
  sleep,
} from './harness.js';

const n = Number(process.env.BENCH_N ?? 2000);
const users = Number(process.env.BENCH_CONSOLE_USERS ?? 50);
const intervalMs = Number(process.env.BENCH_CONSOLE_INTERVAL_MS ?? 1000);
const window = Number(process.env.BENCH_WINDOW ?? 500);
const PAGES = ['/console', '/console/dlq', '/console/waiting', '/console/held'];

async function run(watchers: number) {
  const config = benchConfig();
  config.http.port = 0;
  const gateway = new Gateway(config, benchLogger());
  await gateway.start();
  const db = await openDatabase(config.database.url);
  const added = await new UserStore(db).add('bench-viewer', 'viewer', {}, { actor: 'bench', via: 'cli' });
  if (!added.ok) throw new Error(added.reason);
  const token = added.value.token;
  const conn = await amqp.connect(config.broker.url);
  const publisher = new Publisher(await conn.createConfirmChannel(), config.broker.queues.epjOutbound, window);
  let arrived = 0;
  let resolve: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  await consumeArrivals(await conn.createChannel(), bydelQueue(config), msgIdHeader, publisher.sentAt, (ms) => {
    if (ms !== undefined && ++arrived === n) resolve();
  });

  // the watchers: each its own loop, a page every interval, spread over the first interval
  let watching = true;
  const pageMs: number[] = [];
  let failed = 0;
  const base = `http://127.0.0.1:${gateway.httpPort()}`;
  const loops = Array.from({ length: watchers }, async (_, i) => {
    await sleep((intervalMs * i) / Math.max(1, watchers));
    for (let k = i; watching; k++) {
      const t = performance.now();
      const r = await fetch(`${base}${PAGES[k % PAGES.length]}`, { headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
      if (r?.status === 200) await r.text();
      else failed++;
      pageMs.push(performance.now() - t);
      await sleep(Math.max(0, intervalMs - (performance.now() - t)));
    }
  });

  const messages = Array.from({ length: n }, epjMessage);
  const started = performance.now();
  for (const m of messages) await publisher.send(m.body, m.msgId);
  await done;
  const seconds = (performance.now() - started) / 1000;
  watching = false;
  await Promise.all(loops);
  await db.kysely.destroy();
  await gateway.stop();
  removeStore();
  await deleteRunQueues(conn, config);
  await conn.close();
  const sorted = pageMs.sort((a, b) => a - b);
  return {
    msgsPerSec: Math.round(n / seconds),
    seconds: Number(seconds.toFixed(1)),
    pages: sorted.length,
    failed,
    p50: sorted.length ? round1(quantile(sorted, 0.5)) : null,
    p99: sorted.length ? round1(quantile(sorted, 0.99)) : null,
  };
}

const alone = await run(0);
const watched = await run(users);
console.log(
  JSON.stringify({
    n,
    consoleUsers: users,
    pollIntervalMs: intervalMs,
    alone: { msgsPerSec: alone.msgsPerSec, seconds: alone.seconds },
    watched: {
      msgsPerSec: watched.msgsPerSec,
      seconds: watched.seconds,
      pagesServed: watched.pages,
      pagesFailed: watched.failed,
      pageP50Ms: watched.p50,
      pageP99Ms: watched.p99,
    },
    ratio: Number((watched.msgsPerSec / alone.msgsPerSec).toFixed(3)),
    goal: 'ratio >= 0.9',
  }),
);
process.exit(0);
