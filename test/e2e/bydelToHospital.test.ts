// Flow B end to end, on the real RabbitMQ and on each real store (SQLite and PostgreSQL): the
// hospital's messages go out to Bydel Frogner, and a simulated Frogner answers on nhn.inbound
// with what its systems send — transport acknowledgment, AppRec, the kommune's answer,
// Innleggelsesrapport — signed with its own key, trusted through the address register snapshot.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { buildAppRec } from '../../src/mapping/apprec.js';
import type { AppRecModel, MsgHeadModel } from '../../src/mapping/model.js';
import { parseMultipart } from '../../src/mapping/multipart.js';
import { parseMessage } from '../../src/mapping/parse.js';
import { verifyEbxmlMessage } from '../../src/outbound/ebxml.js';
import type { MessageRow } from '../../src/tracking/db.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, openDelivery, type Packaged, type Received, received, registerWithCertificates, SimulatedBydel, TEMA } from '../support/bydel.js';
import { xmlsec1 } from '../support/certificates.js';
import { testBackends } from '../support/databases.js';
import { type LogCapture, Peer, startGateway, testConfig, testSigningKeys } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { child, el, readdressToOslo, readSample, syntheticFnr, withPatient } from '../support/samples.js';

const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const AVMELDING = 'plo-1.6/Pasientlogistikk_Avmelding_av_utskrivningsklar_pasient_v1-6_Ny.xml';
const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const INNLEGGELSESRAPPORT = 'plo-1.6/Innleggelsesrapport_v1-6_Ny.xml';
const NOTAT = 'dialogmelding/ks-1.0-dialog-notat-webmed-test.xml';
const HELSEFAGLIG = 'dialogmelding/Helsefaglig_dialog_angi_profesjon_hos_mottaker.xml';
const SVAR = 'dialogmelding/Dialogmelding_svar_foresporsel_PLO_v1-0.xml';
const UTSKREVET = 'plo-1.6/Pasientlogistikk_Melding_om_utskrevet_pasient_v1-6_Ny.xml';

const FROGNER = { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' };
const ST_HANSHAUGEN = { name: 'Oslo kommune, Bydel St. Hanshaugen (FIKTIV)', herId: '9910004' };
const ULLERN = { name: 'Oslo kommune, Bydel Ullern (FIKTIV)', herId: '9910006' };
const saksbehandling = (herId: string) => ({ name: 'Saksbehandling (FIKTIV)', herId });
const sykepleie = (herId: string) => ({ name: 'Sykepleietjeneste (FIKTIV)', herId });

/** Personal data in the samples and in what the simulated bydel writes: never in logs or metadata. */
const PERSONAL = ['15076500565', 'Gundersen', 'Roland', 'Flåklypa', 'Testveien', 'Kari Nordmann', 'Lege svarer', 'Signaturen kunne'];

/** Inserts MsgInfo/ConversationRef, as the EPJ does for a later message in a conversation. */
function inConversation(xml: string, parent: string, conversation = parent): string {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const msgInfo = child(doc.documentElement, 'MsgInfo')!;
  const ref = el(doc, 'ConversationRef');
  ref.appendChild(el(doc, 'RefToParent', parent));
  ref.appendChild(el(doc, 'RefToConversation', conversation));
  msgInfo.insertBefore(ref, child(msgInfo, 'Sender')!);
  return new XMLSerializer().serializeToString(doc);
}

/** The AppRec inside a delivered ebXML message (for receipts the gateway sends a bydel), decrypted by openssl. */
function appRecIn(m: GetMessage): { appRec: AppRecModel; envelope: string; encrypted: boolean } {
  const { parsed, cms } = openDelivery(m.content, m.properties.contentType);
  if (parsed.doc.kind !== 'apprec') throw new Error('not an AppRec');
  const entity = parseMultipart(m.content, m.properties.contentType);
  return { appRec: parsed.doc, envelope: entity.parts[0].body.toString('utf8'), encrypted: cms !== undefined };
}

/** What `read` returns once `done` holds for it; a timeout shows the value last read. */
function readUntil<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string): Promise<T> {
  let last: T | undefined;
  return eventually(
    () => `${what}: ${JSON.stringify(last)}`,
    async () => {
      last = await read();
      return done(last) ? last : undefined;
    },
  );
}

