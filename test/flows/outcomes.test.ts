// What each outcome writes, decided by pure builders: no broker, no database. The recorder
// writes exactly these values in one transaction (test/tracking/store.int.test.ts proves that).
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { type GatewayConfig, loadConfig } from '../../src/config/config.js';
import { answeredAgain, forwarded, identify, inboundMessage, rejectedInbound, signalCorrelated } from '../../src/flows/bydelToHospital.js';
import { returnedAppRec } from '../../src/flows/epjAppRec.js';
import {
  delivered,
  type EpjDelivery,
  held,
  heldForCertificate,
  inPlaceOf,
  type OutboundContext,
  outboundMessage,
  rejectedOutbound,
} from '../../src/flows/hospitalToBydel.js';
import { contentDuplicate, duplicateOf } from '../../src/flows/outcomes.js';
import { deliveryParts, type ManualTarget, packageDelivery } from '../../src/flows/packageDelivery.js';
import type { AppRecModel, MsgHeadModel, ParsedMessage } from '../../src/mapping/model.js';
import { parseMessage } from '../../src/mapping/parse.js';
import { sentFromHold } from '../../src/ops/manualRoute.js';
import { again as sameItemAgain } from '../../src/outbox/items.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { loadRouting } from '../../src/routing/load.js';
import { type RoutingContext, routeMessage } from '../../src/routing/route.js';
import type { MessageRow } from '../../src/tracking/db.js';
import type { Outcome } from '../../src/tracking/outcome.js';
import { ADDRESS_REGISTER, POSTCODE_INDEX } from '../support/paths.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const NOW = new Date('2026-11-24T09:00:00.000Z'); // a Tuesday, 10:00 in Oslo
const FROGNER_KD0501 = '9920005';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const AVMELDING = 'plo-1.6/Pasientlogistikk_Avmelding_av_utskrivningsklar_pasient_v1-6_Ny.xml';

function setup() {
  const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const config: GatewayConfig = structuredClone(loaded.config);
  config.routing.addressRegisterFile = ADDRESS_REGISTER;
  config.routing.postcodeIndexFile = POSTCODE_INDEX;
  config.routing.overridesFile = undefined;
  const routing: RoutingContext = loadRouting(config);
  const signing = { keyPem: readFileSync(config.signing.keyFile, 'utf8'), certPem: readFileSync(config.signing.certFile, 'utf8') };
  return { config, routing, signing, ctx: { config, now: NOW } as OutboundContext };
}

const { config, routing, signing, ctx } = setup();

function message(sample: string, postalCode = '0350'): { parsed: ParsedMessage; model: MsgHeadModel; delivery: EpjDelivery } {
  const { xml } = readdressToOslo(readSample(sample), { postalCode });
  const body = Buffer.from(xml);
  const result = parseMessage(body, { maxBytes: 5_000_000 });
  if (!result.ok || result.value.doc.kind !== 'msghead') throw new Error('sample does not parse');
  return { parsed: result.value, model: result.value.doc, delivery: { body, contentType: 'application/xml', redelivered: false } };
}

function deliverPlan(parsed: ParsedMessage, model: MsgHeadModel) {
  const routed = routeMessage(model, undefined, routing, NOW);
  if (!routed.ok || routed.value.action !== 'deliver') throw new Error('not routed');
  return {
    kind: 'deliver' as const,
    route: routed.value,
    packaged: packaged(packageDelivery(parsed, model, routed.value, { config, register: routing.register, signing }, NOW)),
  };
}

const packaged = <T>(r: { ok: true; value: T } | { ok: false; reason: string }): T => {
  if (!r.ok) throw new Error(r.reason);
  return r.value;
};

const inserted = (o: Outcome) => {
  if (!('insert' in o.message)) throw new Error('expected a new row');
  return o.message.insert;
};
const eventNames = (o: Outcome) => o.events.map((e) => `${e.stage}/${e.event}`);
const storedRow = (overrides: Partial<MessageRow>): MessageRow =>
  ({ id: 7, msg_id: 'm-1', msg_type: 'LOG_UTSKRIVNINGSKLAR', state: 'rejected', error_code: 'T02', ...overrides }) as MessageRow;

