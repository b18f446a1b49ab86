// Reading X.509 certificates for what the gateway decides with them: validity and key usage per
// purpose (nonRepudiation to sign, keyEncipherment/dataEncipherment to encrypt), and a
// description for ops (`register show`). Parsed by @peculiar/x509 (a maintained ASN.1 stack),
// not by hand: Node 20's X509Certificate reports extended key usages only.
import 'reflect-metadata';
import { X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type KeyUsageName =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';

const FLAGS: [KeyUsageName, number][] = [
  ['digitalSignature', x509.KeyUsageFlags.digitalSignature],
  ['nonRepudiation', x509.KeyUsageFlags.nonRepudiation],
  ['keyEncipherment', x509.KeyUsageFlags.keyEncipherment],
  ['dataEncipherment', x509.KeyUsageFlags.dataEncipherment],
  ['keyAgreement', x509.KeyUsageFlags.keyAgreement],
  ['keyCertSign', x509.KeyUsageFlags.keyCertSign],
  ['cRLSign', x509.KeyUsageFlags.cRLSign],
  ['encipherOnly', x509.KeyUsageFlags.encipherOnly],
  ['decipherOnly', x509.KeyUsageFlags.decipherOnly],
];

export interface CertificateDescription {
  subject: string;
  issuer: string;
  serialNumber: string;
  validFrom: string;
  validTo: string;
  /** undefined: the certificate has no keyUsage extension */
  keyUsage?: KeyUsageName[];
}

/** Parses a PEM (or DER) certificate; throws with a readable message when it is none. */
export function readCertificate(pemOrDer: string | Buffer): x509.X509Certificate {
  try {
    return new x509.X509Certificate(typeof pemOrDer === 'string' ? pemOrDer : new Uint8Array(pemOrDer));
  } catch {
    throw new Error('the text is not a certificate (no readable PEM or DER X.509)');
  }
}

export function keyUsageOf(cert: x509.X509Certificate): KeyUsageName[] | undefined {
  const ext = cert.getExtension(x509.KeyUsagesExtension);
  return ext ? FLAGS.filter(([, flag]) => (ext.usages & flag) !== 0).map(([name]) => name) : undefined;
}

export function describeCertificate(pem: string): CertificateDescription {
  const cert = readCertificate(pem);
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
    validFrom: cert.notBefore.toISOString(),
    validTo: cert.notAfter.toISOString(),
    keyUsage: keyUsageOf(cert),
  };
}

export interface CertificateCheck {
  ok: boolean;
  /** readable sentences, empty when ok */
  problems: string[];
}

/**
 * Checks that a certificate may sign messages at `at`: inside its validity period and with
 * nonRepudiation key usage, as HIS 1037 requires of the virksomhetssertifikat used for signing,
 * and (with trust anchors configured) issued by a trusted CA.
 */
export function checkSigningCertificate(certPem: string, at: Date = new Date(), trust: TrustStore = TrustStore.none()): CertificateCheck {
  const cert = readCertificate(certPem);
  const problems: string[] = [];
  if (at < cert.notBefore) problems.push(`the certificate is not valid before ${cert.notBefore.toISOString()}`);
  if (at > cert.notAfter) problems.push(`the certificate expired on ${cert.notAfter.toISOString()}`);
  const usage = keyUsageOf(cert);
  if (usage === undefined) problems.push('the certificate has no key usage extension, so nonRepudiation is missing');
  else if (!usage.includes('nonRepudiation')) problems.push('the certificate key usage does not include nonRepudiation');
  const chain = trust.chainProblem(certPem, at);
  if (chain) problems.push(chain);
  return { ok: problems.length === 0, problems };
}

/**
 * The CA certificates partner and own certificates must chain to (`GATEWAY_TRUST_ANCHORS`: in
 * production Buypass' and Commfides' roots and issuing CAs). Issuer and signature are checked by
 * node:crypto (OpenSSL: `checkIssued`, `verify`); intermediates are not fetched, so the issuing
 * CAs belong in the list. Without anchors nothing is checked (the demo, tests that predate it).
 */
export class TrustStore {
  private constructor(private readonly anchors: NodeX509[]) {}

  static none(): TrustStore {
    return new TrustStore([]);
  }

  /** Every certificate in these PEM files; throws naming the file that holds none. */
  static fromFiles(files: string[]): TrustStore {
    const anchors: NodeX509[] = [];
    for (const file of files) {
      const pems = readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
      if (pems.length === 0) throw new Error(`${file} holds no PEM certificate`);
      anchors.push(...pems.map((p) => new NodeX509(p)));
    }
    return new TrustStore(anchors);
  }

  get size(): number {
    return this.anchors.length;
  }

  /** The anchors as PEM, for checking what they signed (CRLs). */
  get certificates(): string[] {
    return this.anchors.map((a) => a.toString());
  }

  /** Why `pem` does not chain to an anchor valid at `at`; undefined when it does (or no anchors are configured). */
  chainProblem(pem: string, at: Date): string | undefined {
    if (this.anchors.length === 0) return undefined;
    let current = new NodeX509(pem);
    for (let depth = 0; depth < 8; depth++) {
      if (this.anchors.some((a) => a.fingerprint256 === current.fingerprint256)) return undefined;
      const issuer = this.anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
      if (!issuer) return `the certificate does not chain to a trusted CA (issuer ${current.issuer.replace(/\n/g, ', ')})`;
      if (at < new Date(issuer.validFrom) || at > new Date(issuer.validTo))
        return `the issuing CA certificate (${issuer.subject.replace(/\n/g, ', ')}) is not valid at ${at.toISOString()}`;
      current = issuer;
    }
    return 'the certificate chain is longer than 8 certificates';
  }
}

const trustStores = new WeakMap<object, TrustStore>();

/** One trust store per configured anchor list (read once). */
export function trustStoreFor(trust: { anchors: string[] }): TrustStore {
  let store = trustStores.get(trust);
  if (!store) {
    store = trust.anchors.length > 0 ? TrustStore.fromFiles(trust.anchors) : TrustStore.none();
    trustStores.set(trust, store);
  }
  return store;
}
