// How a payload part leaves for one partner (HIS 1037 §5.5, DESIGN §4.6): CMS EnvelopedData to
// the receiver's encryption certificate from the address register, with the algorithms configured
// for it, unless the partner is configured plain. A receiver without a usable certificate is
// the register's problem, not the sender's: the caller holds the message (or its receipt).
import { X509Certificate } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import { trustStoreFor } from './certificates.js';
import { type ContentCipher, encryptionCertificateProblem, type KeyTransport } from './cms.js';

export interface EncryptionChoice {
  contentCipher: ContentCipher;
  keyTransport: KeyTransport;
}

export type PayloadProtection =
  | { mode: 'plain' }
  | { mode: 'encrypted'; certificatePem: string; certificateSerial: string; algorithms: EncryptionChoice }
  | { mode: 'unusable'; reason: string };

export function payloadProtectionFor(config: GatewayConfig, register: AddressRegister, toHerId: string, at: Date): PayloadProtection {
  const outbound = config.encryption.outbound;
  const partner = outbound.partners[toHerId] ?? {};
  if ((partner.payload ?? outbound.payload) === 'plain') return { mode: 'plain' };
  const certificatePem = register.encryptionCertificateFor(toHerId, at);
  if (!certificatePem) return { mode: 'unusable', reason: `the address register has no encryption certificate for HER-id ${toHerId}` };
  const problem = encryptionCertificateProblem(certificatePem, at, trustStoreFor(config.trust));
  if (problem) return { mode: 'unusable', reason: `the encryption certificate of HER-id ${toHerId} cannot be used: ${problem}` };
  return {
    mode: 'encrypted',
    certificatePem,
    certificateSerial: new X509Certificate(certificatePem).serialNumber,
    algorithms: { contentCipher: partner.contentCipher ?? outbound.contentCipher, keyTransport: partner.keyTransport ?? outbound.keyTransport },
  };
}
