// How a payload part leaves for one partner (HIS 1037 §5.5, DESIGN §4.6): CMS EnvelopedData to
// the receiver's encryption certificate from the address register, with the algorithms configured
// for it, unless the partner is configured plain. A receiver without a usable certificate is
// the register's problem, not the sender's: the caller holds the message (or its receipt). So is
// a revoked one, and (with `trust.crl.mode: hard-fail`) one whose CRL cannot be had: packaging is
// synchronous, so the caller warms the checker with `status()` first.
import { X509Certificate } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import { trustStoreFor } from './certificates.js';
import { type ContentCipher, encryptionCertificateProblem, type KeyTransport } from './cms.js';
import type { RevocationChecker } from './revocation.js';

export interface EncryptionChoice {
  contentCipher: ContentCipher;
  keyTransport: KeyTransport;
}

export type PayloadProtection =
  | { mode: 'plain' }
  | { mode: 'encrypted'; certificatePem: string; certificateSerial: string; algorithms: EncryptionChoice }
  | { mode: 'unusable'; reason: string };

export interface ProtectionOptions {
  /**
   * the pair's CPA packages the payload as enveloped-data: encrypted even where the gateway's
   * default is plain. A CPA in clear does not lower the default: personal data does not travel in
   * clear unless ops configure that partner so. The partner's own setting overrides both.
   */
  agreedEncrypted?: boolean;
  /** the receivers' CRLs, as warmed by the caller (`status()`) */
  revocation?: RevocationChecker;
}

export function payloadProtectionFor(
  config: GatewayConfig,
  register: AddressRegister,
  toHerId: string,
  at: Date,
  options: ProtectionOptions = {},
): PayloadProtection {
  const outbound = config.encryption.outbound;
  const partner = outbound.partners[toHerId] ?? {};
  if ((partner.payload ?? (options.agreedEncrypted ? 'encrypted' : outbound.payload)) === 'plain') return { mode: 'plain' };
  const certificatePem = register.encryptionCertificateFor(toHerId, at);
  if (!certificatePem) return { mode: 'unusable', reason: `the address register has no encryption certificate for HER-id ${toHerId}` };
  const problem = encryptionCertificateProblem(certificatePem, at, trustStoreFor(config.trust));
  if (problem) return { mode: 'unusable', reason: `the encryption certificate of HER-id ${toHerId} cannot be used: ${problem}` };
  const revoked = options.revocation?.cachedStatus(certificatePem);
  if (revoked?.state === 'revoked')
    return { mode: 'unusable', reason: `the encryption certificate of HER-id ${toHerId} was revoked on ${revoked.since.toISOString()}` };
  // soft-fail encrypts to it: the crl-unavailable alert tells ops
  if (revoked?.state === 'unknown' && config.trust.crl.mode === 'hard-fail')
    return { mode: 'unusable', reason: `the revocation of the encryption certificate of HER-id ${toHerId} cannot be checked: ${revoked.reason}` };
  return {
    mode: 'encrypted',
    certificatePem,
    certificateSerial: new X509Certificate(certificatePem).serialNumber,
    algorithms: { contentCipher: partner.contentCipher ?? outbound.contentCipher, keyTransport: partner.keyTransport ?? outbound.keyTransport },
  };
}
