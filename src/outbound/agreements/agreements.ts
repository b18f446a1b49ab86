// The agreements (CPAs) the gateway sends under (DESIGN §4.6): what NHN's CPPA register answered
// for a pair of parties, cached in the store (agreement_cache) with the address register's TTL,
// so replicas and restarts share it. An expired answer is asked again and still serves until the
// register answers. Without `cppa.url` no pair has an agreement: HIS 1037's defaults serve.
//
// Lookups never wait on the register for what is known: before a message is packaged the flow
// calls `ensure` for its pair, which asks only when nothing fresh is cached, and throws
// `CppaUnavailable` (transient: the message waits) only when nothing at all is known of the pair.
import type { Kysely } from 'kysely';
import { durationMs, type GatewayConfig } from '../../config/config.js';
import { EVENTS } from '../../observability/events.js';
import type { Logger } from '../../observability/log.js';
import type { Db, Schema } from '../../tracking/db.js';
import { CppaClient, CppaUnavailable } from './client.js';
import { type Agreement, readAgreement, type SendingTerms, termsFor } from './cpa.js';

interface AgreementCacheTable {
  our_her_id: string;
  partner_her_id: string;
  /** 0: the register answered that the two have no agreement */
  found: number;
  /** JSON of the agreement's terms; null when not found */
  agreement: string | null;
  fetched_at: string;
  expires_at: string;
}

interface CachedAgreement {
  agreement?: Agreement;
  fetchedAt: Date;
  expiresAt: Date;
}

/** The terms one message is sent under, with the agreement's id for eb:CPAId. */
export type AgreedTerms = SendingTerms & { cpaId: string };

export interface AgreementsDeps {
  config: GatewayConfig;
  db: Db;
  log: Logger;
  /** default: a client for `cppa.url`, none without it */
  client?: CppaClient;
  now?: () => Date;
}

const pairKey = (ours: string, partner: string) => `${ours}>${partner}`;

export class Agreements {
  readonly client?: CppaClient;
  private readonly now: () => Date;
  private readonly ttlMs: number;
  private cached = new Map<string, CachedAgreement>();
  /** since when the register has not answered, and the pair it did not answer for (asked first in the next round) */
  private unavailable?: { since: Date; reason: string; ours: string; partner: string };

  constructor(private readonly deps: AgreementsDeps) {
    this.now = deps.now ?? (() => new Date());
    const { url, timeout, cacheTtl } = deps.config.cppa;
    this.ttlMs = durationMs(cacheTtl);
    this.client = deps.client ?? (url ? new CppaClient({ url, timeoutMs: durationMs(timeout) }) : undefined);
  }

  /** Since when (and why) the register has not answered, for the `cppa-unavailable` alert. */
  availability(): { configured: boolean; unavailableSince?: Date; reason?: string } {
    return { configured: this.client !== undefined, unavailableSince: this.unavailable?.since, reason: this.unavailable?.reason };
  }

  /** Reads what replicas and earlier runs cached. */
  async sync(): Promise<void> {
    const rows = await this.table().selectFrom('agreement_cache').selectAll().execute();
    this.cached = new Map(
      rows.map((r) => [
        pairKey(r.our_her_id, r.partner_her_id),
        {
          ...(r.found && r.agreement ? { agreement: JSON.parse(r.agreement) as Agreement } : {}),
          fetchedAt: new Date(r.fetched_at),
          expiresAt: new Date(r.expires_at),
        },
      ]),
    );
  }

  /** The agreement for the pair as last answered; undefined when none (or none known). */
  agreementOf(ours: string, partner: string): Agreement | undefined {
    return this.cached.get(pairKey(ours, partner))?.agreement;
  }

  /** What a message from `ours` to `partner` in this Service and Action is sent under; undefined: HIS 1037's defaults. */
  termsFor(ours: string, partner: string, service: string, action: string, at: Date): AgreedTerms | undefined {
    const agreement = this.agreementOf(ours, partner);
    const terms = agreement && termsFor(agreement, service, action, at);
    return terms && { ...terms, cpaId: agreement.cpaId };
  }

