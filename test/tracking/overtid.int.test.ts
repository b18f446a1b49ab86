// The overtid ledger on a scripted week of notices (week 11 of 2026, Monday 9 – Friday 13 March,
// no holidays), on both stores, against figures worked out by hand below.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DateTime } from 'luxon';
import { loadConfig } from '../../src/config/config.js';
import type { MessageState } from '../../src/shared/vocabulary.js';
import { openDatabase } from '../../src/tracking/db.js';
import { workingCalendar } from '../../src/tracking/deadlines.js';
import { expectationsFor } from '../../src/tracking/expectations.js';
import { loadLedger, overtidReport } from '../../src/tracking/overtid.js';
import { Store } from '../../src/tracking/store.js';
import { cli } from '../support/cli.js';
import { type Backend, postgresBackend, sqliteBackend } from '../support/databases.js';
import { seedMessage, seedUpdate } from '../support/seed.js';

const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const config = loaded.config;
const calendar = workingCalendar(config);
const oslo = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toJSDate();

const FROGNER = '030105';
const SAGENE = '030103';

/**
 * The week, and what each notice contributes (answer time in working minutes; døgn counted from
 * the utskrivningsklar date or notice date, whichever is later, to the day of the answer,
 * avmelding or discharge, that day not counted):
 *
 * N1 Frogner Mon 09:00, klar Mon, answered Mon 10:00 (due 11:00)   → within, 60 min, 0 døgn
 * N2 Frogner Mon 14:00, klar Tue, answered Tue 10:30 (due Tue 09:00) → late, 60+150 = 210 min, 0 døgn (answered on the klar day)
 * N3 Frogner Tue 10:00, klar Tue, never answered, discharged Fri    → unanswered, Tue+Wed+Thu = 3 døgn
 * N4 Frogner Wed 16:00, klar Wed, answered Thu 09:00 (due Thu 10:00) → within, 60 min, Wed = 1 døgn
 * N5 Sagene  Mon 08:30, klar Mon, avmeldt Tue, no answer            → avmeldt (not unanswered), Mon = 1 døgn
 * N6 Sagene  Thu 11:00, klar Thu, nothing yet                       → unanswered, open: Thu+Fri to the report's end = 2 døgn
 * N7 Sagene  Fri 13:00, klar Fri, answered Fri 14:00 (due 15:00)     → within, 60 min, 0 døgn; stored without bydel (EPJ addressed Sagene)
 * N8 Sagene  Mon 12:00, klar Mon, superseded by N9                   → not a line of its own: N9 counts from it
 * N9 Sagene  Wed 09:00, klar Mon, answered Wed 10:00 (due 11:00)     → within, 60 min, Mon+Tue = 2 døgn (notified Monday, by N8)
 * Not counted: a notice on Sunday 8 March (before the period), a held and a rejected one, one the
 * hospital cancelled (and the cancellation itself), one the bydel rejected by AppRec (no valid notice).
 */
const EXPECTED = [
  {
    bydel: SAGENE,
    notices: 4,
    answeredWithinDeadline: 2,
    medianAnswerWorkingMinutes: 60,
    p90AnswerWorkingMinutes: 60,
    unanswered: 1,
    avmeldt: 1,
    overtidigeDogn: 5,
  },
  {
    bydel: FROGNER,
    notices: 4,
    answeredWithinDeadline: 2,
    medianAnswerWorkingMinutes: 60,
    p90AnswerWorkingMinutes: 210,
    unanswered: 1,
    avmeldt: 0,
    overtidigeDogn: 4,
  },
  {
    bydel: 'alle',
    notices: 8,
    answeredWithinDeadline: 4,
    medianAnswerWorkingMinutes: 60,
    p90AnswerWorkingMinutes: 210,
    unanswered: 2,
    avmeldt: 1,
    overtidigeDogn: 9,
  },
];

