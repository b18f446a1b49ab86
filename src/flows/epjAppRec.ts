// The AppRec the EPJ owes a bydel for a message the bydel sent (it arrives on epj.outbound like
// any message): back to that bydel, signed, in the eb:Service the message came in, Action APPREC
// (HISD 1209). The message it answers is found by OriginalMsgId/Id among those received from the
// party the AppRec is addressed to; the AppRec is stored on that message as its receipt, its own
// outbox item, so that a repeat of the bydel's message can be answered with it again.
import type { GatewayConfig } from '../config/config.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { type AppRecModel, type ParsedMessage, permanent } from '../mapping/model.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { type PartnerContext, readyToPackage, receiptItem } from '../outbound/package.js';
import type { OutboxPublisher } from '../outbox/relay.js';
import type { OutboxRow } from '../outbox/table.js';
import { type Outcome, outcome } from '../tracking/outcome.js';
import { type AppRecStatus, appRecStatusOf, type IncomingMessage, type Receipts } from '../tracking/receipts.js';
import type { OutcomeRecorder } from '../tracking/recorder.js';
import type { Store } from '../tracking/store.js';
import type { Refusal } from './outcomes.js';

export interface EpjAppRecDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  schemas: SchemaSet;
  partners: PartnerContext;
  receipts: Receipts;
  outbox: OutboxPublisher;
  now: () => Date;
}

/** What to do with the EPJ's AppRec: return it, recognise one returned before, or refuse it. */
export type AppRecPlan = { returns: Outcome<'returned'> } | { repeat: OutboxRow } | { refusal: Refusal };

const refused = (stage: 'validate' | 'route' | 'encrypt', result: { error: Refusal['error'] }): { refusal: Refusal } => ({
  refusal: { stage, error: result.error },
});

export class EpjAppRecReturn {
  constructor(private readonly deps: EpjAppRecDeps) {}

  /** Returned (or found returned before); else why not, for the EPJ flow's rejection path. */
  async handle(parsed: ParsedMessage, appRec: AppRecModel, recorder: OutcomeRecorder): Promise<'delivered' | 'duplicate' | 'resumed' | { refusal: Refusal }> {
    // Twice at most: a second AppRec stored meanwhile by another consumer is then seen as such.
    for (let attempt = 1; ; attempt++) {
      const plan = await this.plan(parsed, appRec);
      if ('refusal' in plan) return plan;
      if ('repeat' in plan) return this.repeat(plan.repeat, appRec);
      const recorded = await recorder.record(plan.returns);
      if (recorded.stored) return 'delivered';
      if (attempt === 2) return 'duplicate';
    }
  }

  async plan(parsed: ParsedMessage, appRec: AppRecModel): Promise<AppRecPlan> {
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return refused('validate', valid);
    const status = appRecStatusOf(appRec.status);
    if (!status) return refused('validate', permanent('T02', `The AppRec Status ${appRec.status || '(empty)'} is not in code list 8258 (1, 2 or 3).`));

    const original = appRec.originalMsgId.id;
    const incoming = await this.deps.receipts.incomingFor(appRec);
    const bydelHerId = incoming?.row.sender_her_id;
    if (!incoming || !bydelHerId) {
      return refused(
        'route',
        permanent(
          'E21',
          `The AppRec answers MsgId ${original}, which the gateway has not received from HER-id ${appRec.receiverHerIds.join('/') || '(none)'}.`,
        ),
      );
    }
    if (incoming.row.apprec_status !== null) {
      // An AppRec is final (AppRec 1.1 §3.2): the same one again is a repeat, another is refused.
      const sent = (await this.deps.store.outboxForMessage(incoming.row.id)).filter((o) => o.purpose === 'receipt');
      const same = sent.find((o) => (JSON.parse(o.headers) as Record<string, unknown>)['msg-id'] === appRec.id);
      if (same) return { repeat: same };
      return refused(
        'route',
        permanent(
          'X99',
          `An AppRec for MsgId ${original} was already returned to HER-id ${bydelHerId}; an AppRec is final, so report later problems with DIALOG_AVVIK.`,
        ),
      );
    }
    // the CPPA register down and nothing known of the pair: the AppRec waits
    const now = this.deps.now();
    await readyToPackage(this.deps.partners, answeringHerId(incoming, this.deps.partners), bydelHerId, now);
    return returnedAppRec(this.deps.partners, incoming, appRec, parsed.businessXml, status, bydelHerId, now);
  }

  private async repeat(sent: OutboxRow, appRec: AppRecModel): Promise<'duplicate' | 'resumed'> {
    const resumed = (await this.deps.outbox.claimAndPublish(sent)) === 'published';
    logStage(this.deps.log, {
      event: EVENTS.duplicate,
      msgId: appRec.id,
      type: 'APPREC',
      stage: 'route',
      decision: resumed ? 'resumed' : 'duplicate AppRec ignored',
      originalMsgId: appRec.originalMsgId.id,
    });
    return resumed ? 'resumed' : 'duplicate';
  }
}

/** The HER-id the message was addressed to: the AppRec comes from it. */
const answeringHerId = ({ row }: IncomingMessage, partners: PartnerContext) => row.receiver_l2_her_id ?? row.receiver_l1_her_id ?? partners.config.ownHerId;

/**
 * The AppRec, signed and encrypted for the bydel, recorded on the message it answers: only if
 * none was returned yet. Refused (to the DLQ, for ops to replay) while the bydel has no usable
 * encryption certificate: an AppRec is not held like a message, and never goes out in clear.
 */
export function returnedAppRec(
  partners: PartnerContext,
  incoming: IncomingMessage,
  appRec: AppRecModel,
  appRecXml: string,
  status: AppRecStatus,
  bydelHerId: string,
  now: Date,
): { returns: Outcome<'returned'> } | { refusal: Refusal } {
  const { row } = incoming;
  const item = receiptItem(
    partners,
    {
      appRecId: appRec.id,
      appRecXml,
      fromHerId: answeringHerId(incoming, partners),
      toHerId: bydelHerId,
      answers: { msgType: row.msg_type ?? appRec.originalMsgId.msgType, service: incoming.service, conversationId: row.conversation_id ?? row.msg_id },
    },
    now,
  );
  if (!item.ok) {
    return refused(
      'encrypt',
      permanent(
        'GW-RECEIVER-CERTIFICATE',
        `The AppRec cannot be returned to HER-id ${bydelHerId} now: ${item.reason}; replay it from the DLQ when the register has one.`,
      ),
    );
  }
  const returned = outcome(
    'returned',
    { update: row.id, patch: { apprec_status: status, apprec_at: now.toISOString() }, guard: { unset: 'apprec_status' } },
    {
      event: EVENTS.appRecReturned,
      msgId: appRec.id,
      type: 'APPREC',
      stage: 'route',
      decision: `AppRec ${status} returned to ${bydelHerId}`,
      originalMsgId: appRec.originalMsgId.id,
      herId: bydelHerId,
    },
    {
      events: [{ stage: 'receipt', event: 'apprec-returned', detail: { appRecId: appRec.id, status, herId: bydelHerId } }],
      outbox: [item.value],
    },
  );
  return { returns: returned };
}
