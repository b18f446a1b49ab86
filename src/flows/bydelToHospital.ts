// Flow B (DESIGN §3 B): nhn.inbound → parse → verify signature → decrypt → verify sender and addressee → dedupe →
// validate → correlate → store (outbox) → forward to the EPJ → ack. Each stage is a function
// from typed input to a typed decision; the decision becomes an Outcome (pure builders below),
// which the recorder stores in one transaction and publishes.
//
// What leaves: a business message or AppRec from a bydel goes to epj.inbound as it came; an
// ebXML Acknowledgment / MessageError only updates the message it refers to. A message that is
// not provably from its sender goes to the DLQ and nowhere else. An invalid one from a verified
// sender also gets a negative AppRec back (its own outbox item). A repeat gets what the first
// copy got: nothing is forwarded twice, and the AppRec already sent for it is sent again.
import { randomUUID } from 'node:crypto';
import type { GatewayConfig } from '../config/config.js';
import { checkSender, type VerifiedSender, verifySignature } from '../inbound/authenticity.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { negativeAppRec } from '../mapping/apprec.js';
import { contentHash } from '../mapping/contentHash.js';
import { type EbxmlInfo, type MsgHeadModel, ok, type ParsedMessage, permanent, type StageError, type StageResult } from '../mapping/model.js';
import { type Arrived, type EncryptedMessage, type InboundMessage, openEncrypted, parseInbound, type SignalMessage } from '../mapping/parse.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import type { Agreements } from '../outbound/agreements/agreements.js';
import { CppaUnavailable } from '../outbound/agreements/client.js';
import { trustStoreFor } from '../outbound/certificates.js';
import { decryptEnveloped } from '../outbound/cms.js';
import {
  buildAcknowledgment,
  buildMessageError,
  type EbxmlErrorOut,
  type SignalMessage as Signal,
  type SignalInput,
  signatureReferences,
} from '../outbound/ebxml.js';
import { type PartnerContext, receiptItem, signingAlgorithmFor, warmRevocation } from '../outbound/package.js';
import type { RevocationChecker } from '../outbound/revocation.js';
import { again, deliverItem, dlqItem, forwardItem, type NewOutboxItem, type RoutingHeaders } from '../outbox/items.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import type { AddressRegister } from '../routing/addressRegister.js';
import type { LiveRegister } from '../routing/ar/liveRegister.js';
import type { Stage, TransportCondition } from '../shared/vocabulary.js';
import type { MessageRow } from '../tracking/db.js';
import { patientKey } from '../tracking/expectations.js';
import { type Outcome, outcome } from '../tracking/outcome.js';
import { type Correlation, Receipts } from '../tracking/receipts.js';
import { OutcomeRecorder } from '../tracking/recorder.js';
import type { NewEvent, NewMessage, Store } from '../tracking/store.js';
import { findMisrouted, isWrongReceiver, type Misrouted, raiseWrongReceiver } from '../tracking/wrongReceiver.js';
import { type Arrival, contentDuplicate, duplicateOf, originalPayload, type Refusal, receivedEvent, rejection } from './outcomes.js';

export interface NhnDelivery extends Arrival {
  /** AMQP header `from-her-id`: the transport's word for who sent it */
  fromHerId?: string;
  /** AMQP messageId, used to key a message that cannot be parsed at all */
  amqpMessageId?: string;
}

export interface InboundDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  schemas: SchemaSet;
  register: AddressRegister;
  /** NHN's Adresseregister behind `register`, when configured: asked for what the register does not know (yet) */
  live?: LiveRegister;
  /** NHN's CPPA register: the CPAs receipts are sent under, when configured */
  agreements?: Agreements;
  /** partners' CRLs (with trust anchors configured) */
  revocation?: RevocationChecker;
  signing: { keyPem: string; certPem: string };
  /** the gateway's own decryption pairs (encryption.keys), newest first */
  decryption: { keyPem: string; certPem: string }[];
  outbox: OutboxPublisher;
  now?: () => Date;
}

/** How an encrypted payload was opened, for the timeline (no content). */
export interface Decrypted {
  contentCipher: string;
  keyTransport: string;
  keyIndex: number;
}

export type InboundOutcome = 'forwarded' | 'correlated' | 'rejected' | 'duplicate' | 'resumed';

/** What the flow decided for a message from a verified sender. */
export type InboundPlan =
  | { kind: 'reject'; refusal: Refusal }
  | { kind: 'signal'; signal: SignalMessage; correlation: Correlation }
  | { kind: 'accept'; parsed: ParsedMessage; correlation?: Correlation; decrypted?: Decrypted; wrongReceiver?: WrongReceiverFinding };

