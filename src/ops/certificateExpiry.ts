// The `certificate-expiring` ops alert: the gateway's own signing and decryption certificates,
// and the certificates of partners it exchanged messages with in the warning period, when they
// expire within it (`ops.certificateWarning`, P30D). One condition per certificate use (subject
// `own:signing`, `partner:<herId>:encryption` …): it fires once and resolves when the certificate
// is renewed (or the partner is no longer used).
import { readFileSync } from 'node:fs';
import { durationMs, type GatewayConfig } from '../config/config.js';
import { readCertificate } from '../outbound/certificates.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import type { Store } from '../tracking/store.js';
import type { Condition } from './opsAlerts.js';
import { opsKysely } from './schema.js';

interface Watched {
  subject: string;
  what: string;
  pem?: string;
}

export async function certificateExpiryConditions(config: GatewayConfig, store: Store, register: AddressRegister, now: Date): Promise<Condition[]> {
  const warnMs = durationMs(config.ops.certificateWarning);
  const since = new Date(now.getTime() - warnMs).toISOString();
  const watched: Watched[] = [
    { subject: 'own:signing', what: "the gateway's own signing certificate", pem: readFileSync(config.signing.certFile, 'utf8') },
    ...config.encryption.keys.map((k, i) => ({
      subject: `own:encryption.${i}`,
      what: "the gateway's own decryption certificate",
      pem: readFileSync(k.certFile, 'utf8'),
    })),
  ];
  const db = opsKysely(store.db);
  const partners = await db
    .selectFrom('messages')
    .select(['direction', 'sender_her_id', 'receiver_l2_her_id'])
    .distinct()
    .where('created_at', '>=', since)
    .execute();
  const used = new Set(partners.map((m) => (m.direction === 'in' ? m.sender_her_id : m.receiver_l2_her_id)).filter((h): h is string => h !== null));
  const firing = await db.selectFrom('ops_alerts').select('subject').where('kind', '=', 'certificate-expiring').where('state', '=', 'firing').execute();
  for (const { subject } of firing) {
    const herId = /^partner:(\d+):/.exec(subject)?.[1];
    if (herId) used.add(herId);
  }
  for (const herId of used) {
    const party = register.get(herId);
    watched.push(
      { subject: `partner:${herId}:signing`, what: `the signing certificate of HER-id ${herId}`, pem: party?.signingCertificate },
      // the one messages are encrypted to now: during a rollover the older one expiring is no news
      {
        subject: `partner:${herId}:encryption`,
        what: `the encryption certificate of HER-id ${herId}`,
        pem: register.encryptionCertificateFor(herId, now) ?? party?.encryptionCertificate,
      },
    );
  }
  return watched.map((w) => expiryCondition(w, now, warnMs));
}

function expiryCondition(w: Watched, now: Date, warnMs: number): Condition {
  let expires: Date | undefined;
  let serial = '';
  try {
    if (w.pem) {
      const cert = readCertificate(w.pem);
      expires = cert.notAfter;
      serial = cert.serialNumber;
    }
  } catch {
    expires = undefined;
  }
  const soon = expires !== undefined && expires.getTime() - now.getTime() <= warnMs;
  const left = expires ? Math.floor((expires.getTime() - now.getTime()) / 86_400_000) : 0;
  return {
    kind: 'certificate-expiring',
    subject: w.subject,
    firing: soon,
    severity: soon && left < 7 ? 'critical' : 'warning',
    text: soon
      ? `${w.what} (serial ${serial}) ${left < 0 ? 'has expired' : `expires in ${left} day(s)`}, on ${expires?.toISOString()}: renew it${w.subject.startsWith('own:') ? ' and register the new one in the address register' : ''}.`
      : `${w.what} is no longer about to expire (renewed, or no longer used).`,
  };
}
