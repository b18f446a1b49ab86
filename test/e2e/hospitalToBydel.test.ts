// Flow A end to end on the real RabbitMQ and a real SQLite file: the official samples,
// readdressed to Oslo kommune, reach the right bydel's queue signed and readdressed.

import type { GetMessage } from 'amqplib';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import type { MsgHeadModel } from '../../src/mapping/model.js';
import { buildMultipart } from '../../src/mapping/multipart.js';
import { verifyEbxmlMessage } from '../../src/outbound/ebxml.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { openDelivery } from '../support/bydel.js';
import { cli } from '../support/cli.js';
import { type LogCapture, Peer, startGateway, testConfig, testSigningKeys } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample, sampleFiles, syntheticFnr, withPatient } from '../support/samples.js';

const FROGNER = { KD0501: '9920005', KP02: '9930005' };
const ST_HANSHAUGEN_KD0501 = '9920004';

/** The MsgHead in what the EPJ sent (plain) or what a bydel got (decrypted by openssl with the bydel's key). */
const modelOf = (body: Buffer, contentType?: string): MsgHeadModel => {
  const { doc } = openDelivery(body, contentType).parsed;
  if (doc.kind !== 'msghead') throw new Error('not a MsgHead');
  return doc;
};

describe('hospital → bydel, end to end (RabbitMQ + SQLite)', function () {
  this.timeout(60000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  const bydelQueue = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;

  before(async () => {
    config = testConfig();
    ({ gateway, logs } = await startGateway(config));
    peer = await Peer.connect();
  });

  after(async () => {
    await gateway?.stop();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  const SAMPLE_TARGET: Record<string, string> = {
    LOG_UTSKRIVNINGSKLAR: FROGNER.KD0501,
    LOG_AVMELDING: FROGNER.KD0501,
    HELSEOPPL_SOKNAD: FROGNER.KD0501,
    LOG_INNLAGT: FROGNER.KP02,
    LOG_UTSKREVET: FROGNER.KP02,
    LOG_DOD: FROGNER.KP02,
    UTSKRIVNINGSRAPPORT: FROGNER.KP02,
  };

  it('every official PLO 1.5/1.6 sample to a Frogner patient reaches the right Frogner service, signed and readdressed', async () => {
    const files = [...sampleFiles('plo-1.5'), ...sampleFiles('plo-1.6')].filter((f) => {
      const type = /<Type V="([A-Z_]+)"/.exec(readSample(f.split('/samples/')[1]))?.[1] ?? '';
      return type in SAMPLE_TARGET;
    });
    expect(files.length).to.be.greaterThan(15);
    const expected = new Map<string, string>();
    const senders = new Map<string, string>();
    for (const f of files) {
      const raw = readSample(f.split('/samples/')[1]);
      const { xml, msgId } = readdressToOslo(raw, { postalCode: '0350' });
      const original = modelOf(Buffer.from(raw));
      expected.set(msgId, SAMPLE_TARGET[original.type]);
      senders.set(msgId, original.sender.level2?.herId ?? original.sender.level1.herId ?? '');
      await peer.send(config.broker.queues.epjOutbound, xml, { contentType: 'application/xml' });
    }
    const byQueue = new Map<string, number>();
    for (const herId of expected.values()) byQueue.set(herId, (byQueue.get(herId) ?? 0) + 1);
    const got: { herId: string; m: GetMessage }[] = [];
    for (const [herId, n] of byQueue) for (const m of await peer.take(bydelQueue(herId), n)) got.push({ herId, m });
    expect(got.length).to.equal(expected.size);

    const { certPem } = testSigningKeys();
    for (const { herId, m } of got) {
      const msgId = String(m.properties.headers?.['msg-id']);
      expect(expected.get(msgId), msgId).to.equal(herId);
      expect(m.properties.headers).to.include({ 'to-her-id': herId, 'from-her-id': senders.get(msgId) });
      expect(verifyEbxmlMessage(m.content, m.properties.contentType, certPem).ok).to.equal(true);
      const model = modelOf(m.content, m.properties.contentType);
      expect(model.msgId).to.equal(msgId);
      expect(model.receiver.level1.herId).to.equal('9910005');
      expect(model.receiver.level2?.herId).to.equal(herId);
    }
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
  });

  it('a Sentrum address goes to St. Hanshaugen', async () => {
    const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), { postalCode: '0151' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [m] = await peer.take(bydelQueue(ST_HANSHAUGEN_KD0501), 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
  });

  it('a temporary address is routed by, and an EPJ hint decides for a split postcode', async () => {
    const tmp = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), { postalCode: '0151', addressType: 'TMP' });
    await peer.send(config.broker.queues.epjOutbound, tmp.xml);
    const [a] = await peer.take(bydelQueue(ST_HANSHAUGEN_KD0501), 1);
    expect(a?.properties.headers?.['msg-id']).to.equal(tmp.msgId);

    const hinted = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), { postalCode: '0484' });
    await peer.send(config.broker.queues.epjOutbound, hinted.xml, { headers: { 'x-bydel': '030103' } });
    const [b] = await peer.take(bydelQueue('9920003'), 1);
    expect(b?.properties.headers?.['msg-id']).to.equal(hinted.msgId);
  });

  it('a split postcode (0484) is held as unroutable with an alert, not rejected', async () => {
    const alertQueue = `${config.broker.queues.dlq}.alerts-tap`;
    await peer.ch.assertQueue(alertQueue, { exclusive: true });
    await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'unroutable');
    const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), {
      postalCode: '0484',
      street: 'Hemmeligveien 7',
    });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [alert] = await peer.take(alertQueue, 1);
    const body = JSON.parse(alert.content.toString('utf8'));
    expect(body).to.include({ kind: 'unroutable', state: 'firing', msgId, msgType: 'LOG_UTSKRIVNINGSKLAR', eventId: 'GW-4001' });
    expect(alert.content.toString('utf8')).not.to.match(/Hemmelig|0484|Gundersen|15076500565/);
    expect(await peer.take(config.broker.queues.epjInbound, 1, 300)).to.have.length(0);
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
  });

  const rejectionCases: [string, () => { body: string; msgId?: string }, string][] = [
    ['not XML', () => ({ body: 'this is not XML at all' }), 'T01'],
    [
      'XSD-invalid',
      () => {
        const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
        return { body: xml.replace('<MIGversion>v1.2 2006-05-24</MIGversion>', '<MIGversion>v1.2 2006-05-24</MIGversion><Unexpected/>'), msgId };
      },
      'T02',
    ],
    [
      'a Type that does not match its content',
      () => {
        const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
        return { body: xml.replace('V="LOG_UTSKRIVNINGSKLAR"', 'V="LOG_INNLAGT"'), msgId };
      },
      'T02',
    ],
    [
      'an ebXML multipart body cut off after </MsgHead>, before its closing boundary',
      () => {
        const { xml } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'));
        const soap = '<SOAP:Envelope xmlns:SOAP="http://schemas.xmlsoap.org/soap/envelope/"><SOAP:Body/></SOAP:Envelope>';
        const { body } = buildMultipart([
          { contentId: 'soap@test', contentType: 'text/xml', body: Buffer.from(soap) },
          { contentId: 'payload@test', contentType: 'application/xml', body: Buffer.from(xml) },
        ]);
        const text = body.toString('utf8');
        return { body: text.slice(0, text.lastIndexOf('</MsgHead>') + '</MsgHead>'.length) };
      },
      'T01',
    ],
    [
      'an unknown receiver',
      () => {
        const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), { receiverHerId: '4242424' });
        return { body: xml, msgId };
      },
      'E21',
    ],
  ];

  for (const [name, make, code] of rejectionCases) {
    it(`${name}: a negative AppRec with ${code} to the EPJ and the original in the DLQ, and the next message still flows`, async () => {
      const { body, msgId } = make();
      await peer.send(config.broker.queues.epjOutbound, body);
      const next = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml'));
      await peer.send(config.broker.queues.epjOutbound, next.xml);

      const [appRec] = await peer.take(config.broker.queues.epjInbound, 1);
      const text = appRec.content.toString('utf8');
      expect(text).to.contain('<Status V="2" DN="Avvist"/>');
      expect(text).to.contain(`V="${code}"`);
      if (msgId) expect(text).to.contain(`<Id>${msgId}</Id>`);
      const [dead] = await peer.take(config.broker.queues.dlq, 1);
      expect(dead.content.toString('utf8')).to.equal(body);
      expect(dead.properties.headers).to.include({ 'x-error-code': code, 'x-source-queue': config.broker.queues.epjOutbound });
      expect(String(dead.properties.headers?.['x-error-reason'])).to.match(/\.$/);
      const [flowed] = await peer.take(bydelQueue(FROGNER.KP02), 1);
      expect(flowed?.properties.headers?.['msg-id']).to.equal(next.msgId);
    });
  }

  it('the same MsgId sent twice is delivered once', async () => {
    const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml'));
    await peer.send(config.broker.queues.epjOutbound, xml);
    await peer.send(config.broker.queues.epjOutbound, xml);
    const got = await peer.take(bydelQueue(FROGNER.KP02), 2, 1500);
    expect(got.map((m) => m.properties.headers?.['msg-id'])).to.deep.equal([msgId]);
  });

  it('the same content resent by the EPJ under a new MsgId is recognised and not sent again', async () => {
    const first = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml'));
    const resentId = '0c6f2a3e-8d0b-4d55-9a55-3f0f8c1d2e4b';
    await peer.send(config.broker.queues.epjOutbound, first.xml);
    await peer.send(config.broker.queues.epjOutbound, first.xml.replace(first.msgId, resentId).replace(/<GenDate>[^<]+</, '<GenDate>2026-02-02T12:00:00<'));
    const got = await peer.take(bydelQueue(FROGNER.KP02), 2, 1500);
    expect(got.map((m) => m.properties.headers?.['msg-id'])).to.deep.equal([first.msgId]);
    const shown = await cli(['messages', 'show', resentId, '--json'], { env: { DATABASE_URL: config.database.url } });
    const [resent] = JSON.parse(shown.stdout);
    expect(resent.state).to.equal('duplicate');
    expect(resent.events.find((e: { event: string }) => e.event === 'duplicate-content').detail).to.deep.equal({ of: first.msgId });
  });

  it('a message rejected once and resent with the same MsgId, corrected, is delivered', async () => {
    const good = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml'));
    await peer.send(config.broker.queues.epjOutbound, good.xml.replace('<MIGversion>', '<Bad/><MIGversion>'));
    const [appRec] = await peer.take(config.broker.queues.epjInbound, 1);
    expect(appRec.content.toString('utf8')).to.contain('V="T02"');
    await peer.take(config.broker.queues.dlq, 1);
    await peer.send(config.broker.queues.epjOutbound, good.xml);
    const [m] = await peer.take(bydelQueue(FROGNER.KP02), 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(good.msgId);

    // what is stored is what a first delivery stores: payloads, deadlines, state
    const first = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml'));
    await peer.send(config.broker.queues.epjOutbound, first.xml);
    await peer.take(bydelQueue(FROGNER.KP02), 1);
    const store = new Store(await openDatabase(config.database.url));
    try {
      const stored = async (msgId: string) => {
        const row = await eventually(`${msgId} published`, async () => (await store.findByMsgId(msgId)).find((r) => r.state === 'published'));
        const expectations = await store.db.kysely
          .selectFrom('expectations')
          .select(['kind', 'state'])
          .where('message_id', '=', row.id)
          .orderBy('id')
          .execute();
        return {
          row,
          payloads: (await store.payloads(row.id)).map((p) => p.kind),
          expectations,
          events: (await store.timeline(msgId))[0].events.map((e) => e.event),
        };
      };
      const resent = await stored(good.msgId);
      const fresh = await stored(first.msgId);
      expect(resent.row).to.include({ error_code: null, error_reason: null, route_rule: fresh.row.route_rule, bydel: fresh.row.bydel });
      expect(resent.row.ebxml_message_id).to.be.a('string');
      expect(resent.expectations).to.deep.equal(fresh.expectations);
      expect(resent.expectations.map((x) => x.kind)).to.deep.equal(['transport-ack', 'apprec', 'innleggelsesrapport']);
      // the rejected original stays beside the corrected one
      expect(resent.payloads).to.deep.equal(['original', ...fresh.payloads]);
      expect(Buffer.from((await store.latestPayload(resent.row.id, 'original'))!.body).toString('utf8')).to.equal(good.xml);
      expect(resent.events.slice(resent.events.indexOf('resent-after-rejection'))).to.deep.equal(['resent-after-rejection', ...fresh.events]);
    } finally {
      await store.close();
    }
  });

  it('ops read the timeline of a delivered message: routed by which rule to which HER-id, signed, published; no personal data', async () => {
    // a patient of its own: the samples' patient has a stay at Frogner and open notices from the tests before
    const { xml, msgId } = readdressToOslo(readSample('plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml'), {
      postalCode: '0350',
      street: 'Testveien 2',
    });
    await peer.send(config.broker.queues.epjOutbound, withPatient(xml, syntheticFnr(400)));
    await peer.take(bydelQueue(FROGNER.KD0501), 1);
    const shown = await cli(['messages', 'show', msgId, '--json'], { env: { DATABASE_URL: config.database.url } });
    expect(shown.status, shown.stderr).to.equal(0);
    const [timeline] = JSON.parse(shown.stdout);
    expect(timeline).to.include({ msgId, type: 'LOG_UTSKRIVNINGSKLAR', state: 'published', bydel: '030105', routeRule: 'postcode' });
    expect(timeline.events.map((e: { event: string }) => e.event)).to.include.ordered.members([
      'received',
      'validated',
      'routed',
      'signed',
      'encrypted',
      'deliver-published',
    ]);
    expect(timeline.events.find((e: { event: string }) => e.event === 'routed').detail).to.include({
      bydel: '030105',
      rule: 'postcode',
      herId: FROGNER.KD0501,
    });
    expect(shown.stdout).not.to.match(new RegExp(`15076500565|${syntheticFnr(400)}|Gundersen|Testveien`));
    const human = await cli(['messages', 'show', msgId], { env: { DATABASE_URL: config.database.url } });
    expect(human.stdout).to.contain('routed');
    expect((await cli(['messages', 'show', 'no-such-id'], { env: { DATABASE_URL: config.database.url } })).status).to.equal(1);
  });

  it('no fødselsnummer, name or street from the samples appears in any log line', () => {
    const text = logs.text();
    expect(logs.lines.length).to.be.greaterThan(20);
    for (const secret of ['15076500565', 'Gundersen', 'Roland', 'Flåklypa', 'Testveien', 'Hemmeligveien', 'Omsorg']) {
      expect(text, secret).not.to.contain(secret);
    }
  });
});
