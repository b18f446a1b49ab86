// `messages pending`: what the gateway is still waiting for (transport acks, AppRecs, the
// kommune's answers, innleggelsesrapporter, manual routing), soonest due first.
import { type Command, Option } from 'commander';
import { DateTime } from 'luxon';
import { EXPECTATION_KINDS, type ExpectationKind } from '../../shared/vocabulary.js';
import { openDatabase } from '../../tracking/db.js';
import { openExpectations, type PendingItem } from '../../tracking/pending.js';
import { configOrExit, printTable } from './common.js';

/** "2d 3h", "45m": how long something has waited, for people. */
export function formatAge(ms: number): string {
  const minutes = Math.max(0, Math.floor(ms / 60000));
  const [d, h, m] = [Math.floor(minutes / 1440), Math.floor((minutes % 1440) / 60), minutes % 60];
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m`;
}

function row(p: PendingItem, now: Date, timeZone: string) {
  const overdue = new Date(p.dueAt) <= now;
  return {
    due: DateTime.fromISO(p.dueAt, { zone: timeZone }).toFormat('yyyy-MM-dd HH:mm'),
    state: overdue ? (p.alertState === 'firing' ? `overdue, alerted${p.reminders ? ` +${p.reminders}` : ''}` : 'overdue') : 'waiting',
    waitingFor: p.kind,
    type: p.msgType,
    bydel: p.bydel,
    receiverHerId: p.receiverHerId,
    age: formatAge(now.getTime() - new Date(p.createdAt).getTime()),
    msgId: p.msgId,
  };
}

export function addPendingCommand(messages: Command): Command {
  return messages
    .command('pending')
    .description('open expectations (transport ack, AppRec, answer, innleggelsesrapport, manual routing), soonest due first')
    .option('--json', 'machine-readable output')
    .option('--bydel <code>', 'only this bydel (030101..030117)')
    .addOption(new Option('--kind <kind>', 'only this kind').choices(EXPECTATION_KINDS.filter((k) => k !== 'apprec-rejected')))
    .option('--limit <n>', 'at most this many', (v) => Number.parseInt(v, 10), 1000)
    .action(async (opts: { json?: boolean; bydel?: string; kind?: ExpectationKind; limit: number }) => {
      const config = configOrExit();
      const db = await openDatabase(config.database.url);
      try {
        const items = await openExpectations(db, { bydel: opts.bydel, kind: opts.kind, limit: opts.limit });
        const now = new Date();
        if (opts.json) {
          console.log(
            JSON.stringify(
              items.map((p) => ({ ...p, ageMs: now.getTime() - new Date(p.createdAt).getTime(), overdue: new Date(p.dueAt) <= now })),
              null,
              2,
            ),
          );
          return;
        }
        if (items.length === 0) {
          console.log('nothing pending');
          return;
        }
        printTable(
          items.map((p) => row(p, now, config.tracking.workingTime.timeZone)),
          ['due', 'state', 'waitingFor', 'type', 'bydel', 'receiverHerId', 'age', 'msgId'],
        );
      } finally {
        await db.kysely.destroy();
      }
    });
}
