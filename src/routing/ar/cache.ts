// The register_cache table (migration 008): what AR answered per HER-id, so that every replica
// and a restarted gateway serve the same answers without asking AR again before they expire.
// An expired answer still serves while AR cannot be reached: the cache and the snapshot keep
// working when AR does not.
import type { Kysely, Selectable } from 'kysely';
import type { Db, Schema } from '../../tracking/db.js';
import type { CommunicationParty } from '../addressRegister.js';

interface RegisterCacheTable {
  her_id: string;
  /** 0: AR answered that there is no such party */
  found: number;
  /** JSON of the party in the snapshot's shape; null when not found */
  party: string | null;
  fetched_at: string;
  expires_at: string;
}

type CacheSchema = Schema & { register_cache: RegisterCacheTable };
type CacheRow = Selectable<RegisterCacheTable>;

/** One HER-id as AR last answered it. */
export interface CachedAnswer {
  herId: string;
  /** undefined: AR has no such party */
  party?: CommunicationParty;
  fetchedAt: Date;
  expiresAt: Date;
}

const table = (db: Db): Kysely<CacheSchema> => db.kysely.withTables<{ register_cache: RegisterCacheTable }>();

const answerOf = (r: CacheRow): CachedAnswer => ({
  herId: r.her_id,
  ...(r.found && r.party ? { party: JSON.parse(r.party) as CommunicationParty } : {}),
  fetchedAt: new Date(r.fetched_at),
  expiresAt: new Date(r.expires_at),
});

export async function cachedAnswers(db: Db): Promise<CachedAnswer[]> {
  return (await table(db).selectFrom('register_cache').selectAll().orderBy('her_id').execute()).map(answerOf);
}

export async function cachedAnswer(db: Db, herId: string): Promise<CachedAnswer | undefined> {
  const row = await table(db).selectFrom('register_cache').selectAll().where('her_id', '=', herId).executeTakeFirst();
  return row && answerOf(row);
}

/** Stores AR's answers, each replacing what was cached for its HER-id. */
export async function storeAnswers(db: Db, answers: CachedAnswer[]): Promise<void> {
  if (answers.length === 0) return;
  await table(db)
    .transaction()
    .execute(async (trx) => {
      for (const a of answers) {
        const row = {
          her_id: a.herId,
          found: a.party ? 1 : 0,
          party: a.party ? JSON.stringify(a.party) : null,
          fetched_at: a.fetchedAt.toISOString(),
          expires_at: a.expiresAt.toISOString(),
        };
        await trx
          .insertInto('register_cache')
          .values(row)
          .onConflict((oc) => oc.column('her_id').doUpdateSet({ found: row.found, party: row.party, fetched_at: row.fetched_at, expires_at: row.expires_at }))
          .execute();
      }
    });
}
