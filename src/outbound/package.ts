// Signs and packages a business document for one partner, with what the configuration and the
// address register say about that partner: its signature algorithm and its CPA. Used for
// deliveries to a bydel and for the AppRecs the hospital returns to one.
import type { GatewayConfig } from '../config/config.js';
import { deliverItem, type NewOutboxItem } from '../outbox/items.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import { buildEbxmlMessage, cpaIdFor, type EbxmlInput, type EbxmlMessage } from './ebxml.js';
import type { SignatureAlgorithm } from './xmldsig.js';

export interface PartnerContext {
  config: GatewayConfig;
  register: AddressRegister;
  signing: { keyPem: string; certPem: string };
}

/** Legacy partners may still verify only rsa-sha1 (`signing.partnerAlgorithms`). */
export function signingAlgorithmFor(config: GatewayConfig, toHerId: string): SignatureAlgorithm {
  return config.signing.partnerAlgorithms[toHerId] ?? config.signing.algorithm;
}

export function packageFor(ctx: PartnerContext, input: Omit<EbxmlInput, 'cpaId' | 'signing'>): EbxmlMessage & { algorithm: SignatureAlgorithm } {
  const algorithm = signingAlgorithmFor(ctx.config, input.toHerId);
  const cpaId = ctx.register.get(input.toHerId)?.ebxml?.cpaId ?? cpaIdFor(input.fromHerId, input.toHerId);
  return { ...buildEbxmlMessage({ ...input, cpaId, signing: { ...ctx.signing, algorithm } }), algorithm };
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
 * signed, in the Service of the message it answers, Action APPREC, roles reversed (HISD 1209).
 */
export function receiptItem(
  ctx: PartnerContext,
  receipt: { appRecId: string; appRecXml: string; fromHerId: string; toHerId: string; answers: Answered },
): NewOutboxItem {
  const { answers } = receipt;
  const packaged = packageFor(ctx, {
    businessXml: receipt.appRecXml,
    msgType: answers.msgType,
    service: answers.service ?? `S-${answers.msgType}`,
    action: 'APPREC',
    roles: { from: `${answers.msgType}receiver`, to: `${answers.msgType}sender` },
    fromHerId: receipt.fromHerId,
    toHerId: receipt.toHerId,
    conversationId: answers.conversationId,
  });
  const headers = {
    msgId: receipt.appRecId,
    msgType: 'APPREC',
    conversationId: answers.conversationId,
    fromHerId: receipt.fromHerId,
    toHerId: receipt.toHerId,
  };
  return deliverItem(ctx.config.broker, headers, packaged.contentType, packaged.body, 'receipt');
}
