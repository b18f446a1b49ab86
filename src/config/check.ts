// `plo-gateway config check`: everything start-up would trip over, reported all at once.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CppaClient } from '../outbound/agreements/client.js';
import { TrustStore, trustStoreFor } from '../outbound/certificates.js';
import { encryptionCertificateProblem } from '../outbound/cms.js';
import { payloadProtectionFor } from '../outbound/protection.js';
import { loadAddressIndexes } from '../routing/addressIndex/indexFile.js';
import { AddressRegister } from '../routing/addressRegister.js';
import { AddressRegisterClient } from '../routing/ar/client.js';
import { loadOverrides } from '../routing/overrides.js';
import { loadPostcodeIndex } from '../routing/postcodeIndex.js';
import { osloDay } from '../routing/validity.js';
import { durationMs, type GatewayConfig } from './config.js';

function attempt(problems: string[], label: string, fn: () => void) {
  try {
    fn();
  } catch (e) {
    problems.push(`${label}: ${(e as Error).message.split('\n')[0]}`);
  }
}

export function checkConfigFiles(config: GatewayConfig): string[] {
  const problems: string[] = [];
  if (!existsSync(join(config.schemaDir, 'MsgHead-v1_2.xsd'))) {
    problems.push(`schemaDir: ${config.schemaDir} does not contain MsgHead-v1_2.xsd (set GATEWAY_SCHEMA_DIR)`);
  }
  let trust = TrustStore.none();
  attempt(problems, 'trust.anchors', () => (trust = trustStoreFor(config.trust)));
  let register: AddressRegister | undefined;
  attempt(problems, 'routing.addressRegisterFile', () => (register = AddressRegister.load(config.routing.addressRegisterFile)));
  attempt(problems, 'routing.postcodeIndexFile', () => loadPostcodeIndex(config.routing.postcodeIndexFile));
  attempt(problems, 'routing.overridesFile', () => loadOverrides(config.routing.overridesFile));
  attempt(problems, 'routing.addressIndexFiles', () => {
    const indexes = loadAddressIndexes(config.routing.addressIndexFiles ?? []);
    if (indexes.size > 0 && !indexes.validOn(osloDay(new Date()))) throw new Error('no address index file is valid today: the address rule cannot decide');
  });
  if (register) {
    const routeBy = config.routing.routeByBydel ?? register.osloKommuneHerIds();
    if (routeBy.length === 0) problems.push('routing.routeByBydel: no Oslo kommune organisation (municipality 0301 without bydel) in the address register');
    for (const code of new Set(Object.values(config.routing.serviceByType))) {
      if (!register.parties.some((p) => p.type === 'Service' && p.serviceCode === code && p.bydel)) {
        problems.push(`routing.serviceByType: no bydel has a ${code} service in the address register`);
      }
    }
    // What routing sends to must be able to receive it: otherwise every message for it is held.
    const now = new Date();
    const known = register;
    const services = known.parties.filter((p) => p.type === 'Service' && p.bydel && p.active);
    attempt(problems, 'trust.anchors', () => {
      for (const service of services) {
        const protection = payloadProtectionFor(config, known, service.herId, now);
        if (protection.mode === 'unusable') problems.push(`routing.addressRegisterFile: ${protection.reason}; messages routed to it will be held`);
      }
    });
  }
  let key: ReturnType<typeof createPrivateKey> | undefined;
  let cert: X509Certificate | undefined;
  attempt(problems, 'signing.keyFile', () => (key = createPrivateKey(readFileSync(config.signing.keyFile))));
  attempt(problems, 'signing.certFile', () => (cert = new X509Certificate(readFileSync(config.signing.certFile))));
  if (key && cert) {
    if (!cert.checkPrivateKey(key)) problems.push('signing: the certificate does not belong to the signing key');
    if (new Date(cert.validTo) < new Date()) problems.push(`signing.certFile: the certificate expired ${cert.validTo}`);
    const chain = trust.chainProblem(cert.toString(), new Date());
    if (chain) problems.push(`signing.certFile: ${chain}`);
  }
  for (const [i, pair] of config.encryption.keys.entries()) checkEncryptionPair(problems, `encryption.keys.${i}`, pair, trust);
  if (config.http.tls) checkTlsPair(problems, config.http.tls);
  return problems;
}

/** The HTTP listener's own key and certificate: readable, belonging together, not expired. */
function checkTlsPair(problems: string[], pair: { keyFile: string; certFile: string }) {
  let key: ReturnType<typeof createPrivateKey> | undefined;
  let cert: X509Certificate | undefined;
  attempt(problems, 'http.tls.keyFile', () => (key = createPrivateKey(readFileSync(pair.keyFile))));
  attempt(problems, 'http.tls.certFile', () => (cert = new X509Certificate(readFileSync(pair.certFile))));
  if (!key || !cert) return;
  if (!cert.checkPrivateKey(key)) problems.push('http.tls: the certificate does not belong to the key');
  if (new Date(cert.validTo) < new Date()) problems.push(`http.tls.certFile: the certificate expired ${cert.validTo}`);
}

