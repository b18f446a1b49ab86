// The words the store keeps. Every state, stage, timeline event, outbox purpose, expectation
// kind, alert kind and error code a column can hold is named here once, and the table types in
// db.ts use these unions, so a misspelt state fails the type check instead of a query.

/** messages.state */
export type MessageState =
  /** stored, its outbox item not yet confirmed by the broker */
  | 'received'
  /** waiting for ops to decide the bydel (`plo-gateway route`) */
  | 'held'
  /** delivered to the bydel's queue (broker confirm) */
  | 'published'
  /** handed to the EPJ on epj.inbound (broker confirm) */
  | 'forwarded'
  /** refused: a negative AppRec and a dead letter went out */
  | 'rejected'
  /** the same content as an earlier message under another MsgId: kept, never sent */
  | 'duplicate'
  /** the partner's message handler refused it (ebXML MessageError): not delivered */
  | 'transport-error'
  /** a transport signal (Acknowledgment / MessageError), recorded on the message it refers to */
  | 'correlated'
  /** a transport signal that refers to nothing the gateway sent */
  | 'unmatched';

/** events.stage: where on the path something happened. */
export type Stage =
  | 'receive'
  | 'parse'
  | 'decrypt'
  | 'verify'
  | 'validate'
  | 'dedupe'
  | 'route'
  | 'sign'
  | 'encrypt'
  | 'store'
  | 'publish'
  | 'correlate'
  | 'forward'
  | 'transport'
  | 'apprec'
  | 'answer'
  | 'innleggelsesrapport'
  | 'receipt'
  | 'deadline'
  | 'retention'
  /** the overtid ledger (a settlement recorded by a caseworker) */
  | 'ledger';

/** outbox.purpose: what a published item is for. */
export type OutboxPurpose =
  /** a signed ebXML message to a bydel */
  | 'deliver'
  /** an AppRec the hospital (or the gateway) returns to a bydel */
  | 'receipt'
  /** the gateway's negative AppRec to the EPJ */
  | 'apprec'
  /** a bydel's message handed to the EPJ */
  | 'forward'
  /** the signed ebXML transport Acknowledgment the gateway owes a partner */
  | 'acknowledgment'
  /** the signed ebXML MessageError for a message refused at the transport level */
  | 'message-error'
  | 'dlq'
  | 'alert';

/** events.event: what happened. */
export type TimelineEvent =
  | 'received'
  | 'decrypted'
  | 'verified'
  | 'validated'
  | 'rejected'
  | 'routed'
  | 'receiver-kept'
  | 'held-unroutable'
  | 'held-certificate'
  | 'released'
  /** the bydel said it is not the receiver (DIALOG_AVVIK, 8117 "Feil adressat") */
  | 'wrong-receiver'
  /** a delivered message sent again, to another bydel, under a new ebXML MessageId */
  | 'redirected'
  /** a held message routed by the x-bydel hint its content twin came with */
  | 'routed-by-twin-hint'
  | 'signed'
  | 'encrypted'
  | 'receipt-not-sent'
  | 'duplicate-ignored'
  | 'duplicate-content'
  | 'duplicate-answered-again'
  | 'resent-after-rejection'
  | 'replayed-skipping-dedupe'
  | 'correlated'
  | 'uncorrelated'
  | 'closed-answer-wait'
  | 'superseded-earlier'
  | 'nothing-to-close'
  | `${OutboxPurpose}-published`
  | 'transport-acked'
  | 'resent'
  | 'transport-error'
  | 'transport-signal-repeated'
  | 'apprec-ok'
  | 'apprec-rejected'
  | 'apprec-partial'
  | 'apprec-repeated'
  | 'apprec-returned'
  | 'answered'
  | 'kommune-follow-up'
  | 'wait-closed'
  | 'innleggelsesrapport-received'
  | 'alert-firing'
  | 'alert-reminder'
  | 'alert-resolved'
  | 'payload-expired'
  /** a caseworker recorded the date the kommune offered a place (report overtid settle) */
  | 'overtid-settled';

/** payloads.kind */
export type PayloadKind = 'original' | 'signed';

/** expectations.kind: what must come back (or be done) for a message by its due time. */
export const EXPECTATION_KINDS = [
  'transport-ack',
  'apprec',
  'answer',
  'innleggelsesrapport',
  /** a held message waits for ops to route it */
  'routing',
  /** a held message waits for its receiver's usable encryption certificate (or ops) */
  'certificate',
  /** a delivered message its bydel said is not theirs (DIALOG_AVVIK "feil adressat") waits for ops to send it to the right one */
  'redirect',
  /** records that a rejecting AppRec was raised (a single alert, closed at once) */
  'apprec-rejected',
  /** records that a received MessageError was raised (likewise) */
  'transport-error',
] as const;
export type ExpectationKind = (typeof EXPECTATION_KINDS)[number];

/** expectations.state */
export type ExpectationState = 'open' | 'met' | 'closed';

/** expectations.alert_state: 'raised' is a single alert that nothing later resolves. */
export type ExpectationAlertState = 'firing' | 'resolved' | 'raised';

export type AlertKind =
  | 'unroutable'
  | 'receiver-certificate'
  | 'wrong-receiver'
  | 'apprec-missing'
  | 'apprec-rejected'
  | 'utskrivningsklar-unanswered'
  | 'innleggelsesrapport-missing'
  | 'transport-ack-missing'
  | 'transport-error'
  | 'dlq-not-empty'
  // the gateway's own health (src/ops/opsAlerts.ts)
  | 'queue-backlog'
  | 'no-traffic'
  | 'address-register-unavailable'
  | 'crl-unavailable'
  | 'cppa-unavailable'
  | 'certificate-expiring';

/** messages.transport_state: ebXML Acknowledgment / MessageError. */
export type TransportState = 'acked' | 'error';

/** messages.apprec_status: AppRec status 1 / 2 / 3 (code list 8258). */
export type AppRecStatus = 'ok' | 'rejected' | 'partial';

/** messages.answer_state, for LOG_UTSKRIVNINGSKLAR */
export type AnswerState = 'answered' | 'closed';

/** How an answer or an Innleggelsesrapport found its message (messages.answer_rule). */
export type MatchRule = 'conversation-ref' | 'fallback';

/**
 * Code list 8221 (Feil i meldingen), the codes this gateway sends and records; a gateway code
 * outside the list goes out as X99 with its own sentence.
 */
/** Codes of the gateway's own, for what list 8221 has no code for; an AppRec carries X99 for them. */
export type GatewayErrorCode =
  /** an encrypted payload the gateway cannot open: not addressed to it, corrupt, tampered, unsupported */
  | 'GW-DECRYPTION'
  /** a payload in clear text from a partner that must encrypt (encryption.acceptPlain) */
  | 'GW-PLAIN-REFUSED'
  /** an AppRec for a partner without a usable encryption certificate: not sent in clear */
  | 'GW-RECEIVER-CERTIFICATE';

/** Why a message failed at the transport level (HITS 1216 errorCondition names): what a MessageError back says. */
export type TransportCondition =
  | 'transport:required-field-missing'
  | 'transport:invalid-field-value'
  | 'transport:missing-certificate'
  | 'transport:invalid-certificate'
  | 'transport:invalid-signature'
  | 'transport:decryption-failed'
  | 'transport:unsupported-message'
  | 'abuse:spoofing-attack';

export type ErrorCode = 'T01' | 'T02' | 'T10' | 'T99' | 'S01' | 'S02' | 'S03' | 'S99' | 'E10' | 'E21' | 'E30' | 'E31' | 'E32' | 'E35' | 'E36' | 'X99';
