// The verify stage on its own: who may send the hospital what, decided from the signature, the
// address register's certificate and the three places a sender is named.
import { expect } from 'chai';
import { verifySender } from '../../src/inbound/authenticity.js';
import { parseInbound, parseMessage } from '../../src/mapping/parse.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { makeSigner, type Packaged, type Received, registerWithCertificates, SimulatedBydel } from '../support/bydel.js';
import { readSample } from '../support/samples.js';

const DAY = 86_400_000;
const OWN_HER_ID = '59';
const FROGNER = { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' };
const kp02 = (herId: string) => ({ name: 'Sykepleietjeneste (FIKTIV)', herId });

/** What Frogner received from the hospital: the official admission sample, as sent by 59/90998. */
function admission(): Received {
  const xml = readSample('plo-1.6/Pasientlogistikk_Innlagt_pasient_v1-6_Ny.xml');
  const parsed = parseMessage(Buffer.from(xml), { maxBytes: 5_000_000 });
  if (!parsed.ok || parsed.value.doc.kind !== 'msghead') throw new Error('sample unreadable');
  return { model: parsed.value.doc, xml, ebxmlMessageId: 'a3c0a0d4-3b0e-4a8e-9f57-0e5c6c1d2b11', conversationId: parsed.value.doc.msgId, fromHerId: '90998' };
}

describe('inbound/authenticity: the verify stage', function () {
  this.timeout(20000);
  let register: AddressRegister;
  let frogner: SimulatedBydel;
  let frognerSha256: SimulatedBydel;
  let stHanshaugen: SimulatedBydel;
  let expired: SimulatedBydel;
  let notYetValid: SimulatedBydel;
  let noNonRepudiation: SimulatedBydel;
  let byOrganisation: SimulatedBydel;
  let unknown: SimulatedBydel;

  before(async () => {
    const [kp, sh, old, future, plain, org, stranger] = await Promise.all([
      makeSigner('frogner'),
      makeSigner('st-hanshaugen'),
      makeSigner('ullern', { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) }),
      makeSigner('sagene', { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 400 * DAY) }),
      makeSigner('grorud', { nonRepudiation: false }),
      makeSigner('alna-organisation'),
      makeSigner('stranger'),
    ]);
    register = AddressRegister.load(
      registerWithCertificates({
        '9930005': kp.certPem,
        '9930004': sh.certPem,
        '9930006': old.certPem,
        '9930003': future.certPem,
        '9930010': plain.certPem,
        '9910012': org.certPem,
      }),
    );
    frogner = new SimulatedBydel(FROGNER, kp02('9930005'), kp);
    frognerSha256 = new SimulatedBydel(FROGNER, kp02('9930005'), kp, 'rsa-sha256');
    stHanshaugen = new SimulatedBydel({ name: 'St. Hanshaugen', herId: '9910004' }, kp02('9930004'), sh);
    expired = new SimulatedBydel({ name: 'Ullern', herId: '9910006' }, kp02('9930006'), old);
    notYetValid = new SimulatedBydel({ name: 'Sagene', herId: '9910003' }, kp02('9930003'), future);
    noNonRepudiation = new SimulatedBydel({ name: 'Grorud', herId: '9910010' }, kp02('9930010'), plain);
    byOrganisation = new SimulatedBydel({ name: 'Alna', herId: '9910012' }, kp02('9930012'), org);
    unknown = new SimulatedBydel({ name: 'Nowhere', herId: '4242' }, kp02('424242'), stranger);
  });

  const rapport = (bydel: SimulatedBydel, o: { signer?: SimulatedBydel; receiverHerId?: string } = {}): Packaged => {
    const to = admission();
    let { xml } = bydel.reply(readSample('plo-1.6/Innleggelsesrapport_v1-6_Ny.xml'), to);
    if (o.receiverHerId) xml = xml.replace('<Id>59</Id>', `<Id>${o.receiverHerId}</Id>`);
    return (o.signer ?? bydel).package(xml, { msgType: 'INNLEGGELSESRAPPORT', toHerId: '90998', conversationId: to.conversationId });
  };

  function verify(p: { body: Buffer; contentType?: string }, fromHerId: string | undefined) {
    const inbound = parseInbound(p.body, { contentType: p.contentType, maxBytes: 5_000_000 });
    if (!inbound.ok) throw new Error(inbound.error.reason);
    if (inbound.value.kind === 'encrypted') throw new Error('these tests send clear-text payloads');
    return verifySender({ body: p.body, contentType: p.contentType, fromHerId }, inbound.value, register, OWN_HER_ID, new Date());
  }
  const failure = (r: ReturnType<typeof verify>) => {
    if (r.ok) throw new Error('expected a rejection');
    return r.error;
  };

  it('a message signed by the service its header, ebXML From and MsgHead name is accepted, rsa-sha1 and rsa-sha256 alike', () => {
    expect(verify(rapport(frogner), '9930005')).to.deep.equal({ ok: true, value: { herId: '9930005', algorithm: 'rsa-sha1' } });
    expect(verify(rapport(frognerSha256), '9930005')).to.deep.equal({ ok: true, value: { herId: '9930005', algorithm: 'rsa-sha256' } });
  });

  it('an Acknowledgment signal is verified the same way, without a business document', () => {
    const ack = frogner.acknowledgment(admission());
    expect(verify({ body: ack }, '9930005')).to.include({ ok: true });
    expect(failure(verify({ body: ack }, '9930004')).code).to.equal('S01');
  });

  it('a service without a certificate of its own is verified with its organisation’s', () => {
    expect(verify(rapport(byOrganisation), '9930012')).to.include({ ok: true });
  });

  it('the transport header naming another bydel than the signer is spoofing (S01), and so is a missing header', () => {
    const error = failure(verify(rapport(frogner), '9930004'));
    expect(error).to.include({ code: 'S01' });
    expect(error.reason).to.equal('The transport header from-her-id (9930004) does not match the signed ebXML From 9930005.');
    expect(failure(verify(rapport(frogner), undefined)).reason).to.contain('(missing)');
  });

  it('a MsgHead Sender that is not the signer is spoofing (S01); the reason names HER-ids only', () => {
    const error = failure(verify(rapport(frogner, { signer: stHanshaugen }), '9930004'));
    expect(error).to.include({ code: 'S01', reason: "The document's sender (HER-id 9910005/9930005) is not the signed ebXML From 9930004." });
  });

  it('one changed byte in the payload breaks the signature (S01)', () => {
    const p = rapport(frogner);
    const text = p.body.toString('latin1');
    const at = text.indexOf('<FamilyName>') + '<FamilyName>'.length;
    const body = Buffer.from(`${text.slice(0, at)}X${text.slice(at + 1)}`, 'latin1');
    const error = failure(verify({ body, contentType: p.contentType }, '9930005'));
    expect(error.code).to.equal('S01');
    expect(error.reason).to.match(/does not match: the attachment was changed after signing\.$/);
    expect(error.reason).not.to.contain('Gundersen');
  });

  it('expired, not yet valid, or without nonRepudiation: the certificate is refused (S02)', () => {
    expect(failure(verify(rapport(expired), '9930006')).reason).to.match(
      /^The signing certificate of HER-id 9930006 cannot be used: the certificate expired on /,
    );
    expect(failure(verify(rapport(notYetValid), '9930003')).reason).to.match(/is not valid before/);
    expect(failure(verify(rapport(noNonRepudiation), '9930010')).reason).to.match(/does not include nonRepudiation/);
  });

  it('a sender the address register does not know, or knows without a certificate, cannot be verified (S02)', () => {
    expect(failure(verify(rapport(unknown), '424242'))).to.include({ code: 'S02' });
    const frognerKd = new SimulatedBydel(FROGNER, { name: 'Saksbehandling', herId: '9920005' }, frogner.key);
    expect(failure(verify(rapport(frognerKd), '9920005')).reason).to.equal(
      'The address register has no active party with a signing certificate for HER-id 9920005.',
    );
  });

  it('a genuine message addressed to another hospital is not ours (E21)', () => {
    expect(failure(verify(rapport(frogner, { receiverHerId: '4711' }), '9930005'))).to.include({ code: 'E21' });
  });

  it('a bare MsgHead without an ebXML envelope cannot be verified (S01)', () => {
    const { xml } = frogner.reply(readSample('plo-1.6/Innleggelsesrapport_v1-6_Ny.xml'), admission());
    expect(failure(verify({ body: Buffer.from(xml) }, '9930005')).code).to.equal('S01');
  });
});