async function scriptWeek(url: string): Promise<void> {
  let now = new Date();
  const store = new Store(await openDatabase(url), () => now);
  const at = (local: string) => (now = oslo(local));
  const notice = async (
    local: string,
    o: { bydel: string | null; klar: string; patient: string; state?: MessageState; receiverL1?: string; cancellation?: boolean },
  ) => {
    at(local);
    const msgId = randomUUID();
    const { messageId } = await seedMessage(store, {
      message: {
        msg_id: msgId,
        direction: 'out',
        sender_her_id: '90998',
        msg_type: 'LOG_UTSKRIVNINGSKLAR',
        state: o.state ?? 'published',
        conversation_id: msgId,
        bydel: o.bydel,
        receiver_l1_her_id: o.receiverL1 ?? null,
        patient_key: o.patient,
        event_time: o.klar,
        gen_date: local,
      },
      payloads: [],
      events: [],
      outbox: [],
      expectations: expectationsFor({ type: 'LOG_UTSKRIVNINGSKLAR', forsendelsesstatus: o.cancellation ? 'C' : undefined }, now, config.tracking, calendar),
    });
    return messageId;
  };
  const closed = (id: number, by: string) => seedUpdate(store, id, { answer_state: 'closed', closed_by: by });
  const answered = async (id: number, local: string) => {
    at(local);
    await seedUpdate(store, id, { answer_state: 'answered', answered_at: now.toISOString(), answer_rule: 'conversation-ref' });
  };
  const followUp = async (local: string, type: string, patient: string, eventTime: string) => {
    at(local);
    await seedMessage(store, {
      message: {
        msg_id: randomUUID(),
        direction: 'out',
        sender_her_id: '90998',
        msg_type: type,
        state: 'published',
        patient_key: patient,
        event_time: eventTime,
      },
      payloads: [],
      events: [],
      outbox: [],
    });
  };

  await notice('2026-03-08T12:00', { bydel: FROGNER, klar: '2026-03-08', patient: 'p0' });
  const n1 = await notice('2026-03-09T09:00', { bydel: FROGNER, klar: '2026-03-09', patient: 'p1' });
  const n2 = await notice('2026-03-09T14:00', { bydel: FROGNER, klar: '2026-03-10', patient: 'p2' });
  await notice('2026-03-09T08:30', { bydel: SAGENE, klar: '2026-03-09', patient: 'p5' });
  await answered(n1, '2026-03-09T10:00');
  await notice('2026-03-09T11:00', { bydel: null, klar: '2026-03-09', patient: 'p8', state: 'held' });
  await notice('2026-03-09T11:30', { bydel: FROGNER, klar: '2026-03-09', patient: 'p9', state: 'rejected' });
  await notice('2026-03-10T10:00', { bydel: FROGNER, klar: '2026-03-10', patient: 'p3' });
  await answered(n2, '2026-03-10T10:30');
  await followUp('2026-03-10T12:00', 'LOG_AVMELDING', 'p5', '2026-03-10');
  const n4 = await notice('2026-03-11T16:00', { bydel: FROGNER, klar: '2026-03-11', patient: 'p4' });
  await followUp('2026-03-11T12:00', 'LOG_UTSKREVET', 'p1', '2026-03-11T11:00:00');
  await notice('2026-03-12T11:00', { bydel: SAGENE, klar: '2026-03-12', patient: 'p6' });
  await answered(n4, '2026-03-12T09:00');
  const n7 = await notice('2026-03-13T13:00', { bydel: null, klar: '2026-03-13', patient: 'p7', receiverL1: '9910003' });
  await answered(n7, '2026-03-13T14:00');
  await followUp('2026-03-13T15:30', 'LOG_UTSKREVET', 'p3', '2026-03-13T15:00:00');
  const n8 = await notice('2026-03-09T12:00', { bydel: SAGENE, klar: '2026-03-09', patient: 'p10' });
  await closed(n8, 'superseded');
  const n9 = await notice('2026-03-11T09:00', { bydel: SAGENE, klar: '2026-03-09', patient: 'p10' });
  await answered(n9, '2026-03-11T10:00');
  const cancelled = await notice('2026-03-10T11:00', { bydel: FROGNER, klar: '2026-03-10', patient: 'p11' });
  await notice('2026-03-10T12:00', { bydel: FROGNER, klar: '2026-03-10', patient: 'p11', cancellation: true });
  await closed(cancelled, 'cancellation');
  await closed(await notice('2026-03-12T09:00', { bydel: FROGNER, klar: '2026-03-12', patient: 'p12' }), 'apprec:rejected');
  await store.close();
}

const bydelOfHerId = (herId: string) => (herId === '9910003' ? SAGENE : undefined);

