// The overtid ledger a bydel can pay by: hand-computed weeks on both stores. Week 11 of 2026
// (Monday 9 – Sunday 15 March, no holidays) and January–February 2026. Each case is one patient;
// "met" preconditions mean the stay's LOG_INNLAGT and a Helseopplysninger to the same bydel
// within 24 h of it, before the notice.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DateTime } from 'luxon';
import { chromium } from 'playwright-core';
import { loadConfig } from '../../src/config/config.js';
import { settleNotice } from '../../src/ops/overtidSettle.js';
import { openDatabase } from '../../src/tracking/db.js';
import { workingCalendar } from '../../src/tracking/deadlines.js';
import { expectationsFor } from '../../src/tracking/expectations.js';
import { type LedgerEntry, loadPeriodLedger, overtidReport } from '../../src/tracking/overtid.js';
import { Store } from '../../src/tracking/store.js';
import { cli } from '../support/cli.js';
import { type Backend, postgresBackend, sqliteBackend } from '../support/databases.js';
import { seedMessage, seedUpdate } from '../support/seed.js';

const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
const config = loaded.config;
const calendar = workingCalendar(config);
const oslo = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toJSDate();
const NOW = oslo('2026-04-01T12:00');

const FROGNER = '030105';
const SAGENE = '030103';

/** The MsgIds of the cases, by name. */
type Cases = Record<string, string>;

