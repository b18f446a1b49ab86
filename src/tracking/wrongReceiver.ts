// A bydel's "this is not ours": a DIALOG_AVVIK with TemaKodet 8117/1 "Feil adressat"
// (REFERENCE §4.1) names a message the hospital sent it. The gateway finds that message, and
// the `wrong-receiver` alert fires on it (expectation `redirect`) until ops send it to the right
// bydel (`route <msgId> --bydel <code> --resend`). Only metadata goes into the alert.
import type { Kysely } from 'kysely';
import { durationMs, type GatewayConfig } from '../config/config.js';
import type { MsgHeadModel } from '../mapping/model.js';
import type { NewOutboxItem } from '../outbox/items.js';
import { alertItem } from '../outbox/items.js';
import type { MatchRule } from '../shared/vocabulary.js';
import type { Alert } from './alerts.js';
import type { MessageRow, Schema } from './db.js';
import { alertPolicy, conditionAlert, nextReminderAt } from './deadlines.js';
import type { Effect } from './outcome.js';

/** Code list 8117 (Avvik ved mottak av elektronisk melding), value 1 Feil adressat, as "S/V". */
export const FEIL_ADRESSAT = '2.16.578.1.12.4.1.1.8117/1';

export const isWrongReceiver = (m: Pick<MsgHeadModel, 'type' | 'temaKodet'>): boolean => m.type === 'DIALOG_AVVIK' && m.temaKodet.includes(FEIL_ADRESSAT);

/** The delivered message a feil-adressat avvik refers to, and how it was found. */
export interface Misrouted {
  target: MessageRow;
  rule: MatchRule;
  /** its `redirect` wait is open already: the alert is firing, nothing is raised again */
  alreadyRaised: boolean;
}

/**
 * The message the avvik refers to: by ConversationRef (RefToParent or RefToConversation = its
 * MsgId), else the newest one sent to that bydel for the same patient within
 * `tracking.answerFallbackWindow`. Either way it must have been delivered to the party the
 * avvik comes from.
 */
export async function findMisrouted(
  db: Kysely<Schema>,
  m: MsgHeadModel,
  from: { herIds: string[]; patientKey: string | null },
  tracking: Pick<GatewayConfig['tracking'], 'answerFallbackWindow'>,
  now: Date,
): Promise<Misrouted | undefined> {
  if (from.herIds.length === 0) return undefined;
  const delivered = () =>
    db
      .selectFrom('messages')
      .selectAll()
      .where('direction', '=', 'out')
      .where('ebxml_message_id', 'is not', null)
      .where((eb) => eb.or([eb('receiver_l1_her_id', 'in', from.herIds), eb('receiver_l2_her_id', 'in', from.herIds)]));
  const refs = [m.conversationRef?.refToParent, m.conversationRef?.refToConversation].filter((r): r is string => !!r);
  let target: MessageRow | undefined;
  let rule: MatchRule = 'conversation-ref';
  if (refs.length > 0) target = await delivered().where('msg_id', 'in', refs).orderBy('id', 'desc').executeTakeFirst();
  if (!target && from.patientKey) {
    rule = 'fallback';
    const since = new Date(now.getTime() - durationMs(tracking.answerFallbackWindow)).toISOString();
    target = await delivered()
      .where('patient_key', '=', from.patientKey)
      .where('created_at', '>=', since)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .executeTakeFirst();
  }
  if (!target) return undefined;
  const wait = await db.selectFrom('expectations').select('state').where('message_id', '=', target.id).where('kind', '=', 'redirect').executeTakeFirst();
  return { target, rule, alreadyRaised: wait?.state === 'open' };
}

/** The firing `wrong-receiver` alert for the message, from its stored metadata. */
export function wrongReceiverAlert(target: MessageRow, config: GatewayConfig, now: Date): Alert {
  return conditionAlert(
    'firing',
    {
      expectationId: 0,
      kind: 'redirect',
      dueAt: now.toISOString(),
      alertId: null,
      reminders: 0,
      resolvedBy: null,
      messageId: target.id,
      msgId: target.msg_id,
      msgType: target.msg_type,
      conversationId: target.conversation_id,
      bydel: target.bydel,
      receiverHerId: target.receiver_l2_her_id ?? target.receiver_l1_her_id,
      genDate: target.gen_date,
      createdAt: target.created_at,
      appRecErrors: null,
      transportErrors: null,
    },
    now,
    alertPolicy(config),
  );
}

/**
 * What a feil-adressat avvik adds to its own outcome: the alert (unless one is firing already)
 * and, on the message it names, the `redirect` wait and a `wrong-receiver` event.
 */
export function raiseWrongReceiver(
  found: Misrouted,
  avvik: { msgId: string; fromHerId: string },
  config: GatewayConfig,
  now: Date,
): { outbox: NewOutboxItem[]; effects: Effect[]; alertId?: string } {
  const { target, rule } = found;
  const detail = { avvikMsgId: avvik.msgId, fromHerId: avvik.fromHerId, bydel: target.bydel, rule };
  if (found.alreadyRaised) {
    // its alert is firing already: the timeline notes the avvik, nothing is raised twice
    return {
      outbox: [],
      effects: [
        { effect: 'raise-on', messageId: target.id, events: [{ stage: 'correlate', event: 'wrong-receiver', detail: { ...detail, alreadyRaised: true } }] },
      ],
    };
  }
  const alert = wrongReceiverAlert(target, config, now);
  const policy = alertPolicy(config);
  const nextAlertAt = nextReminderAt({ kind: 'redirect', genDate: target.gen_date, createdAt: now.toISOString() }, now, policy);
  return {
    alertId: alert.id,
    outbox: [alertItem(config.broker, alert)],
    effects: [
      {
        effect: 'raise-on',
        messageId: target.id,
        expectation: { kind: 'redirect', dueAt: now, firing: { alertId: alert.id, nextAlertAt } },
        events: [{ stage: 'correlate', event: 'wrong-receiver', detail: { ...detail, alertId: alert.id } }],
      },
    ],
  };
}
