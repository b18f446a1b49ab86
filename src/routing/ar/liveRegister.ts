// The address register as the gateway sees it (DESIGN §4.5–4.6): the snapshot file, with what
// NHN's Adresseregister answered on top. AR's answer for a HER-id wins (a service AR closed is
// closed, one it added is there) from the moment it is cached; the snapshot serves what AR has
// not answered yet and everything while AR cannot be reached. Answers are cached in the store
// (register_cache) with a TTL, so replicas and restarts share them; an expired answer is asked
// again, and still serves until AR answers. Without AR configured, this is the snapshot alone,
// read again whenever its file changes.
//
// Lookups never wait on AR for what is known: flows call `ensure` for the HER-ids a message
// names, which asks AR only for what is missing or expired, and throws `ArUnavailable` (a
// transient error: the message waits and is retried) only when nothing at all is known.
import { readFileSync, statSync } from 'node:fs';
import { durationMs, type GatewayConfig } from '../../config/config.js';
import { EVENTS } from '../../observability/events.js';
import type { Logger } from '../../observability/log.js';
import type { Db } from '../../tracking/db.js';
import { AddressRegister, type CommunicationParty } from '../addressRegister.js';
import { type CachedAnswer, cachedAnswers, storeAnswers } from './cache.js';
import { AddressRegisterClient, ArUnavailable } from './client.js';
import { listedCertificates, notExpired } from './listedCertificates.js';

export interface LiveRegisterDeps {
  config: GatewayConfig;
  db: Db;
  /** the register every flow reads; replaced in place as answers arrive */
  register: AddressRegister;
  log: Logger;
  /** default: a client for `addressRegister.url`, none without it */
  client?: AddressRegisterClient;
  now?: () => Date;
}

/** Whether AR answered the last time it was asked, for the `address-register-unavailable` alert. */
export interface ArAvailability {
  configured: boolean;
  /** since when AR has not answered; undefined while it answers */
  unavailableSince?: Date;
  reason?: string;
}

export class LiveRegister {
  readonly client?: AddressRegisterClient;
  private readonly now: () => Date;
  private readonly ttlMs: number;
  private snapshot: CommunicationParty[];
  private snapshotStamp: string;
  private answers = new Map<string, CachedAnswer>();
  private unavailable?: { since: Date; reason: string };

  constructor(private readonly deps: LiveRegisterDeps) {
    this.now = deps.now ?? (() => new Date());
    this.ttlMs = durationMs(deps.config.addressRegister.cacheTtl);
    this.snapshot = [...deps.register.parties];
    this.snapshotStamp = this.stamp();
    const { url, user, password, timeout } = deps.config.addressRegister;
    this.client =
      deps.client ?? (url ? new AddressRegisterClient({ url, user, password, timeoutMs: durationMs(timeout), bydelOf: (p) => this.bydelOf(p) }) : undefined);
  }

  get register(): AddressRegister {
    return this.deps.register;
  }

  availability(): ArAvailability {
    return { configured: this.client !== undefined, unavailableSince: this.unavailable?.since, reason: this.unavailable?.reason };
  }

  /** Reads what is cached (and a changed snapshot file) into the register. */
  async sync(): Promise<void> {
    this.readSnapshotIfChanged();
    this.answers = new Map((await cachedAnswers(this.deps.db)).map((a) => [a.herId, a]));
    this.compose();
  }

  /**
   * The periodic round: the bydel organisations (with their services) and every expired answer
   * are asked again. AR not answering leaves everything as it was, and is remembered for the alert.
   */
  async refreshDue(): Promise<void> {
    await this.sync();
    if (!this.client) return;
    const now = this.now();
    const due = new Set(this.organisationsToWatch().filter((h) => !this.fresh(h, now)));
    for (const a of this.answers.values()) if (a.expiresAt <= now) due.add(a.herId);
    await this.fetch([...due]).catch((e) => {
      this.tolerate(e);
      return [];
    });
  }

  /** Asks AR for these HER-ids now, whatever is cached (`register refresh`): the HER-ids answered for (an organisation's services too); throws when AR does not answer. */
  async refresh(herIds: string[]): Promise<string[]> {
    await this.sync();
    return this.fetch(herIds);
  }

