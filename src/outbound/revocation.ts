// Revocation of partner certificates (HITS 1216 §2.1.4 "check the CRL online"): the CRL named by
// the certificate's distribution point, fetched over HTTP, its signature checked against the
// trust anchors, and kept until its nextUpdate. Parsed by @peculiar/x509. Only with trust
// anchors configured (without them there is nothing to check a CRL's signature against).
// A CRL that cannot be had is `unknown`: the caller soft-fails (accepts, with an ops alert) or
// hard-fails (the message waits), as `trust.crl.mode` says.
//
// With a store, fetched CRLs are kept in crl_cache too, so replicas and restarts share them:
// memory, then the store (its signature checked again: a row is not trusted for being there),
// then HTTP. Packaging is synchronous, so flows `status()` a receiver's certificate first and
// packaging reads `cachedStatus()`, from memory only.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { Kysely } from 'kysely';
import type { Db } from '../tracking/db.js';
import type { TrustStore } from './certificates.js';
import { readCertificate } from './certificates.js';

export type RevocationStatus = { state: 'good' } | { state: 'not-checked' } | { state: 'revoked'; since: Date } | { state: 'unknown'; reason: string };

interface CachedCrl {
  crl: x509.X509Crl;
  nextUpdate: Date;
}

interface CrlCacheTable {
  url: string;
  /** the CRL's DER, base64 */
  der: string;
  this_update: string | null;
  next_update: string;
  fetched_at: string;
}

export interface RevocationOptions {
  /** the store whose crl_cache replicas share; without it CRLs are kept in memory only */
  db?: Db;
  now?: () => Date;
}

export class RevocationChecker {
  private readonly crls = new Map<string, CachedCrl>();
  /** one fetch per URL at a time, however many messages wait for it */
  private readonly pending = new Map<string, Promise<x509.X509Crl | string>>();
  private readonly db?: Db;
  private readonly now: () => Date;
  private failing?: { since: Date; reason: string };

  constructor(
    private readonly trust: TrustStore,
    private readonly timeoutMs: number,
    options: RevocationOptions = {},
  ) {
    this.db = options.db;
    this.now = options.now ?? (() => new Date());
  }

  /** Since when (and why) a CRL could not be had, for the `crl-unavailable` alert; undefined when the last ones could. */
  unavailable(): { since: Date; reason: string } | undefined {
    return this.failing;
  }

  /** Fetches (or reads from the store) what is not in memory. Throws only when the store does not answer. */
  async status(certPem: string): Promise<RevocationStatus> {
    if (this.trust.size === 0) return { state: 'not-checked' };
    const cert = readCertificate(certPem);
    const urls = distributionPoints(cert);
    if (urls.length === 0) return { state: 'not-checked' };
    const reasons: string[] = [];
    for (const url of urls) {
      const crl = this.fresh(url) ?? (await this.fromStore(url)) ?? (await this.fetchOnce(url));
      if (typeof crl === 'string') {
        reasons.push(crl);
        continue;
      }
      this.failing = undefined;
      return verdict(crl, cert);
    }
    const reason = reasons.join('; ');
    this.failing ??= { since: this.now(), reason };
    return { state: 'unknown', reason };
  }

  /** As `status`, from the CRLs in memory only: `unknown` when none is (or it is out of date). */
  cachedStatus(certPem: string): RevocationStatus {
    if (this.trust.size === 0) return { state: 'not-checked' };
    const cert = readCertificate(certPem);
    const urls = distributionPoints(cert);
    if (urls.length === 0) return { state: 'not-checked' };
    for (const url of urls) {
      const crl = this.fresh(url);
      if (crl) return verdict(crl, cert);
    }
    return { state: 'unknown', reason: `no current CRL of ${urls.join(', ')} is at hand` };
  }

  private fresh(url: string): x509.X509Crl | undefined {
    const cached = this.crls.get(url);
    return cached && cached.nextUpdate > this.now() ? cached.crl : undefined;
  }