/** One of the gateway's own decryption pairs: the key, its certificate, and that they are usable together. */
function checkEncryptionPair(problems: string[], label: string, pair: { keyFile: string; certFile: string }, trust: TrustStore) {
  let key: ReturnType<typeof createPrivateKey> | undefined;
  let cert: X509Certificate | undefined;
  attempt(problems, `${label}.keyFile`, () => (key = createPrivateKey(readFileSync(pair.keyFile))));
  attempt(problems, `${label}.certFile`, () => (cert = new X509Certificate(readFileSync(pair.certFile))));
  if (!key || !cert) return;
  if (!cert.checkPrivateKey(key)) problems.push(`${label}: the certificate does not belong to the key`);
  const problem = encryptionCertificateProblem(cert.toString(), new Date(), trust);
  if (problem) problems.push(`${label}.certFile: ${problem}`);
}

/**
 * `config check --online`: the address register answers Ping with these credentials, and the CPPA
 * register has our own party's profile (or why not).
 */
export async function checkOnline(config: GatewayConfig): Promise<string[]> {
  return [...(await checkAddressRegister(config)), ...(await checkCppa(config))];
}

async function checkAddressRegister(config: GatewayConfig): Promise<string[]> {
  const { url, user, password, timeout } = config.addressRegister;
  if (!url) return [];
  const client = new AddressRegisterClient({ url, user, password, timeoutMs: durationMs(timeout), bydelOf: () => undefined });
  try {
    await client.ping();
    return [];
  } catch (e) {
    return [`addressRegister.url: ${(e as Error).message}`];
  }
}

async function checkCppa(config: GatewayConfig): Promise<string[]> {
  const { url, timeout } = config.cppa;
  if (!url) return [];
  try {
    const profile = await new CppaClient({ url, timeoutMs: durationMs(timeout) }).profile(config.ownHerId);
    return profile ? [] : [`cppa.url: the CPPA register has no profile (CPP) for our HER-id ${config.ownHerId}, so partners can have no agreement with us`];
  } catch (e) {
    return [`cppa.url: ${(e as Error).message}`];
  }
}

/**
 * What `start` refuses to run with: an own signing or decryption certificate that has expired.
 * One line each, naming the file.
 */
export function ownCertificateProblems(config: GatewayConfig, at = new Date()): string[] {
  const files = [['signing.certFile', config.signing.certFile], ...config.encryption.keys.map((k, i) => [`encryption.keys.${i}.certFile`, k.certFile])];
  const problems: string[] = [];
  for (const [label, file] of files) {
    const cert = new X509Certificate(readFileSync(file));
    if (at > new Date(cert.validTo))
      problems.push(`${label}: the gateway's own certificate ${file} expired on ${new Date(cert.validTo).toISOString()}; renew it before starting`);
  }
  return problems;
}

/** The demo's keys ship in the repository (config/demo-keys): anyone can read them. */
const DEMO_KEYS_DIR = fileURLToPath(new URL('../../config/demo-keys/', import.meta.url));
/** The patient-key secret of config/default.json: with it anyone can recompute the keyed patient hashes. */
export const DEMO_PATIENT_KEY_SECRET = 'demo-only-change-me-in-production';

/**
 * What `start` refuses under NODE_ENV=production: the demo patient-key secret, and a key or
 * certificate of the demo (a file in config/demo-keys, or a copy of one elsewhere). One line each.
 */
export function productionProblems(config: GatewayConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.NODE_ENV !== 'production') return [];
  const problems: string[] = [];
  if (config.tracking.patientKeySecret === DEMO_PATIENT_KEY_SECRET)
    problems.push("tracking.patientKeySecret: the demo secret; set the hospital's own in GATEWAY_PATIENT_KEY_SECRET before starting in production");
  const demo = demoKeyContents();
  const files = [
    ['signing.keyFile', config.signing.keyFile],
    ['signing.certFile', config.signing.certFile],
    ...config.encryption.keys.flatMap((k, i) => [
      [`encryption.keys.${i}.keyFile`, k.keyFile],
      [`encryption.keys.${i}.certFile`, k.certFile],
    ]),
  ];
  for (const [label, file] of files) {
    const inDemoDir = resolve(file).startsWith(DEMO_KEYS_DIR);
    const copied = !inDemoDir && existsSync(file) && demo.has(readFileSync(file, 'utf8').trim());
    if (inDemoDir || copied)
      problems.push(`${label}: ${file} is a demo key or certificate, public in the repository; configure the hospital's own before starting in production`);
  }
  return problems;
}

function demoKeyContents(): Set<string> {
  if (!existsSync(DEMO_KEYS_DIR)) return new Set();
  return new Set(readdirSync(DEMO_KEYS_DIR).map((f) => readFileSync(join(DEMO_KEYS_DIR, f), 'utf8').trim()));
}
