// Revocation of partner certificates (HITS 1216 §2.1.4 "check the CRL online"): the CRL named by
// the certificate's distribution point, fetched over HTTP, its signature checked against the
// trust anchors, and kept until its nextUpdate. Parsed by @peculiar/x509. Only with trust
// anchors configured (without them there is nothing to check a CRL's signature against).
// A CRL that cannot be had is `unknown`: the caller soft-fails (accepts, with an ops alert) or
// hard-fails (the message waits), as `trust.crl.mode` says.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { TrustStore } from './certificates.js';
import { readCertificate } from './certificates.js';

export type RevocationStatus = { state: 'good' } | { state: 'not-checked' } | { state: 'revoked'; since: Date } | { state: 'unknown'; reason: string };

interface CachedCrl {
  crl: x509.X509Crl;
  nextUpdate: Date;
}

export class RevocationChecker {
  private readonly crls = new Map<string, CachedCrl>();
  private failing?: { since: Date; reason: string };

  constructor(
    private readonly trust: TrustStore,
    private readonly timeoutMs: number,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Since when (and why) a CRL could not be had, for the `crl-unavailable` alert; undefined when the last ones could. */
  unavailable(): { since: Date; reason: string } | undefined {
    return this.failing;
  }

  async status(certPem: string): Promise<RevocationStatus> {
    if (this.trust.size === 0) return { state: 'not-checked' };
    const cert = readCertificate(certPem);
    const urls = distributionPoints(cert);
    if (urls.length === 0) return { state: 'not-checked' };
    const reasons: string[] = [];
    for (const url of urls) {
      const crl = await this.crlAt(url).catch((e: Error) => {
        reasons.push(e.message);
        return undefined;
      });
      if (!crl) continue;
      this.failing = undefined;
      const entry = crl.findRevoked(cert);
      return entry ? { state: 'revoked', since: entry.revocationDate } : { state: 'good' };
    }
    const reason = reasons.join('; ');
    this.failing ??= { since: this.now(), reason };
    return { state: 'unknown', reason };
  }

  private async crlAt(url: string): Promise<x509.X509Crl> {
    const cached = this.crls.get(url);
    if (cached && cached.nextUpdate > this.now()) return cached.crl;
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
    const nextUpdate = crl.nextUpdate ?? new Date(this.now().getTime() + 60 * 60 * 1000);
    if (nextUpdate <= this.now()) throw new Error(`the CRL at ${url} is out of date (nextUpdate ${nextUpdate.toISOString()})`);
    this.crls.set(url, { crl, nextUpdate });
    return crl;
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

/** The http(s) URLs of the certificate's CRL distribution points. */
function distributionPoints(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.CRLDistributionPointsExtension);
  return (ext?.distributionPoints ?? [])
    .flatMap((d) => d.distributionPoint?.fullName ?? [])
    .map((n) => n.uniformResourceIdentifier)
    .filter((u): u is string => typeof u === 'string' && /^https?:\/\//.test(u));
}
