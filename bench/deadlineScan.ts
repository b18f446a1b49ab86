// `npm run bench:scan`: the deadline scheduler's per-tick queries over 1,000,000 open
// expectations, on SQLite and on PostgreSQL. Each store is migrated as the gateway migrates it,
// seeded in bulk inside the database (a recursive CTE on SQLite, generate_series on
// PostgreSQL), then the real scheduler ticks against it (DeadlineScheduler → DeadlineRepository,
// a stub publisher). Every statement a tick runs is timed where Kysely hands it to the driver
// and its result comes back; the due-row queries are then shown with their plans (EXPLAIN QUERY
// PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL).
//
// The mix of the open rows (each message has a transport-ack, an apprec, and an answer or an
// innleggelsesrapport row): 97.5 % not due yet, 0.5 % due and not alerted (transport-acks among
// them with 0–3 resends so far, so some are resent and some fire), 2 % firing (a tenth of them
// with a reminder due); one message in 1,000 is held for routing or a certificate, a quarter
// of those routed meanwhile. Closed rows beside them (default 500,000) are met, a few with a
// firing alert to resolve; some messages carry a rejecting AppRec or a MessageError to raise.
//
// BENCH_SCAN_OPEN (default 1,000,000), BENCH_SCAN_CLOSED (500,000), BENCH_SCAN_TICKS (5),
// BENCH_SCAN_DIALECTS (sqlite,postgres), TEST_PG_URL (the admin database; a database of its own
// is created and dropped; BENCH_SCAN_KEEP=1 keeps it and the SQLite file, to look at plans by hand). SQLite runs without ANALYZE, as the gateway does; PostgreSQL gets the
// ANALYZE autovacuum would run after such a load.
// Prints one JSON line: {openExpectations, targetMs, ok, sqlite: {...}, postgres: {...}}, per
// dialect {rows, seedSeconds, queries: {<name>: {runs, medianMs, maxMs, plan}}, tick: {medianMs, maxMs, statements, summary}}.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompiledQuery, type KyselyPlugin, type QueryResult, type RootOperationNode, sql, type UnknownRow } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/observability/log.js';
import type { OutboxPublisher } from '../src/outbox/relay.js';
import { type Db, openDatabase } from '../src/tracking/db.js';
import { DeadlineRepository } from '../src/tracking/deadlineRepository.js';
import { alertPolicy } from '../src/tracking/deadlines.js';
import { DeadlineScheduler, type TickSummary } from '../src/tracking/scheduler.js';
import { Store } from '../src/tracking/store.js';

const OPEN = Number(process.env.BENCH_SCAN_OPEN ?? 1_000_000);
const CLOSED = Number(process.env.BENCH_SCAN_CLOSED ?? 500_000);
const TICKS = Number(process.env.BENCH_SCAN_TICKS ?? 5);
const DIALECTS = (process.env.BENCH_SCAN_DIALECTS ?? 'sqlite,postgres').split(',').map((d) => d.trim());
const ADMIN_PG_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const KEEP = process.env.BENCH_SCAN_KEEP === '1';
const TARGET_MS = 100;
const NOW = new Date('2026-12-04T12:00:00.000Z');

const loaded = loadConfig();
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const config = loaded.config;

const openMessages = Math.ceil(OPEN / 3);
const messages = openMessages + Math.ceil(CLOSED / 3);

