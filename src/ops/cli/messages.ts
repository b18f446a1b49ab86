// `messages show <msgId>`: one message's timeline for ops, without personal data unless
// `--with-payload` is given (and then audited).
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { openDatabase } from '../../tracking/db.js';
import { Store, type TimelineEntry } from '../../tracking/store.js';
import { configOrExit, printTable } from './common.js';

/** The metadata ops need; every field here is free of personal data by construction. */
function summary(entry: TimelineEntry) {
  const m = entry.message;
  return {
    direction: m.direction === 'out' ? 'hospital → bydel' : 'bydel → hospital',
    msgId: m.msg_id,
    type: m.msg_type,
    state: m.state,
    senderHerId: m.sender_her_id,
    bydel: m.bydel,
    routeRule: m.route_rule,
    receiverHerIds: [m.receiver_l1_her_id, m.receiver_l2_her_id].filter(Boolean).join(' / ') || null,
    conversationId: m.conversation_id,
    transport: m.transport_state ? `${m.transport_state} at ${m.transport_at}` : null,
    appRec: m.apprec_status ? `${m.apprec_status} at ${m.apprec_at}${m.apprec_errors ? ` ${m.apprec_errors}` : ''}` : null,
    answer: m.answer_state
      ? `${m.answer_state} at ${m.answered_at ?? m.updated_at}${m.answer_rule ? ` (${m.answer_rule})` : ''}${m.closed_by ? ` by ${m.closed_by}` : ''}`
      : null,
    error: m.error_code ? `${m.error_code}: ${m.error_reason}` : null,
    receivedAt: m.created_at,
  };
}

const eventRows = (entry: TimelineEntry) => entry.events.map((e) => ({ at: e.at, stage: e.stage, event: e.event, detail: e.detail ?? '' }));

export function registerMessageCommands(program: Command): Command {
  const messages = program.command('messages').description('messages in the store: timelines and what is pending');
  messages
    .command('show <msgId>')
    .description('the timeline of one message: received, validated, routed (bydel, rule, HER-id), signed, published, receipts, answer')
    .option('--json', 'machine-readable output')
    .option('--with-payload', 'also print the stored bodies (personal data: the access is audited)')
    .option('--actor <name>', 'who is asking (for the audit log)', userInfo().username)
    .action(async (msgId: string, opts: { json?: boolean; withPayload?: boolean; actor: string }) => {
      const config = configOrExit();
      const store = new Store(await openDatabase(config.database.url));
      try {
        const entries = await store.timeline(msgId);
        if (entries.length === 0) {
          console.error(`no message with MsgId ${msgId}`);
          process.exitCode = 1;
          return;
        }
        const payloads = opts.withPayload ? await Promise.all(entries.map((e) => store.payloads(e.message.id))) : undefined;
        if (opts.withPayload) {
          await store.audit({
            actor: opts.actor,
            action: 'messages.show.with-payload',
            target: msgId,
            reason: null,
            detail: { messages: entries.map((e) => e.message.id) },
          });
        }
        if (opts.json) {
          const out = entries.map((e, i) => ({
            ...summary(e),
            events: e.events.map((ev) => ({ at: ev.at, stage: ev.stage, event: ev.event, detail: ev.detail ? JSON.parse(ev.detail) : null })),
            ...(payloads
              ? { payloads: payloads[i].map((p) => ({ kind: p.kind, contentType: p.content_type, body: Buffer.from(p.body).toString('utf8') })) }
              : {}),
          }));
          console.log(JSON.stringify(out, null, 2));
          return;
        }
        entries.forEach((e, i) => {
          for (const [k, v] of Object.entries(summary(e))) if (v !== null) console.log(`${k.padEnd(16)} ${v}`);
          console.log('');
          printTable(eventRows(e), ['at', 'stage', 'event', 'detail']);
          for (const p of payloads?.[i] ?? []) console.log(`\n--- payload ${p.kind} (${p.content_type}) ---\n${Buffer.from(p.body).toString('utf8')}`);
          console.log('');
        });
      } finally {
        await store.close();
      }
    });
  return messages;
}