/** A DIALOG_AVVIK "feil adressat": the delivered message it names, if it could be found. */
export type WrongReceiverFinding = { found: Misrouted } | { found: undefined };

/** What the inbound builders need besides the message. */
export interface InboundContext {
  config: GatewayConfig;
  partners: PartnerContext;
  /** the bydel of a sender, from the address register */
  bydelOf: (herId: string) => string | null;
  now: Date;
}

/** The identity of what arrived, as far as it could be read. */
export interface Identity {
  msgId: string;
  framing: string;
  msgType?: string;
  ebxml?: EbxmlInfo;
  model?: MsgHeadModel;
  parsed?: ParsedMessage;
}

export function identify(inbound: Arrived | undefined, fallbackId: string): Identity {
  if (!inbound) return { msgId: fallbackId, framing: 'unknown' };
  if (inbound.kind === 'encrypted') {
    const { ebxml } = inbound.encrypted;
    return { msgId: ebxml?.messageId || fallbackId, framing: 'multipart', ebxml };
  }
  if (inbound.kind === 'signal') {
    const { ebxml, framing } = inbound.signal;
    return { msgId: ebxml.messageId || fallbackId, framing, msgType: ebxml.signal, ebxml };
  }
  const parsed = inbound.message;
  const { doc, framing, ebxml } = parsed;
  if (doc.kind === 'apprec') return { msgId: doc.id || fallbackId, framing, msgType: 'APPREC', ebxml, parsed };
  return { msgId: doc.msgId || fallbackId, framing, msgType: doc.type || undefined, ebxml, model: doc, parsed };
}

export class BydelToHospitalFlow {
  private readonly now: () => Date;
  private readonly receipts: Receipts;
  private readonly recorder: OutcomeRecorder;
  private readonly partners: PartnerContext;

  constructor(private readonly deps: InboundDeps) {
    this.now = deps.now ?? (() => new Date());
    this.receipts = new Receipts(deps.store.db.kysely, deps.config.tracking);
    this.recorder = new OutcomeRecorder({ store: deps.store, receipts: this.receipts, log: deps.log, outbox: deps.outbox });
    this.partners = { config: deps.config, register: deps.register, signing: deps.signing, agreements: deps.agreements, revocation: deps.revocation };
  }

  /** Processes one delivery to a durable outcome. Throws only on transient failures (store down). */
  async handle(d: NhnDelivery): Promise<InboundOutcome> {
    const ctx: InboundContext = {
      config: this.deps.config,
      partners: this.partners,
      bydelOf: (h) => this.deps.register.get(h)?.bydel ?? null,
      now: this.now(),
    };
    const parsed = parseInbound(d.body, { contentType: d.contentType, maxBytes: this.deps.config.limits.maxMessageBytes });
    if (!parsed.ok) return this.record(rejectedInbound(ctx, d, { stage: 'parse', error: parsed.error }));
    const arrived = identify(parsed.value, '');
    this.passed(arrived, 'parse', `parsed (${arrived.framing})`);
    // The signature first, over the bytes as sent: nothing is decrypted for a sender it does not prove.
    const signed = await this.verify(d, arrived.ebxml, ctx.now);
    if (!signed.ok) return this.record(rejectedInbound(ctx, d, { stage: 'verify', error: signed.error }, parsed.value));
    let inbound: InboundMessage;
    let decrypted: Decrypted | undefined;
    if (parsed.value.kind === 'encrypted') {
      const opened = await this.decrypt(parsed.value.encrypted);
      if (!opened.ok) return this.record(rejectedInbound(ctx, d, { stage: 'decrypt', error: opened.error }, parsed.value));
      inbound = { kind: 'business', message: opened.value.message };
      decrypted = opened.value.decrypted;
      this.passed(identify(inbound, ''), 'decrypt', `decrypted (${decrypted.contentCipher}, ${decrypted.keyTransport})`, { keyIndex: decrypted.keyIndex });
    } else inbound = parsed.value;
    const id = identify(inbound, '');

    const verified = checkSender(signed.value, d, inbound, this.deps.config.ownHerId);
    if (!verified.ok) return this.record(rejectedInbound(ctx, d, { stage: 'verify', error: verified.error }, inbound));
    const sender = verified.value;
    this.passed(id, 'verify', `signed by ${sender.herId} (${sender.algorithm})`, { herId: sender.herId });
    const plain = inbound.kind === 'business' && !decrypted && this.plainRefused(sender.herId);
    if (plain) return this.record(rejectedInbound(ctx, d, { stage: 'verify', error: plain }, inbound));

    // Before validation: a repeat gets what its first copy got, whether that was valid or not.
    const existing = id.msgId ? await this.deps.store.findMessage('in', sender.herId, id.msgId) : undefined;
    if (existing) return this.answerAgain(existing);
    // From here on the message has arrived, whatever becomes of it: its sender gets the Acknowledgment it asked for.
    const ack = acknowledgmentItem(ctx, id, sender);
    const twin = await this.contentTwin(id, sender);
    if (twin) {
      const duplicate = contentDuplicate(inboundMessage(ctx, id, sender), d, id.framing, twin, {
        event: EVENTS.inboundDuplicate,
        stage: 'dedupe',
        decision: 'duplicate content',
        herId: sender.herId,
      });
      return this.record(alsoSending(duplicate, ack));
    }

    const plan = await this.plan(inbound, sender, id);
    if (plan.kind === 'reject') await this.readyForReceipt(ourHerId(id.ebxml, this.deps.config.ownHerId), sender.herId, ctx.now);
    return this.record(alsoSending(inboundOutcome(ctx, d, inbound, sender, plan.kind === 'accept' ? { ...plan, decrypted } : plan), ack));
  }