for (const backend of testBackends()) {
  describe(`bydel → hospital, end to end (RabbitMQ + ${backend.dialect})`, function () {
    this.timeout(90000);
    let config: GatewayConfig;
    let gateway: Gateway;
    let logs: LogCapture;
    let peer: Peer;
    let store: Store;
    /** Frogner's two services, and parties whose messages must not get through */
    let frognerKd: SimulatedBydel;
    let frognerKp: SimulatedBydel;
    let stHanshaugenKp: SimulatedBydel;
    let ullernExpired: SimulatedBydel;

    before(async () => {
      const [kd, kp, sh, expired] = await Promise.all([
        makeSigner('frogner-kd0501'),
        makeSigner('frogner-kp02'),
        makeSigner('st-hanshaugen-kp02'),
        makeSigner('ullern-kp02', { notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 30 * 86_400_000) }),
      ]);
      frognerKd = new SimulatedBydel(FROGNER, saksbehandling('9920005'), kd);
      frognerKp = new SimulatedBydel(FROGNER, sykepleie('9930005'), kp, 'rsa-sha256');
      stHanshaugenKp = new SimulatedBydel(ST_HANSHAUGEN, sykepleie('9930004'), sh);
      ullernExpired = new SimulatedBydel(ULLERN, sykepleie('9930006'), expired);
      const register = registerWithCertificates({ '9920005': kd.certPem, '9930005': kp.certPem, '9930004': sh.certPem, '9930006': expired.certPem });
      const url = await backend.create();
      config = testConfig((c) => {
        c.database.url = url;
        c.routing.addressRegisterFile = register;
      });
      ({ gateway, logs } = await startGateway(config));
      peer = await Peer.connect();
      store = new Store(await openDatabase(url));
    });

    after(async () => {
      await gateway?.stop();
      await store?.close();
      await peer?.deleteRun(config);
      await peer?.close();
      await backend.removeAll();
    });

    const bydelQueue = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;
    /** Every transport Acknowledgment and MessageError the gateway sent each bydel service, kept apart from the rest. */
    const acks = new Map<string, GetMessage[]>();
    const messageErrors = new Map<string, GetMessage[]>();
    /** The eb:MessageId a transport signal refers to. */
    const refToOf = (m: GetMessage) => /<eb:RefToMessageId>([^<]+)<\/eb:RefToMessageId>/.exec(m.content.toString('utf8'))?.[1] ?? '(none)';
    /** What the gateway sent a bydel service other than transport signals (those go to `acks` and `messageErrors`). */
    async function fromGateway(herId: string, n: number, timeoutMs = 15000): Promise<GetMessage[]> {
      const got: GetMessage[] = [];
      const deadline = performance.now() + timeoutMs;
      while (got.length < n && performance.now() < deadline) {
        for (const m of await peer.take(bydelQueue(herId), 1, Math.max(1, Math.min(200, deadline - performance.now())))) {
          const signal = { Acknowledgment: acks, MessageError: messageErrors }[String(m.properties.headers?.['msg-type'])];
          if (signal) signal.set(herId, [...(signal.get(herId) ?? []), m]);
          else got.push(m);
        }
      }
      return got;
    }
    const epjInbox = (n: number, timeoutMs?: number) => peer.take(config.broker.queues.epjInbound, n, timeoutMs);

    /** The hospital EPJ sends a message; it reaches the bydel service, which reads it. */
    async function sendToBydel(xml: string, herId: string): Promise<Received> {
      await peer.send(config.broker.queues.epjOutbound, xml);
      const [m] = await fromGateway(herId, 1);
      expect(m, `delivered to ${herId}`).to.exist;
      return received(m);
    }
    const notice = () => sendToBydel(readdressToOslo(readSample(UTSKRIVNINGSKLAR)).xml, '9920005');
    const admission = () => sendToBydel(readdressToOslo(readSample(INNLAGT)).xml, '9930005');

    /** The bydel's message handler puts it on nhn.inbound, saying who sent it. */
    async function fromBydel(body: Buffer, o: { contentType?: string; fromHerId: string }) {
      await peer.send(config.broker.queues.nhnInbound, body, { contentType: o.contentType, headers: { 'from-her-id': o.fromHerId } });
    }
    const sendPackaged = (bydel: SimulatedBydel, p: Packaged) => fromBydel(p.body, { contentType: p.contentType, fromHerId: bydel.service.herId });

    /** The bydel answers a message with a MsgHead reply built from a sample. */
    function replyTo(bydel: SimulatedBydel, sample: string, to: Received, o: Parameters<SimulatedBydel['reply']>[2] = {}) {
      const reply = bydel.reply(readSample(sample), to, o);
      const type = /<Type V="([A-Z_]+)"/.exec(reply.xml)![1];
      return { ...reply, packaged: bydel.package(reply.xml, { msgType: type, toHerId: to.fromHerId, conversationId: to.conversationId }) };
    }

    const outgoing = async (msgId: string): Promise<MessageRow> => (await store.findByMsgId(msgId)).find((r) => r.direction === 'out')!;
    const incoming = async (msgId: string): Promise<MessageRow | undefined> => (await store.findByMsgId(msgId)).find((r) => r.direction === 'in');
    const expectations = async (messageId: number) =>
      Object.fromEntries(
        (await store.db.kysely.selectFrom('expectations').select(['kind', 'state', 'resolved_by']).where('message_id', '=', messageId).execute()).map((x) => [
          x.kind,
          `${x.state} ${x.resolved_by ?? ''}`.trim(),
        ]),
      );
    const timelineEvents = async (msgId: string) => (await store.timeline(msgId)).flatMap((t) => t.events.map((e) => e.event));

    it('a discharge-ready notice comes back acknowledged, accepted and answered: the notice shows each step, and the EPJ gets the AppRec and the answer', async () => {
      const sent = await notice();
      await fromBydel(frognerKd.acknowledgment(sent), { fromHerId: '9920005' });
      const { appRecId, packaged } = frognerKd.appRec(sent, '1');
      await sendPackaged(frognerKd, packaged);
      const answer = replyTo(frognerKd, NOTAT, sent, { temaKodet: TEMA.notat });
      await sendPackaged(frognerKd, answer.packaged);

      const toEpj = await epjInbox(2);
      const byType = Object.fromEntries(toEpj.map((m) => [String(m.properties.headers?.['msg-type']), m]));
      expect(Object.keys(byType).sort()).to.deep.equal(['APPREC', 'DIALOG_NOTAT']);
      expect(byType.APPREC.properties.headers).to.include({
        'msg-id': appRecId,
        'x-original-msg-id': sent.model.msgId,
        'from-her-id': '9920005',
        'to-her-id': '90998',
      });
      expect(byType.APPREC.content.toString('utf8')).to.match(/^<\?xml[^>]*\?>\s*<AppRec /);
      expect(byType.DIALOG_NOTAT.properties.headers).to.include({
        'msg-id': answer.msgId,
        'conversation-id': sent.conversationId,
        'from-her-id': '9920005',
        'to-her-id': '90998',
      });
      expect(byType.DIALOG_NOTAT.content.toString('utf8')).to.contain(`<MsgId>${answer.msgId}</MsgId>`).and.not.contain('Envelope');

      const row = await readUntil(
        () => outgoing(sent.model.msgId),
        (r) => !!r.transport_state && !!r.apprec_status && !!r.answer_state,
        'ack, AppRec and answer on the notice',
      );
      expect(row).to.include({
        transport_state: 'acked',
        apprec_status: 'ok',
        apprec_errors: null,
        answer_state: 'answered',
        answer_msg_id: answer.msgId,
        answer_rule: 'conversation-ref',
      });
      expect(row.answered_at).to.match(/^\d{4}-\d\d-\d\dT/);
      expect(await expectations(row.id)).to.deep.equal({
        'transport-ack': 'met transport:acked',
        apprec: 'met apprec:ok',
        answer: 'met answer:conversation-ref',
      });
      expect(await timelineEvents(sent.model.msgId)).to.include.members(['routed', 'signed', 'transport-acked', 'apprec-ok', 'answered']);
      // 'forwarded' once the broker confirmed the EPJ's copy, which may be a moment after the EPJ has it
      const answerRow = await readUntil(
        () => incoming(answer.msgId),
        (r) => r?.state === 'forwarded',
        'the answer marked forwarded',
      );
      expect(answerRow).to.include({ sender_her_id: '9920005', bydel: '030105' });
    });

    it('the kommune may answer with Helsefaglig dialog (7322/7) instead', async () => {
      const sent = await notice();
      const answer = replyTo(frognerKd, HELSEFAGLIG, sent, { temaKodet: TEMA.helsefaglig });
      await sendPackaged(frognerKd, answer.packaged);
      const [m] = await epjInbox(1);
      expect(m.properties.headers).to.include({ 'msg-id': answer.msgId, 'msg-type': 'DIALOG_HELSEFAGLIG' });
      const row = await readUntil(
        () => outgoing(sent.model.msgId),
        (r) => !!r.answer_state,
        'the answer',
      );
      expect(row).to.include({ answer_state: 'answered', answer_msg_id: answer.msgId, answer_rule: 'conversation-ref' });
    });

    it('an answer without ConversationRef is matched to the waiting notice for that patient sent to that bydel, and the fallback is recorded', async () => {
      const older = await notice();
      const newer = await notice();
      const answer = replyTo(frognerKd, NOTAT, newer, { linked: false, temaKodet: TEMA.notat });
      expect(answer.xml).not.to.contain('ConversationRef');
      await sendPackaged(frognerKd, answer.packaged);
      await epjInbox(1);
      const row = await readUntil(
        () => outgoing(newer.model.msgId),
        (r) => !!r.answer_state,
        'the answer',
      );
      expect(row).to.include({ answer_state: 'answered', answer_msg_id: answer.msgId, answer_rule: 'fallback' });
      expect((await expectations(row.id)).answer).to.equal('met answer:fallback');
      // the same patient to the same bydel again: the newer notice superseded the older (one wait, not two)
      expect(await outgoing(older.model.msgId)).to.include({ answer_state: 'closed', closed_by: 'superseded' });
    });

    it('an avmelding sent by the hospital closes the wait for the answer', async () => {
      const sent = await notice();
      const avmelding = inConversation(readdressToOslo(readSample(AVMELDING)).xml, sent.model.msgId);
      await sendToBydel(avmelding, '9920005');
      const row = await readUntil(
        () => outgoing(sent.model.msgId),
        (r) => !!r.answer_state,
        'the wait to close',
      );
      expect(row).to.include({ answer_state: 'closed', closed_by: 'LOG_AVMELDING', answered_at: null });
      expect((await expectations(row.id)).answer).to.equal('closed LOG_AVMELDING');
      expect(await timelineEvents(sent.model.msgId)).to.include('wait-closed');
    });

    describe('the waits end when they should (Oslo procedure §4.5–4.7)', () => {
      /** A patient of its own for each test: another's notices must not be touched. */
      let patients = 0;
      const patient = () => syntheticFnr(patients++ + (backend.dialect === 'postgres' ? 50 : 0));
      const noticeFor = (fnr: string) => sendToBydel(withPatient(readdressToOslo(readSample(UTSKRIVNINGSKLAR)).xml, fnr), '9920005');
      const waitOf = (msgId: string) =>
        readUntil(
          () => outgoing(msgId),
          (r) => !!r.answer_state,
          'the wait to end',
        );

      it('a DIALOG_SVAR ("svar på forespørsel") answers the notice it refers to', async () => {
        const sent = await noticeFor(patient());
        const svar = replyTo(frognerKd, SVAR, sent);
        await sendPackaged(frognerKd, svar.packaged);
        const [m] = await epjInbox(1);
        expect(m.properties.headers).to.include({ 'msg-id': svar.msgId, 'msg-type': 'DIALOG_SVAR' });
        expect(await waitOf(sent.model.msgId)).to.include({ answer_state: 'answered', answer_msg_id: svar.msgId, answer_rule: 'conversation-ref' });
      });

      it("an avmelding without a reference closes the wait for that patient, and only that patient's", async () => {
        const [kari, ola] = [patient(), patient()];
        const karisNotice = await noticeFor(kari);
        const olasNotice = await noticeFor(ola);
        const avmelding = withPatient(readdressToOslo(readSample(AVMELDING)).xml, kari);
        expect(avmelding, 'as the official sample: no ConversationRef').not.to.contain('ConversationRef');
        await sendToBydel(avmelding, '9920005');
        expect(await waitOf(karisNotice.model.msgId)).to.include({ answer_state: 'closed', closed_by: 'LOG_AVMELDING' });
        const closed = (await store.timeline(karisNotice.model.msgId))[0].events.find((e) => e.event === 'wait-closed');
        expect(JSON.parse(closed?.detail ?? '{}')).to.include({ by: 'LOG_AVMELDING', link: 'patient' });
        expect(await outgoing(olasNotice.model.msgId), "the other patient's notice still waits").to.include({ answer_state: null });
        expect((await expectations((await outgoing(olasNotice.model.msgId)).id)).answer).to.equal('open');
      });

      it('a discharge reported as death (Uttilstand 2, code list 8431) ends the wait', async () => {
        const fnr = patient();
        const sent = await noticeFor(fnr);
        const died = withPatient(readdressToOslo(readSample(UTSKREVET)).xml, fnr).replace(
          /<Uttilstand V="1"[^>]*>/,
          '<Uttilstand V="2" DN="Død" S="2.16.578.1.12.4.1.1.8431"/>',
        );
        expect(died).to.contain('<Uttilstand V="2"');
        await sendToBydel(died, '9930005');
        expect(await waitOf(sent.model.msgId)).to.include({ answer_state: 'closed', closed_by: 'LOG_UTSKREVET:dod' });
      });

      it('a cancelled notice leaves no wait, and nothing owed in the ledger', async () => {
        const fnr = patient();
        const sent = await noticeFor(fnr);
        const cancellation = inConversation(withPatient(readdressToOslo(readSample(UTSKRIVNINGSKLAR)).xml, fnr), sent.model.msgId).replace(
          /<Forsendelsesstatus V="N"[^>]*\/>/,
          '<Forsendelsesstatus V="C" DN="Kansellering"/>',
        );
        expect(cancellation).to.contain('<Forsendelsesstatus V="C"');
        await sendToBydel(cancellation, '9920005');
        const row = await waitOf(sent.model.msgId);
        expect(row).to.include({ answer_state: 'closed', closed_by: 'cancellation' });
        expect((await expectations(row.id)).answer).to.equal('closed cancellation');
      });

      it('a rapport sent before the admission notice meets its wait when the admission comes', async () => {
        const fnr = patient();
        const admissionXml = withPatient(readdressToOslo(readSample(INNLAGT)).xml, fnr);
        const parsed = parseMessage(Buffer.from(admissionXml), { maxBytes: 5_000_000 });
        if (!parsed.ok || parsed.value.doc.kind !== 'msghead') throw new Error('the admission sample does not parse');
        const model = parsed.value.doc;
        const notYetSent: Received = { model, xml: admissionXml, ebxmlMessageId: '', conversationId: model.msgId, fromHerId: model.sender.level2?.herId ?? '' };
        const rapport = replyTo(frognerKp, INNLEGGELSESRAPPORT, notYetSent, { linked: false });
        await sendPackaged(frognerKp, rapport.packaged);
        await epjInbox(1);
        await readUntil(
          () => incoming(rapport.msgId),
          (r) => r?.state === 'forwarded',
          'the rapport forwarded',
        );
        await peer.send(config.broker.queues.epjOutbound, admissionXml);
        await fromGateway('9930005', 1);
        const row = await readUntil(
          () => outgoing(model.msgId),
          (r) => !!r,
          'the admission',
        );
        const waits = await readUntil(
          () => expectations(row.id),
          (x) => x.innleggelsesrapport !== 'open',
          'the rapport wait met',
        );
        expect(waits.innleggelsesrapport).to.equal('met innleggelsesrapport:before-admission');
      });
    });

    it('a rejected AppRec (Avvist) is stored with its error codes but not its free text; the EPJ gets it whole', async () => {
      const sent = await notice();
      const { packaged } = frognerKd.appRec(sent, '2', [{ code: 'E35', details: 'Kari Nordmann finnes ikke hos oss' }]);
      await sendPackaged(frognerKd, packaged);
      const [m] = await epjInbox(1);
      expect(m.content.toString('utf8')).to.contain('Kari Nordmann finnes ikke hos oss');
      const row = await readUntil(
        () => outgoing(sent.model.msgId),
        (r) => !!r.apprec_status,
        'the AppRec',
      );
      expect(row.apprec_status).to.equal('rejected');
      expect(JSON.parse(row.apprec_errors!)).to.deep.equal([{ code: 'E35', text: 'Pasienten finnes ikke i mottakersystemet' }]);
      expect((await expectations(row.id)).apprec).to.equal('met apprec:rejected');
    });

    it('an AppRec with status 3 (OK, feil i delmelding) is stored as partial, and a transport MessageError as a transport error', async () => {
      const sent = await notice();
      await fromBydel(frognerKd.messageError(sent), { fromHerId: '9920005' });
      await sendPackaged(frognerKd, frognerKd.appRec(sent, '3').packaged);
      await epjInbox(1);
      const row = await readUntil(
        () => outgoing(sent.model.msgId),
        (r) => !!r.apprec_status && !!r.transport_state,
        'the AppRec and the MessageError',
      );
      expect(row).to.include({ apprec_status: 'partial', transport_state: 'error', state: 'transport-error' });
      expect((await expectations(row.id))['transport-ack']).to.equal('met transport:error');
      expect(await timelineEvents(sent.model.msgId)).to.include('transport-error');

      // the next tick raises it once, critical, naming the ebMS code (not the partner's free-text description)
      const tap = `${config.broker.queues.dlq}.transport-error-tap`;
      await peer.ch.assertQueue(tap, { exclusive: true });
      await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, 'transport-error');
      await gateway.deadlines!.tick();
      await gateway.deadlines!.tick();
      const alerts = (await peer.take(tap, 10, 1500)).map((m) => JSON.parse(m.content.toString('utf8')));
      expect(alerts.filter((a) => a.msgId === sent.model.msgId)).to.have.length(1);
      const [alert] = alerts.filter((a) => a.msgId === sent.model.msgId);
      expect(alert).to.include({ kind: 'transport-error', state: 'firing', severity: 'critical', eventId: 'GW-3006', receiverHerId: '9920005' });
      expect(alert.text).to.contain('(SecurityFailure)').and.not.contain('Signaturen kunne');
    });

    /** What is forged, how, the code it is refused with, and the party its ebXML From names (who gets the MessageError). */
    const forgeries: [string, () => Promise<{ body: Buffer; contentType?: string; fromHerId: string }>, string, string][] = [
      [
        'the transport says Frogner, but St. Hanshaugen signed it (forged from-her-id)',
        async () => {
          const { packaged } = replyTo(stHanshaugenKp, INNLEGGELSESRAPPORT, await admission());
          return { ...packaged, fromHerId: '9930005' };
        },
        'S01',
        '9930004',
      ],
      [
        'St. Hanshaugen signed a message whose MsgHead Sender is Frogner',
        async () => {
          const to = await admission();
          const { xml } = frognerKp.reply(readSample(INNLEGGELSESRAPPORT), to);
          const packaged = stHanshaugenKp.package(xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: to.fromHerId, conversationId: to.conversationId });
          return { ...packaged, fromHerId: '9930004' };
        },
        'S01',
        '9930004',
      ],
      [
        'one byte of the payload was changed after signing',
        async () => {
          const { packaged } = replyTo(frognerKp, INNLEGGELSESRAPPORT, await admission());
          const text = packaged.body.toString('latin1');
          const at = text.lastIndexOf('<MsgId>') + '<MsgId>'.length;
          const tampered = Buffer.from(text.slice(0, at) + (text[at] === 'a' ? 'b' : 'a') + text.slice(at + 1), 'latin1');
          return { body: tampered, contentType: packaged.contentType, fromHerId: '9930005' };
        },
        'S01',
        '9930005',
      ],
      [
        'Ullern signed with a certificate that expired last month',
        async () => {
          const { packaged } = replyTo(ullernExpired, INNLEGGELSESRAPPORT, await admission());
          return { ...packaged, fromHerId: '9930006' };
        },
        'S02',
        '9930006',
      ],
    ];

    for (const [name, forge, code, claimed] of forgeries) {
      it(`${name}: rejected to the DLQ with ${code}, never forwarded to the EPJ, no AppRec; a signed MessageError to ${claimed}`, async () => {
        const forged = await forge();
        await fromBydel(forged.body, forged);
        const [dead] = await peer.take(config.broker.queues.dlq, 1);
        expect(dead, 'a DLQ entry').to.exist;
        expect(dead.content.equals(forged.body)).to.equal(true);
        expect(dead.properties.headers).to.include({ 'x-error-code': code, 'x-source-queue': config.broker.queues.nhnInbound, 'x-stage': 'verify' });
        const reason = String(dead.properties.headers?.['x-error-reason']);
        for (const secret of PERSONAL) expect(reason).not.to.contain(secret);
        expect(await epjInbox(1, 500)).to.have.length(0);
        for (const herId of ['9930004', '9930005', '9930006']) expect(await fromGateway(herId, 1, 100)).to.have.length(0);
        const refusal = await eventually(`a MessageError at ${claimed}`, async () => {
          await fromGateway(claimed, 1, 200);
          return (messageErrors.get(claimed) ?? []).find((m) => forged.body.toString('latin1').includes(refToOf(m)));
        });
        expect(refusal.properties.headers).to.include({ 'msg-type': 'MessageError', 'to-her-id': claimed });
        const text = refusal.content.toString('utf8');
        expect(text).to.contain('<eb:Action>MessageError</eb:Action>').and.contain('eb:errorCode="SecurityFailure"').and.contain('eb:highestSeverity="Error"');
        for (const secret of PERSONAL) expect(text).not.to.contain(secret);
        expect(verifyEbxmlMessage(refusal.content, refusal.properties.contentType, testSigningKeys().certPem).ok).to.equal(true);
      });
    }

    it('an Innleggelsesrapport that fails the XSD gets a negative AppRec back to the bydel and a DLQ entry; a resend gets the same AppRec again', async () => {
      const to = await admission();
      const rapport = frognerKp.reply(readSample(INNLEGGELSESRAPPORT), to);
      const broken = rapport.xml.replace('<MIGversion>', '<Unexpected/><MIGversion>');
      const packaged = frognerKp.package(broken, { msgType: 'INNLEGGELSESRAPPORT', toHerId: to.fromHerId, conversationId: to.conversationId });
      await sendPackaged(frognerKp, packaged);

      const [back] = await fromGateway('9930005', 1);
      expect(back, 'a negative AppRec to the bydel').to.exist;
      expect(back.properties.headers).to.include({ 'msg-type': 'APPREC', 'from-her-id': '90998', 'to-her-id': '9930005' });
      expect(verifyEbxmlMessage(back.content, back.properties.contentType, testSigningKeys().certPem).ok).to.equal(true);
      const { appRec, envelope, encrypted } = appRecIn(back);
      expect(encrypted, 'the AppRec is encrypted for the bydel').to.equal(true);
      expect(appRec).to.include({ status: '2', version: '1.1' });
      expect(appRec.errors.map((e) => e.code)).to.deep.equal(['T02']);
      expect(appRec.originalMsgId).to.include({ id: rapport.msgId, msgType: 'INNLEGGELSESRAPPORT' });
      expect(envelope)
        .to.contain('>S-INNLEGGELSESRAPPORT</eb:Service>')
        .and.contain('<eb:Action>APPREC</eb:Action>')
        .and.contain('<eb:Role>INNLEGGELSESRAPPORTreceiver</eb:Role>');

      const [dead] = await peer.take(config.broker.queues.dlq, 1);
      expect(dead.properties.headers).to.include({
        'x-error-code': 'T02',
        'x-source-queue': config.broker.queues.nhnInbound,
        'x-stage': 'validate',
        'msg-id': rapport.msgId,
      });
      expect(await epjInbox(1, 500)).to.have.length(0);

      await sendPackaged(frognerKp, packaged);
      const [again] = await fromGateway('9930005', 1);
      expect(again?.content.equals(back.content), 'the same AppRec').to.equal(true);
      expect(await peer.take(config.broker.queues.dlq, 1, 500)).to.have.length(0);
    });

    /** The bydel sends an Innleggelsesrapport for an admission; the EPJ gets it and answers with its AppRec. */
    async function rapportAcceptedByEpj() {
      const to = await admission();
      const rapport = replyTo(frognerKp, INNLEGGELSESRAPPORT, to);
      await sendPackaged(frognerKp, rapport.packaged);
      const [m] = await epjInbox(1);
      expect(m.properties.headers).to.include({ 'msg-id': rapport.msgId, 'msg-type': 'INNLEGGELSESRAPPORT', 'from-her-id': '9930005' });
      const model = parseMessage(m.content, { maxBytes: 5_000_000 });
      if (!model.ok || model.value.doc.kind !== 'msghead') throw new Error('the EPJ got no MsgHead');
      const got: MsgHeadModel = model.value.doc;
      const appRecId = randomUUID();
      const epjAppRec = buildAppRec({
        id: appRecId,
        version: '1.1',
        status: '1',
        errors: [],
        original: { msgType: got.type, issueDate: got.genDate, msgId: got.msgId },
        sender: got.receiver,
        receiver: got.sender,
      });
      await peer.send(config.broker.queues.epjOutbound, epjAppRec);
      const [back] = await fromGateway('9930005', 1);
      expect(back, 'the EPJ AppRec at the bydel').to.exist;
      return { to, rapport, appRecId, back };
    }

    it("an Innleggelsesrapport reaches the EPJ and meets the admission's wait; the EPJ's AppRec goes back to the bydel, signed, in the rapport's Service", async () => {
      const { to, rapport, appRecId, back } = await rapportAcceptedByEpj();
      expect(back.properties.headers).to.include({ 'msg-id': appRecId, 'msg-type': 'APPREC', 'from-her-id': '90998', 'to-her-id': '9930005' });
      expect(verifyEbxmlMessage(back.content, back.properties.contentType, testSigningKeys().certPem).ok).to.equal(true);
      const { appRec, envelope, encrypted } = appRecIn(back);
      expect(encrypted, 'the AppRec is encrypted for the bydel').to.equal(true);
      expect(appRec).to.include({ id: appRecId, status: '1' });
      expect(envelope)
        .to.contain('>S-INNLEGGELSESRAPPORT</eb:Service>')
        .and.contain('<eb:Action>APPREC</eb:Action>')
        .and.contain(`<eb:ConversationId>${to.conversationId}</eb:ConversationId>`);
      const admitted = await outgoing(to.model.msgId);
      expect((await expectations(admitted.id)).innleggelsesrapport).to.equal('met innleggelsesrapport:conversation-ref');
      expect(await incoming(rapport.msgId)).to.include({ apprec_status: 'ok' });
    });

    it('the same Innleggelsesrapport twice is forwarded to the EPJ once, and its AppRec is sent again', async () => {
      const { rapport, back } = await rapportAcceptedByEpj();
      await sendPackaged(frognerKp, rapport.packaged);
      const [again] = await fromGateway('9930005', 1);
      expect(again?.content.equals(back.content), 'the same AppRec').to.equal(true);
      expect(await epjInbox(1, 1000)).to.have.length(0);
      expect(await timelineEvents(rapport.msgId)).to.include('duplicate-answered-again');
    });

    it('every message a bydel sends is acknowledged: a signed Acknowledgment that xmlsec1 verifies, referring to it, copying its signature references; a repeat gets the same one again', async () => {
      const to = await admission();
      const rapport = replyTo(frognerKp, INNLEGGELSESRAPPORT, to);
      await sendPackaged(frognerKp, rapport.packaged);
      await epjInbox(1);
      const acksOf = async (ebxmlMessageId: string) => {
        await fromGateway('9930005', 1, 200);
        return (acks.get('9930005') ?? []).filter((m) => m.content.toString('utf8').includes(`<eb:RefToMessageId>${ebxmlMessageId}</eb:RefToMessageId>`));
      };
      const [ack] = await eventually('an Acknowledgment', async () => {
        const found = await acksOf(rapport.packaged.ebxmlMessageId);
        return found.length > 0 ? found : undefined;
      });
      expect(ack.properties.headers).to.include({ 'msg-type': 'Acknowledgment', 'to-her-id': '9930005', 'conversation-id': to.conversationId });
      const text = ack.content.toString('utf8');
      expect(text)
        .to.contain('<eb:Service>urn:oasis:names:tc:ebxml-msg:service</eb:Service>')
        .and.contain('<eb:Action>Acknowledgment</eb:Action>')
        .and.contain(`<eb:ConversationId>${to.conversationId}</eb:ConversationId>`)
        .and.contain('<eb:Role>INNLEGGELSESRAPPORTreceiver</eb:Role>');
      // the references of the signature it acknowledges, copied (non-repudiation of receipt)
      const sentEnvelope = parseMultipart(rapport.packaged.body, rapport.packaged.contentType).parts[0].body.toString('utf8');
      const digests = (xml: string) => [...xml.matchAll(/<ds:DigestValue>([^<]+)<\/ds:DigestValue>/g)].map((m) => m[1]);
      for (const d of digests(sentEnvelope.slice(sentEnvelope.indexOf('<ds:SignedInfo')))) expect(text).to.contain(d);
      expect(verifyEbxmlMessage(ack.content, ack.properties.contentType, testSigningKeys().certPem).ok).to.equal(true);
      const dir = mkdtempSync(join(tmpdir(), 'gw-ack-'));
      writeFileSync(join(dir, 'cert.pem'), testSigningKeys().certPem);
      writeFileSync(join(dir, 'ack.xml'), ack.content);
      const cert = join(dir, 'cert.pem');
      const oracle = xmlsec1(['--verify', '--trusted-pem', cert, '--pubkey-cert-pem', cert, '--enabled-reference-uris', 'empty', join(dir, 'ack.xml')]);
      expect(oracle.status, oracle.output).to.equal(0);

      await sendPackaged(frognerKp, rapport.packaged);
      const again = await eventually('the same Acknowledgment again', async () => {
        const found = await acksOf(rapport.packaged.ebxmlMessageId);
        return found.length === 2 ? found : undefined;
      });
      expect(again[1].content.equals(ack.content), 'byte for byte the same Acknowledgment').to.equal(true);
      expect(await epjInbox(1, 500)).to.have.length(0);
    });

    it('the same Innleggelsesrapport content sent again under a new MsgId is recognised: not forwarded, not answered', async () => {
      const { to, rapport } = await rapportAcceptedByEpj();
      const copy = replyTo(frognerKp, INNLEGGELSESRAPPORT, to);
      expect(copy.msgId).not.to.equal(rapport.msgId);
      await sendPackaged(frognerKp, copy.packaged);
      expect(await epjInbox(1, 1000)).to.have.length(0);
      expect(await fromGateway('9930005', 1, 500)).to.have.length(0);
      expect(await incoming(copy.msgId)).to.include({ state: 'duplicate' });
      expect(await timelineEvents(copy.msgId)).to.include('duplicate-content');
    });

    it('no fødselsnummer, name, address or free text reaches a log line or the stored metadata', async () => {
      const text = logs.text();
      expect(logs.lines.length).to.be.greaterThan(50);
      expect(text).to.contain('GW-1501').and.contain('GW-1502').and.contain('GW-1511').and.contain('GW-1520');
      for (const secret of PERSONAL) expect(text, secret).not.to.contain(secret);
      const events = await store.db.kysely.selectFrom('events').select('detail').execute();
      const rows = await store.db.kysely.selectFrom('messages').selectAll().execute();
      const metadata = JSON.stringify(events) + JSON.stringify(rows);
      for (const secret of PERSONAL) expect(metadata, secret).not.to.contain(secret);
    });
  });
}
