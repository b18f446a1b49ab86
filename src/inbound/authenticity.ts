// The verify stage of the inbound path (DESIGN §3 B): is this message really from the party it
// claims, and is it for us? Checked in this order, first failure wins:
//   1. the envelope's XML-DSig, with the certificate the address register holds for the ebXML
//      From party (never the one in KeyInfo), which must be valid now and have nonRepudiation;
//   2. spoofing: the AMQP header `from-her-id`, the ebXML From/PartyId and the business
//      document's sender name the same party (Helsenorge `abuse:spoofing-attack`, LESSONS §9.7);
//   3. the business document is addressed to this hospital.
// Reasons name HER-ids only: they go to the DLQ headers and the logs.

import { type EbxmlInfo, ok, permanent, type StageResult } from '../mapping/model.js';
import type { InboundMessage } from '../mapping/parse.js';
import { checkSigningCertificate, TrustStore } from '../outbound/certificates.js';
import { verifyEbxmlMessage } from '../outbound/ebxml.js';
import type { SignatureAlgorithm } from '../outbound/xmldsig.js';
import type { AddressRegister, CommunicationParty } from '../routing/addressRegister.js';

export interface ReceivedBytes {
  body: Buffer;
  contentType?: string;
  /** AMQP header `from-her-id`: who the transport says sent it */
  fromHerId?: string;
}

/** The party whose signature verified: its HER-id is the dedupe key and the AppRec's address. */
export interface VerifiedSender {
  herId: string;
  algorithm: SignatureAlgorithm;
}

export function verifySender(
  received: ReceivedBytes,
  inbound: InboundMessage,
  register: AddressRegister,
  ownHerId: string,
  now: Date,
  trust: TrustStore = TrustStore.none(),
): StageResult<VerifiedSender> {
  const signed = verifySignature(received, inbound.kind === 'signal' ? inbound.signal.ebxml : inbound.message.ebxml, register, now, trust);
  return signed.ok ? checkSender(signed.value, received, inbound, ownHerId) : signed;
}

/**
 * Step 1 alone, on the bytes as they came (an encrypted payload part still encrypted): nothing
 * is decrypted for a sender whose signature does not hold.
 */
export function verifySignature(
  received: ReceivedBytes,
  ebxml: EbxmlInfo | undefined,
  register: AddressRegister,
  now: Date,
  trust: TrustStore = TrustStore.none(),
): StageResult<VerifiedSender> {
  if (!ebxml)
    return permanent('S01', 'The message has no ebXML envelope, so neither its signature nor its sender can be verified.', 'transport:required-field-missing');
  const partyId = fromPartyId(ebxml);
  if (!partyId.ok) return partyId;
  const herId = partyId.value;

  const certificates = signingCertificatesOf(register, herId);
  if (certificates.length === 0)
    return permanent('S02', `The address register has no active party with a signing certificate for HER-id ${herId}.`, 'transport:missing-certificate');
  // During a rollover the register lists the new certificate and the one it replaces: either may have signed.
  let refusal: ReturnType<typeof permanent> | undefined;
  let signature: ReturnType<typeof verifyEbxmlMessage> | undefined;
  for (const certPem of certificates) {
    const certificate = checkSigningCertificate(certPem, now, trust);
    if (!certificate.ok) {
      refusal ??= permanent(
        'S02',
        `The signing certificate of HER-id ${herId} cannot be used: ${certificate.problems.join('; ')}.`,
        'transport:invalid-certificate',
      );
      continue;
    }
    const verified = verifyEbxmlMessage(received.body, received.contentType, certPem);
    if (verified.ok) {
      signature = verified;
      break;
    }
    refusal = permanent('S01', `The ebXML signature of HER-id ${herId} does not verify: ${verified.reason}.`, 'transport:invalid-signature');
  }
  if (!signature?.ok) return refusal ?? permanent('S01', `The ebXML signature of HER-id ${herId} does not verify.`, 'transport:invalid-signature');
  return ok({ herId, algorithm: signature.algorithm });
}

/** Steps 2 and 3, on the readable message: the signer is who the transport and the document say, and it is for us. */
export function checkSender(sender: VerifiedSender, received: ReceivedBytes, inbound: InboundMessage, ownHerId: string): StageResult<VerifiedSender> {
  const agreed = sendersAgree(sender.herId, received.fromHerId, inbound);
  if (!agreed.ok) return agreed;
  const addressed = addressedToUs(inbound, ownHerId);
  if (!addressed.ok) return addressed;
  return ok(sender);
}

/** HIS 1037: From carries the sender's HER-id as its one PartyId of type HER. */
function fromPartyId(ebxml: EbxmlInfo): StageResult<string> {
  const her = ebxml.fromPartyIds.filter((p) => p.type === 'HER' && /^\d+$/.test(p.id));
  if (her.length !== 1) return permanent('S01', `The ebXML From must carry exactly one HER PartyId; it has ${her.length}.`, 'transport:invalid-field-value');
  return ok(her[0].id);
}

/**
 * The certificate the sender signs with: its own, or else its parent organisation's (a service
 * in Adresseregisteret usually signs with the organisation's virksomhetssertifikat).
 */
/** The party's signing certificates, newest first (its own, else its organisation's). */
function signingCertificatesOf(register: AddressRegister, herId: string): string[] {
  const party = register.get(herId);
  if (!party?.active) return [];
  const of = (p: CommunicationParty) => (p.signingCertificate ? [p.signingCertificate, ...(p.previousSigningCertificates ?? [])] : []);
  if (party.signingCertificate) return of(party);
  const parent = party.parentHerId ? register.get(party.parentHerId) : undefined;
  return parent?.active ? of(parent) : [];
}

/** HER-ids the business document gives for its sender (level 1 and 2 of MsgHead, or the AppRec's). */
function documentSenderHerIds(inbound: InboundMessage): string[] | undefined {
  if (inbound.kind === 'signal') return undefined;
  const doc = inbound.message.doc;
  if (doc.kind === 'apprec') return doc.senderHerIds;
  return [doc.sender.level1.herId, doc.sender.level2?.herId].filter((h): h is string => !!h);
}

function sendersAgree(partyId: string, transportHerId: string | undefined, inbound: InboundMessage): StageResult<void> {
  if (transportHerId !== partyId) {
    return permanent(
      'S01',
      `The transport header from-her-id (${transportHerId || 'missing'}) does not match the signed ebXML From ${partyId}.`,
      'abuse:spoofing-attack',
    );
  }
  const documentSenders = documentSenderHerIds(inbound);
  if (documentSenders && !documentSenders.includes(partyId)) {
    return permanent(
      'S01',
      `The document's sender (HER-id ${documentSenders.join('/') || 'none'}) is not the signed ebXML From ${partyId}.`,
      'abuse:spoofing-attack',
    );
  }
  return ok(undefined);
}

/** A misaddressed message is not ours to answer (AppRec 1.1 §3.3: no AppRec for it). */
function addressedToUs(inbound: InboundMessage, ownHerId: string): StageResult<void> {
  if (inbound.kind === 'signal') return ok(undefined); // it refers to one of our MessageIds instead
  const doc = inbound.message.doc;
  const receivers = doc.kind === 'apprec' ? doc.receiverHerIds : [doc.receiver.level1.herId ?? ''];
  if (!receivers.includes(ownHerId)) {
    return permanent(
      'E21',
      `The document is addressed to HER-id ${receivers.join('/') || 'none'}, not to this hospital (${ownHerId}).`,
      'transport:invalid-field-value',
    );
  }
  return ok(undefined);
}