  /**
   * What the negative AppRec owed to the sender is packaged with: the pair's CPA (the CPPA register
   * not answering does not hold the refusal up: HIS 1037's defaults) and the CRL of the sender's
   * encryption certificate.
   */
  private async readyForReceipt(ours: string, partner: string, at: Date): Promise<void> {
    await this.deps.agreements?.ensure(ours, partner).catch((e) => {
      if (!(e instanceof CppaUnavailable)) throw e;
    });
    await warmRevocation(this.partners, partner, at);
  }

  /**
   * The verify stage, with the register as fresh as it needs to be: the claimed sender is looked
   * up in AR when nothing fresh is cached, and a signature or certificate that fails is checked
   * once more against what AR answers now (HITS 1216 §2.1.4: the partner may have renewed its
   * certificate). AR not answering throws: the message waits, it is not refused for that.
   */
  private async verify(d: NhnDelivery, ebxml: EbxmlInfo | undefined, now: Date): Promise<StageResult<VerifiedSender>> {
    const { live, register, config } = this.deps;
    const claimed = ebxml?.fromPartyIds.find((p) => p.type === 'HER' && /^\d+$/.test(p.id))?.id;
    if (live && claimed) await live.ensure([claimed]);
    const trust = trustStoreFor(config.trust);
    let verified = verifySignature(d, ebxml, register, now, trust);
    if (!verified.ok && live && claimed && CERTIFICATE_CONDITIONS.has(verified.error.condition ?? '') && (await live.invalidate(claimed)))
      verified = verifySignature(d, ebxml, register, now, trust);
    if (!verified.ok) return verified;
    return this.notRevoked(verified.value);
  }

  /** The signer's certificate against its CRL: revoked is S03; a CRL that cannot be had soft-fails (accepted, alerted) or hard-fails (the message waits). */
  private async notRevoked(sender: VerifiedSender): Promise<StageResult<VerifiedSender>> {
    const certPem = this.deps.register.get(sender.herId)?.signingCertificate;
    if (!this.deps.revocation || !certPem) return ok(sender);
    const status = await this.deps.revocation.status(certPem);
    if (status.state === 'revoked')
      return permanent(
        'S03',
        `The signing certificate of HER-id ${sender.herId} was revoked on ${status.since.toISOString()}.`,
        'transport:invalid-certificate',
      );
    if (status.state === 'unknown' && this.deps.config.trust.crl.mode === 'hard-fail')
      throw new Error(`revocation of HER-id ${sender.herId}'s certificate cannot be checked: ${status.reason}`);
    return ok(sender);
  }

  /** Opens an encrypted payload with the gateway's keys; a failure is the sender's transport problem, never the EPJ's. */
  private async decrypt(encrypted: EncryptedMessage): Promise<StageResult<{ message: ParsedMessage; decrypted: Decrypted }>> {
    if (this.deps.decryption.length === 0) {
      return permanent(
        'GW-DECRYPTION',
        'The payload is encrypted, but the gateway has no decryption key configured (GATEWAY_ENCRYPTION_KEY).',
        'transport:decryption-failed',
      );
    }
    const opened = await decryptEnveloped(encrypted.part.body, this.deps.decryption);
    if (!opened.ok) return permanent('GW-DECRYPTION', `The encrypted payload cannot be opened: ${opened.reason}.`, 'transport:decryption-failed');
    const message = openEncrypted(encrypted, opened.content, { maxBytes: this.deps.config.limits.maxMessageBytes });
    // CBC has no integrity check: tampered ciphertext mostly decrypts to bytes that are no document.
    if (!message.ok)
      return permanent(
        'GW-DECRYPTION',
        `The encrypted payload cannot be opened: it decrypts to no readable document (${message.error.reason.replace(/\.$/, '')}).`,
        'transport:decryption-failed',
      );
    return ok({ message: message.value, decrypted: { contentCipher: opened.contentCipher, keyTransport: opened.keyTransport, keyIndex: opened.keyIndex } });
  }

