// Correlation rules on a real store (SQLite and PostgreSQL): which outgoing message a receipt,
// an answer or an avmelding belongs to, and what recording it changes.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { AppRecModel, MsgHeadModel } from '../../src/mapping/model.js';
import type { SignalMessage } from '../../src/mapping/parse.js';
import type { ExpectationKind } from '../../src/shared/vocabulary.js';
import { type Db, openDatabase } from '../../src/tracking/db.js';
import { type Correlation, Receipts } from '../../src/tracking/receipts.js';
import { type NewExpectation, Store } from '../../src/tracking/store.js';
import { testBackends } from '../support/databases.js';
import { seedMessage } from '../support/seed.js';

const DAY = 86_400_000;
const TRACKING = { answerFallbackWindow: 'P14D' } as GatewayConfig['tracking'];
const FROGNER = { l1: '9910005', kd: '9920005', kp: '9930005' };
const ALNA = { l1: '9910012', kd: '9920012' };
const NOTAT = '2.16.578.1.12.4.1.1.9155/1';

function msgHead(type: string, o: { from?: string[]; refs?: [string, string]; temaKodet?: string[]; forsendelsesstatus?: string } = {}): MsgHeadModel {
  const [l1, l2] = o.from ?? [FROGNER.l1, FROGNER.kd];
  return {
    kind: 'msghead',
    type,
    msgId: randomUUID(),
    genDate: '2026-03-02T10:00:00',
    conversationRef: o.refs && { refToParent: o.refs[0], refToConversation: o.refs[1] },
    sender: { level1: { name: 'bydel', herId: l1 }, level2: { name: 'tjeneste', herId: l2 } },
    receiver: { level1: { name: 'sykehus', herId: '59' }, level2: { name: 'avdeling', herId: '90998' } },
    hendelsekoder: [],
    temaKodet: o.temaKodet ?? [],
    forsendelsesstatus: o.forsendelsesstatus,
  };
}