async function script(url: string): Promise<Cases> {
  let now = new Date();
  const store = new Store(await openDatabase(url), () => now);
  const at = (local: string) => (now = oslo(local));
  const cases: Cases = {};
  const ids: Record<string, number> = {};
  const out = async (
    local: string,
    type: string,
    patient: string,
    o: { bydel?: string; eventTime?: string; expect?: boolean; cancellation?: boolean } = {},
  ) => {
    at(local);
    const msgId = randomUUID();
    const { messageId } = await seedMessage(store, {
      message: {
        msg_id: msgId,
        direction: 'out',
        sender_her_id: '90998',
        msg_type: type,
        state: 'published',
        conversation_id: msgId,
        bydel: o.bydel ?? null,
        patient_key: patient,
        event_time: o.eventTime ?? null,
        gen_date: local,
      },
      expectations: o.expect
        ? expectationsFor({ type: 'LOG_UTSKRIVNINGSKLAR', forsendelsesstatus: o.cancellation ? 'C' : undefined }, now, config.tracking, calendar)
        : [],
    });
    return { msgId, messageId };
  };
  const notice = async (name: string, local: string, bydel: string, patient: string, klar: string) => {
    const n = await out(local, 'LOG_UTSKRIVNINGSKLAR', patient, { bydel, eventTime: klar, expect: true });
    cases[name] = n.msgId;
    ids[name] = n.messageId;
    return n.messageId;
  };
  /** the stay's admission and the Helseopplysninger to the bydel, `hoAfterHours` after it */
  const stay = async (admitted: string, bydel: string, patient: string, hoAfterHours: number | null) => {
    await out(admitted, 'LOG_INNLAGT', patient, { bydel, eventTime: `${admitted}:00` });
    if (hoAfterHours !== null)
      await out(DateTime.fromISO(admitted).plus({ hours: hoAfterHours }).toFormat("yyyy-MM-dd'T'HH:mm"), 'HELSEOPPL_SOKNAD', patient, { bydel });
  };
  const answered = async (id: number, local: string, answerType = 'DIALOG_SVAR') => {
    at(local);
    const answerId = randomUUID();
    await seedMessage(store, { message: { msg_id: answerId, direction: 'in', sender_her_id: '9910005', msg_type: answerType, state: 'forwarded' } });
    at(local);
    await seedUpdate(store, id, { answer_state: 'answered', answered_at: now.toISOString(), answer_msg_id: answerId, answer_rule: 'conversation-ref' }, [
      { stage: 'answer', event: 'answered', detail: { answerMsgId: answerId, msgType: answerType } },
    ]);
  };
  const left = (local: string, type: 'LOG_UTSKREVET' | 'LOG_DOD' | 'LOG_AVMELDING', patient: string) =>
    out(local, type, patient, { eventTime: type === 'LOG_AVMELDING' ? local.slice(0, 10) : `${local}:00` });

  // S1 Frogner: answered Monday "cannot take her until Thursday"; discharged Friday.
  await stay('2026-03-06T10:00', FROGNER, 'k1', 4);
  const s1 = await notice('cannotUntilThursday', '2026-03-09T09:00', FROGNER, 'k1', '2026-03-09');
  await answered(s1, '2026-03-09T10:30');
  at('2026-03-11T14:00');
  await seedUpdate(store, s1, {}, [{ stage: 'answer', event: 'kommune-follow-up', detail: { answerMsgId: randomUUID(), msgType: 'DIALOG_NOTAT' } }]);
  await left('2026-03-13T12:00', 'LOG_UTSKREVET', 'k1');

  // S2 Frogner: never answered, discharged Thursday.
  await stay('2026-03-08T20:00', FROGNER, 'k2', 2);
  await notice('noAnswer', '2026-03-09T06:30', FROGNER, 'k2', '2026-03-09');
  await left('2026-03-12T12:00', 'LOG_UTSKREVET', 'k2');

  // S3 Frogner: cancelled on Tuesday.
  await stay('2026-03-06T09:00', FROGNER, 'k3', 1);
  const s3 = await notice('cancelled', '2026-03-09T11:00', FROGNER, 'k3', '2026-03-09');
  await out('2026-03-10T09:00', 'LOG_UTSKRIVNINGSKLAR', 'k3', { bydel: FROGNER, eventTime: '2026-03-09', expect: true, cancellation: true });
  await seedUpdate(store, s3, { answer_state: 'closed', closed_by: 'cancellation' });

  // S4 Sagene: sent Monday, sent again Wednesday for the same stay; never answered; discharged Friday.
  await stay('2026-03-08T20:00', SAGENE, 'k4', 12);
  const s4a = await notice('sentTwiceFirst', '2026-03-09T12:00', SAGENE, 'k4', '2026-03-09');
  await seedUpdate(store, s4a, { answer_state: 'closed', closed_by: 'superseded' });
  await notice('sentTwice', '2026-03-11T09:00', SAGENE, 'k4', '2026-03-09');
  await left('2026-03-13T10:00', 'LOG_UTSKREVET', 'k4');

  // S5 Sagene: admitted Saturday, no Helseopplysninger; never answered; died Wednesday.
  await stay('2026-03-07T15:00', SAGENE, 'k5', null);
  await notice('noHelseopplysninger', '2026-03-09T13:00', SAGENE, 'k5', '2026-03-09');
  await left('2026-03-11T11:00', 'LOG_DOD', 'k5');

  // S6 Sagene: Helseopplysninger two days after the admission; notice Tuesday evening; discharged Wednesday.
  await stay('2026-03-05T10:00', SAGENE, 'k6', 50);
  await notice('lateHelseopplysninger', '2026-03-10T18:30', SAGENE, 'k6', '2026-03-10');
  await left('2026-03-11T10:00', 'LOG_UTSKREVET', 'k6');

  // January–February: J1 notified Wednesday 28 January, never answered, discharged 3 March;
  // F1 notified 10 February, answered that day, place offered 20 February, discharged 25 February.
  await stay('2026-01-27T10:00', FROGNER, 'j1', 3);
  await notice('january', '2026-01-28T10:00', FROGNER, 'j1', '2026-01-28');
  await left('2026-03-03T12:00', 'LOG_UTSKREVET', 'j1');
  await stay('2026-02-09T10:00', FROGNER, 'f1', 3);
  const f1 = await notice('february', '2026-02-10T10:00', FROGNER, 'f1', '2026-02-10');
  await answered(f1, '2026-02-10T11:00');
  await left('2026-02-25T12:00', 'LOG_UTSKREVET', 'f1');
  await store.close();
  return cases;
}