/** An ISO timestamp (toISOString's form) `seconds` from NOW, in the dialect's SQL. */
function ts(dialect: Db['dialect'], seconds: string): string {
  return dialect === 'sqlite'
    ? `strftime('%Y-%m-%dT%H:%M:%fZ', '2026-12-04 12:00:00', (${seconds}) || ' seconds')`
    : `to_char(timestamp '2026-12-04 12:00:00' + (${seconds}) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** INSERT … SELECT over 1..count as `i`. */
function series(dialect: Db['dialect'], count: number, insert: string, select: string): string {
  return dialect === 'sqlite'
    ? `with recursive s(i) as (select 1 union all select i + 1 from s where i < ${count}) ${insert} ${select} from s`
    : `${insert} ${select} from generate_series(1::bigint, ${count}::bigint) as s(i)`;
}

async function seed(db: Db): Promise<number> {
  const d = db.dialect;
  const started = performance.now();
  const held = `(i <= ${openMessages} and i % 1000 = 0)`;
  await sql
    .raw(
      series(
        d,
        messages,
        'insert into messages (id, msg_id, direction, sender_her_id, msg_type, state, bydel, receiver_l1_her_id, receiver_l2_her_id, created_at, updated_at, ebxml_message_id, apprec_status, apprec_at, transport_state, transport_at)',
        `select i, 'bench-' || i, 'out', '8142987',
          case when i % 2 = 1 then 'LOG_UTSKRIVNINGSKLAR' else 'LOG_INNLAGT' end,
          case when ${held} and i % 4000 <> 0 then 'held' else 'published' end,
          'KD0501', '9910005', '9920005', ${ts(d, '-(i % 86400) - 86400')}, ${ts(d, '-(i % 86400)')}, 'eb-' || i,
          case when i % 5003 = 0 then 'rejected' when i > ${openMessages} then 'ok' end,
          case when i % 5003 = 0 or i > ${openMessages} then ${ts(d, '-(i % 3600)')} end,
          case when i % 7001 = 0 then 'error' when i > ${openMessages} then 'acked' end,
          case when i % 7001 = 0 or i > ${openMessages} then ${ts(d, '-(i % 3600)')} end`,
      ),
    )
    .execute(db.kysely);
  // Expectation j belongs to message (j-1)/3+1, kind (j-1)%3; r spreads the buckets evenly.
  const m = '((i - 1) / 3 + 1)';
  const k = '((i - 1) % 3)';
  const r = '((i * 7919) % 10000)';
  const open = `${m} <= ${openMessages}`;
  await sql
    .raw(
      series(
        d,
        3 * messages,
        'insert into expectations (message_id, kind, due_at, state, created_at, resolved_at, resolved_by, alert_state, alert_id, last_alert_at, next_alert_at, resends)',
        `select ${m},
          case when ${k} = 0 then (case when ${open} and ${m} % 1000 = 0 then (case when ${m} % 2000 = 0 then 'certificate' else 'routing' end) else 'transport-ack' end)
               when ${k} = 1 then 'apprec'
               when ${m} % 2 = 1 then 'answer' else 'innleggelsesrapport' end,
          case when not (${open}) then ${ts(d, `-259200 - ${r} * 60`)}
               when ${r} < 50 then ${ts(d, `-60 - ${r} * 60`)}
               when ${r} < 250 then ${ts(d, `-172800 - ${r} * 60`)}
               else ${ts(d, `600 + ${r} * 30`)} end,
          case when ${open} then 'open' else 'met' end,
          ${ts(d, '-(i % 86400) - 86400')},
          case when not (${open}) then ${ts(d, '-3600')} end,
          case when not (${open}) then 'apprec:ok' end,
          case when ${open} and ${r} >= 50 and ${r} < 250 then 'firing'
               when not (${open}) and ${r} < 20 then 'firing'
               when not (${open}) and ${r} < 400 then 'resolved' end,
          case when (${open} and ${r} >= 50 and ${r} < 250) or (not (${open}) and ${r} < 400) then 'bench-alert-' || i end,
          case when (${open} and ${r} >= 50 and ${r} < 250) or (not (${open}) and ${r} < 400) then ${ts(d, '-7200')} end,
          case when ${open} and ${r} >= 50 and ${r} < 60 then ${ts(d, '-60')} when ${open} and ${r} >= 60 and ${r} < 250 then ${ts(d, '18000')} end,
          case when ${k} = 0 and ${open} and ${r} < 50 then ${r} % 4 else 0 end`,
      ),
    )
    .execute(db.kysely);
  // What a resend publishes again: the stored delivery of each message whose transport-ack is due.
  await sql`insert into outbox (message_id, purpose, exchange, routing_key, headers, content_type, message_id_prop, body, state, attempts, next_attempt_at, created_at, published_at)
    select message_id, 'deliver', 'nhn.outbound', '9920005', '{"msg-id":"bench"}', 'multipart/related', null, ${Buffer.from('<ebxml/>')}, 'published', 1, created_at, created_at, created_at
    from expectations where kind = 'transport-ack' and state = 'open' and alert_state is null and due_at <= ${NOW.toISOString()}`.execute(db.kysely);
  if (d === 'postgres') {
    await sql`select setval(pg_get_serial_sequence('messages', 'id'), ${messages})`.execute(db.kysely);
    await sql`analyze`.execute(db.kysely);
  }
  return (performance.now() - started) / 1000;
}

interface Timed {
  node: RootOperationNode;
  queryId: { queryId: string };
  ms: number;
}

/** Times every statement between Kysely handing it to the driver and its result coming back. */
class Stopwatch implements KyselyPlugin {
  readonly timed: Timed[] = [];
  private readonly started = new Map<string, { node: RootOperationNode; at: number }>();
  transformQuery(args: { node: RootOperationNode; queryId: { queryId: string } }): RootOperationNode {
    this.started.set(args.queryId.queryId, { node: args.node, at: performance.now() });
    return args.node;
  }
  async transformResult(args: { result: QueryResult<UnknownRow>; queryId: { queryId: string } }): Promise<QueryResult<UnknownRow>> {
    const s = this.started.get(args.queryId.queryId);
    if (s) this.timed.push({ node: s.node, queryId: args.queryId, ms: performance.now() - s.at });
    this.started.delete(args.queryId.queryId);
    return args.result;
  }
}

/** The due-row statements of a tick, by their SQL (the rest are per-row reads and writes). */
function nameOf(text: string): string | undefined {
  const s = text.replaceAll('`', '"');
  if (s.startsWith('select "id", "message_id", "resends"') && s.includes('from "expectations"')) return 'resend';
  if (s.includes('from "messages" as "m"') && s.includes('not exists'))
    return s.includes('"apprec_status"') ? 'raise:apprec-rejected' : 'raise:transport-error';
  if (s.startsWith('update "expectations" set "state"') && s.includes('exists')) return 'closeRoutedHolds';
  if (s.startsWith('select "id" from "expectations"')) {
    if (s.includes('order by "due_at"')) return 'firing';
    if (s.includes('order by "next_alert_at"')) return 'reminder';
    if (s.includes('order by "id"')) return 'resolved';
  }
  return undefined;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const ms = (x: number) => Number(x.toFixed(2));

/** The plan, shortened: SQLite's EXPLAIN QUERY PLAN details; PostgreSQL's node lines without costs, and the execution time. */
async function plan(db: Db, query: CompiledQuery): Promise<string> {
  if (db.dialect === 'sqlite') {
    const rows = await db.kysely.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${query.sql}`, [...query.parameters]));
    return rows.rows.map((r) => r.detail).join('; ');
  }
  // EXPLAIN ANALYZE runs the statement: an UPDATE only inside a transaction that is rolled back.
  const lines: string[] = [];
  await db.kysely
    .transaction()
    .execute(async (trx) => {
      const rows = await trx.executeQuery<{ 'QUERY PLAN': string }>(
        CompiledQuery.raw(`explain (analyze, costs off, timing off) ${query.sql}`, [...query.parameters]),
      );
      for (const r of rows.rows) lines.push(r['QUERY PLAN']);
      throw new Rollback();
    })
    .catch((e) => {
      if (!(e instanceof Rollback)) throw e;
    });
  return lines
    .filter((l) => !/^\s*(Rows Removed|Planning Time|Buffers|Heap Fetches)/.test(l))
    .map((l) =>
      l
        .trim()
        .replace(/^->\s*/, '')
        .replace(/\s*\(actual rows=\d+ loops=\d+\)/, ''),
    )
    .filter((l) => l.length > 0)
    .join('; ');
}

class Rollback extends Error {}

async function runDialect(dialect: 'sqlite' | 'postgres') {
  let url: string;
  let cleanup: () => Promise<void>;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'gw-scan-'));
    url = `sqlite:${join(dir, 'scan.db')}`;
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const name = `gw_bench_${randomBytes(6).toString('hex')}`;
    const admin = async (statement: string) => {
      const client = new pg.Client({ connectionString: ADMIN_PG_URL });
      await client.connect();
      try {
        await client.query(statement);
      } finally {
        await client.end();
      }
    };
    await admin(`create database ${name}`);
    const u = new URL(ADMIN_PG_URL);
    u.pathname = `/${name}`;
    url = u.toString();
    cleanup = () => admin(`drop database if exists ${name} with (force)`);
  }
  const db = await openDatabase(url);
  try {
    const seedSeconds = await seed(db);
    const counts = await sql<{ state: string; n: number | string }>`select state, count(*) as n from expectations group by state`.execute(db.kysely);
    const rows = Object.fromEntries(counts.rows.map((r) => [r.state, Number(r.n)]));

    const stopwatch = new Stopwatch();
    let now = NOW;
    const store = new Store({ kysely: db.kysely.withPlugin(stopwatch), dialect: db.dialect }, () => now);
    const lease = () => ({ owner: 'bench', until: new Date(now.getTime() + 60_000) });
    const repository = new DeadlineRepository(store, alertPolicy(config), { broker: config.broker, lease, replica: 'bench' });
    const publisher = { publishNow: async () => true, lease } as unknown as OutboxPublisher;
    const scheduler = new DeadlineScheduler(repository, publisher, createLogger('silent'), config.tracking.scheduler, () => now);

    const tickMs: number[] = [];
    const statements: number[] = [];
    const summaries: TickSummary[] = [];
    for (let t = 0; t < TICKS; t++) {
      const before = stopwatch.timed.length;
      const t0 = performance.now();
      summaries.push(await scheduler.tick());
      tickMs.push(performance.now() - t0);
      statements.push(stopwatch.timed.length - before);
      now = new Date(now.getTime() + 30_000);
    }

    const executor = db.kysely.getExecutor();
    const byName = new Map<string, { runs: number[]; last: CompiledQuery }>();
    for (const t of stopwatch.timed) {
      const compiled = executor.compileQuery(t.node, t.queryId);
      const name = nameOf(compiled.sql);
      if (!name) continue;
      const entry = byName.get(name) ?? { runs: [], last: compiled };
      entry.runs.push(t.ms);
      entry.last = compiled;
      byName.set(name, entry);
    }
    const queries: Record<string, { runs: number; medianMs: number; maxMs: number; plan: string }> = {};
    for (const [name, { runs, last }] of byName) {
      queries[name] = { runs: runs.length, medianMs: ms(median(runs)), maxMs: ms(Math.max(...runs)), plan: await plan(db, last) };
    }
    const total = (key: keyof TickSummary) => summaries.reduce((a, s) => a + s[key], 0);
    return {
      rows,
      seedSeconds: Number(seedSeconds.toFixed(1)),
      queries,
      maxDueQueryMs: ms(Math.max(...Object.values(queries).map((q) => q.maxMs))),
      tick: {
        ticks: TICKS,
        batchSize: config.tracking.scheduler.batchSize,
        medianMs: ms(median(tickMs)),
        maxMs: ms(Math.max(...tickMs)),
        statementsPerTick: Math.round(statements.reduce((a, b) => a + b, 0) / TICKS),
        done: Object.fromEntries((Object.keys(summaries[0]) as (keyof TickSummary)[]).map((k) => [k, total(k)])),
      },
    };
  } finally {
    await db.kysely.destroy();
    if (KEEP) console.error(`BENCH_SCAN_KEEP: kept ${url}`);
    else await cleanup();
  }
}

const result: Record<string, unknown> = { openExpectations: 3 * openMessages, closedExpectations: 3 * (messages - openMessages), targetMs: TARGET_MS };
let ok = true;
for (const dialect of DIALECTS) {
  if (dialect !== 'sqlite' && dialect !== 'postgres') throw new Error(`BENCH_SCAN_DIALECTS: unknown dialect ${dialect}`);
  const r = await runDialect(dialect);
  ok &&= r.maxDueQueryMs <= TARGET_MS;
  result[dialect] = r;
}
result.ok = ok;
console.log(JSON.stringify(result));
process.exit(0);