  /** Clear-text payloads only from the partners configured to send them (encryption.acceptPlain). */
  private plainRefused(herId: string): StageError | undefined {
    const { acceptPlain, plainPartners } = this.deps.config.encryption;
    if (acceptPlain === 'all' || plainPartners.includes(herId)) return undefined;
    return permanent(
      'GW-PLAIN-REFUSED',
      `HER-id ${herId} sent its payload in clear text; the gateway accepts encrypted payloads only from it.`,
      'transport:unsupported-message',
    ).error;
  }

  private async plan(inbound: InboundMessage, sender: VerifiedSender, id: Identity): Promise<InboundPlan> {
    if (inbound.kind === 'signal') {
      const correlation = await this.receipts.forSignal(inbound.signal, sender.herId);
      return { kind: 'signal', signal: inbound.signal, correlation };
    }
    const parsed = inbound.message;
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return { kind: 'reject', refusal: { stage: 'validate', error: valid.error } };
    this.passed(id, 'validate', 'valid');

    const doc = parsed.doc;
    const correlation =
      doc.kind === 'apprec'
        ? await this.receipts.forAppRec(doc)
        : await this.receipts.forMessage(
            doc,
            {
              herIds: senderHerIds(doc, sender),
              patientKey: patientKey(doc, this.deps.config.tracking.patientKeySecret),
              conversationId: parsed.ebxml?.conversationId ?? null,
            },
            this.now(),
          );
    if (correlation) {
      const { decision } = describe(correlation);
      const event = correlation.kind === 'none' ? EVENTS.inboundUncorrelated : EVENTS.inboundCorrelated;
      logStage(this.deps.log, { event, msgId: id.msgId || undefined, type: id.msgType, stage: 'correlate', decision, herId: sender.herId });
    }
    const wrongReceiver = doc.kind === 'msghead' && isWrongReceiver(doc) ? await this.misrouted(doc, sender, id) : undefined;
    return { kind: 'accept', parsed, correlation, ...(wrongReceiver ? { wrongReceiver } : {}) };
  }

  /** The message a bydel's "feil adressat" names (wrongReceiver.ts), logged as a correlation. */
  private async misrouted(doc: MsgHeadModel, sender: VerifiedSender, id: Identity): Promise<WrongReceiverFinding> {
    const { config, store } = this.deps;
    const found = await findMisrouted(
      store.db.kysely,
      doc,
      { herIds: senderHerIds(doc, sender), patientKey: patientKey(doc, config.tracking.patientKeySecret) },
      config.tracking,
      this.now(),
    );
    logStage(this.deps.log, {
      event: found ? EVENTS.inboundCorrelated : EVENTS.inboundUncorrelated,
      msgId: id.msgId || undefined,
      type: id.msgType,
      stage: 'correlate',
      decision: found ? `feil adressat for ${found.target.msg_id} by ${found.rule}` : 'feil adressat for no message delivered to this bydel',
      herId: sender.herId,
    });
    return { found };
  }

  /**
   * A MsgId this sender sent before: finish what a crash interrupted, leave alone what a live
   * delivery is still publishing, or answer it as the first copy was answered (ebMS 2.0 §6.5.4,
   * LESSONS §9.3), without processing it again.
   */
  private async answerAgain(existing: MessageRow): Promise<InboundOutcome> {
    const resumed = await this.deps.outbox.resume(existing.id);
    const log = { event: EVENTS.inboundDuplicate, stage: 'dedupe', state: existing.state };
    if (resumed.published + resumed.deferred > 0) {
      logStage(this.deps.log, { ...log, msgId: existing.msg_id, type: existing.msg_type ?? undefined, decision: 'resumed' });
      return 'resumed';
    }
    const sent = await this.deps.store.outboxForMessage(existing.id);
    // ebMS 2.0 §6.5.4 and AppRec 1.1: a repeat gets the same Acknowledgment and the same AppRec again.
    const owed = (['acknowledgment', 'receipt'] as const).flatMap((purpose) => sent.filter((o) => o.purpose === purpose).slice(-1));
    if (resumed.inProgress > 0 || owed.length === 0) {
      await this.recorder.record(
        duplicateOf(existing, { ...log, decision: resumed.inProgress > 0 ? 'duplicate: the first copy is being handled' : 'duplicate ignored' }),
      );
      return 'duplicate';
    }
    await this.recorder.record(answeredAgain(existing, owed.map(again)));
    return 'duplicate';
  }