for (const backend of [sqliteBackend(), postgresBackend()] as Backend[]) {
  describe(`overtid ledger on a scripted week (${backend.dialect})`, function () {
    this.timeout(60000);
    let url: string;

    before(async () => {
      url = await backend.create();
      await scriptWeek(url);
    });
    after(() => backend.removeAll());

    it('matches the hand-computed figures per bydel', async () => {
      const store = new Store(await openDatabase(url));
      try {
        const entries = await loadLedger(store, calendar, { from: '2026-03-09', to: '2026-03-13', now: oslo('2026-03-20T12:00'), bydelOfHerId });
        expect(entries).to.have.length(8);
        expect(entries.find((e) => e.overtidigeDogn === 2 && e.answeredAt)?.noticeAt, 'N9 stands for N8').to.equal(oslo('2026-03-11T09:00').toISOString());
        const columns = Object.keys(EXPECTED[0]) as (keyof (typeof EXPECTED)[0])[];
        expect(overtidReport(entries).map((r) => Object.fromEntries(columns.map((c) => [c, r[c]])))).to.deep.equal(EXPECTED);
        const n3 = entries.find((e) => e.overtidigeDogn === 3)!;
        expect(n3).to.include({ utskrivningsklarDate: '2026-03-10', dischargeDate: '2026-03-13', answeredAt: null, open: false });
        expect(entries.filter((e) => e.open).map((e) => e.overtidigeDogn)).to.deep.equal([2]);
      } finally {
        await store.close();
      }
    });

    it('counts an open notice only up to today when the period reaches into the future', async () => {
      const store = new Store(await openDatabase(url));
      try {
        const entries = await loadLedger(store, calendar, { from: '2026-03-09', to: '2026-03-31', now: oslo('2026-03-12T18:00'), bydelOfHerId });
        expect(entries.filter((e) => e.open).map((e) => e.overtidigeDogn)).to.deep.equal([1]);
      } finally {
        await store.close();
      }
    });
  });
}

describe('plo-gateway report overtid and messages pending (CLI)', function () {
  this.timeout(60000);
  const backend = sqliteBackend();
  let env: Record<string, string>;

  before(async () => {
    const url = await backend.create();
    await scriptWeek(url);
    const file = join(mkdtempSync(join(tmpdir(), 'gw-cfg-')), 'config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(JSON.stringify(config)), database: { url } }));
    env = { GATEWAY_CONFIG: file };
  });
  after(() => backend.removeAll());

  it('report overtid --format csv prints one line per bydel and a total', async () => {
    const r = await cli(['report', 'overtid', '--from', '2026-03-09', '--to', '2026-03-13', '--format', 'csv'], { env });
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    // the first nine columns; the ledger's døgn and the indicators follow (overtidLedger.int.test.ts), then the national line
    const first = (line: string) => line.split(',').slice(0, 9).join(',');
    expect(first(lines[0])).to.equal(
      'bydel,bydelName,notices,answeredWithinDeadline,medianAnswerWorkingMinutes,p90AnswerWorkingMinutes,unanswered,avmeldt,overtidigeDogn',
    );
    expect(lines.slice(1, 4).map(first)).to.deep.equal([
      '030103,Sagene,4,2,60,60,1,1,5',
      '030105,Frogner,4,2,60,210,1,0,4',
      'alle,Alle bydeler,8,4,60,210,2,1,9',
    ]);
    expect(lines.slice(4).map((l) => l.split(',')[0])).to.deep.equal(['nasjonalt']);
  });

  it('report overtid --format json carries the ledger lines; a bad date is a usage error', async () => {
    const r = await cli(['report', 'overtid', '--from', '2026-03-09', '--to', '2026-03-13', '--format', 'json'], { env });
    expect(r.status, r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout);
    expect(report.bydeler.map((b: { bydel: string }) => b.bydel)).to.deep.equal([SAGENE, FROGNER, 'alle']);
    expect(report.notices).to.have.length(8);
    expect((await cli(['report', 'overtid', '--from', '9.3.2026', '--to', '2026-03-13'], { env })).status).to.equal(2);
  });

  it('messages pending --json lists open expectations soonest first, with bydel, type and age', async () => {
    const r = await cli(['messages', 'pending', '--json'], { env });
    expect(r.status, r.stderr).to.equal(0);
    const items = JSON.parse(r.stdout) as { dueAt: string; kind: string; msgType: string; bydel: string | null; ageMs: number }[];
    expect(items.length).to.be.greaterThan(0);
    expect(items.map((i) => i.dueAt)).to.deep.equal(items.map((i) => i.dueAt).sort());
    expect(items[0]).to.include.keys('bydel', 'msgType', 'kind', 'ageMs', 'alertState');
    const table = await cli(['messages', 'pending', '--kind', 'answer'], { env });
    expect(table.stdout.split('\n')[0]).to.match(/^due\s+state\s+waitingFor\s+type\s+bydel\s+receiverHerId\s+age\s+msgId$/);
  });
});
