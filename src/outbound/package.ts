// Signs, encrypts and packages a business document for one partner, with what the configuration
// and the address register say about that partner: its signature algorithm, its CPA and its
// encryption certificate. Used for deliveries to a bydel and for the AppRecs the hospital
// returns to one.
import type { GatewayConfig } from '../config/config.js';
import { deliverItem, type NewOutboxItem } from '../outbox/items.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import type { AgreedTerms, Agreements } from './agreements/agreements.js';
import { encryptEnveloped } from './cms.js';
import { buildEbxmlMessage, cpaIdFor, type EbxmlInput, type EbxmlMessage, ENVELOPED_DATA } from './ebxml.js';
import { type EncryptionChoice, payloadProtectionFor } from './protection.js';
import type { RevocationChecker } from './revocation.js';
import type { SignatureAlgorithm } from './xmldsig.js';

export interface PartnerContext {
  config: GatewayConfig;
  register: AddressRegister;
  signing: { keyPem: string; certPem: string };
  /** the CPAs from NHN's CPPA register, when configured */
  agreements?: Agreements;
  /** receivers' CRLs: a revoked encryption certificate is unusable (warm it with `status()` first) */
  revocation?: RevocationChecker;
}

/**
 * What the partner verifies: `signing.partnerAlgorithms` (legacy partners that take only rsa-sha1)
 * over the pair's CPA over `signing.algorithm`.
 */
export function signingAlgorithmFor(config: GatewayConfig, toHerId: string, agreed?: AgreedTerms): SignatureAlgorithm {
  return config.signing.partnerAlgorithms[toHerId] ?? agreed?.signatureAlgorithm ?? config.signing.algorithm;
}

/** The CPA terms one message is sent under, or undefined: HIS 1037's defaults. */
export function agreedTermsFor(ctx: PartnerContext, fromHerId: string, toHerId: string, service: string, action: string, at: Date): AgreedTerms | undefined {
  return ctx.agreements?.termsFor(fromHerId, toHerId, service, action, at);
}

/**
 * Before packaging (synchronous) for `toHerId`: what packaging reads of the partner, asked for now
 * if not at hand: the pair's CPA and the CRL of the receiver's encryption certificate. Throws
 * `CppaUnavailable` when the CPPA register does not answer and nothing is known of the pair.
 */
export async function readyToPackage(ctx: PartnerContext, fromHerId: string, toHerId: string, at: Date): Promise<void> {
  await ctx.agreements?.ensure(fromHerId, toHerId);
  await warmRevocation(ctx, toHerId, at);
}

/** Before packaging for the receiver (synchronous): the CRL of its encryption certificate into memory, from the store or over HTTP. */
export async function warmRevocation(ctx: PartnerContext, toHerId: string, at: Date): Promise<void> {
  const certificatePem = ctx.revocation && ctx.register.encryptionCertificateFor(toHerId, at);
  if (certificatePem) await ctx.revocation?.status(certificatePem);
}

export interface PackagedForPartner extends EbxmlMessage {
  algorithm: SignatureAlgorithm;
  /** the CPA it was sent under; absent: HIS 1037's defaults */
  agreed?: AgreedTerms;
  cpaId: string;
  /** how the payload part was encrypted; absent for a partner configured plain */
  encryption?: EncryptionChoice & { certificateSerial: string };
}

/** Packaged, or why the partner cannot receive it now (no usable encryption certificate). */
export type PackageResult = { ok: true; value: PackagedForPartner } | { ok: false; reason: string };

export function packageFor(ctx: PartnerContext, input: Omit<EbxmlInput, 'cpaId' | 'signing' | 'payload' | 'ackRequested'>, at: Date): PackageResult {
  const agreed = agreedTermsFor(ctx, input.fromHerId, input.toHerId, input.service ?? `S-${input.msgType}`, input.action ?? input.msgType, at);
  const protection = payloadProtectionFor(ctx.config, ctx.register, input.toHerId, at, { agreedEncrypted: agreed?.encrypted, revocation: ctx.revocation });
  if (protection.mode === 'unusable') return { ok: false, reason: protection.reason };
  const algorithm = signingAlgorithmFor(ctx.config, input.toHerId, agreed);
  const cpaId = agreed?.cpaId ?? ctx.register.get(input.toHerId)?.ebxml?.cpaId ?? cpaIdFor(input.fromHerId, input.toHerId);
  const payload =
    protection.mode === 'encrypted'
      ? {
          contentType: ENVELOPED_DATA,
          body: encryptEnveloped(Buffer.from(input.businessXml, 'utf8'), protection.certificatePem, protection.algorithms),
          transferEncoding: 'base64' as const,
        }
      : undefined;
  const built = buildEbxmlMessage({ ...input, cpaId, payload, ackRequested: agreed?.ackRequested ?? true, signing: { ...ctx.signing, algorithm } });
  const encryption = protection.mode === 'encrypted' ? { ...protection.algorithms, certificateSerial: protection.certificateSerial } : undefined;
  return { ok: true, value: { ...built, algorithm, encryption, cpaId, ...(agreed ? { agreed } : {}) } };
}

/** The message an AppRec answers, as the AppRec's envelope needs it. */
export interface Answered {
  msgType: string;
  /** the eb:Service it came in; default `S-<msgType>` */
  service?: string;
  conversationId: string;
}

/**
 * An AppRec the hospital returns to a partner, as an outbox item of its own (LESSONS §9.2):
 * signed, encrypted, in the Service of the message it answers, Action APPREC, roles reversed
 * (HISD 1209). Not packaged when the partner has no usable encryption certificate: the reason.
 */
export function receiptItem(
  ctx: PartnerContext,
  receipt: { appRecId: string; appRecXml: string; fromHerId: string; toHerId: string; answers: Answered },
  at: Date,
): { ok: true; value: NewOutboxItem } | { ok: false; reason: string } {
  const { answers } = receipt;
  const packaged = packageFor(
    ctx,
    {
      businessXml: receipt.appRecXml,
      msgType: answers.msgType,
      service: answers.service ?? `S-${answers.msgType}`,
      action: 'APPREC',
      roles: { from: `${answers.msgType}receiver`, to: `${answers.msgType}sender` },
      fromHerId: receipt.fromHerId,
      toHerId: receipt.toHerId,
      conversationId: answers.conversationId,
    },
    at,
  );
  if (!packaged.ok) return packaged;
  const headers = {
    msgId: receipt.appRecId,
    msgType: 'APPREC',
    conversationId: answers.conversationId,
    fromHerId: receipt.fromHerId,
    toHerId: receipt.toHerId,
  };
  return { ok: true, value: deliverItem(ctx.config.broker, headers, packaged.value.contentType, packaged.value.body, 'receipt') };
}
