// Deadlines and alerts end to end: a real gateway on the real RabbitMQ and a real SQLite file,
// with the wall clock under the test's control (sinon fakes Date only; timers stay real). What
// the bydel sends back (acks, AppRecs, answers, avmeldinger) is written to the store the way the
// inbound path records it; the inbound e2e tests cover the wire.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { DateTime } from 'luxon';
import sinon from 'sinon';
import type { GatewayConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import type { ExpectationKind } from '../../src/shared/vocabulary.js';
import type { Alert } from '../../src/tracking/alerts.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { LogCapture, Peer, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const FROGNER_KD0501 = '9920005';
const FROGNER_KP02 = '9930005';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const PERSONAL = /15076500565|Gundersen|Roland|Flåklypa|Testveien|Hemmeligveien|0484|Ola Nordmann/;

const oslo = (local: string) => DateTime.fromISO(local, { zone: 'Europe/Oslo' }).toJSDate();

describe('deadlines and alerts, end to end (RabbitMQ + SQLite, controlled clock)', function () {
  this.timeout(60000);
  let clock: sinon.SinonFakeTimers;
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let db: Db;
  const tap = `t${randomUUID().slice(0, 8)}.alerts-tap`;
  const seen: Alert[] = [];

  before(async () => {
    clock = sinon.useFakeTimers({ now: oslo('2026-03-27T14:30'), toFake: ['Date'] });
    config = testConfig();
    logs = new LogCapture();
    gateway = new Gateway(config, createLogger(config.logLevel, logs));
    // The test runs each tick itself, at the instants it chooses.
    await gateway.start({ http: false, deadlines: false });
    peer = await Peer.connect();
    await peer.ch.assertQueue(tap, { exclusive: true });
    await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
    db = await openDatabase(config.database.url);
  });

  after(async () => {
    clock?.restore();
    await db?.kysely.destroy();
    await gateway?.stop();
    await peer?.ch.deleteQueue(tap).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
  });

  /** Moves the clock to `local` (Oslo), runs one tick, returns the alerts it published. */
  async function tickAt(local: string): Promise<Alert[]> {
    clock.setSystemTime(oslo(local));
    await gateway.deadlines!.tick();
    const alerts = (await peer.take(tap, 1000, 300)).map((m) => {
      const text = m.content.toString('utf8');
      expect(text).not.to.match(PERSONAL);
      return JSON.parse(text) as Alert;
    });
    seen.push(...alerts);
    return alerts;
  }

  const about = (alerts: Alert[], msgId: string) => alerts.filter((a) => a.msgId === msgId);

  /** The EPJ sends a notice now; returns its MsgId once the bydel has it. */
  async function send(sample: string, opts: { postalCode?: string; street?: string; genDate?: string } = {}, bydelHerId = FROGNER_KD0501): Promise<string> {
    const { xml, msgId } = readdressToOslo(readSample(sample), { postalCode: opts.postalCode ?? '0350', street: opts.street });
    const body = opts.genDate ? xml.replace(/<GenDate>[^<]*<\/GenDate>/, `<GenDate>${opts.genDate}</GenDate>`) : xml;
    await peer.send(config.broker.queues.epjOutbound, body);
    if (bydelHerId) expect(await peer.take(`${config.broker.receiverQueuePrefix}${bydelHerId}`, 1, 5000)).to.have.length(1);
    return msgId;
  }

  async function messageId(msgId: string): Promise<number> {
    const row = await eventually(
      `message ${msgId} to be stored`,
      () => db.kysely.selectFrom('messages').select('id').where('msg_id', '=', msgId).executeTakeFirst(),
      5000,
    );
    return row.id;
  }

  async function expectation(msgId: string, kind: ExpectationKind) {
    return db.kysely
      .selectFrom('expectations')
      .selectAll()
      .where('message_id', '=', await messageId(msgId))
      .where('kind', '=', kind)
      .executeTakeFirstOrThrow();
  }

  /** What the inbound path records when something comes back (DESIGN §3 B). */
  async function resolve(msgId: string, kind: ExpectationKind, state: 'met' | 'closed', by: string, message: Record<string, string> = {}) {
    const id = await messageId(msgId);
    const at = new Date().toISOString();
    if (Object.keys(message).length) await db.kysely.updateTable('messages').set(message).where('id', '=', id).execute();
    await db.kysely
      .updateTable('expectations')
      .set({ state, resolved_at: at, resolved_by: by })
      .where('message_id', '=', id)
      .where('kind', '=', kind)
      .execute();
  }

  const receiptsArrive = async (msgId: string) => {
    await resolve(msgId, 'transport-ack', 'met', 'ebxml:acknowledgment', { transport_state: 'acked' });
    await resolve(msgId, 'apprec', 'met', 'apprec:ok', { apprec_status: 'ok' });
  };

  let friday: string;
  let firingId: string;

  it('a notice sent Friday 14:30 before the DST weekend is due Monday 09:30 (07:30Z), in working time', async () => {
    clock.setSystemTime(oslo('2026-03-27T14:30'));
    friday = await send(UTSKRIVNINGSKLAR);
    const answer = await expectation(friday, 'answer');
    expect(answer.due_at).to.equal('2026-03-30T07:30:00.000Z');
    expect((await expectation(friday, 'transport-ack')).due_at).to.equal('2026-03-27T13:45:00.000Z');
    expect((await expectation(friday, 'apprec')).due_at).to.equal('2026-03-27T14:30:00.000Z');
    // The overtid ledger counts from the utskrivningsklar date (Hendelsekode 3) stored with it.
    const stored = await db.kysely.selectFrom('messages').select('event_time').where('msg_id', '=', friday).executeTakeFirstOrThrow();
    expect(stored.event_time).to.equal('2018-01-31');
    await receiptsArrive(friday);
  });

  it('nothing fires before the due time; at 09:31 exactly one firing utskrivningsklar-unanswered', async () => {
    expect(about(await tickAt('2026-03-30T09:29'), friday)).to.deep.equal([]);
    const fired = about(await tickAt('2026-03-30T09:31'), friday);
    expect(fired).to.have.length(1);
    expect(fired[0]).to.include({
      kind: 'utskrivningsklar-unanswered',
      state: 'firing',
      severity: 'warning',
      eventId: 'GW-3001',
      msgId: friday,
      msgType: 'LOG_UTSKRIVNINGSKLAR',
      bydel: '030105',
      receiverHerId: FROGNER_KD0501,
      dueAt: '2026-03-30T07:30:00.000Z',
      firedAt: '2026-03-30T07:31:00.000Z',
    });
    expect(fired[0].conversationId).to.be.a('string');
    expect(fired[0].text).to.contain('2026-03-30 09:30');
    firingId = fired[0].id;
    expect(about(await tickAt('2026-03-30T09:32'), friday)).to.deep.equal([]);
    expect(logs.text()).to.match(/"event":"GW-3001"[^\n]*"alertState":"firing"/);
  });

  it('while it stays open: one reminder at the end of the working day, never one per tick', async () => {
    expect(about(await tickAt('2026-03-30T14:59'), friday)).to.deep.equal([]);
    const reminded = about(await tickAt('2026-03-30T15:00:30'), friday);
    expect(reminded).to.have.length(1);
    expect(reminded[0]).to.include({ state: 'firing', reminder: 1, firingId });
    expect(about(await tickAt('2026-03-30T15:01'), friday)).to.deep.equal([]);
    expect(about(await tickAt('2026-03-30T22:00'), friday)).to.deep.equal([]);
  });

  it('the answer arrives late: one resolved, then silence', async () => {
    clock.setSystemTime(oslo('2026-03-31T10:00'));
    await resolve(friday, 'answer', 'met', 'answer:conversation-ref', { answer_state: 'answered', answered_at: new Date().toISOString() });
    const resolved = about(await tickAt('2026-03-31T10:00:30'), friday);
    expect(resolved).to.have.length(1);
    expect(resolved[0]).to.include({ kind: 'utskrivningsklar-unanswered', state: 'resolved', firingId });
    expect(about(await tickAt('2026-03-31T15:30'), friday)).to.deep.equal([]);
    const events = await db.kysely
      .selectFrom('events')
      .select('event')
      .where('message_id', '=', await messageId(friday))
      .where('stage', '=', 'deadline')
      .execute();
    expect(events.map((e) => e.event)).to.deep.equal(['alert-firing', 'alert-reminder', 'alert-resolved']);
  });

  it('an answer before the due time: no alert at all', async () => {
    clock.setSystemTime(oslo('2026-04-08T10:00'));
    const early = await send(UTSKRIVNINGSKLAR);
    await receiptsArrive(early);
    clock.setSystemTime(oslo('2026-04-08T10:45'));
    await resolve(early, 'answer', 'met', 'answer:conversation-ref', { answer_state: 'answered', answered_at: new Date().toISOString() });
    expect(about(await tickAt('2026-04-08T12:01'), early)).to.deep.equal([]);
    expect(about(await tickAt('2026-04-08T15:30'), early)).to.deep.equal([]);
  });

  it('an avmelding withdraws the notice: the firing alert is resolved', async () => {
    clock.setSystemTime(oslo('2026-04-08T10:00'));
    const withdrawn = await send(UTSKRIVNINGSKLAR);
    await receiptsArrive(withdrawn);
    const fired = about(await tickAt('2026-04-08T12:00:30'), withdrawn);
    expect(fired.map((a) => `${a.kind}/${a.state}`)).to.deep.equal(['utskrivningsklar-unanswered/firing']);
    await resolve(withdrawn, 'answer', 'closed', 'LOG_AVMELDING', { answer_state: 'closed', closed_by: 'LOG_AVMELDING' });
    const resolved = about(await tickAt('2026-04-08T13:00'), withdrawn);
    expect(resolved).to.have.length(1);
    expect(resolved[0]).to.include({ state: 'resolved', firingId: fired[0].id });
    expect(resolved[0].text).to.contain('by LOG_AVMELDING');
  });

  it('no transport acknowledgment: resent three times with the same eb:MessageId, PT30M apart, then transport-ack-missing goes critical', async () => {
    clock.setSystemTime(oslo('2026-04-09T09:00'));
    const unacked = await send(UTSKRIVNINGSKLAR);
    await resolve(unacked, 'apprec', 'met', 'apprec:ok', { apprec_status: 'ok' });
    await resolve(unacked, 'answer', 'met', 'answer:conversation-ref', { answer_state: 'answered', answered_at: new Date().toISOString() });
    const queue = `${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`;
    // copies of this message at the bydel (other tests' resends may be there too)
    const copies = async (timeoutMs: number) => (await peer.take(queue, 50, timeoutMs)).filter((m) => m.properties.headers?.['msg-id'] === unacked);
    const first = await db.kysely
      .selectFrom('outbox')
      .select('body')
      .where('message_id', '=', await messageId(unacked))
      .where('purpose', '=', 'deliver')
      .orderBy('id')
      .executeTakeFirstOrThrow();
    expect(about(await tickAt('2026-04-09T09:14'), unacked)).to.deep.equal([]);
    for (const local of ['2026-04-09T09:15:30', '2026-04-09T09:45:40', '2026-04-09T10:15:50']) {
      expect(about(await tickAt(local), unacked), `no alert while resending (${local})`).to.deep.equal([]);
      const again = await copies(1000);
      expect(again, local).to.have.length(1);
      expect(again[0].content.equals(Buffer.from(first.body)), 'byte for byte the same ebXML message').to.equal(true);
    }
    expect(await copies(300), 'not before its interval').to.have.length(0);
    const fired = about(await tickAt('2026-04-09T10:46'), unacked);
    expect(fired.map((a) => `${a.kind}/${a.state}/${a.severity}/${a.eventId}`)).to.deep.equal(['transport-ack-missing/firing/critical/GW-3005']);
    expect(fired[0].text).to.contain('after 3 resends');
    expect(
      about(await tickAt('2026-04-09T11:20'), unacked).filter((a) => a.state === 'firing'),
      'resending has stopped',
    ).to.deep.equal([]);
    expect(await copies(300)).to.have.length(0);
    const row = await expectation(unacked, 'transport-ack');
    expect(row).to.include({ resends: 3, alert_state: 'firing' });
  });

  it('a missing AppRec alerts after PT1H and escalates to critical 96 h after GenDate; a rejection is raised once', async () => {
    clock.setSystemTime(oslo('2026-04-13T10:00'));
    const admitted = await send(INNLAGT, { genDate: '2026-04-13T10:00:00' }, FROGNER_KP02);
    await resolve(admitted, 'transport-ack', 'met', 'ebxml:acknowledgment', { transport_state: 'acked' });
    const missing = about(await tickAt('2026-04-13T11:00:30'), admitted);
    expect(missing.map((a) => `${a.kind}/${a.severity}/${a.eventId}`)).to.deep.equal(['apprec-missing/warning/GW-3003']);

    // No ticks for four days: the reminders that passed meanwhile make one reminder, not four.
    const late = about(await tickAt('2026-04-17T10:00:30'), admitted);
    expect(late.map((a) => `${a.kind}/${a.state}/${a.severity}`).sort()).to.deep.equal([
      'apprec-missing/firing/critical',
      'innleggelsesrapport-missing/firing/warning',
    ]);
    expect(late.find((a) => a.kind === 'apprec-missing')).to.include({ reminder: 1 });
    expect(late.find((a) => a.kind === 'apprec-missing')!.text).to.contain('treat it as negative');

    clock.setSystemTime(oslo('2026-04-17T11:00'));
    await db.kysely
      .updateTable('messages')
      .set({
        apprec_status: 'rejected',
        apprec_at: new Date().toISOString(),
        apprec_errors: JSON.stringify([{ code: 'E21', text: 'Ukjent mottaker for Ola Nordmann' }]),
      })
      .where('msg_id', '=', admitted)
      .execute();
    await resolve(admitted, 'apprec', 'met', 'apprec:rejected');
    const rejected = about(await tickAt('2026-04-17T11:00:30'), admitted);
    expect(rejected.map((a) => `${a.kind}/${a.state}/${a.severity}`).sort()).to.deep.equal([
      'apprec-missing/resolved/critical',
      'apprec-rejected/firing/critical',
    ]);
    expect(rejected.find((a) => a.kind === 'apprec-rejected')).to.include({ eventId: 'GW-3004', msgType: 'LOG_INNLAGT' });
    expect(rejected.find((a) => a.kind === 'apprec-rejected')!.text).to.contain('(E21)');
    expect(about(await tickAt('2026-04-17T11:01'), admitted).filter((a) => a.kind === 'apprec-rejected')).to.deep.equal([]);
  });

  it('unroutable: fires when held, reminds at the end of the day, resolves once ops routed the message', async () => {
    clock.setSystemTime(oslo('2026-04-20T09:00'));
    const held = await send(UTSKRIVNINGSKLAR, { postalCode: '0484', street: 'Hemmeligveien 7' }, '');
    const [fired] = (await peer.take(tap, 1, 5000)).map((m) => JSON.parse(m.content.toString('utf8')) as Alert);
    expect(fired).to.include({ kind: 'unroutable', state: 'firing', msgId: held, eventId: 'GW-4001' });
    const row = await expectation(held, 'routing');
    expect(row).to.include({ state: 'open', alert_state: 'firing', alert_id: fired.id, next_alert_at: '2026-04-20T13:00:00.000Z' });
    expect(about(await tickAt('2026-04-20T12:00'), held)).to.deep.equal([]);
    expect(about(await tickAt('2026-04-20T15:00:30'), held).map((a) => `${a.kind}/${a.reminder}`)).to.deep.equal(['unroutable/1']);

    await db.kysely.updateTable('messages').set({ state: 'published', bydel: '030103' }).where('msg_id', '=', held).execute();
    const resolved = about(await tickAt('2026-04-21T08:30'), held);
    expect(resolved).to.have.length(1);
    expect(resolved[0]).to.include({ kind: 'unroutable', state: 'resolved', firingId: fired.id });
  });

  it('messages pending lists what is still open, soonest due first', async () => {
    const { openExpectations } = await import('../../src/tracking/pending.js');
    const open = await openExpectations(db, { limit: 100 });
    expect(open.length).to.be.greaterThan(0);
    expect(open.map((p) => p.dueAt)).to.deep.equal([...open.map((p) => p.dueAt)].sort());
    expect(open.find((p) => p.kind === 'innleggelsesrapport')).to.include({ msgType: 'LOG_INNLAGT', bydel: '030105' });
  });

  it('no alert carried personal data, and every one was logged with its event id', () => {
    expect(seen.length).to.be.greaterThan(10);
    for (const a of seen) expect(logs.text()).to.contain(a.id);
  });
});
