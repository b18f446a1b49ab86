// `npm run demo`: the first thing a newcomer runs. Starts the gateway on demo queues, plays an
// EPJ sending a handful of official sample messages for patients around Oslo, and prints
// where each one went. The demo bydeler's encryption certificate is in the example register
// (config/demo-keys), so what they get is encrypted; Alvdal has none there, so its message waits.
// Then Frogner's message handler answers the utskrivningsklar notice as a real one does: signed,
// its payloads encrypted to the gateway's certificate (by openssl), and the EPJ gets them.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { loadConfig } from '../src/config/config.js';
import { Gateway } from '../src/gateway.js';
import { createLogger } from '../src/observability/log.js';
import { bydelName } from '../src/routing/bydeler.js';
import { makeSigner, received, registerWithCertificates, SimulatedBydel, TEMA } from '../test/support/bydel.js';
import { readdressToOslo, readSample } from '../test/support/samples.js';

const loaded = loadConfig();
if (!loaded.ok) {
  for (const p of loaded.problems) console.error(p);
  process.exit(1);
}
const config = loaded.config;
const run = 'demo';
config.broker.queues = { epjOutbound: `${run}.epj.outbound`, epjInbound: `${run}.epj.inbound`, nhnInbound: `${run}.nhn.inbound`, dlq: `${run}.gateway.dlq` };
config.broker.exchanges = { nhnOutbound: `${run}.nhn.outbound`, alerts: `${run}.gateway.alerts` };
config.broker.receiverQueuePrefix = `${run}.bydel.`;
config.database.url = `sqlite:${join(mkdtempSync(join(tmpdir(), 'gw-demo-')), 'demo.db')}`;
// Frogner's saksbehandling signs what it sends: its signing certificate goes into a copy of the register.
const FROGNER_KD0501 = '9920005';
const frognerKey = await makeSigner('Frogner saksbehandling (demo)');
config.routing.addressRegisterFile = registerWithCertificates({ [FROGNER_KD0501]: frognerKey.certPem });
const frogner = new SimulatedBydel(
  { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' },
  { name: 'Saksbehandling (FIKTIV)', herId: FROGNER_KD0501 },
  frognerKey,
  'rsa-sha256',
);

const scenarios = [
  { what: 'utskrivningsklar, patient in Frogner (0350)', file: 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml', postalCode: '0350' },
  { what: 'innlagt, patient in Sentrum (0151)', file: 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml', postalCode: '0151' },
  {
    what: 'avmelding (PLO 1.5), temporary address in Grorud (0951)',
    file: 'plo-1.5/Pasientlogistikk_Avmelding_av_utskrivningsklar_pasient_v1-5_Ny.xml',
    postalCode: '0951',
    addressType: 'TMP',
  },
  {
    what: 'utskrevet, split postcode 0484, EPJ hint x-bydel=030103',
    file: 'plo-1.6/Pasientlogistikk_Melding_om_utskrevet_pasient_v1-6_Ny.xml',
    postalCode: '0484',
    hint: '030103',
  },
  { what: 'utskrivningsklar, split postcode 0484, no hint', file: 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml', postalCode: '0484' },
  { what: 'innlagt to an unknown receiver', file: 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml', postalCode: '0350', receiverHerId: '4242424' },
  {
    what: 'to Alvdal kommune (not Oslo): receiver kept, no certificate',
    file: 'plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml',
    keep: true,
  },
];

const gateway = new Gateway(config, createLogger('warn'));
await gateway.start({ http: false });
const conn = await amqp.connect(config.broker.url);
const ch = await conn.createConfirmChannel();
const tap = (await ch.assertQueue('', { exclusive: true })).queue;
await ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
const services = new Map<string, string>();
for (const line of (await import('../src/routing/load.js')).loadRouting(config).register.parties) {
  if (line.type === 'Service') services.set(line.herId, `${line.bydel ? bydelName(line.bydel) : line.name} / ${line.serviceCode ?? ''}`);
}
for (const q of [...services.keys()].map((h) => `${config.broker.receiverQueuePrefix}${h}`)) await ch.purgeQueue(q);
await ch.purgeQueue(config.broker.queues.dlq);
await ch.purgeQueue(config.broker.queues.epjInbound);
const sent = new Map<string, string>();
for (const s of scenarios) {
  const raw = readSample(s.file);
  const { xml, msgId } = s.keep
    ? { xml: raw.replace(/<MsgId>[^<]+<\/MsgId>/, `<MsgId>${randomUUID()}</MsgId>`), msgId: '' }
    : readdressToOslo(raw, { postalCode: s.postalCode, addressType: s.addressType, receiverHerId: s.receiverHerId });
  const id = msgId || /<MsgId>([^<]+)<\/MsgId>/.exec(xml)?.[1];
  if (!id) throw new Error(`${s.file} has no MsgId`);
  sent.set(id, s.what);
  ch.sendToQueue(config.broker.queues.epjOutbound, Buffer.from(xml), {
    persistent: true,
    messageId: randomUUID(),
    headers: s.hint ? { 'x-bydel': s.hint } : {},
  });
}
await ch.waitForConfirms();

const outcome = new Map<string, string>();
let frognerGot: amqp.GetMessage | undefined;
const deadline = Date.now() + 15000;
const queues = [...services.keys()].map((h) => `${config.broker.receiverQueuePrefix}${h}`);
while (outcome.size < sent.size && Date.now() < deadline) {
  for (const q of [...queues, config.broker.queues.dlq, config.broker.queues.epjInbound, tap]) {
    const m = await ch.get(q, { noAck: true });
    if (!m) continue;
    const h = m.properties.headers ?? {};
    if (q === tap) {
      const alert = JSON.parse(m.content.toString('utf8'));
      const why = alert.kind === 'receiver-certificate' ? 'no usable encryption certificate for the receiver' : 'for manual routing';
      outcome.set(alert.msgId, `HELD ${why}, alert "${alert.kind}" (${alert.eventId})`);
    } else if (q === config.broker.queues.epjInbound) {
      // the gateway records dead letters itself (`plo-gateway dlq list`); the EPJ sees the negative AppRec
      const appRec = m.content.toString('utf8');
      const code = /<Error [^>]*V="([A-Z0-9]+)"/.exec(appRec)?.[1];
      const reason = /<Error [^>]*OT="([^"]*)"/.exec(appRec)?.[1];
      outcome.set(String(h['x-original-msg-id']), `REJECTED ${code}: ${reason} (negative AppRec to the EPJ; dead letter in the DLQ)`);
    } else if (q !== config.broker.queues.dlq) {
      const herId = String(h['to-her-id']);
      if (herId === FROGNER_KD0501) frognerGot = m;
      const encrypted = m.content.includes('application/pkcs7-mime') ? 'payload CMS-encrypted for the bydel' : 'payload in clear';
      outcome.set(String(h['msg-id']), `delivered to HER-id ${herId} (${services.get(herId)}), ${m.content.length} bytes signed ebXML, ${encrypted}`);
    }
  }
}
console.log('\nWhat the EPJ sent                                          → where it went');
for (const [msgId, what] of sent) console.log(`${what.padEnd(58)} → ${outcome.get(msgId) ?? 'no outcome within 15 s'}`);

if (frognerGot) {
  // Frogner opens its delivery (openssl, the demo bydel key), and answers: AppRec and Tilbakemelding.
  const notice = received(frognerGot);
  const gatewayCert = readFileSync(config.encryption.keys[0].certFile, 'utf8');
  const appRec = frogner.appRec(notice, '1', [], { encryptTo: gatewayCert });
  const answer = frogner.reply(readSample('dialogmelding/ks-1.0-dialog-notat-webmed-test.xml'), notice, { temaKodet: TEMA.notat });
  const answered = frogner.package(answer.xml, {
    msgType: 'DIALOG_NOTAT',
    toHerId: notice.fromHerId,
    conversationId: notice.conversationId,
    encryptTo: gatewayCert,
  });
  for (const p of [appRec.packaged, answered]) {
    ch.sendToQueue(config.broker.queues.nhnInbound, p.body, { persistent: true, contentType: p.contentType, headers: { 'from-her-id': FROGNER_KD0501 } });
  }
  await ch.waitForConfirms();
  const toEpj: string[] = [];
  let acknowledgments = 0;
  const until = Date.now() + 15000;
  while ((toEpj.length < 2 || acknowledgments < 2) && Date.now() < until) {
    const m =
      (await ch.get(config.broker.queues.epjInbound, { noAck: true })) ||
      (await ch.get(`${config.broker.receiverQueuePrefix}${FROGNER_KD0501}`, { noAck: true }));
    if (!m) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    const type = String(m.properties.headers?.['msg-type']);
    if (type === 'Acknowledgment') acknowledgments++;
    else toEpj.push(type);
  }
  console.log("\nFrogner's answers (signed by its message handler, payloads encrypted to the gateway's certificate by openssl):");
  console.log(`AppRec (OK) and Tilbakemelding for the utskrivningsklar notice → decrypted, verified, to the EPJ: ${toEpj.join(', ') || 'nothing within 15 s'}`);
  console.log(`the gateway's signed ebXML Acknowledgments back to Frogner  → ${acknowledgments}`);
}
await conn.close();
await gateway.stop();
process.exit(0);