  /**
   * The same business content this sender already sent under another MsgId: not forwarded to
   * the EPJ again, and not answered (an AppRec is never sent for a duplicate). A twin that was
   * rejected does not count.
   */
  private async contentTwin(id: Identity, sender: VerifiedSender): Promise<MessageRow | undefined> {
    if (!id.parsed || !id.msgId) return undefined;
    const twins = await this.deps.store.findByContentHash('in', contentHash(id.parsed.businessXml));
    return twins.find((m) => m.sender_her_id === sender.herId && m.msg_id !== id.msgId && m.state !== 'rejected');
  }

  /** Stores and publishes an outcome; a copy stored by another consumer a moment before is answered as a repeat. */
  private async record(o: Outcome): Promise<InboundOutcome> {
    const recorded = await this.recorder.record(o);
    if (recorded.stored) return o.kind as InboundOutcome;
    const existing = recorded.conflict === 'duplicate' ? await this.deps.store.getMessage(recorded.existingId) : undefined;
    return existing ? this.answerAgain(existing) : 'duplicate';
  }

  private passed(id: Identity, stage: Stage, decision: string, extra: Record<string, unknown> = {}) {
    logStage(this.deps.log, { event: EVENTS.inboundStagePassed, msgId: id.msgId || undefined, type: id.msgType, stage, decision, ...extra });
  }
}

// ------------------------------------------------------------ outcomes (pure)

/** The hospital party a message was sent to: its ebXML To, else the hospital itself. */
const ourHerId = (ebxml: EbxmlInfo | undefined, ownHerId: string) => ebxml?.toPartyIds.find((p) => p.type === 'HER' && /^\d+$/.test(p.id))?.id ?? ownHerId;

/** Who the message is from, by every HER-id it names for its sender (the bydel and its service). */
const senderHerIds = (m: MsgHeadModel, sender: VerifiedSender): string[] => [
  ...new Set([m.sender.level1.herId, m.sender.level2?.herId, sender.herId].filter((h): h is string => !!h)),
];

/** The columns every incoming message has, whatever becomes of it. */
export function inboundMessage(ctx: InboundContext, id: Identity, sender: VerifiedSender | undefined): NewMessage {
  const { model, parsed, ebxml } = id;
  return {
    msg_id: id.msgId,
    direction: 'in',
    // Only a verified sender takes a dedupe key: a forged copy must not block the real one.
    sender_her_id: sender?.herId ?? null,
    msg_type: id.msgType ?? null,
    state: 'received',
    conversation_id: ebxml?.conversationId ?? null,
    conversation_ref: model?.conversationRef?.refToConversation ?? null,
    bydel: sender ? ctx.bydelOf(sender.herId) : null,
    receiver_l1_her_id: model?.receiver.level1.herId ?? null,
    receiver_l2_her_id: model?.receiver.level2?.herId ?? null,
    content_hash: parsed ? contentHash(parsed.businessXml) : null,
    gen_date: parsed?.doc.genDate ?? null,
    ebxml_message_id: ebxml?.messageId ?? null,
    patient_key: model ? patientKey(model, ctx.config.tracking.patientKeySecret) : null,
    error_code: null,
    error_reason: null,
  };
}

/** The eb:Service is kept because the AppRec the EPJ returns for this message goes back in it. */
const received = (d: NhnDelivery, id: Identity) => receivedEvent(d, id.framing, { ebxmlService: id.ebxml?.service, ebxmlAction: id.ebxml?.action });

const verifiedEvent = (sender: VerifiedSender): NewEvent => ({
  stage: 'verify',
  event: 'verified',
  detail: { herId: sender.herId, algorithm: sender.algorithm },
});