describe('outcomes: what each decision writes (pure builders)', () => {
  describe('hospital → bydel', () => {
    it('a notice delivered to Frogner: the row, both payloads, the timeline, its deadlines and one signed item for the bydel', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR);
      const o = delivered(ctx, delivery, parsed, model, deliverPlan(parsed, model));
      expect(o.kind).to.equal('delivered');
      expect(inserted(o)).to.include({
        msg_id: model.msgId,
        direction: 'out',
        state: 'received',
        bydel: '030105',
        route_rule: 'postcode',
        receiver_l2_her_id: FROGNER_KD0501,
      });
      expect(inserted(o).ebxml_message_id).to.be.a('string');
      expect(inserted(o).patient_key).to.match(/^[0-9a-f]{64}$/);
      expect(o.payloads.map((p) => p.kind)).to.deep.equal(['original', 'signed']);
      expect(eventNames(o)).to.deep.equal(['receive/received', 'validate/validated', 'route/routed', 'sign/signed', 'encrypt/encrypted']);
      expect(o.events[4].detail).to.include({ contentCipher: 'aes-256-cbc', keyTransport: 'rsa-pkcs1' });
      expect(o.outbox[0].content_type).to.match(/^multipart\/related/);
      expect(Buffer.from(o.outbox[0].body).toString('utf8')).to.contain('application/pkcs7-mime; smime-type=enveloped-data').and.not.contain('<MsgHead');
      expect(o.expectations.map((x) => x.kind)).to.deep.equal(['transport-ack', 'apprec', 'answer']);
      // two working hours from Tuesday 10:00 in Oslo
      expect(o.expectations[2].dueAt.toISOString()).to.equal('2026-11-24T11:00:00.000Z');
      expect(o.outbox).to.have.length(1);
      expect(o.outbox[0]).to.include({ purpose: 'deliver', routing_key: FROGNER_KD0501 });
      expect(o.outbox[0].headers).to.include({ 'msg-id': model.msgId, 'msg-type': 'LOG_UTSKRIVNINGSKLAR', 'to-her-id': FROGNER_KD0501 });
      // a notice sent again for the same stay supersedes the earlier one, in the same transaction
      expect(o.effects.map((e) => e.effect)).to.deep.equal(['link-on-delivery']);
    });

    it('a receiver without a usable encryption certificate: held with a receiver-certificate alert, its target kept, nothing to the bydel', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR);
      const routed = routeMessage(model, undefined, routing, NOW);
      if (!routed.ok || routed.value.action !== 'deliver') throw new Error('not routed');
      const o = heldForCertificate(ctx, delivery, parsed, model, {
        kind: 'hold-certificate',
        route: routed.value,
        reason: 'the address register has no encryption certificate for HER-id 9920005',
      });
      expect(inserted(o)).to.include({ state: 'held', bydel: '030105', receiver_l2_her_id: FROGNER_KD0501, route_rule: 'postcode' });
      expect(eventNames(o)).to.deep.equal(['receive/received', 'validate/validated', 'route/routed', 'encrypt/held-certificate']);
      expect(o.events[3].detail).to.deep.include({ target: routed.value });
      expect(o.expectations.map((x) => x.kind)).to.deep.equal(['certificate']);
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([['alert', 'receiver-certificate']]);
      const alert = JSON.parse(Buffer.from(o.outbox[0].body).toString('utf8'));
      expect(alert).to.include({ kind: 'receiver-certificate', state: 'firing', eventId: 'GW-4002', receiverHerId: FROGNER_KD0501 });
      expect(alert.text).to.contain('no encryption certificate for HER-id 9920005');
      expect(o.payloads.map((p) => p.kind)).to.deep.equal(['original']);
    });

    it('an avmelding also ends the wait for the answer to its notice, in the same transaction', () => {
      const { parsed, model, delivery } = message(AVMELDING);
      const o = delivered(ctx, delivery, parsed, model, deliverPlan(parsed, model));
      expect(o.effects.map((e) => e.effect)).to.deep.equal(['link-on-delivery']);
      expect(o.expectations.map((x) => x.kind)).to.deep.equal(['transport-ack', 'apprec']);
    });

    it('a message no rule can route is held: its alert fires at once, naming only rules that had something to go on', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR, '0484');
      const routed = routeMessage(model, undefined, routing, NOW);
      if (!routed.ok || routed.value.action !== 'hold') throw new Error('expected a hold');
      const o = held(ctx, delivery, parsed, model, { kind: 'hold', verdicts: routed.value.verdicts, reasons: routed.value.reasons });
      expect(inserted(o)).to.include({ state: 'held' });
      expect(o.payloads.map((p) => p.kind)).to.deep.equal(['original']);
      expect(o.expectations).to.have.length(1);
      expect(o.expectations[0]).to.include({ kind: 'routing' });
      expect(o.expectations[0].firing?.alertId).to.be.a('string');
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([['alert', 'unroutable']]);
      const alert = JSON.parse(Buffer.from(o.outbox[0].body).toString('utf8'));
      expect(alert).to.include({ kind: 'unroutable', state: 'firing', msgId: model.msgId, id: o.expectations[0].firing?.alertId });
      expect(alert.text).to.contain('postcode:');
      expect(alert.text).not.to.contain('none given');
      expect(alert.text).not.to.contain('no entry');
    });

    it('an invalid message is rejected: a negative AppRec to the EPJ and the original unchanged to the DLQ', () => {
      const { parsed, delivery } = message(UTSKRIVNINGSKLAR);
      const o = rejectedOutbound(
        ctx,
        { ...delivery, bydelHint: '030105' },
        { stage: 'validate', error: { code: 'T02', reason: 'The message is not valid.', transient: false } },
        parsed,
      );
      expect(inserted(o)).to.include({ state: 'rejected', error_code: 'T02', error_reason: 'The message is not valid.' });
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([
        ['apprec', config.broker.queues.epjInbound],
        ['dlq', config.broker.queues.dlq],
      ]);
      expect(Buffer.compare(Buffer.from(o.outbox[1].body), delivery.body)).to.equal(0);
      expect(o.outbox[1].headers).to.include({
        'x-error-code': 'T02',
        'x-stage': 'validate',
        'x-bydel': '030105',
        'x-source-queue': config.broker.queues.epjOutbound,
      });
      expect(eventNames(o)).to.deep.equal(['receive/received', 'validate/rejected']);
      expect(o.expectations).to.deep.equal([]);
    });

    it('what cannot be parsed at all is kept under its AMQP message id; an AppRec from the EPJ is never answered with one', () => {
      const unreadable = rejectedOutbound(
        ctx,
        { body: Buffer.from('not xml'), redelivered: false, amqpMessageId: 'amqp-1' },
        { stage: 'parse', error: { code: 'T01', reason: 'Not XML.', transient: false } },
      );
      expect(inserted(unreadable)).to.include({ msg_id: 'amqp-1', sender_her_id: null, state: 'rejected', error_code: 'T01' });
      expect(unreadable.outbox.map((i) => i.purpose)).to.deep.equal(['apprec', 'dlq']);
      const appRec = parseMessage(Buffer.from(readSample('apprec/sarepta-apprec-1.0-eksempel-avvist-iso8859-1.xml'), 'latin1'), { maxBytes: 5_000_000 });
      if (!appRec.ok) throw new Error('the AppRec sample does not parse');
      const o = rejectedOutbound(
        ctx,
        { body: Buffer.from('x'), redelivered: false },
        { stage: 'route', error: { code: 'E21', reason: 'Unknown.', transient: false } },
        appRec.value,
      );
      expect(o.outbox.map((i) => i.purpose)).to.deep.equal(['dlq']);
    });

    it('the same MsgId after a rejection takes over the stored row with everything a first delivery writes', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR);
      const first = delivered(ctx, delivery, parsed, model, deliverPlan(parsed, model));
      const resent = inPlaceOf(storedRow({ id: 42, msg_id: model.msgId, state: 'rejected', error_code: 'T02' }), first);
      expect(resent.message).to.have.property('update', 42);
      if (!('update' in resent.message)) throw new Error('expected an update');
      expect(resent.message.guard).to.deep.equal({ state: 'rejected' });
      const { msg_id, direction, sender_her_id, ...patch } = inserted(first);
      expect(resent.message.patch).to.deep.equal(patch);
      expect(resent.payloads).to.deep.equal(first.payloads);
      expect(resent.expectations).to.deep.equal(first.expectations);
      expect(resent.outbox).to.deep.equal(first.outbox);
      expect(eventNames(resent)).to.deep.equal(['dedupe/resent-after-rejection', ...eventNames(first)]);
      expect(resent.events[0].detail).to.deep.equal({ previousCode: 'T02', previousState: 'rejected' });
    });

    it('a replay that skips the dedupe is recorded as such', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR);
      const replayed = inPlaceOf(storedRow({ state: 'published', error_code: null }), delivered(ctx, delivery, parsed, model, deliverPlan(parsed, model)));
      expect(eventNames(replayed)[0]).to.equal('dedupe/replayed-skipping-dedupe');
    });

    it('the same content under a new MsgId is kept as a duplicate and sends nothing', () => {
      const { parsed, model, delivery } = message(UTSKRIVNINGSKLAR);
      const o = contentDuplicate(outboundMessage(model, parsed), delivery, parsed.framing, storedRow({ msg_id: 'first-id' }), {
        event: 'GW-1003',
        stage: 'dedupe',
        decision: 'duplicate content',
      });
      expect(inserted(o)).to.include({ state: 'duplicate', msg_id: model.msgId });
      expect(eventNames(o)).to.deep.equal(['receive/received', 'dedupe/duplicate-content']);
      expect([o.outbox, o.expectations, o.effects]).to.deep.equal([[], [], []]);
    });

    it('a repeat of a MsgId only notes it on the stored row', () => {
      const o = duplicateOf(storedRow({ id: 9, state: 'published' }), { event: 'GW-1003', stage: 'dedupe', decision: 'duplicate' });
      expect(o.message).to.deep.equal({ existing: 9 });
      expect(eventNames(o)).to.deep.equal(['dedupe/duplicate-ignored']);
      expect([o.payloads, o.outbox, o.expectations, o.effects]).to.deep.equal([[], [], [], []]);
    });

    it('a held message routed by ops leaves like a routed one, resolves its hold and alert, and is audited, only while held', () => {
      const { parsed, model } = message(UTSKRIVNINGSKLAR, '0484');
      const service = routing.register.bydelService('030105', 'KD0501', '2026-11-24');
      if (!service) throw new Error('Frogner has no KD0501 service');
      const target: ManualTarget = {
        action: 'deliver',
        rerouted: true,
        bydel: '030105',
        rule: 'manual',
        explanation: 'ops routed it to Frogner (030105)',
        receiver: {
          level1: { name: service.organisation.name, herId: service.organisation.herId },
          level2: { name: service.service.name, herId: service.service.herId },
        },
        toHerId: service.service.herId,
      };
      const parts = deliveryParts(
        model,
        target,
        packaged(packageDelivery(parsed, model, target, { config, register: routing.register, signing }, NOW)),
        config,
        NOW,
      );
      const o = sentFromHold(
        storedRow({ id: 5, msg_id: model.msgId, state: 'held', created_at: NOW.toISOString() }),
        model,
        target,
        parts,
        undefined,
        { kind: 'route', by: { actor: 'kari', via: 'cli', reason: 'checked' } },
        config,
        NOW,
      );
      expect(o.message).to.deep.include({ update: 5, guard: { state: 'held' } });
      expect(o.payloads.map((p) => p.kind)).to.deep.equal(['signed']);
      expect(o.expectations.map((x) => x.kind)).to.deep.equal(['transport-ack', 'apprec', 'answer']);
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([
        ['deliver', FROGNER_KD0501],
        ['alert', 'unroutable'],
      ]);
      expect(JSON.parse(Buffer.from(o.outbox[1].body).toString('utf8'))).to.include({ state: 'resolved' });
      expect(o.effects.map((e) => e.effect)).to.deep.equal(['resolve', 'link-on-delivery', 'audit']);
    });
  });

  describe('bydel → hospital', () => {
    const sender = { herId: FROGNER_KD0501, algorithm: 'rsa-sha256' } as const;
    const inCtx = { config, partners: { config, register: routing.register, signing }, bydelOf: () => '030105', now: NOW };

    it('a bydel message is forwarded to the EPJ, linked to what it answers', () => {
      const { parsed } = message('plo-1.6/Innleggelsesrapport_v1-6_Ny.xml');
      const target = { id: 3, msgId: 'notice-1', msgType: 'LOG_UTSKRIVNINGSKLAR' };
      const o = forwarded(inCtx, { body: Buffer.from('x'), redelivered: false }, parsed, sender, { kind: 'answer', target, rule: 'conversation-ref' });
      expect(inserted(o)).to.include({ direction: 'in', sender_her_id: FROGNER_KD0501, state: 'received', bydel: '030105' });
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([['forward', config.broker.queues.epjInbound]]);
      expect(eventNames(o)).to.deep.equal(['receive/received', 'verify/verified', 'validate/validated', 'correlate/correlated']);
      expect(o.effects).to.have.length(1);
      expect(o.effects[0]).to.deep.include({ effect: 'correlate' });
    });

    it('a transport Acknowledgment only updates the message it refers to; one that refers to nothing is kept as unmatched', () => {
      const signal = { framing: 'soap', ebxml: { messageId: 'ack-1', signal: 'Acknowledgment', refToMessageId: 'eb-1' }, errors: [] } as never;
      const matched = signalCorrelated(inCtx, { body: Buffer.from('x'), redelivered: false }, signal, sender, {
        kind: 'transport',
        target: { id: 3, msgId: 'notice-1', msgType: 'LOG_UTSKRIVNINGSKLAR' },
        state: 'acked',
        errorCodes: [],
      });
      expect(inserted(matched)).to.include({ state: 'correlated', msg_id: 'ack-1' });
      expect([matched.outbox, matched.effects.length]).to.deep.equal([[], 1]);
      const unmatched = signalCorrelated(inCtx, { body: Buffer.from('x'), redelivered: false }, signal, sender, { kind: 'none', why: 'nothing sent' });
      expect(inserted(unmatched)).to.include({ state: 'unmatched' });
      expect(unmatched.effects).to.deep.equal([]);
    });

    it('an invalid message from a verified sender is told why; a forged one only goes to the DLQ', () => {
      const { parsed } = message(UTSKRIVNINGSKLAR);
      const inbound = { kind: 'business' as const, message: parsed };
      const refusal = { stage: 'validate' as const, error: { code: 'T02' as const, reason: 'Not valid.', transient: false } };
      const told = rejectedInbound(inCtx, { body: Buffer.from('x'), redelivered: false }, refusal, inbound, sender);
      expect(told.outbox.map((i) => i.purpose)).to.deep.equal(['receipt', 'dlq']);
      expect(inserted(told)).to.include({ state: 'rejected', apprec_status: 'rejected', sender_her_id: FROGNER_KD0501 });
      const forged = rejectedInbound(
        inCtx,
        { body: Buffer.from('x'), redelivered: false, fromHerId: FROGNER_KD0501 },
        { stage: 'verify', error: { code: 'S01', reason: 'Bad signature.', transient: false } },
        inbound,
      );
      expect(forged.outbox.map((i) => i.purpose)).to.deep.equal(['dlq']);
      // a forger takes no dedupe key: the real message must still get through
      expect(inserted(forged)).to.include({ sender_her_id: null, error_code: 'S01' });
    });

    it('a repeat of an answered message gets the same AppRec once more, byte for byte', () => {
      const row = {
        purpose: 'receipt' as const,
        exchange: 'nhn.outbound',
        routing_key: FROGNER_KD0501,
        headers: '{"msg-id":"apprec-1"}',
        content_type: 'multipart/related',
        message_id_prop: 'p-1',
        body: Buffer.from('signed'),
      };
      const o = answeredAgain(storedRow({ id: 11, state: 'forwarded' }), [sameItemAgain(row)]);
      expect(o.message).to.deep.equal({ existing: 11 });
      expect(o.outbox).to.deep.equal([{ ...row, headers: { 'msg-id': 'apprec-1' } }]);
      expect(eventNames(o)).to.deep.equal(['dedupe/duplicate-answered-again']);
    });

    it("the EPJ's AppRec is recorded on the message it answers, only if none was returned yet", () => {
      const { parsed } = message(UTSKRIVNINGSKLAR);
      const incoming = inboundMessage(inCtx, identify({ kind: 'business', message: parsed }, ''), sender);
      const appRec = { id: 'apprec-2', status: '1', originalMsgId: { id: incoming.msg_id, msgType: 'LOG_UTSKRIVNINGSKLAR' } } as AppRecModel;
      const returned = returnedAppRec(
        inCtx.partners,
        { row: storedRow({ id: 12, ...incoming, state: 'forwarded' } as Partial<MessageRow>) },
        appRec,
        '<AppRec/>',
        'ok',
        FROGNER_KD0501,
        NOW,
      );
      if (!('returns' in returned)) throw new Error(returned.refusal.error.reason);
      const o = returned.returns;
      expect(o.message).to.deep.include({ update: 12, guard: { unset: 'apprec_status' } });
      expect(o.outbox.map((i) => [i.purpose, i.routing_key])).to.deep.equal([['receipt', FROGNER_KD0501]]);
      expect(o.outbox[0].headers).to.include({ 'msg-id': 'apprec-2', 'msg-type': 'APPREC' });
      expect(eventNames(o)).to.deep.equal(['receipt/apprec-returned']);
      expect(Buffer.from(o.outbox[0].body).toString('utf8')).to.contain('application/pkcs7-mime; smime-type=enveloped-data').and.not.contain('<AppRec');
    });

    it('an AppRec for a bydel without a usable encryption certificate is never sent in clear: the EPJ AppRec is refused to the DLQ, a negative one is left out', () => {
      const bare = new AddressRegister(routing.register.parties.map((p) => ({ ...p, encryptionCertificate: undefined })));
      const partners = { config, register: bare, signing };
      const { parsed } = message(UTSKRIVNINGSKLAR);
      const incoming = inboundMessage(inCtx, identify({ kind: 'business', message: parsed }, ''), sender);
      const appRec = { id: 'apprec-3', status: '1', originalMsgId: { id: incoming.msg_id, msgType: 'LOG_UTSKRIVNINGSKLAR' } } as AppRecModel;
      const row = storedRow({ id: 13, ...incoming, state: 'forwarded' } as Partial<MessageRow>);
      const returned = returnedAppRec(partners, { row }, appRec, '<AppRec/>', 'ok', FROGNER_KD0501, NOW);
      expect(returned).to.have.property('refusal');
      if (!('refusal' in returned)) throw new Error('returned');
      expect(returned.refusal).to.deep.include({ stage: 'encrypt' });
      expect(returned.refusal.error).to.include({ code: 'GW-RECEIVER-CERTIFICATE' });
      expect(returned.refusal.error.reason).to.contain('no encryption certificate for HER-id 9920005');

      const refusal = { stage: 'validate' as const, error: { code: 'T02' as const, reason: 'Not valid.', transient: false } };
      const rejected = rejectedInbound(
        { ...inCtx, partners },
        { body: Buffer.from('x'), redelivered: false },
        refusal,
        { kind: 'business', message: parsed },
        sender,
      );
      expect(rejected.outbox.map((i) => i.purpose)).to.deep.equal(['dlq']);
      expect(eventNames(rejected)).to.include('receipt/receipt-not-sent');
      expect(inserted(rejected).apprec_status ?? null).to.equal(null);
    });
  });
});
