// The store's side of /metrics: counts and ages that ops watch, read at scrape time. Only
// counts, kinds and timestamps: nothing from a message.
import { sql } from 'kysely';
import type { OpsSnapshot } from '../observability/metrics.js';
import type { Db } from '../tracking/db.js';
import { type ConditionKind, RULES } from '../tracking/deadlines.js';
import { opsKysely } from './schema.js';

export async function opsSnapshot(db: Db, now: Date): Promise<OpsSnapshot> {
  const k = opsKysely(db);
  const count = sql<number>`count(*)`;
  const [deadLetters, expectations, firingExpectations, firingOps, oldest] = await Promise.all([
    k
      .selectFrom('dead_letters')
      .select([count.as('n'), sql<string | null>`min(received_at)`.as('oldest')])
      .where('state', '=', 'open')
      .executeTakeFirstOrThrow(),
    k
      .selectFrom('expectations')
      .select(['kind', count.as('n'), sql<string | null>`min(created_at)`.as('oldest')])
      .where('state', '=', 'open')
      .groupBy('kind')
      .execute(),
    k
      .selectFrom('expectations')
      .select(['kind', count.as('n')])
      .where('alert_state', '=', 'firing')
      .groupBy('kind')
      .execute(),
    k
      .selectFrom('ops_alerts')
      .select(['kind', count.as('n')])
      .where('state', '=', 'firing')
      .groupBy('kind')
      .execute(),
    Promise.all([
      k.selectFrom('outbox').select(sql<string | null>`min(created_at)`.as('t')).where('state', '=', 'pending').executeTakeFirstOrThrow(),
      k.selectFrom('messages').select(sql<string | null>`min(created_at)`.as('t')).where('state', '=', 'held').executeTakeFirstOrThrow(),
    ]),
  ]);
  const age = (iso: string | null | undefined) => (iso ? Math.max(0, (now.getTime() - Date.parse(iso)) / 1000) : 0);
  const oldestExpectation = expectations
    .map((e) => e.oldest)
    .filter((x): x is string => x !== null)
    .sort()[0];

  const alertsFiring: Record<string, number> = {};
  // an expectation's kind names its condition; the alert kind is what ops see on gateway.alerts
  for (const e of firingExpectations) add(alertsFiring, RULES[e.kind as ConditionKind]?.alert ?? e.kind, Number(e.n));
  for (const o of firingOps) add(alertsFiring, o.kind, Number(o.n));

  return {
    deadLettersOpen: Number(deadLetters.n),
    expectationsOpen: Object.fromEntries(expectations.map((e) => [e.kind, Number(e.n)])),
    oldestPendingSeconds: {
      outbox: age(oldest[0].t),
      held: age(oldest[1].t),
      expectation: age(oldestExpectation),
      'dead-letter': age(deadLetters.oldest),
    },
    alertsFiring,
  };
}

function add(into: Record<string, number>, key: string, n: number): void {
  into[key] = (into[key] ?? 0) + n;
}