/** One short, metadata-only description of a correlation, for the log and the timeline. */
export function describe(c: Correlation): { event: 'correlated' | 'uncorrelated'; decision: string; detail: Record<string, unknown> } {
  switch (c.kind) {
    case 'transport':
      return { event: 'correlated', decision: `transport ${c.state} for ${c.target.msgId}`, detail: { kind: c.kind, msgId: c.target.msgId, state: c.state } };
    case 'apprec':
      return { event: 'correlated', decision: `AppRec ${c.status} for ${c.target.msgId}`, detail: { kind: c.kind, msgId: c.target.msgId, status: c.status } };
    case 'answer':
    case 'innleggelsesrapport':
      return { event: 'correlated', decision: `${c.kind} for ${c.target.msgId} by ${c.rule}`, detail: { kind: c.kind, msgId: c.target.msgId, rule: c.rule } };
    case 'close':
      return {
        event: 'correlated',
        decision: `closes the answer wait of ${c.targets.map((t) => t.msgId).join(', ')}`,
        detail: { kind: c.kind, msgIds: c.targets.map((t) => t.msgId), by: c.by },
      };
    case 'none':
      return { event: 'uncorrelated', decision: `uncorrelated: ${c.why}`, detail: { why: c.why } };
  }
}

/** The outcome of a message from a verified sender, from the plan for it. */
export function inboundOutcome(ctx: InboundContext, d: NhnDelivery, inbound: InboundMessage, sender: VerifiedSender, plan: InboundPlan): Outcome {
  switch (plan.kind) {
    case 'reject':
      return rejectedInbound(ctx, d, plan.refusal, inbound, sender);
    case 'signal':
      return signalCorrelated(ctx, d, plan.signal, sender, plan.correlation);
    case 'accept': {
      const o = forwarded(ctx, d, plan.parsed, sender, plan.correlation, plan.decrypted);
      return plan.wrongReceiver ? alsoRaisingWrongReceiver(ctx, o, plan.wrongReceiver, sender) : o;
    }
  }
}

const correlating = (id: Identity, c: Correlation | undefined) =>
  c && c.kind !== 'none' ? [{ effect: 'correlate' as const, correlation: c, by: { msgId: id.msgId, msgType: id.msgType ?? '' } }] : [];

/**
 * A bydel's "feil adressat" is forwarded like any message, and also raises `wrong-receiver` on
 * the message it names (or says on its own timeline that it names none).
 */
export function alsoRaisingWrongReceiver(ctx: InboundContext, o: Outcome<'forwarded'>, w: WrongReceiverFinding, sender: VerifiedSender): Outcome<'forwarded'> {
  if (!w.found) {
    const why = 'the feil-adressat avvik names no message delivered to this bydel';
    return { ...o, events: [...o.events, { stage: 'correlate', event: 'uncorrelated', detail: { kind: 'wrong-receiver', why } }] };
  }
  const raised = raiseWrongReceiver(w.found, { msgId: o.log.msgId ?? '', fromHerId: sender.herId }, ctx.config, ctx.now);
  const detail = {
    kind: 'wrong-receiver',
    msgId: w.found.target.msg_id,
    rule: w.found.rule,
    ...(raised.alertId ? { alertId: raised.alertId } : { alreadyRaised: true }),
  };
  return {
    ...o,
    events: [...o.events, { stage: 'correlate', event: 'correlated', detail }],
    outbox: [...o.outbox, ...raised.outbox],
    effects: [...o.effects, ...raised.effects],
  };
}

/** An ebXML Acknowledgment / MessageError: recorded on the message it refers to, not forwarded. */
export function signalCorrelated(
  ctx: InboundContext,
  d: NhnDelivery,
  signal: SignalMessage,
  sender: VerifiedSender,
  correlation: Correlation,
): Outcome<'correlated'> {
  const id = identify({ kind: 'signal', signal }, '');
  const { event, decision, detail } = describe(correlation);
  const matched = correlation.kind !== 'none';
  return outcome(
    'correlated',
    { insert: { ...inboundMessage(ctx, id, sender), state: matched ? 'correlated' : 'unmatched' } },
    {
      event: matched ? EVENTS.inboundCorrelated : EVENTS.inboundUncorrelated,
      msgId: id.msgId || undefined,
      type: id.msgType,
      stage: 'correlate',
      decision,
      herId: sender.herId,
    },
    {
      payloads: [originalPayload(d)],
      events: [received(d, id), verifiedEvent(sender), { stage: 'correlate', event, detail: { ...detail, errorCodes: signal.errors.map((e) => e.code) } }],
      effects: correlating(id, correlation),
    },
  );
}

