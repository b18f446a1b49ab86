// Throwaway signing keys for tests, and xmlsec1 as an independent signature oracle.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate, type SelfsignedOptions } from 'selfsigned';

export const DAY = 86_400_000;

type Extensions = SelfsignedOptions['extensions'];

export interface SigningKeyPair {
  keyPem: string;
  certPem: string;
}

export interface CertificateOptions {
  notBefore?: Date;
  notAfter?: Date;
  /** default true: HIS 1037 signing certificates carry nonRepudiation */
  nonRepudiation?: boolean;
  /** replaces the keyUsage extension altogether (e.g. a TLS-only or usage-less certificate) */
  extensions?: Extensions;
}

/** A key and self-signed certificate; by default valid now, with nonRepudiation. */
export async function makeSigner(cn: string, o: CertificateOptions = {}): Promise<SigningKeyPair> {
  const keyPair = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyPair,
    algorithm: 'sha256',
    extensions: o.extensions ?? [{ name: 'keyUsage', digitalSignature: true, nonRepudiation: o.nonRepudiation ?? true, critical: true }],
    notBeforeDate: o.notBefore ?? new Date(Date.now() - DAY),
    notAfterDate: o.notAfter ?? new Date(Date.now() + 365 * DAY),
  });
  return { keyPem: pems.private, certPem: pems.cert };
}

/** The pair as PEM files in a directory of their own, where a configuration (or GATEWAY_* variables) can name them. */
export function pemFiles(pair: SigningKeyPair): { keyFile: string; certFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gw-pem-'));
  writeFileSync(join(dir, 'key.pem'), pair.keyPem);
  writeFileSync(join(dir, 'cert.pem'), pair.certPem);
  return { keyFile: join(dir, 'key.pem'), certFile: join(dir, 'cert.pem') };
}

/** Runs the xmlsec1 CLI; a missing binary is a test failure, never a skip (CI installs it). */
export function xmlsec1(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('xmlsec1', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`xmlsec1 could not be run (${r.error.message}); install the Debian package xmlsec1`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
