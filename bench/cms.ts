// `npm run bench:cms`: CMS EnvelopedData (src/outbound/cms.ts) encrypt and decrypt of a 10 KB
// and a 100 KB PLO-like document, N times each (env BENCH_N, default 200), with a throwaway
// RSA-2048 certificate from openssl. The main figures use the defaults (AES-256-CBC, RSA PKCS#1
// v1.5 key transport); the *Oaep* figures use RSA-OAEP, whose RSA runs in node:crypto.
// Prints one JSON line of mean milliseconds per operation:
// {library, n, encrypt10kMs, decrypt10kMs, encrypt100kMs, decrypt100kMs, encrypt10kOaepMs, decrypt10kOaepMs, encrypt100kOaepMs, decrypt100kOaepMs}
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decryptEnveloped, type EncryptOptions, encryptEnveloped } from '../src/outbound/cms.js';

const n = Number(process.env.BENCH_N ?? process.argv[2] ?? 200);
const forgeVersion = (createRequire(import.meta.url)('node-forge/package.json') as { version: string }).version;

const dir = mkdtempSync(join(tmpdir(), 'gw-bench-cms-'));
const keyFile = join(dir, 'key.pem');
const certFile = join(dir, 'cert.pem');
const subject = '/C=NO/O=Bench/CN=gateway-encryption';
const req = 'req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -addext keyUsage=critical,keyEncipherment,dataEncipherment'.split(' ');
execFileSync('openssl', [...req, '-keyout', keyFile, '-out', certFile, '-subj', subject], { stdio: 'ignore' });
const keys = [{ keyPem: readFileSync(keyFile, 'utf8'), certPem: readFileSync(certFile, 'utf8') }];
rmSync(dir, { recursive: true, force: true });

function document(bytes: number): Buffer {
  const head = '<?xml version="1.0" encoding="UTF-8"?>\r\n<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">\r\n';
  const line = '  <Merknad>Pasienten er utskrivningsklar; pårørende er varslet. Bydel Grünerløkka, Sør-Øst.</Merknad>\r\n';
  const tail = '</MsgHead>\r\n';
  let body = head;
  while (Buffer.byteLength(body + line + tail) <= bytes) body += line;
  const doc = Buffer.from(body + tail);
  return Buffer.concat([doc, Buffer.alloc(bytes - doc.length, 0x20)]);
}

function meanMs(run: () => unknown): number {
  for (let i = 0; i < Math.min(5, n); i++) run(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run();
  const ms = Number(process.hrtime.bigint() - start) / 1e6 / n;
  return Math.round(ms * 1000) / 1000;
}

function measure(doc: Buffer, options: EncryptOptions): { encrypt: number; decrypt: number } {
  const der = encryptEnveloped(doc, keys[0].certPem, options);
  const check = decryptEnveloped(der, keys);
  if (!check.ok || !check.content.equals(doc)) throw new Error(`round trip failed: ${check.ok ? 'content differs' : check.reason}`);
  return {
    encrypt: meanMs(() => encryptEnveloped(doc, keys[0].certPem, options)),
    decrypt: meanMs(() => decryptEnveloped(der, keys)),
  };
}

const d10k = document(10 * 1024);
const d100k = document(100 * 1024);
const pkcs10k = measure(d10k, {});
const pkcs100k = measure(d100k, {});
const oaep10k = measure(d10k, { keyTransport: 'rsa-oaep' });
const oaep100k = measure(d100k, { keyTransport: 'rsa-oaep' });

console.log(
  JSON.stringify({
    library: `node-forge ${forgeVersion}`,
    n,
    encrypt10kMs: pkcs10k.encrypt,
    decrypt10kMs: pkcs10k.decrypt,
    encrypt100kMs: pkcs100k.encrypt,
    decrypt100kMs: pkcs100k.decrypt,
    encrypt10kOaepMs: oaep10k.encrypt,
    decrypt10kOaepMs: oaep10k.decrypt,
    encrypt100kOaepMs: oaep100k.encrypt,
    decrypt100kOaepMs: oaep100k.decrypt,
  }),
);