/** A business message or AppRec from a bydel: handed to the EPJ as it came, linked to what it answers. */
export function forwarded(
  ctx: InboundContext,
  d: NhnDelivery,
  parsed: ParsedMessage,
  sender: VerifiedSender,
  correlation: Correlation | undefined,
  decrypted?: Decrypted,
): Outcome<'forwarded'> {
  const id = identify({ kind: 'business', message: parsed }, '');
  const doc = parsed.doc;
  const headers: RoutingHeaders = {
    msgId: id.msgId,
    msgType: id.msgType,
    conversationId: parsed.ebxml?.conversationId,
    fromHerId: sender.herId,
    toHerId: ourHerId(parsed.ebxml, ctx.config.ownHerId),
  };
  const events: NewEvent[] = [
    received(d, id),
    ...(decrypted ? [{ stage: 'decrypt' as const, event: 'decrypted' as const, detail: { ...decrypted } }] : []),
    verifiedEvent(sender),
    { stage: 'validate', event: 'validated' },
  ];
  if (correlation) {
    const { event, detail } = describe(correlation);
    events.push({ stage: 'correlate', event, detail });
  }
  return outcome(
    'forwarded',
    { insert: inboundMessage(ctx, id, sender) },
    { event: EVENTS.inboundForwarded, msgId: id.msgId || undefined, type: id.msgType, stage: 'forward', decision: 'forwarded to the EPJ', herId: sender.herId },
    {
      payloads: [originalPayload(d)],
      events,
      outbox: [forwardItem(ctx.config.broker, headers, parsed.businessXml, doc.kind === 'apprec' ? doc.originalMsgId.id : undefined)],
      effects: correlating(id, correlation),
    },
  );
}

/**
 * Refused: the original to the DLQ; a verified sender of an invalid business message is also
 * told why (never a forger, never about an AppRec).
 */
export function rejectedInbound(ctx: InboundContext, d: NhnDelivery, refusal: Refusal, inbound?: Arrived, sender?: VerifiedSender): Outcome<'rejected'> {
  const { config, now } = ctx;
  const id = identify(inbound, d.amqpMessageId ?? `unparsed-${randomUUID()}`);
  const message = inboundMessage(ctx, id, sender);
  const { code, reason } = refusal.error;
  const original: RoutingHeaders = {
    msgId: id.msgId,
    msgType: id.msgType,
    conversationId: id.ebxml?.conversationId,
    fromHerId: d.fromHerId,
    toHerId: ourHerId(id.ebxml, config.ownHerId),
  };
  const dlqError = { code, reason, stage: refusal.stage, sourceQueue: config.broker.queues.nhnInbound, firstFailedAt: now.toISOString(), attempts: 1 };
  const dlq = dlqItem(config.broker, original, dlqError, { body: d.body, contentType: d.contentType });
  const packagedReceipt = sender && id.model ? negativeReceipt(ctx, id, id.model, sender, refusal) : undefined;
  const receipt = packagedReceipt?.ok ? packagedReceipt.value : undefined;
  const messageError = messageErrorItem(ctx, id, refusal);
  const o = rejection({
    message,
    arrival: d,
    received: received(d, id),
    refusal,
    dlq,
    receipt,
    log: { event: refusal.stage === 'verify' ? EVENTS.inboundForged : EVENTS.inboundRejected, claimedHerId: d.fromHerId },
  });
  // Never in clear: without the sender's usable encryption certificate its AppRec is not sent, and the timeline says why.
  if (packagedReceipt && !packagedReceipt.ok) o.events.push({ stage: 'receipt', event: 'receipt-not-sent', detail: { reason: packagedReceipt.reason } });
  // The AppRec this message got is final, so the EPJ cannot send a second one for it.
  if (receipt && 'insert' in o.message) o.message.insert = { ...o.message.insert, apprec_status: 'rejected', apprec_at: now.toISOString() };
  return alsoSending(o, messageError);
}

/** Verification failures a certificate renewed since the register answered could explain. */
const CERTIFICATE_CONDITIONS = new Set<string>(['transport:invalid-signature', 'transport:missing-certificate', 'transport:invalid-certificate']);

/** The ebMS 2.0 error code of each transport condition. */
const EBMS_CODE: Record<TransportCondition, EbxmlErrorOut['code']> = {
  'transport:required-field-missing': 'Inconsistent',
  'transport:invalid-field-value': 'Inconsistent',
  'transport:missing-certificate': 'SecurityFailure',
  'transport:invalid-certificate': 'SecurityFailure',
  'transport:invalid-signature': 'SecurityFailure',
  'transport:decryption-failed': 'SecurityFailure',
  'transport:unsupported-message': 'NotSupported',
  'abuse:spoofing-attack': 'SecurityFailure',
};

/**
 * A message refused at the transport level is answered with a signed ebXML MessageError to the
 * party its ebXML From names, when the address register knows that party (HITS 1216 §2.2.3);
 * the description is the refusal's sentence, metadata only.
 */
