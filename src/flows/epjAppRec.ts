// The AppRec the EPJ owes a bydel for a message the bydel sent (it arrives on epj.outbound like
// any message): back to that bydel, signed, in the eb:Service the message came in, Action APPREC
// (HISD 1209). The message it answers is found by OriginalMsgId/Id among those received from the
// party the AppRec is addressed to; the AppRec is stored on that message as its receipt, its own
// outbox item, so that a repeat of the bydel's message can be answered with it again.
import type { GatewayConfig } from '../config/config.js';
import type { SchemaSet } from '../inbound/schemas.js';
import { validateMessage } from '../inbound/validate.js';
import { type AppRecModel, type ParsedMessage, permanent, type StageError } from '../mapping/model.js';
import { EVENTS } from '../observability/events.js';
import { type Logger, logStage } from '../observability/log.js';
import { justStored, type OutboxPublisher } from '../outbound/outboxRelay.js';
import { type PartnerContext, receiptItem } from '../outbound/package.js';
import { appRecStatusOf, Receipts } from '../tracking/receipts.js';
import type { Store } from '../tracking/store.js';
import { relayGraceMs } from './packageDelivery.js';

export interface EpjAppRecDeps {
  config: GatewayConfig;
  log: Logger;
  store: Store;
  schemas: SchemaSet;
  partners: PartnerContext;
  outbox: OutboxPublisher;
  now: () => Date;
}

/** Returned to the bydel (or found returned before); else why not, for the EPJ flow's rejection path. */
export type AppRecReturn = { ok: true; outcome: 'delivered' | 'duplicate' | 'resumed' } | { ok: false; stage: 'validate' | 'route'; error: StageError };

const refused = (stage: 'validate' | 'route', result: { error: StageError }): AppRecReturn => ({ ok: false, stage, error: result.error });

export class EpjAppRecReturn {
  private readonly receipts: Receipts;
  private readonly graceMs: number;

  constructor(private readonly deps: EpjAppRecDeps) {
    this.receipts = new Receipts(deps.store.db.kysely, deps.config.tracking);
    this.graceMs = relayGraceMs(deps.config);
  }

  async handle(parsed: ParsedMessage, appRec: AppRecModel): Promise<AppRecReturn> {
    const valid = validateMessage(parsed, this.deps.schemas);
    if (!valid.ok) return refused('validate', valid);
    const status = appRecStatusOf(appRec.status);
    if (!status) return refused('validate', permanent('T02', `The AppRec Status ${appRec.status || '(empty)'} is not in code list 8258 (1, 2 or 3).`));

    const original = appRec.originalMsgId.id;
    const incoming = await this.receipts.incomingFor(appRec);
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
    const { row } = incoming;
    const now = this.deps.now();
    const item = receiptItem(
      this.deps.partners,
      { now, graceMs: this.graceMs },
      {
        appRecId: appRec.id,
        appRecXml: parsed.businessXml,
        fromHerId: row.receiver_l2_her_id ?? row.receiver_l1_her_id ?? this.deps.config.ownHerId,
        toHerId: bydelHerId,
        answers: { msgType: row.msg_type ?? appRec.originalMsgId.msgType, service: incoming.service, conversationId: row.conversation_id ?? row.msg_id },
      },
    );
    const returned = await this.deps.store.inTransaction((tx) => this.receipts.returnAppRec(tx, row.id, { appRecId: appRec.id, status, item }, now));
    const log = { msgId: appRec.id, type: 'APPREC', stage: 'route', originalMsgId: original, herId: bydelHerId };
    switch (returned.kind) {
      case 'recorded':
        await this.deps.outbox.publishNow(justStored(row.id, [item], [returned.outboxId])[0]);
        logStage(this.deps.log, { ...log, event: EVENTS.appRecReturned, decision: `AppRec ${status} returned to ${bydelHerId}` });
        return { ok: true, outcome: 'delivered' };
      case 'repeat': {
        const resumed = returned.sent.state === 'pending' && (await this.deps.outbox.publishPending(returned.sent));
        logStage(this.deps.log, { ...log, event: EVENTS.duplicate, decision: resumed ? 'resumed' : 'duplicate AppRec ignored' });
        return { ok: true, outcome: resumed ? 'resumed' : 'duplicate' };
      }
      case 'final':
        return refused(
          'route',
          permanent(
            'X99',
            `An AppRec for MsgId ${original} was already returned to HER-id ${bydelHerId}; an AppRec is final, so report later problems with DIALOG_AVVIK.`,
          ),
        );
    }
  }
}