const bydelOfHerId = () => undefined;
const period = async (url: string, from: string, to: string) => {
  const store = new Store(await openDatabase(url));
  try {
    return await loadPeriodLedger(store, calendar, { from, to, now: NOW, bydelOfHerId });
  } finally {
    await store.close();
  }
};
const line = (entries: LedgerEntry[], msgId: string) => {
  const found = entries.find((e) => e.msgId === msgId);
  if (!found) throw new Error(`no ledger line for ${msgId}`);
  return found;
};
const settle = async (url: string, msgId: string, offered: string, reason: string) => {
  const store = new Store(await openDatabase(url));
  try {
    return await settleNotice(store, msgId, offered, { actor: 'saksbehandler', via: 'cli', reason });
  } finally {
    await store.close();
  }
};

for (const backend of [sqliteBackend(), postgresBackend()] as Backend[]) {
  describe(`overtid ledger a bydel can pay by (${backend.dialect})`, function () {
    this.timeout(60000);
    let url: string;
    let c: Cases;

    before(async () => {
      url = await backend.create();
      c = await script(url);
    });
    after(() => backend.removeAll());

    it('the kommune says it cannot take the patient until Thursday: Mon–Wed are payable once the offer is recorded', async () => {
      let s1 = line((await period(url, '2026-03-09', '2026-03-15')).entries, c.cannotUntilThursday);
      // every døgn to the discharge is a candidate, whatever the answer; until a caseworker records the offer, none after the answer is payable
      expect(s1).to.deep.include({
        utskrivningsklarDate: '2026-03-09',
        answerMsgType: 'DIALOG_SVAR',
        endedBy: 'utskrevet',
        endedDate: '2026-03-13',
        candidateDogn: 4,
        payableDogn: 0,
        unsettledDogn: 4,
        settlement: null,
        preconditions: { status: 'met', missing: [] },
      });
      expect(s1.laterKommuneMessage?.msgType).to.equal('DIALOG_NOTAT');
      const r = await settle(url, c.cannotUntilThursday, '2026-03-12', 'kan ikke ta imot før torsdag');
      expect(r.ok, JSON.stringify(r)).to.equal(true);
      s1 = line((await period(url, '2026-03-09', '2026-03-15')).entries, c.cannotUntilThursday);
      expect(s1).to.include({ candidateDogn: 4, payableDogn: 3, unsettledDogn: 0 });
      expect(s1.settlement).to.include({ offeredDate: '2026-03-12', reason: 'kan ikke ta imot før torsdag' });
      expect(s1.payableRange).to.deep.equal(['2026-03-09', '2026-03-12']);
    });

    it('no answer, discharged Thursday: every døgn from the utskrivningsklar day is payable', async () => {
      const s2 = line((await period(url, '2026-03-09', '2026-03-15')).entries, c.noAnswer);
      expect(s2).to.include({ answeredAt: null, endedBy: 'utskrevet', candidateDogn: 3, payableDogn: 3, unsettledDogn: 0 });
      expect(s2.payableRange).to.deep.equal(['2026-03-09', '2026-03-12']);
    });

    it('a notice cancelled on Tuesday pays nothing', async () => {
      const { entries, carriedOver } = await period(url, '2026-03-09', '2026-03-15');
      expect([...entries, ...carriedOver].map((e) => e.msgId)).not.to.include(c.cancelled);
    });

    it('a notice sent again for the same stay counts once, from the first', async () => {
      const { entries } = await period(url, '2026-03-09', '2026-03-15');
      expect(entries.map((e) => e.msgId)).not.to.include(c.sentTwiceFirst);
      expect(line(entries, c.sentTwice)).to.include({ startDate: '2026-03-09', candidateDogn: 4, payableDogn: 4 });
    });

    it('no Helseopplysninger before the notice: døgn shown, not payable, precondition missing', async () => {
      const { entries } = await period(url, '2026-03-09', '2026-03-15');
      expect(line(entries, c.noHelseopplysninger)).to.deep.include({
        endedBy: 'død',
        candidateDogn: 2,
        payableDogn: 0,
        payableRange: null,
        preconditions: { status: 'missing', missing: ['helseopplysninger'] },
      });
      expect(line(entries, c.lateHelseopplysninger)).to.deep.include({
        candidateDogn: 1,
        payableDogn: 0,
        preconditions: { status: 'missing', missing: ['helseopplysninger-within-24h'] },
      });
    });

    it('per bydel: the døgn and the indicators beside the national figures', async () => {
      const { entries, carriedOver } = await period(url, '2026-03-09', '2026-03-15');
      expect(carriedOver).to.deep.equal([]);
      const rows = overtidReport(entries, carriedOver);
      const pick = (bydel: string) => {
        const r = rows.find((x) => x.bydel === bydel)!;
        const { notices, candidateDogn, payableDogn, unsettledDogn, preconditionsMissing, sentDayPct, sentEveningPct, sentNightPct, diedPct } = r;
        return { notices, candidateDogn, payableDogn, unsettledDogn, preconditionsMissing, sentDayPct, sentEveningPct, sentNightPct, diedPct };
      };
      // Frogner: S1 (4 candidate, 3 payable after the settlement) + S2 (3, 3); both sent 06:30 and 09:00
      expect(pick(FROGNER)).to.deep.equal({
        notices: 2,
        candidateDogn: 7,
        payableDogn: 6,
        unsettledDogn: 0,
        preconditionsMissing: 0,
        sentDayPct: 50,
        sentEveningPct: 0,
        sentNightPct: 50,
        diedPct: 0,
      });
      // Sagene: S4 (4, 4), S5 (2, 0, died), S6 (1, 0, sent 18:30)
      expect(pick(SAGENE)).to.deep.equal({
        notices: 3,
        candidateDogn: 7,
        payableDogn: 4,
        unsettledDogn: 0,
        preconditionsMissing: 2,
        sentDayPct: 66.7,
        sentEveningPct: 33.3,
        sentNightPct: 0,
        diedPct: 33.3,
      });
      const all = rows.find((r) => r.bydel === 'alle')!;
      // hours from the (last) notice to leaving: S1 99, S2 77.5, S4 49, S5 46, S6 15.5
      expect(all).to.include({
        notices: 5,
        discharged24hPct: 20,
        discharged2to7dPct: 80,
        discharged8to30dPct: 0,
        dischargedOver30dPct: 0,
        answeredWithinDeadlinePct: 20,
      });
    });

    it('a February report stops at 28 February, and January + February equals the report for both', async () => {
      expect((await settle(url, c.february, '2026-02-20', 'plass tilbudt 20.02.')).ok).to.equal(true);
      const jan = await period(url, '2026-01-01', '2026-01-31');
      const feb = await period(url, '2026-02-01', '2026-02-28');
      const both = await period(url, '2026-01-01', '2026-02-28');
      // J1: 28–31 January (4) in January, the whole of February (28) carried over; F1: 10–24 February (15), payable to the offer (10)
      expect(line(jan.entries, c.january)).to.include({ candidateDogn: 4, payableDogn: 4 });
      expect(feb.entries.map((e) => e.msgId)).to.deep.equal([c.february]);
      expect(line(feb.carriedOver, c.january)).to.include({ candidateDogn: 28, payableDogn: 28 });
      expect(line(feb.carriedOver, c.january).candidateRange).to.deep.equal(['2026-02-01', '2026-03-01']);
      expect(line(feb.entries, c.february)).to.include({ candidateDogn: 15, payableDogn: 10 });
      const total = (p: Awaited<ReturnType<typeof period>>) => {
        const alle = overtidReport(p.entries, p.carriedOver).find((r) => r.bydel === 'alle')!;
        return { notices: alle.notices, candidateDogn: alle.candidateDogn, payableDogn: alle.payableDogn, unsettledDogn: alle.unsettledDogn };
      };
      expect(total(jan)).to.deep.equal({ notices: 1, candidateDogn: 4, payableDogn: 4, unsettledDogn: 0 });
      expect(total(feb)).to.deep.equal({ notices: 1, candidateDogn: 43, payableDogn: 38, unsettledDogn: 0 });
      expect(total(both)).to.deep.equal({ notices: 2, candidateDogn: 47, payableDogn: 42, unsettledDogn: 0 });
    });

    it('settle refuses an unanswered, a superseded and an unknown notice', async () => {
      expect(await settle(url, c.noAnswer, '2026-03-11', 'x')).to.include({ ok: false, status: 'conflict' });
      expect(await settle(url, c.sentTwiceFirst, '2026-03-11', 'x')).to.include({ ok: false, status: 'conflict' });
      expect(await settle(url, randomUUID(), '2026-03-11', 'x')).to.include({ ok: false, status: 'not-found' });
      expect(await settle(url, c.cannotUntilThursday, '2026-03-11', ' ')).to.include({ ok: false, status: 'invalid' });
    });
  });
}