export function messageErrorItem(ctx: InboundContext, id: Identity, refusal: Refusal): NewOutboxItem | undefined {
  const { condition, reason } = refusal.error;
  const claimed = id.ebxml?.fromPartyIds.find((p) => p.type === 'HER' && /^\d+$/.test(p.id))?.id;
  if (!condition || !claimed || !ctx.partners.register.isActive(claimed)) return undefined;
  return signalItem(ctx, id, claimed, 'message-error', (answers) =>
    buildMessageError({ ...answers, errors: [{ code: EBMS_CODE[condition], description: `${condition}: ${reason}` }] }),
  );
}

function negativeReceipt(ctx: InboundContext, id: Identity, model: MsgHeadModel, sender: VerifiedSender, refusal: Refusal): ReturnType<typeof receiptItem> {
  const appRecId = randomUUID();
  return receiptItem(
    ctx.partners,
    {
      appRecId,
      appRecXml: negativeAppRec({ id: appRecId, error: refusal.error, now: ctx.now, model }),
      fromHerId: ourHerId(id.ebxml, ctx.config.ownHerId),
      toHerId: sender.herId,
      answers: { msgType: model.type, service: id.ebxml?.service, conversationId: id.ebxml?.conversationId ?? model.msgId },
    },
    ctx.now,
  );
}

/**
 * The signed Acknowledgment a received message asked for (eb:AckRequested), to its verified
 * sender, carrying the references of the signature it acknowledges.
 */
export function acknowledgmentItem(ctx: InboundContext, id: Identity, sender: VerifiedSender): NewOutboxItem | undefined {
  const { ebxml, parsed } = id;
  if (!ebxml?.ackRequested || !parsed?.envelopeXml) return undefined;
  const envelopeXml = parsed.envelopeXml;
  return signalItem(ctx, id, sender.herId, 'acknowledgment', (answers) =>
    buildAcknowledgment({ ...answers, receivedReferences: signatureReferences(envelopeXml) }),
  );
}

/** A transport signal about the received message `id`, signed for `toHerId`, as an outbox item on nhn.outbound. */
function signalItem(
  ctx: InboundContext,
  id: Identity,
  toHerId: string,
  purpose: 'acknowledgment' | 'message-error',
  build: (answers: SignalInput) => Signal,
): NewOutboxItem | undefined {
  const { ebxml } = id;
  if (!ebxml?.messageId) return undefined;
  const fromHerId = ourHerId(ebxml, ctx.config.ownHerId);
  const conversationId = ebxml.conversationId ?? ebxml.messageId;
  const built = build({
    fromHerId,
    toHerId,
    cpaId: ebxml.cpaId,
    conversationId,
    action: ebxml.action ?? id.msgType ?? '',
    refToMessageId: ebxml.messageId,
    signing: { ...ctx.partners.signing, algorithm: signingAlgorithmFor(ctx.config, toHerId) },
  });
  const msgType = purpose === 'acknowledgment' ? 'Acknowledgment' : 'MessageError';
  return deliverItem(ctx.config.broker, { msgId: built.ebxmlMessageId, msgType, conversationId, fromHerId, toHerId }, built.contentType, built.body, purpose);
}

/** The outcome, also sending `item` (the Acknowledgment or MessageError its message is owed), if there is one. */
export function alsoSending<K extends Outcome['kind']>(o: Outcome<K>, item: NewOutboxItem | undefined): Outcome<K> {
  return item ? { ...o, outbox: [...o.outbox, item] } : o;
}

/** A repeat of a message that was acknowledged or answered: the same Acknowledgment and AppRec once more, exactly as sent. */
export function answeredAgain(existing: MessageRow, owed: NewOutboxItem[]): Outcome<'duplicate'> {
  const receipt = owed.find((o) => o.purpose === 'receipt');
  return outcome(
    'duplicate',
    { existing: existing.id },
    {
      event: EVENTS.inboundDuplicate,
      msgId: existing.msg_id,
      type: existing.msg_type ?? undefined,
      stage: 'dedupe',
      decision: receipt ? 'duplicate: its Acknowledgment and AppRec sent again' : 'duplicate: its Acknowledgment sent again',
      state: existing.state,
      herId: owed[0]?.routing_key,
    },
    {
      events: [{ stage: 'dedupe', event: 'duplicate-answered-again', detail: { sent: owed.map((o) => ({ purpose: o.purpose, msgId: o.headers['msg-id'] })) } }],
      outbox: owed,
    },
  );
}