  /** Every organisation routing needs and every HER-id cached, asked again now; the HER-ids AR answered for. */
  async refreshAll(): Promise<string[]> {
    await this.sync();
    return this.fetch([...new Set([...this.organisationsToWatch(), ...this.answers.keys()])]);
  }

  /**
   * A snapshot in today's format (DESIGN §4.5) from what AR answers now, for `register export`:
   * the bydel organisations and Oslo kommune's, with their services, of one municipality.
   */
  async exportSnapshot(municipality: string): Promise<CommunicationParty[]> {
    await this.sync();
    const answered = new Set(await this.fetch(this.organisationsToWatch()));
    return this.deps.register.parties.filter((p) => answered.has(p.herId) && p.municipality === municipality);
  }

  /** Where the register's view of a HER-id comes from. */
  sourceOf(herId: string): { from: 'ar'; fetchedAt: Date; expiresAt: Date; found: boolean } | { from: 'snapshot' } | undefined {
    const a = this.answers.get(herId);
    if (a) return { from: 'ar', fetchedAt: a.fetchedAt, expiresAt: a.expiresAt, found: a.party !== undefined };
    return this.snapshot.some((p) => p.herId === herId) ? { from: 'snapshot' } : undefined;
  }

  /**
   * Before a message that names these parties is handled: what is missing or expired is asked for.
   * Throws `ArUnavailable` only when AR does not answer and neither cache nor snapshot knows a party.
   */
  async ensure(herIds: string[]): Promise<void> {
    if (!this.client) return;
    const now = this.now();
    const wanted = [...new Set(herIds.filter((h) => /^\d+$/.test(h) && !this.fresh(h, now)))];
    if (wanted.length === 0) return;
    try {
      await this.fetch(wanted);
    } catch (e) {
      this.tolerate(e);
      const unknown = wanted.filter((h) => !this.answers.has(h) && !this.snapshot.some((p) => p.herId === h));
      if (unknown.length > 0) throw new ArUnavailable(`AR does not answer and nothing is known of HER-id ${unknown.join(', ')}`);
    }
  }

  /**
   * HITS 1216 §2.1.4: a signature that fails to verify may be made with a certificate renewed
   * since the answer was cached. The party is fetched once more, whatever is cached; false when there is
   * no AR to ask. Throws `ArUnavailable` when AR does not answer (the message waits).
   */
  async invalidate(herId: string): Promise<boolean> {
    if (!this.client) return false;
    // fetched at once, not marked expired first: a round running meanwhile must not fetch it too
    await this.fetch([herId]);
    return true;
  }

  private fresh(herId: string, now: Date): boolean {
    const a = this.answers.get(herId);
    return a !== undefined && a.expiresAt > now;
  }

  /** Fetches parties (an organisation brings its services) with their certificates, caches them and updates the register; the HER-ids answered for. */
  private async fetch(herIds: string[]): Promise<string[]> {
    const client = this.client;
    if (!client || herIds.length === 0) return [];
    const fetchedAt = this.now();
    const expiresAt = new Date(fetchedAt.getTime() + this.ttlMs);
    const answers: CachedAnswer[] = [];
    try {
      for (const herId of herIds) {
        const parties = await client.partyDetails(herId);
        if (!parties) {
          answers.push({ herId, fetchedAt, expiresAt });
          continue;
        }
        for (const ar of parties) {
          answers.push({ herId: ar.party.herId, party: { ...ar.party, ...(await listedCertificates(client, ar, fetchedAt)) }, fetchedAt, expiresAt });
        }
      }
    } catch (e) {
      // what was fetched before AR stopped answering still counts
      await this.keep(answers);
      throw e;
    }
    await this.keep(answers);
    if (this.unavailable) {
      this.deps.log.info({ event: EVENTS.addressRegisterAnswers }, 'the address register answers again');
      this.unavailable = undefined;
    }
    return answers.map((a) => a.herId);
  }

  private async keep(answers: CachedAnswer[]): Promise<void> {
    if (answers.length === 0) return;
    const now = this.now();
    const kept = answers.map((a) => (a.party ? { ...a, party: withRollover(a.party, this.answers.get(a.herId)?.party, now) } : a));
    await storeAnswers(this.deps.db, kept);
    for (const a of kept) this.answers.set(a.herId, a);
    this.compose();
  }