describe('plo-gateway report overtid settle and the report formats (CLI)', function () {
  this.timeout(60000);
  const backend = sqliteBackend();
  let env: Record<string, string>;
  let url: string;
  let c: Cases;

  before(async () => {
    url = await backend.create();
    c = await script(url);
    const file = join(mkdtempSync(join(tmpdir(), 'gw-cfg-')), 'config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(JSON.stringify(config)), database: { url } }));
    env = { GATEWAY_CONFIG: file };
  });
  after(() => backend.removeAll());

  it('settle is audited and shown on the notice timeline; a second settlement replaces the first', async () => {
    const args = ['report', 'overtid', 'settle', c.cannotUntilThursday, '--reason', 'kan ikke ta imot før torsdag', '--actor', 'kari', '--json'];
    const first = await cli([...args.slice(0, 4), '--offered', '2026-03-13', ...args.slice(4)], { env });
    expect(first.status, first.stderr).to.equal(0);
    const second = await cli([...args.slice(0, 4), '--offered', '2026-03-12', ...args.slice(4)], { env });
    expect(second.status, second.stderr).to.equal(0);
    expect(JSON.parse(second.stdout)).to.include({ msgId: c.cannotUntilThursday, offeredDate: '2026-03-12', replaced: '2026-03-13' });
    const refused = await cli(['report', 'overtid', 'settle', c.noAnswer, '--offered', '2026-03-12', '--reason', 'x'], { env });
    expect(refused.status).to.equal(1);
    expect(refused.stderr).to.match(/not answered/);
    const store = new Store(await openDatabase(url));
    try {
      const audit = await store.db.kysely.selectFrom('audit').selectAll().where('action', '=', 'overtid.settle').orderBy('id').execute();
      expect(audit.map((a) => [a.actor, a.target, a.reason])).to.deep.equal([
        ['kari', `message:${c.cannotUntilThursday}`, 'kan ikke ta imot før torsdag'],
        ['kari', `message:${c.cannotUntilThursday}`, 'kan ikke ta imot før torsdag'],
      ]);
      const [{ events }] = await store.timeline(c.cannotUntilThursday);
      expect(events.filter((e) => e.event === 'overtid-settled').map((e) => JSON.parse(e.detail ?? '{}').offeredDate)).to.deep.equal([
        '2026-03-13',
        '2026-03-12',
      ]);
    } finally {
      await store.close();
    }
  });

  it('the CSV and the JSON carry the same figures, and the CSV ends with the national line', async () => {
    const csv = await cli(['report', 'overtid', '--from', '2026-03-09', '--to', '2026-03-15', '--format', 'csv'], { env });
    const json = await cli(['report', 'overtid', '--from', '2026-03-09', '--to', '2026-03-15', '--format', 'json'], { env });
    expect(csv.status, csv.stderr).to.equal(0);
    expect(json.status, json.stderr).to.equal(0);
    const [header, ...lines] = csv.stdout.trim().split('\n');
    const columns = header.split(',');
    const report = JSON.parse(json.stdout) as { bydeler: Record<string, unknown>[]; national: { figures: Record<string, { percent: number }> } };
    expect(lines).to.have.length(report.bydeler.length + 1);
    report.bydeler.forEach((row, i) => {
      const cells = lines[i].split(',');
      columns.forEach((column, j) => {
        expect(cells[j], `${row.bydel} ${column}`).to.equal(row[column] === null ? '' : String(row[column]));
      });
    });
    const national = Object.fromEntries(
      lines
        .at(-1)!
        .split(',')
        .map((v, j) => [columns[j], v]),
    );
    expect(national).to.include({ bydel: 'nasjonalt', sentDayPct: '94.9', avmeldtPct: '6.1', discharged24hPct: '90.4', diedPct: '0.5', payableDogn: '' });
    expect(report.national.figures.sentDay.percent).to.equal(94.9);
    const alle = report.bydeler.find((r) => r.bydel === 'alle')!;
    expect(alle).to.include({ candidateDogn: 14, payableDogn: 10 });
  });

  it('--format html is one self-contained page: in headless Chromium every chart renders with data, and nothing is fetched', async () => {
    const executablePath = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
    if (!executablePath) throw new Error('no Chromium: apt-get install chromium (or set CHROMIUM_PATH)');
    const html = await cli(['report', 'overtid', '--from', '2026-03-09', '--to', '2026-03-15', '--format', 'html'], { env });
    expect(html.status, html.stderr).to.equal(0);
    expect(html.stdout).not.to.match(/<script[^>]+src=|<link[^>]+href=|https?:\/\/[^"'\s]*\.(js|css)\b/);
    const dir = mkdtempSync(join(tmpdir(), 'gw-overtid-html-'));
    const file = join(dir, 'overtid.html');
    writeFileSync(file, html.stdout);
    const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
      const requested: string[] = [];
      await page.route('**/*', (route) => {
        const u = route.request().url();
        if (u.startsWith('file:')) return route.continue();
        requested.push(u);
        return route.abort();
      });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`file://${file}`);
      await page.waitForSelector('html[data-charts="rendered"]', { timeout: 10000 });
      const charts = await page.evaluate(() => {
        const w = window as unknown as {
          Chart: { getChart(c: HTMLCanvasElement): { data: { labels: unknown[]; datasets: { data: number[] }[] } } | undefined };
        };
        return ['chart-dogn', 'chart-answers', 'chart-weekly'].map((id) => {
          const canvas = document.getElementById(id) as HTMLCanvasElement;
          const chart = w.Chart.getChart(canvas);
          const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
          return {
            id,
            labels: chart?.data.labels.length ?? 0,
            total: chart ? chart.data.datasets.reduce((n, d) => n + d.data.reduce((a, b) => a + b, 0), 0) : 0,
            painted,
            width: canvas.width,
          };
        });
      });
      for (const c of charts) {
        expect(c.labels, c.id).to.be.greaterThan(0);
        expect(c.total, c.id).to.be.greaterThan(0);
        expect(c.painted, `${c.id} has pixels drawn`).to.be.greaterThan(1000);
      }
      // the bars are the ledger's figures: Frogner 6 payable, Sagene 4; the weekly trend is the same 14 candidate døgn
      const dogn = await page.evaluate(() => JSON.parse(document.getElementById('report-data')!.textContent ?? '{}'));
      expect(dogn.dogn.payable).to.deep.equal([4, 6]);
      expect(dogn.weekly).to.deep.equal([{ week: '2026-03-09', candidateDogn: 14, payableDogn: 10 }]);
      expect(await page.locator('#indicators tr', { hasText: 'Sendt 08–16' }).locator('td').last().textContent()).to.equal('94.9');
      const shot = join(dir, 'overtid.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).to.be.greaterThan(20000);
      expect(requested, 'nothing fetched from the network').to.deep.equal([]);
      expect(errors).to.deep.equal([]);
    } finally {
      await browser.close();
      // GATEWAY_KEEP_SCREENSHOT=1 keeps the page and its screenshot to look at
      if (!process.env.GATEWAY_KEEP_SCREENSHOT) rmSync(dir, { recursive: true, force: true });
      else console.log(`kept ${dir}`);
    }
  });

  it('report overtid without --from is a usage error', async () => {
    expect((await cli(['report', 'overtid', '--to', '2026-03-15'], { env })).status).to.equal(2);
  });
});
