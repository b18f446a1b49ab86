// A stay routed as one (issue 13, "Routing of a stay"), end to end on the real RabbitMQ and on
// each real store: the hospital's later messages for a patient follow the admission to its
// bydel, dialog keeps the service the EPJ chose, a bydel's "feil adressat" raises
// `wrong-receiver` and ops send the message on with `route --resend`, and the EPJ's resend of a
// held message with an x-bydel hint routes it.
import { randomUUID } from 'node:crypto';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type { ConsumeMessage, GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { makeSigner, type Received, received, registerWithCertificates, SimulatedBydel } from '../support/bydel.js';
import { cli as runCli, writeConfig } from '../support/cli.js';
import { testBackends } from '../support/databases.js';
import { type LogCapture, Peer, startGateway, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { child, el, readdressToOslo, readSample } from '../support/samples.js';

const INNLAGT = 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const FORESPORSEL = 'dialogmelding/Dialogmelding_foresporsel_PLO_v1-0.xml';
const AVVIK = 'dialogmelding/Dialogmelding_avvik_v1-0.xml';

const FROGNER = { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' };
const SAGENE = { KD0501: '9920003', KP02: '9930003' };
const FROGNER_KD0501 = '9920005';
const FROGNER_KP02 = '9930005';
const PERSONAL = ['15076500565', '13116900216', 'Gundersen', 'Danser', 'Stayveien', 'Hemmeligveien', 'Testveien', 'Pasienten er ukjent'];

/** The MsgHead Receiver gets a level-2 service, as an EPJ addressing a dialog by hand writes it. */
function toService(xml: string, herId: string): string {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const receiver = child(child(doc.documentElement, 'MsgInfo')!, 'Receiver')!;
  const service = el(doc, 'Organisation');
  service.appendChild(el(doc, 'OrganisationName', 'Saksbehandling (FIKTIV)'));
  const ident = el(doc, 'Ident');
  ident.appendChild(el(doc, 'Id', herId));
  ident.appendChild(el(doc, 'TypeId', undefined, { V: 'HER', DN: 'HER-id', S: '2.16.578.1.12.4.1.1.9051' }));
  service.appendChild(ident);
  child(receiver, 'Organisation')!.appendChild(service);
  return new XMLSerializer().serializeToString(doc);
}

for (const backend of testBackends()) {
  describe(`a stay routed as one (RabbitMQ + ${backend.dialect})`, function () {
    this.timeout(90000);
    let config: GatewayConfig;
    let configFile: string;
    let gateway: Gateway;
    let logs: LogCapture;
    let peer: Peer;
    let store: Store;
    let frognerKd: SimulatedBydel;
    const alerts: Record<string, unknown>[] = [];

    before(async () => {
      const key = await makeSigner('frogner-kd0501-stay');
      frognerKd = new SimulatedBydel(FROGNER, { name: 'Saksbehandling (FIKTIV)', herId: FROGNER_KD0501 }, key);
      const register = registerWithCertificates({ [FROGNER_KD0501]: key.certPem });
      const url = await backend.create();
      config = testConfig((c) => {
        c.database.url = url;
        c.routing.addressRegisterFile = register;
      });
      configFile = writeConfig(config);
      ({ gateway, logs } = await startGateway(config));
      peer = await Peer.connect();
      const tap = `${config.broker.queues.dlq}.alerts-tap`;
      await peer.ch.assertQueue(tap, { exclusive: true });
      await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
      await peer.ch.consume(tap, (m: ConsumeMessage | null) => m && alerts.push(JSON.parse(m.content.toString('utf8'))), { noAck: true });
      store = new Store(await openDatabase(url));
    });

    after(async () => {
      await gateway?.stop();
      await store?.close();
      await peer?.deleteRun(config);
      await peer?.close();
      await backend.removeAll();
    });

    const cli = (...args: string[]) => runCli(args, { config, configFile });
    const bydelQueue = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;
    /** What the gateway delivered to a service, transport signals set aside. */
    async function deliveredTo(herId: string, n = 1): Promise<GetMessage[]> {
      const got: GetMessage[] = [];
      const deadline = performance.now() + 15000;
      while (got.length < n && performance.now() < deadline) {
        for (const m of await peer.take(bydelQueue(herId), 1, 200))
          if (!['Acknowledgment', 'MessageError'].includes(String(m.properties.headers?.['msg-type']))) got.push(m);
      }
      return got;
    }
    const send = (xml: string, headers: Record<string, string> = {}) => peer.send(config.broker.queues.epjOutbound, xml, { headers });
    const outgoing = async (msgId: string) => (await store.findByMsgId(msgId)).find((r) => r.direction === 'out')!;
    const events = async (msgId: string) => (await store.timeline(msgId)).flatMap((t) => t.events);
    const published = (msgId: string) =>
      eventually(`${msgId} published`, async () => ((await outgoing(msgId))?.state === 'published' ? outgoing(msgId) : undefined));

    it('the second message of a stay goes where the first went', async () => {
      // the admission is routed by the EPJ's hint: the postcode is split, the address unknown to the index
      const address = { postalCode: '0484', street: 'Stayveien 3' };
      const admission = readdressToOslo(readSample(INNLAGT), address);
      await send(admission.xml, { 'x-bydel': '030103' });
      expect(await deliveredTo(SAGENE.KP02)).to.have.length(1);
      await published(admission.msgId);

      // the notice has no hint and the same address: without the stay it would be held
      const notice = readdressToOslo(readSample(UTSKRIVNINGSKLAR), address);
      await send(notice.xml);
      const [m] = await deliveredTo(SAGENE.KD0501);
      expect(m?.properties.headers).to.include({ 'msg-id': notice.msgId, 'to-her-id': SAGENE.KD0501 });
      const row = await published(notice.msgId);
      expect(row).to.include({ bydel: '030103', route_rule: 'stay' });
      const routed = (await events(notice.msgId)).find((e) => e.event === 'routed')!;
      expect(JSON.parse(routed.detail!)).to.include({
        rule: 'stay',
        bydel: '030103',
        explanation: `the stay's LOG_INNLAGT ${admission.msgId} went to bydel Sagene (030103)`,
      });
    });

    it('a newer address wins over the stay', async () => {
      const address = { postalCode: '0484', street: 'Stayveien 5' };
      const admission = readdressToOslo(readSample(INNLAGT), address);
      await send(admission.xml, { 'x-bydel': '030103' });
      expect(await deliveredTo(SAGENE.KP02)).to.have.length(1);
      await published(admission.msgId);
      // the patient is to go home to Frogner: the rules decide by that address
      const moved = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350', street: 'Stayveien 5' });
      await send(moved.xml);
      const [m] = await deliveredTo(FROGNER_KD0501);
      expect(m?.properties.headers?.['msg-id']).to.equal(moved.msgId);
      const row = await published(moved.msgId);
      expect(row).to.include({ bydel: '030105', route_rule: 'postcode' });
      const routed = JSON.parse((await events(moved.msgId)).find((e) => e.event === 'routed')!.detail!);
      expect(routed.explanation).to.contain(
        `the stay's LOG_INNLAGT ${admission.msgId} went to bydel Sagene (030103), but the message carries a different address`,
      );
    });

    it("a dialog message keeps the EPJ's service when it belongs to the bydel", async () => {
      // dialog is addressed by hand (procedure §4.4): Frogner's Saksbehandling, where the configured dialog service is Sykepleietjeneste
      const { xml, msgId } = readdressToOslo(readSample(FORESPORSEL), { postalCode: '0350' });
      await send(toService(xml, FROGNER_KD0501));
      const [m] = await deliveredTo(FROGNER_KD0501);
      expect(m?.properties.headers).to.include({ 'msg-id': msgId, 'to-her-id': FROGNER_KD0501 });
      // to a service of another bydel than the patient's: the configured service of the patient's bydel
      const other = readdressToOslo(readSample(FORESPORSEL), { postalCode: '0350' });
      await send(toService(other.xml, SAGENE.KD0501));
      const [n] = await deliveredTo(FROGNER_KP02);
      expect(n?.properties.headers).to.include({ 'msg-id': other.msgId, 'to-her-id': FROGNER_KP02 });
    });

    it('a bydel says feil adressat and ops send the message to the right bydel', async () => {
      const notice = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
      await send(notice.xml);
      const [first] = await deliveredTo(FROGNER_KD0501);
      const sent: Received = received(first);
      await published(notice.msgId);

      // Frogner's caseworker: "Pasienten er ukjent for oss" (8117/1 Feil adressat), linked to the notice
      const avvik = frognerKd.reply(readSample(AVVIK), sent);
      const packaged = frognerKd.package(avvik.xml, { msgType: 'DIALOG_AVVIK', toHerId: sent.fromHerId, conversationId: sent.conversationId });
      await peer.send(config.broker.queues.nhnInbound, packaged.body, { contentType: packaged.contentType, headers: { 'from-her-id': FROGNER_KD0501 } });
      const [toEpj] = await peer.take(config.broker.queues.epjInbound, 1);
      expect(toEpj?.properties.headers).to.include({ 'msg-id': avvik.msgId, 'msg-type': 'DIALOG_AVVIK' });
      const firing = await eventually('wrong-receiver firing', () =>
        alerts.find((a) => a.kind === 'wrong-receiver' && a.msgId === notice.msgId && a.state === 'firing'),
      );
      expect(firing).to.include({ eventId: 'GW-4003', msgType: 'LOG_UTSKRIVNINGSKLAR', bydel: '030105', receiverHerId: FROGNER_KD0501 });
      for (const secret of PERSONAL) expect(JSON.stringify(firing)).not.to.contain(secret);
      expect((await events(notice.msgId)).map((e) => e.event)).to.include('wrong-receiver');
      expect(await store.expectation((await outgoing(notice.msgId)).id, 'redirect')).to.include({ state: 'open', alert_state: 'firing' });

      // a held message's route does not take a delivered one; the resend does, audited
      expect((await cli('route', notice.msgId, '--bydel', '030103')).status).to.equal(1);
      const resent = await cli('route', notice.msgId, '--bydel', '030103', '--resend', '--reason', 'Frogner: feil adressat', '--json');
      expect(resent.status, resent.stderr).to.equal(0);
      expect(JSON.parse(resent.stdout)).to.include({ msgId: notice.msgId, bydel: '030103', toHerId: SAGENE.KD0501 });
      const [again] = await deliveredTo(SAGENE.KD0501);
      expect(again?.properties.headers).to.include({ 'msg-id': notice.msgId, 'to-her-id': SAGENE.KD0501 });
      expect(received(again).ebxmlMessageId, 'a new ebXML MessageId').not.to.equal(sent.ebxmlMessageId);
      expect(received(again).model.receiver.level1.herId).to.equal('9910003');

      const resolved = await eventually('wrong-receiver resolved', () =>
        alerts.find((a) => a.kind === 'wrong-receiver' && a.msgId === notice.msgId && a.state === 'resolved'),
      );
      expect(resolved).to.include({ firingId: firing.id });
      const row = await published(notice.msgId);
      expect(row).to.include({ bydel: '030103', route_rule: 'manual', receiver_l2_her_id: SAGENE.KD0501 });
      expect(row.ebxml_message_id).to.equal(received(again).ebxmlMessageId);
      const waits = await store.db.kysely.selectFrom('expectations').select(['kind', 'state', 'resolved_by']).where('message_id', '=', row.id).execute();
      const byKind = Object.fromEntries(waits.map((w) => [w.kind, `${w.state}${w.resolved_by ? ` ${w.resolved_by}` : ''}`]));
      expect(byKind).to.include({ apprec: 'open', answer: 'open', redirect: 'met manual-resend' });
      const redirected = JSON.parse((await events(notice.msgId)).find((e) => e.event === 'redirected')!.detail!);
      expect(redirected).to.include({ fromBydel: '030105', toBydel: '030103', previousEbxmlMessageId: sent.ebxmlMessageId, by: 'ops' });
      expect(redirected.superseded).to.include.members(['apprec', 'answer']);
      const [audited] = await store.db.kysely.selectFrom('audit').selectAll().where('action', '=', 'message.resend').execute();
      expect(audited).to.include({ actor: 'ops-tester', reason: 'Frogner: feil adressat', target: `message:${notice.msgId}` });

      // Frogner's AppRec for its (earlier) delivery no longer counts for the message
      const { packaged: late } = frognerKd.appRec(sent, '1');
      await peer.send(config.broker.queues.nhnInbound, late.body, { contentType: late.contentType, headers: { 'from-her-id': FROGNER_KD0501 } });
      await peer.take(config.broker.queues.epjInbound, 1);
      expect((await outgoing(notice.msgId)).apprec_status).to.equal(null);
    });

    it('the resend of a held message with an x-bydel hint routes it', async () => {
      const held = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0484', street: 'Hemmeligveien 7' });
      await send(held.xml);
      const firing = await eventually('unroutable firing', () => alerts.find((a) => a.kind === 'unroutable' && a.msgId === held.msgId && a.state === 'firing'));
      // the EPJ resends the same content under a new MsgId, now with the bydel it knows
      const resendId = randomUUID();
      await send(held.xml.replace(held.msgId, resendId), { 'x-bydel': '030103' });
      const [m] = await deliveredTo(SAGENE.KD0501);
      expect(m?.properties.headers).to.include({ 'msg-id': held.msgId, 'to-her-id': SAGENE.KD0501 });
      const resolved = await eventually('unroutable resolved', () =>
        alerts.find((a) => a.kind === 'unroutable' && a.msgId === held.msgId && a.state === 'resolved'),
      );
      expect(resolved).to.include({ firingId: firing.id, bydel: '030103' });
      const row = await published(held.msgId);
      expect(row).to.include({ bydel: '030103', route_rule: 'epj-hint' });
      const story = ['held-unroutable', 'routed-by-twin-hint', 'routed', 'signed'];
      expect((await events(held.msgId)).map((e) => e.event).filter((e) => story.includes(e))).to.deep.equal(story);
      const twin = await outgoing(resendId);
      expect(twin.state).to.equal('duplicate');
      const noted = JSON.parse((await events(resendId)).find((e) => e.event === 'duplicate-content')!.detail!);
      expect(noted).to.deep.equal({ of: held.msgId, routedHeld: held.msgId, bydel: '030103' });
      expect(await peer.take(bydelQueue(SAGENE.KD0501), 1, 500), 'delivered once').to.have.length(0);
    });

    it('no personal data in any log line of the run', () => {
      const text = logs.text();
      for (const secret of PERSONAL) expect(text, secret).not.to.contain(secret);
    });
  });
}