for (const backend of testBackends()) {
  describe(`tracking/receipts: what comes back finds what was sent (${backend.dialect})`, () => {
    let db: Db;
    let store: Store;
    let receipts: Receipts;
    let now: Date;

    before(async () => {
      db = await openDatabase(await backend.create());
      store = new Store(db, () => now);
      receipts = new Receipts(db.kysely, TRACKING);
    });
    after(async () => {
      await store?.close();
      await backend.removeAll();
    });
    beforeEach(() => {
      now = new Date('2026-03-02T09:00:00Z');
    });

    /** An outgoing message as the outbound path stores a delivery, with its open expectations. */
    async function sent(type: string, o: { to?: [string, string]; patientKey?: string; conversationId?: string } = {}) {
      const msgId = randomUUID();
      const ebxmlMessageId = randomUUID();
      const [l1, l2] = o.to ?? [FROGNER.l1, FROGNER.kd];
      const kinds: NewExpectation['kind'][] = [
        'transport-ack',
        'apprec',
        ...(type === 'LOG_UTSKRIVNINGSKLAR' ? (['answer'] as const) : []),
        ...(type === 'LOG_INNLAGT' ? (['innleggelsesrapport'] as const) : []),
      ];
      const { messageId } = await seedMessage(store, {
        message: {
          msg_id: msgId,
          direction: 'out',
          sender_her_id: '90998',
          msg_type: type,
          state: 'published',
          conversation_id: o.conversationId ?? msgId,
          receiver_l1_her_id: l1,
          receiver_l2_her_id: l2,
          ebxml_message_id: ebxmlMessageId,
          patient_key: o.patientKey ?? 'patient-a',
        },
        payloads: [],
        events: [],
        outbox: [],
        expectations: kinds.map((kind) => ({ kind, dueAt: new Date(now.getTime() + DAY) })),
      });
      return { id: messageId, msgId, ebxmlMessageId };
    }
    const row = async (id: number) => (await store.getMessage(id))!;
    const expectation = async (id: number, kind: ExpectationKind) =>
      db.kysely.selectFrom('expectations').select(['state', 'resolved_by']).where('message_id', '=', id).where('kind', '=', kind).executeTakeFirstOrThrow();
    const record = (c: Correlation, by: { msgId: string; msgType: string } = { msgId: randomUUID(), msgType: 'X' }) =>
      store.inTransaction((tx) => receipts.apply(tx, c, by, now));
    const events = async (msgId: string) => (await store.timeline(msgId))[0].events.map((e) => e.event);
    const answerFrom = (from: { refs?: [string, string]; from?: string[] }) => ({
      herIds: from.from ?? [FROGNER.l1, FROGNER.kd],
      patientKey: 'patient-a',
      conversationId: null,
    });

    it('an Acknowledgment finds the message by its ebXML MessageId, but only from the party it was sent to', async () => {
      const out = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp] });
      const signal = (refToMessageId: string) =>
        ({ ebxml: { signal: 'Acknowledgment', refToMessageId, fromPartyIds: [], toPartyIds: [] }, errors: [] }) as unknown as SignalMessage;
      expect(await receipts.forSignal(signal(out.ebxmlMessageId), FROGNER.kd)).to.include({ kind: 'none' });
      const found = await receipts.forSignal(signal(out.ebxmlMessageId), FROGNER.kp);
      expect(found).to.deep.include({ kind: 'transport', state: 'acked', target: { id: out.id, msgId: out.msgId, msgType: 'LOG_INNLAGT' } });
      await record(found);
      expect(await row(out.id)).to.include({ transport_state: 'acked', transport_at: now.toISOString() });
      expect(await expectation(out.id, 'transport-ack')).to.deep.equal({ state: 'met', resolved_by: 'transport:acked' });
    });

    it('an AppRec belongs to the message only if its Sender names every HER-id the message was sent to; the first one is final', async () => {
      const out = await sent('LOG_UTSKRIVNINGSKLAR');
      const appRec = (senderHerIds: string[], status: string): AppRecModel => ({
        kind: 'apprec',
        version: '1.1',
        id: randomUUID(),
        genDate: '',
        status,
        senderHerIds,
        receiverHerIds: ['59', '90998'],
        errors: status === '2' ? [{ code: 'E35', text: 'whatever the sender wrote', details: 'Kari Nordmann' }] : [],
        originalMsgId: { msgType: 'LOG_UTSKRIVNINGSKLAR', issueDate: '', id: out.msgId },
      });
      expect(await receipts.forAppRec(appRec([FROGNER.kd], '2'))).to.include({ kind: 'none' });
      expect(await receipts.forAppRec(appRec([FROGNER.l1, FROGNER.kd], '9'))).to.include({ kind: 'none' });
      const rejected = await receipts.forAppRec(appRec([FROGNER.l1, FROGNER.kd], '2'));
      await record(rejected);
      await record(await receipts.forAppRec(appRec([FROGNER.l1, FROGNER.kd], '1')));
      const r = await row(out.id);
      expect(r.apprec_status).to.equal('rejected');
      expect(JSON.parse(r.apprec_errors!)).to.deep.equal([{ code: 'E35', text: 'Pasienten finnes ikke i mottakersystemet' }]);
      expect(await events(out.msgId)).to.deep.equal(['apprec-rejected', 'apprec-repeated']);
    });

    it('an answer linked by ConversationRef answers that notice, unless it comes from another bydel', async () => {
      const out = await sent('LOG_UTSKRIVNINGSKLAR');
      const fromAlna = msgHead('DIALOG_NOTAT', { from: [ALNA.l1, ALNA.kd], refs: [out.msgId, out.msgId], temaKodet: [NOTAT] });
      expect(await receipts.forMessage(fromAlna, answerFrom({ from: [ALNA.l1, ALNA.kd] }), now)).to.include({ kind: 'none' });
      const answer = msgHead('DIALOG_NOTAT', { refs: [out.msgId, out.msgId], temaKodet: [NOTAT] });
      const found = await receipts.forMessage(answer, answerFrom({}), now);
      expect(found).to.deep.include({ kind: 'answer', rule: 'conversation-ref' });
      await record(found!, { msgId: answer.msgId, msgType: 'DIALOG_NOTAT' });
      expect(await row(out.id)).to.include({
        answer_state: 'answered',
        answer_msg_id: answer.msgId,
        answer_rule: 'conversation-ref',
        answered_at: now.toISOString(),
      });
      expect(await expectation(out.id, 'answer')).to.deep.equal({ state: 'met', resolved_by: 'answer:conversation-ref' });
    });

    it('a note on another topic is not an answer, whatever it refers to', async () => {
      const out = await sent('LOG_UTSKRIVNINGSKLAR');
      const note = msgHead('DIALOG_NOTAT', { refs: [out.msgId, out.msgId], temaKodet: ['2.16.578.1.12.4.1.1.9153/99'] });
      expect(await receipts.forMessage(note, answerFrom({}), now)).to.equal(undefined);
    });

    it('without ConversationRef, the newest notice still waiting for that patient from that bydel within the window is answered', async () => {
      now = new Date('2026-02-01T09:00:00Z');
      const tooOld = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-b' });
      now = new Date('2026-03-01T09:00:00Z');
      const older = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-b' });
      now = new Date('2026-03-01T10:00:00Z');
      const newer = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-b' });
      await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-b', to: [ALNA.l1, ALNA.kd] });
      now = new Date('2026-03-02T09:00:00Z');
      const answer = () =>
        receipts.forMessage(msgHead('DIALOG_HELSEFAGLIG', { temaKodet: ['2.16.578.1.12.4.1.1.7322/7'] }), { ...answerFrom({}), patientKey: 'patient-b' }, now);

      const first = await answer();
      expect(first).to.deep.include({ kind: 'answer', rule: 'fallback', target: { id: newer.id, msgId: newer.msgId, msgType: 'LOG_UTSKRIVNINGSKLAR' } });
      await record(first!);
      expect(await answer()).to.deep.include({ target: { id: older.id, msgId: older.msgId, msgType: 'LOG_UTSKRIVNINGSKLAR' } });
      await record((await answer())!);
      expect(await answer()).to.include({ kind: 'none' });
      expect(await row(tooOld.id)).to.include({ answer_state: null });
    });

    it('an avmelding or a cancellation in the conversation closes the wait; an answered notice stays answered', async () => {
      const waiting = await sent('LOG_UTSKRIVNINGSKLAR');
      const answered = await sent('LOG_UTSKRIVNINGSKLAR');
      await record(
        (await receipts.forMessage(
          msgHead('DIALOG_NOTAT', { refs: [answered.msgId, answered.msgId], temaKodet: [NOTAT] }),
          answerFrom({}),
          now,
        )) as Correlation,
      );

      const avmelding = msgHead('LOG_AVMELDING', { refs: [waiting.msgId, waiting.msgId] });
      const delivered = await sent('LOG_AVMELDING');
      await store.inTransaction((tx) => receipts.linkOnDelivery(tx, avmelding, avmelding.msgId, delivered.id, now));
      expect(await events(delivered.msgId)).to.deep.equal(['closed-answer-wait']);
      expect(await row(waiting.id)).to.include({ answer_state: 'closed', closed_by: 'LOG_AVMELDING' });
      expect(await expectation(waiting.id, 'answer')).to.deep.equal({ state: 'closed', resolved_by: 'LOG_AVMELDING' });

      // a cancellation withdraws the answered notice too (it leaves the ledger); its answer stays recorded
      const cancellation = msgHead('LOG_UTSKRIVNINGSKLAR', { forsendelsesstatus: 'C', refs: [answered.msgId, answered.msgId] });
      const withdrawn = await receipts.forClose(cancellation, { does: 'cancel', of: 'LOG_UTSKRIVNINGSKLAR' }, null);
      expect(withdrawn).to.deep.include({ kind: 'close', by: 'cancellation', link: 'conversation-ref' });
      await record(withdrawn);
      expect(await row(answered.id)).to.include({ answer_state: 'answered', closed_by: 'cancellation' });
      expect(await receipts.forClose(cancellation, { does: 'cancel', of: 'LOG_UTSKRIVNINGSKLAR' }, null), 'cancelled once').to.include({ kind: 'none' });
    });

    /** A message the hospital delivered now, as the outbound path records it, with its links to earlier ones. */
    async function delivered(m: MsgHeadModel, o: Parameters<typeof sent>[1] = {}) {
      const out = await sent(m.type, o);
      await store.db.kysely.updateTable('messages').set({ msg_id: m.msgId }).where('id', '=', out.id).execute();
      await store.inTransaction((tx) => receipts.linkOnDelivery(tx, m, o.conversationId ?? m.msgId, out.id, now));
      return { ...out, msgId: m.msgId };
    }

    it('an avmelding without a reference closes the wait for that patient, and only that patient’s; the patient link is recorded', async () => {
      const mine = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-p1' });
      const other = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-p2' });
      const elsewhere = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-p1', to: [ALNA.l1, ALNA.kd] });
      const avmelding = await delivered(msgHead('LOG_AVMELDING'), { patientKey: 'patient-p1' });
      expect(await row(mine.id)).to.include({ answer_state: 'closed', closed_by: 'LOG_AVMELDING' });
      expect(await row(other.id), "another patient's notice to the same bydel").to.include({ answer_state: null });
      expect(await row(elsewhere.id), 'the same patient, another bydel').to.include({ answer_state: null });
      const closedOn = (await store.timeline(mine.msgId))[0].events.find((e) => e.event === 'wait-closed');
      expect(JSON.parse(closedOn?.detail ?? '{}')).to.include({ by: 'LOG_AVMELDING', link: 'patient', msgId: avmelding.msgId });
    });

    it('a discharge reported as death (Uttilstand 2) ends the wait as a death; LOG_DOD too', async () => {
      const notice = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-d1' });
      await delivered({ ...msgHead('LOG_UTSKREVET'), uttilstand: '2' }, { patientKey: 'patient-d1' });
      expect(await row(notice.id)).to.include({ answer_state: 'closed', closed_by: 'LOG_UTSKREVET:dod' });
      const second = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-d2' });
      await delivered(msgHead('LOG_DOD'), { patientKey: 'patient-d2' });
      expect(await expectation(second.id, 'answer')).to.deep.equal({ state: 'closed', resolved_by: 'LOG_DOD' });
    });

    it('a notice sent again for the same stay supersedes the earlier one: one wait, not two', async () => {
      const first = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-s1' });
      const again = await delivered(msgHead('LOG_UTSKRIVNINGSKLAR'), { patientKey: 'patient-s1' });
      expect(await expectation(first.id, 'answer')).to.deep.equal({ state: 'closed', resolved_by: 'superseded' });
      expect(await expectation(again.id, 'answer')).to.include({ state: 'open' });
      expect(await events(again.msgId)).to.deep.equal(['superseded-earlier']);
      const alone = await delivered(msgHead('LOG_UTSKRIVNINGSKLAR'), { patientKey: 'patient-s2' });
      expect(await events(alone.msgId), 'nothing superseded: nothing on its timeline').to.deep.equal([]);
    });

    it('a notice the bydel rejected (AppRec Avvist) was no valid notice: its wait ends', async () => {
      const notice = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-r1' });
      await record({
        kind: 'apprec',
        target: { id: notice.id, msgId: notice.msgId, msgType: 'LOG_UTSKRIVNINGSKLAR' },
        status: 'rejected',
        errors: [{ code: 'E10' }],
      });
      expect(await row(notice.id)).to.include({ apprec_status: 'rejected', answer_state: 'closed', closed_by: 'apprec:rejected' });
    });

    it('a cancelled LOG_INNLAGT closes its wait for the Innleggelsesrapport; a rapport that came before the admission meets it when it arrives', async () => {
      const admission = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-i1' });
      await delivered(msgHead('LOG_INNLAGT', { forsendelsesstatus: 'C', refs: [admission.msgId, admission.msgId] }), { to: [FROGNER.l1, FROGNER.kp] });
      expect(await expectation(admission.id, 'innleggelsesrapport')).to.deep.equal({ state: 'closed', resolved_by: 'cancellation' });

      // the rapport first, from Frogner's sykehjem: nothing to meet yet
      const { messageId: rapportId } = await seedMessage(store, {
        message: {
          msg_id: randomUUID(),
          direction: 'in',
          sender_her_id: '9940005',
          msg_type: 'INNLEGGELSESRAPPORT',
          state: 'forwarded',
          bydel: '030105',
          patient_key: 'patient-i2',
        },
        payloads: [],
        events: [{ stage: 'correlate', event: 'uncorrelated', detail: { why: 'no LOG_INNLAGT' } }],
        outbox: [],
        expectations: [],
      });
      const later = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-i2' });
      await store.db.kysely.updateTable('messages').set({ bydel: '030105' }).where('id', '=', later.id).execute();
      const m = msgHead('LOG_INNLAGT');
      await store.inTransaction((tx) => receipts.linkOnDelivery(tx, m, m.msgId, later.id, now));
      expect(await expectation(later.id, 'innleggelsesrapport')).to.deep.equal({ state: 'met', resolved_by: 'innleggelsesrapport:before-admission' });
      const rapportEvents = await db.kysely.selectFrom('events').select('event').where('message_id', '=', rapportId).execute();
      expect(rapportEvents.map((e) => e.event)).to.deep.equal(['uncorrelated', 'correlated']);
      // used once: the next admission of that patient waits for a rapport of its own
      const next = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-i2' });
      await store.db.kysely.updateTable('messages').set({ bydel: '030105' }).where('id', '=', next.id).execute();
      await store.inTransaction((tx) => receipts.linkOnDelivery(tx, m, m.msgId, next.id, now));
      expect(await expectation(next.id, 'innleggelsesrapport')).to.include({ state: 'open' });
    });

    it('an Innleggelsesrapport from another service of the same bydel organisation (a sykehjem) meets the wait; one from another bydel does not', async () => {
      const admission = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-h1' });
      const fromSykehjem = { herIds: [FROGNER.l1, '9940005'], patientKey: 'patient-h1', conversationId: null };
      const fromAlna = { herIds: [ALNA.l1, ALNA.kd], patientKey: 'patient-h1', conversationId: null };
      expect(await receipts.forMessage(msgHead('INNLEGGELSESRAPPORT', { from: fromAlna.herIds }), fromAlna, now)).to.include({ kind: 'none' });
      const found = await receipts.forMessage(msgHead('INNLEGGELSESRAPPORT', { from: fromSykehjem.herIds }), fromSykehjem, now);
      expect(found).to.deep.include({ kind: 'innleggelsesrapport', target: { id: admission.id, msgId: admission.msgId, msgType: 'LOG_INNLAGT' } });
    });

    it("the kommune's later message (a place is ready) is kept on the notice's timeline; the first answer stays the answer", async () => {
      const notice = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-f1' });
      const reply = () => receipts.forMessage(msgHead('DIALOG_NOTAT', { refs: [notice.msgId, notice.msgId], temaKodet: [NOTAT] }), answerFrom({}), now);
      const first = { msgId: randomUUID(), msgType: 'DIALOG_NOTAT' };
      await record((await reply()) as Correlation, first);
      await record((await reply()) as Correlation, { msgId: randomUUID(), msgType: 'DIALOG_NOTAT' });
      expect(await events(notice.msgId)).to.deep.equal(['answered', 'kommune-follow-up']);
      expect(await row(notice.id)).to.include({ answer_state: 'answered', answer_msg_id: first.msgId });
    });

    it('a DIALOG_SVAR answers the notice it refers to; one without a reference answers nothing', async () => {
      const notice = await sent('LOG_UTSKRIVNINGSKLAR', { patientKey: 'patient-a' });
      const svar = await receipts.forMessage(msgHead('DIALOG_SVAR', { refs: [randomUUID(), notice.msgId] }), answerFrom({}), now);
      expect(svar).to.deep.include({
        kind: 'answer',
        rule: 'conversation-ref',
        target: { id: notice.id, msgId: notice.msgId, msgType: 'LOG_UTSKRIVNINGSKLAR' },
      });
      expect(await receipts.forMessage(msgHead('DIALOG_SVAR'), answerFrom({}), now)).to.include({ kind: 'none' });
    });

    it('an Innleggelsesrapport from the bydel meets the wait of the admission it was sent for', async () => {
      const admission = await sent('LOG_INNLAGT', { to: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-c' });
      const rapport = msgHead('INNLEGGELSESRAPPORT', { from: [FROGNER.l1, FROGNER.kp] });
      const found = await receipts.forMessage(rapport, { herIds: [FROGNER.l1, FROGNER.kp], patientKey: 'patient-c', conversationId: null }, now);
      expect(found).to.deep.include({
        kind: 'innleggelsesrapport',
        rule: 'fallback',
        target: { id: admission.id, msgId: admission.msgId, msgType: 'LOG_INNLAGT' },
      });
      await record(found!);
      expect(await expectation(admission.id, 'innleggelsesrapport')).to.deep.equal({ state: 'met', resolved_by: 'innleggelsesrapport:fallback' });
    });
  });
}