  /** What a replica (or an earlier run) fetched, while still current and signed by an anchor; else undefined. */
  private async fromStore(url: string): Promise<x509.X509Crl | undefined> {
    if (!this.db) return undefined;
    const row = await crlCache(this.db).selectFrom('crl_cache').selectAll().where('url', '=', url).executeTakeFirst();
    if (!row || new Date(row.next_update) <= this.now()) return undefined;
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(Buffer.from(row.der, 'base64'));
    } catch {
      return undefined;
    }
    // freshness from the signed nextUpdate, not the row's column
    if (!crl.nextUpdate || crl.nextUpdate <= this.now() || !(await this.signedByAnchor(crl))) return undefined;
    this.crls.set(url, { crl, nextUpdate: crl.nextUpdate });
    return crl;
  }

  /** The CRL, or why it cannot be had; rejects only when the store does not take it. */
  private fetchOnce(url: string): Promise<x509.X509Crl | string> {
    let fetching = this.pending.get(url);
    if (!fetching) {
      fetching = this.download(url)
        .then(
          async (fetched) => {
            await this.save(url, fetched);
            return fetched.crl;
          },
          (e: Error) => e.message,
        )
        .finally(() => this.pending.delete(url));
      this.pending.set(url, fetching);
    }
    return fetching;
  }

  private async download(url: string): Promise<CachedCrl> {
    let response: Response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch {
      throw new Error(`the CRL at ${url} cannot be fetched`);
    }
    if (!response.ok) throw new Error(`the CRL at ${url} answered HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(bytes);
    } catch {
      throw new Error(`what ${url} serves is not a CRL`);
    }
    if (!(await this.signedByAnchor(crl))) throw new Error(`the CRL at ${url} is not signed by a trusted CA`);
    const fetchedAt = this.now();
    const nextUpdate = crl.nextUpdate ?? new Date(fetchedAt.getTime() + 60 * 60 * 1000);
    if (nextUpdate <= fetchedAt) throw new Error(`the CRL at ${url} is out of date (nextUpdate ${nextUpdate.toISOString()})`);
    this.crls.set(url, { crl, nextUpdate });
    return { crl, nextUpdate };
  }

  private async save(url: string, { crl, nextUpdate }: CachedCrl): Promise<void> {
    if (!this.db) return;
    const row = {
      url,
      der: Buffer.from(crl.rawData).toString('base64'),
      this_update: crl.thisUpdate.toISOString(),
      next_update: nextUpdate.toISOString(),
      fetched_at: this.now().toISOString(),
    };
    await crlCache(this.db)
      .insertInto('crl_cache')
      .values(row)
      .onConflict((oc) =>
        oc.column('url').doUpdateSet({ der: row.der, this_update: row.this_update, next_update: row.next_update, fetched_at: row.fetched_at }),
      )
      .execute();
  }

  private async signedByAnchor(crl: x509.X509Crl): Promise<boolean> {
    for (const pem of this.trust.certificates) {
      const anchor = readCertificate(pem);
      if (anchor.subject !== crl.issuer) continue;
      if (await crl.verify({ publicKey: anchor.publicKey }).catch(() => false)) return true;
    }
    return false;
  }
}

const crlCache = (db: Db): Kysely<{ crl_cache: CrlCacheTable }> => db.kysely.withTables<{ crl_cache: CrlCacheTable }>();

function verdict(crl: x509.X509Crl, cert: x509.X509Certificate): RevocationStatus {
  // a CRL speaks only for its own CA's certificates: another trusted CA's list proves nothing
  if (crl.issuer !== cert.issuer)
    return { state: 'unknown', reason: `the CRL at the certificate's distribution point is issued by ${crl.issuer}, not by its issuer` };
  const entry = crl.findRevoked(cert);
  return entry ? { state: 'revoked', since: entry.revocationDate } : { state: 'good' };
}

/** The http(s) URLs of the certificate's CRL distribution points. */
function distributionPoints(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.CRLDistributionPointsExtension);
  return (ext?.distributionPoints ?? [])
    .flatMap((d) => d.distributionPoint?.fullName ?? [])
    .map((n) => n.uniformResourceIdentifier)
    .filter((u): u is string => typeof u === 'string' && /^https?:\/\//.test(u));
}
