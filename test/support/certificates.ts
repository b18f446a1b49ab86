// Throwaway signing keys for tests, and xmlsec1 as an independent signature oracle.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

/**
 * xmlsec1 over a signed ebXML envelope, with `part` as the MIME part its `cid:` reference names
 * (the signer's certificate trusted as is): the partner's MSH check, by an independent tool.
 */
export function xmlsec1VerifyEnvelope(
  envelope: Buffer,
  contentId: string | undefined,
  part: Buffer,
  certFile: string,
): { status: number | null; output: string } {
  if (!contentId) throw new Error('the payload part has no Content-ID for the cid: reference');
  const dir = mkdtempSync(join(tmpdir(), 'gw-xmlsec-'));
  writeFileSync(join(dir, 'payload.part'), part);
  writeFileSync(join(dir, 'envelope.xml'), envelope);
  return xmlsec1([
    '--verify',
    '--trusted-pem',
    certFile,
    '--pubkey-cert-pem',
    certFile,
    '--enabled-reference-uris',
    'empty,remote',
    `--url-map:cid:${contentId}`,
    join(dir, 'payload.part'),
    join(dir, 'envelope.xml'),
  ]);
}

/** A certificate authority made with `openssl ca`: it issues certificates and CRLs, as Buypass does. */
export interface TestCa {
  name: string;
  dir: string;
  keyFile: string;
  certFile: string;
  certPem: string;
}

export interface IssueOptions {
  /** default: keyUsage for a virksomhetssertifikat that signs */
  keyUsage?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** the CRL distribution point written into the certificate */
  crlUrl?: string;
  /** issue a CA certificate (basicConstraints CA:TRUE) */
  ca?: boolean;
}

const opensslTime = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

function openssl(args: string[], cwd?: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

function caConfig(dir: string): string {
  const file = join(dir, 'ca.cnf');
  writeFileSync(
    file,
    `[ ca ]\ndefault_ca = d\n[ d ]\ndir = ${dir}\ndatabase = ${dir}/index.txt\nnew_certs_dir = ${dir}\nserial = ${dir}/serial\ncrlnumber = ${dir}/crlnumber\ndefault_md = sha256\npolicy = p\nunique_subject = no\ndefault_crl_days = 1\ncopy_extensions = none\n[ p ]\ncommonName = supplied\n`,
  );
  return file;
}

/** A self-signed root CA, or one issued by `parent`. */
export function makeCa(name: string, parent?: TestCa, o: Omit<IssueOptions, 'ca' | 'keyUsage'> = {}): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'gw-ca-'));
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(
    join(dir, 'serial'),
    `${Math.floor(Math.random() * 1e12)
      .toString(16)
      .padStart(12, '0')}\n`,
  );
  writeFileSync(join(dir, 'crlnumber'), '01\n');
  caConfig(dir);
  const keyFile = join(dir, 'ca-key.pem');
  const certFile = join(dir, 'ca-cert.pem');
  openssl(['genrsa', '-out', keyFile, '2048']);
  if (parent) {
    const issued = issueWithKey(parent, name, keyFile, { ...o, ca: true, keyUsage: 'critical,keyCertSign,cRLSign' });
    writeFileSync(certFile, issued);
  } else {
    openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${name}`, '-out', join(dir, 'ca.csr')]);
    writeFileSync(join(dir, 'ext.cnf'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
    const period = [
      '-startdate',
      opensslTime(o.notBefore ?? new Date(Date.now() - DAY)),
      '-enddate',
      opensslTime(o.notAfter ?? new Date(Date.now() + 3650 * DAY)),
    ];
    openssl([
      'ca',
      '-batch',
      '-config',
      join(dir, 'ca.cnf'),
      '-selfsign',
      '-keyfile',
      keyFile,
      '-in',
      join(dir, 'ca.csr'),
      '-out',
      certFile,
      '-notext',
      '-extfile',
      join(dir, 'ext.cnf'),
      ...period,
    ]);
  }
  return { name, dir, keyFile, certFile, certPem: readFileSync(certFile, 'utf8') };
}

function issueWithKey(ca: TestCa, cn: string, keyFile: string, o: IssueOptions): string {
  const work = mkdtempSync(join(tmpdir(), 'gw-issue-'));
  openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-out', join(work, 'req.csr')]);
  const ext = [
    `basicConstraints=critical,CA:${o.ca ? 'TRUE' : 'FALSE'}`,
    `keyUsage=${o.keyUsage ?? 'critical,digitalSignature,nonRepudiation'}`,
    ...(o.crlUrl ? [`crlDistributionPoints=URI:${o.crlUrl}`] : []),
  ];
  writeFileSync(join(work, 'ext.cnf'), `${ext.join('\n')}\n`);
  const out = join(work, 'cert.pem');
  const period = [
    '-startdate',
    opensslTime(o.notBefore ?? new Date(Date.now() - DAY)),
    '-enddate',
    opensslTime(o.notAfter ?? new Date(Date.now() + 365 * DAY)),
  ];
  openssl([
    'ca',
    '-batch',
    '-config',
    join(ca.dir, 'ca.cnf'),
    '-cert',
    ca.certFile,
    '-keyfile',
    ca.keyFile,
    '-in',
    join(work, 'req.csr'),
    '-out',
    out,
    '-notext',
    '-extfile',
    join(work, 'ext.cnf'),
    ...period,
  ]);
  return readFileSync(out, 'utf8');
}

/** A key and a certificate `ca` issued for it. */
export function issue(ca: TestCa, cn: string, o: IssueOptions = {}): SigningKeyPair & { keyFile: string; certFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gw-leaf-'));
  const keyFile = join(dir, 'key.pem');
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile]);
  const certPem = issueWithKey(ca, cn, keyFile, o);
  const certFile = join(dir, 'cert.pem');
  writeFileSync(certFile, certPem);
  return { keyPem: readFileSync(keyFile, 'utf8'), certPem, keyFile, certFile };
}

/** Revokes a certificate `ca` issued, and writes the CA's CRL (DER); returns its bytes. Its nextUpdate is a day on, or `o.hours`. */
export function revokeAndPublish(ca: TestCa, revoke: string[] = [], o: { hours?: number } = {}): Buffer {
  for (const pem of revoke) {
    const file = join(mkdtempSync(join(tmpdir(), 'gw-rev-')), 'cert.pem');
    writeFileSync(file, pem);
    openssl(['ca', '-config', join(ca.dir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-revoke', file]);
  }
  const pemCrl = join(ca.dir, 'crl.pem');
  const period = o.hours === undefined ? [] : ['-crlhours', String(o.hours)];
  openssl(['ca', '-gencrl', '-config', join(ca.dir, 'ca.cnf'), '-cert', ca.certFile, '-keyfile', ca.keyFile, '-out', pemCrl, ...period]);
  openssl(['crl', '-in', pemCrl, '-outform', 'DER', '-out', join(ca.dir, 'crl.der')]);
  return readFileSync(join(ca.dir, 'crl.der'));
}