  /**
   * Before a message for this pair is packaged: asked for when nothing fresh is cached. Throws
   * `CppaUnavailable` only when the register does not answer and nothing is known of the pair.
   */
  async ensure(ours: string, partner: string): Promise<void> {
    if (!this.client) return;
    const cached = this.cached.get(pairKey(ours, partner));
    if (cached && cached.expiresAt > this.now()) return;
    try {
      await this.fetch(ours, partner);
    } catch (e) {
      this.tolerate(e, ours, partner);
      if (!cached) throw e;
    }
  }

  /** The periodic round: every expired pair asked again; the register not answering is remembered for the alert. */
  async refreshDue(): Promise<void> {
    if (!this.client) return;
    await this.sync();
    const now = this.now();
    const due = [...this.cached].filter(([, c]) => c.expiresAt <= now).map(([key]) => key.split('>') as [string, string]);
    if (this.unavailable) due.unshift([this.unavailable.ours, this.unavailable.partner]);
    for (const [ours, partner] of due) {
      try {
        await this.fetch(ours, partner);
      } catch (e) {
        this.tolerate(e, ours, partner);
        return;
      }
    }
  }

  /** Asks the register for the pair now, whatever is cached (`register refresh`); throws when it does not answer. */
  async refresh(ours: string, partner: string): Promise<Agreement | undefined> {
    if (!this.client) return undefined;
    await this.fetch(ours, partner);
    return this.agreementOf(ours, partner);
  }

  private async fetch(ours: string, partner: string): Promise<void> {
    const client = this.client;
    if (!client) return;
    const xml = await client.agreement(ours, partner);
    let agreement: Agreement | undefined;
    if (xml) {
      try {
        agreement = readAgreement(xml, ours);
      } catch (e) {
        // an agreement the gateway cannot read or honour: HIS 1037's defaults, and ops are told which
        this.deps.log.warn({ event: EVENTS.agreementUnusable, ourHerId: ours, partnerHerId: partner, reason: (e as Error).message }, 'a CPA cannot be used');
      }
    }
    const fetchedAt = this.now();
    const entry: CachedAgreement = { ...(agreement ? { agreement } : {}), fetchedAt, expiresAt: new Date(fetchedAt.getTime() + this.ttlMs) };
    const row = {
      our_her_id: ours,
      partner_her_id: partner,
      found: agreement ? 1 : 0,
      agreement: agreement ? JSON.stringify(agreement) : null,
      fetched_at: fetchedAt.toISOString(),
      expires_at: entry.expiresAt.toISOString(),
    };
    await this.table()
      .insertInto('agreement_cache')
      .values(row)
      .onConflict((oc) =>
        oc
          .columns(['our_her_id', 'partner_her_id'])
          .doUpdateSet({ found: row.found, agreement: row.agreement, fetched_at: row.fetched_at, expires_at: row.expires_at }),
      )
      .execute();
    this.cached.set(pairKey(ours, partner), entry);
    if (this.unavailable) {
      this.deps.log.info({ event: EVENTS.cppaAnswers }, 'the CPPA register answers again');
      this.unavailable = undefined;
    }
  }

  private tolerate(e: unknown, ours: string, partner: string): void {
    if (!(e instanceof CppaUnavailable)) throw e;
    if (!this.unavailable) {
      this.unavailable = { since: this.now(), reason: e.message, ours, partner };
      this.deps.log.warn({ event: EVENTS.cppaUnavailable, reason: e.message }, 'the CPPA register does not answer: cached agreements serve');
    }
  }

  private table(): Kysely<Schema & { agreement_cache: AgreementCacheTable }> {
    return this.deps.db.kysely.withTables<{ agreement_cache: AgreementCacheTable }>();
  }
}