  /** AR not answering is remembered (for the alert) and otherwise tolerated; anything else is a bug and is thrown. */
  private tolerate(e: unknown): void {
    if (!(e instanceof ArUnavailable)) throw e;
    if (!this.unavailable) {
      this.unavailable = { since: this.now(), reason: e.message };
      this.deps.log.warn(
        { event: EVENTS.addressRegisterUnavailable, reason: e.message },
        'the address register does not answer: the cache and the snapshot serve',
      );
    }
  }

  /** The snapshot, with every party AR answered for replaced by AR's answer (and removed where AR knows none). */
  private compose(): void {
    const byHerId = new Map(this.snapshot.map((p) => [p.herId, p]));
    for (const a of this.answers.values()) {
      if (!a.party) {
        byHerId.delete(a.herId);
        continue;
      }
      const known = byHerId.get(a.herId);
      // AR has neither bydel nor CPA id: those stay from the snapshot (or the configured table)
      byHerId.set(a.herId, {
        ...a.party,
        ...(a.party.bydel || !known?.bydel ? {} : { bydel: known.bydel }),
        ...(known?.ebxml && !a.party.ebxml ? { ebxml: known.ebxml } : {}),
      });
    }
    this.deps.register.replace([...byHerId.values()]);
  }

  /** A party's bydel: its own or its parent organisation's, from the configured table first, then the snapshot. */
  private bydelOf(p: Pick<CommunicationParty, 'herId' | 'parentHerId'>): string | undefined {
    const table = this.deps.config.addressRegister.bydelOrganisations;
    const of = (herId: string | undefined) =>
      herId === undefined
        ? undefined
        : ((table && Object.entries(table).find(([, her]) => her === herId)?.[0]) ?? this.snapshot.find((s) => s.herId === herId)?.bydel);
    return of(p.herId) ?? of(p.parentHerId);
  }

  /** The organisations whose services routing needs: every bydel organisation and Oslo kommune's. */
  private organisationsToWatch(): string[] {
    const table = this.deps.config.addressRegister.bydelOrganisations;
    const bydeler = table ? Object.values(table) : this.snapshot.filter((p) => p.type === 'Organization' && p.bydel).map((p) => p.herId);
    const oslo =
      this.deps.config.routing.routeByBydel ??
      this.snapshot.filter((p) => p.type === 'Organization' && p.municipality === '0301' && !p.bydel).map((p) => p.herId);
    return [...new Set([...bydeler, ...oslo])];
  }

  private readSnapshotIfChanged(): void {
    const stamp = this.stamp();
    if (stamp === this.snapshotStamp) return;
    this.snapshotStamp = stamp;
    try {
      this.snapshot = AddressRegister.partiesOf(readFileSync(this.deps.config.routing.addressRegisterFile, 'utf8'));
      this.deps.log.info({ event: EVENTS.registerReloaded, parties: this.snapshot.length }, 'address register snapshot read again');
    } catch (e) {
      const reason = e instanceof SyntaxError ? `not JSON (${e.message})` : 'not a valid snapshot (DESIGN §4.5)';
      this.deps.log.warn({ event: EVENTS.registerReloadFailed, reason }, 'address register snapshot changed but cannot be read: the previous one still serves');
    }
  }

  private stamp(): string {
    try {
      const s = statSync(this.deps.config.routing.addressRegisterFile);
      return `${s.mtimeMs}:${s.size}`;
    } catch {
      return 'missing';
    }
  }
}

/**
 * A rollover (AR now gives a new signing certificate): the one it replaces keeps being accepted
 * while it is valid, since messages signed before the switch are still on their way. Those AR
 * lists beside it (listedCertificates) come first.
 */
function withRollover(party: CommunicationParty, before: CommunicationParty | undefined, now: Date): CommunicationParty {
  const older = [...(party.previousSigningCertificates ?? []), before?.signingCertificate, ...(before?.previousSigningCertificates ?? [])].filter(
    (pem): pem is string => pem !== undefined && pem !== party.signingCertificate && notExpired(pem, now),
  );
  const unique = [...new Set(older)];
  return unique.length > 0 && party.signingCertificate ? { ...party, previousSigningCertificates: unique } : party;
}
