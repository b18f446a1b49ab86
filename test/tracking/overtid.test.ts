// The overtid report's arithmetic, without a store (the ledger on scripted weeks is in
// overtid.int.test.ts and overtidLedger.int.test.ts).
import { expect } from 'chai';
import { DateTime } from 'luxon';
import { loadConfig } from '../../src/config/config.js';
import { workingCalendar } from '../../src/tracking/deadlines.js';
import {
  type FollowUpRow,
  ledgerEntry,
  type NoticeRow,
  nationalRow,
  type PriorRow,
  percentile,
  preconditionsOf,
  sentBand,
  weeklyDogn,
} from '../../src/tracking/overtid.js';

describe('nearest-rank percentile', () => {
  it('takes a value that occurred', () => {
    expect(percentile([], 50)).to.equal(null);
    expect(percentile([10, 20, 30, 40], 50)).to.equal(20);
    expect(percentile([10, 20, 30, 40], 90)).to.equal(40);
    expect(percentile([7], 90)).to.equal(7);
  });
});

describe('overtid ledger arithmetic', () => {
  const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const calendar = workingCalendar(loaded.config);
  const at = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toUTC().toISO()!;
  const notice = (o: Partial<NoticeRow> = {}): NoticeRow => ({
    msgId: 'n',
    bydel: '030105',
    createdAt: at('2026-03-09T09:00'),
    eventTime: '2026-03-09',
    answeredAt: null,
    answerDueAt: at('2026-03-09T11:00'),
    patientKey: 'k',
    conversationId: null,
    preconditions: { status: 'met', missing: [] },
    ...o,
  });
  const discharged = (local: string): FollowUpRow => ({
    msgType: 'LOG_UTSKREVET',
    createdAt: at(local),
    eventTime: `${local}:00`,
    patientKey: 'k',
    conversationId: null,
  });
  const week = { from: '2026-03-09', until: '2026-03-16' };

  it("sorts the time a notice was sent into Helsedirektoratet's bands (Tabell 10: 08:00–16:00, 16:01–00:00, 00:01–07:59)", () => {
    const band = (local: string) => sentBand(at(local), calendar);
    expect(['07:59', '08:00', '16:00', '16:01', '23:59', '00:00', '00:01'].map((t) => band(`2026-03-09T${t}`))).to.deep.equal([
      'night',
      'day',
      'day',
      'evening',
      'evening',
      'evening',
      'night',
    ]);
  });

  it('does not stop counting at the answer: after it the døgn wait for a settlement, then those before the offer are payable', () => {
    const answered = notice({ answeredAt: at('2026-03-10T10:00') });
    const open = ledgerEntry(answered, [discharged('2026-03-13T12:00')], calendar, '2026-03-16', week);
    expect(open).to.include({ candidateDogn: 4, payableDogn: 1, unsettledDogn: 3, overtidigeDogn: 1 });
    const settled = ledgerEntry(
      { ...answered, settlement: { offeredDate: '2026-03-12', reason: 'r', at: at('2026-03-10T12:00') } },
      [discharged('2026-03-13T12:00')],
      calendar,
      '2026-03-16',
      week,
    );
    expect(settled).to.include({ candidateDogn: 4, payableDogn: 3, unsettledDogn: 0 });
    const missing = ledgerEntry({ ...answered, preconditions: { status: 'missing', missing: ['helseopplysninger'] } }, [], calendar, '2026-03-16', week);
    expect(missing).to.include({ candidateDogn: 7, payableDogn: 0, unsettledDogn: 0, episodeOpen: true });
  });

  it('counts only the døgn inside the period', () => {
    const e = ledgerEntry(notice(), [discharged('2026-03-20T12:00')], calendar, '2026-03-16', { from: '2026-03-11', until: '2026-03-16' });
    expect(e).to.include({ candidateDogn: 5, payableDogn: 5 });
    expect(e.candidateRange).to.deep.equal(['2026-03-11', '2026-03-16']);
    expect(weeklyDogn([e])).to.deep.equal([{ week: '2026-03-09', candidateDogn: 5, payableDogn: 5 }]);
  });

  it('preconditions: Helseopplysninger to the bydel after the admission and within 24 h of it', () => {
    const row = (msgType: string, local: string, bydel = '030105'): PriorRow => ({ msgType, createdAt: at(local), eventTime: null, patientKey: 'k', bydel });
    const of = (prior: PriorRow[]) => preconditionsOf({ patientKey: 'k', bydel: '030105', firstAt: at('2026-03-09T09:00') }, prior, calendar);
    expect(of([row('LOG_INNLAGT', '2026-03-06T10:00'), row('HELSEOPPL_SOKNAD', '2026-03-06T14:00')]).status).to.equal('met');
    expect(of([row('HELSEOPPL_SOKNAD', '2026-03-06T14:00')]).status, 'no admission seen').to.equal('met');
    expect(of([row('LOG_INNLAGT', '2026-03-06T10:00'), row('HELSEOPPL_SOKNAD', '2026-03-06T14:00', '030103')]).missing).to.deep.equal(['helseopplysninger']);
    expect(of([row('LOG_INNLAGT', '2026-03-06T10:00'), row('HELSEOPPL_SOKNAD', '2026-03-07T10:01')]).missing).to.deep.equal(['helseopplysninger-within-24h']);
    expect(of([row('LOG_INNLAGT', '2026-03-06T10:00'), row('HELSEOPPL_SOKNAD', '2026-03-09T09:30')]).missing, 'after the notice').to.deep.equal([
      'helseopplysninger',
    ]);
    expect(of([]).status).to.equal('unknown');
  });

  it("the national line is the report's percentages", () => {
    expect(nationalRow()).to.deep.equal({
      sentDayPct: 94.9,
      sentEveningPct: 2.6,
      sentNightPct: 2.5,
      avmeldtPct: 6.1,
      diedPct: 0.5,
      discharged24hPct: 90.4,
      discharged2to7dPct: 8.3,
      discharged8to30dPct: 1.1,
      dischargedOver30dPct: 0.2,
    });
  });
});
