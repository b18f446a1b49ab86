import { expect } from 'chai';
import type { MsgHeadModel, Patient } from '../../src/mapping/model.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { parseOverrides } from '../../src/routing/overrides.js';
import { loadPostcodeIndex, lookupPostcode } from '../../src/routing/postcodeIndex.js';
import { chooseAddress, resolveBydel } from '../../src/routing/resolveBydel.js';
import { type RoutingContext, routeMessage } from '../../src/routing/route.js';
import { addressKey, stayRole } from '../../src/routing/stay.js';
import { ADDRESS_REGISTER, POSTCODE_INDEX } from '../support/paths.js';

const postcodes = loadPostcodeIndex(POSTCODE_INDEX);
const register = AddressRegister.load(ADDRESS_REGISTER);
const overrides = parseOverrides(JSON.stringify([{ street: 'Kjelsåsveien 10', postalCode: '0484', bydel: '030108' }]));
const data = { overrides, postcodes, postcodeMinShare: 0.95 };

const patientAt = (...addresses: Patient['addresses']): Patient => ({ idents: [], addresses });

function message(type: string, patient: Patient, receiverL1 = '9900000', receiverL2?: string): MsgHeadModel {
  return {
    kind: 'msghead',
    type,
    msgId: '79c55ed0-0692-11e8-b566-0800200c9a66',
    genDate: '2026-01-05T10:00:00',
    sender: { level1: { name: 'Sykehus', herId: '59' }, level2: { name: 'Avd', herId: '90998' } },
    receiver: { level1: { name: 'Oslo kommune', herId: receiverL1 }, level2: receiverL2 ? { name: 'x', herId: receiverL2 } : undefined },
    patient,
    hendelsekoder: [],
    temaKodet: [],
  };
}

const ctx: RoutingContext = {
  ...data,
  register,
  routeByBydel: new Set(register.osloKommuneHerIds()),
  serviceByType: { LOG_UTSKRIVNINGSKLAR: 'KD0501', LOG_AVMELDING: 'KD0501', LOG_INNLAGT: 'KP02', LOG_UTSKREVET: 'KP02' },
};

describe('postcode index', () => {
  it('a postcode wholly inside Frogner decides alone', () => {
    expect(lookupPostcode(postcodes, '0350', 0.95)).to.include({ decided: true, bydel: '030105' });
  });
  it('a postcode split between Sagene and Nordre Aker is not guessed', () => {
    for (const code of ['0484', '0555', '0950']) expect(lookupPostcode(postcodes, code, 0.95).decided).to.equal(false);
  });
  it('a postcode shared by St. Hanshaugen and Sentrum is served by St. Hanshaugen alone', () => {
    expect(lookupPostcode(postcodes, '0155', 0.95)).to.include({ decided: true, bydel: '030104' });
  });
  it('a postbox code has no geography', () => {
    expect(lookupPostcode(postcodes, '0001', 0.95).decided).to.equal(false);
  });
});

describe('which bydel is responsible', () => {
  it('the temporary address wins over the home address', () => {
    const p = patientAt({ type: 'H', street: 'A 1', postalCode: '0350' }, { type: 'TMP', street: 'B 2', postalCode: '0151' });
    expect(chooseAddress(p)?.type).to.equal('TMP');
    expect(resolveBydel(p, undefined, data)).to.include({ decided: true, bydel: '030104', rule: 'postcode' });
  });
  it('a Sentrum address goes to St. Hanshaugen', () => {
    const d = resolveBydel(patientAt({ type: 'H', street: 'C 3', postalCode: '0151' }), undefined, data);
    expect(d).to.include({ decided: true, bydel: '030104', geographicBydel: '030116' });
  });
  it('the ops override wins over the EPJ hint and the postcode', () => {
    const d = resolveBydel(patientAt({ type: 'H', street: 'KJELSÅSVEIEN  10', postalCode: '0484' }), '030101', data);
    expect(d).to.include({ decided: true, bydel: '030108', rule: 'override' });
  });
  it('the EPJ hint wins over the postcode', () => {
    const d = resolveBydel(patientAt({ type: 'H', street: 'D 4', postalCode: '0350' }), '030112', data);
    expect(d).to.include({ decided: true, bydel: '030112', rule: 'epj-hint' });
  });
  it('a hint that is not a bydel code is ignored with a verdict', () => {
    const d = resolveBydel(patientAt({ type: 'H', street: 'D 4', postalCode: '0484' }), '999999', data);
    expect(d.decided).to.equal(false);
    if (!d.decided) expect(d.verdicts.join(' ')).to.contain('not a bydel code');
  });
  it('a split postcode without hint or override is held, and no verdict quotes the address', () => {
    const d = resolveBydel(patientAt({ type: 'H', street: 'Hemmeligveien 7', postalCode: '0484' }), undefined, data);
    expect(d.decided).to.equal(false);
    if (!d.decided) expect(d.verdicts.join(' ')).not.to.match(/Hemmelig|0484/);
  });
  it('a Marka hint cannot decide, since Marka is served by several bydeler', () => {
    expect(resolveBydel(patientAt(), '030117', data).decided).to.equal(false);
  });
});

describe('route stage', () => {
  it('an utskrivningsklar notice goes to the bydel Saksbehandling service (KD0501)', () => {
    const r = routeMessage(message('LOG_UTSKRIVNINGSKLAR', patientAt({ type: 'H', postalCode: '0350' })), undefined, ctx);
    expect(r.ok && r.value.action === 'deliver' && r.value.rerouted && r.value.receiver).to.deep.equal({
      level1: { name: 'Oslo kommune, Bydel Frogner (FIKTIV)', herId: '9910005' },
      level2: { name: 'Saksbehandling (FIKTIV)', herId: '9920005' },
    });
  });
  it('an admission goes to the bydel Sykepleietjeneste (KP02)', () => {
    const r = routeMessage(message('LOG_INNLAGT', patientAt({ type: 'H', postalCode: '0350' })), undefined, ctx);
    expect(r.ok && r.value.action === 'deliver' && r.value.toHerId).to.equal('9930005');
  });
  it('a message to another kommune keeps its receiver', () => {
    const r = routeMessage(message('LOG_INNLAGT', patientAt(), '99387', '5078'), undefined, ctx);
    expect(r.ok && r.value).to.include({ action: 'deliver', rerouted: false, toHerId: '5078' });
  });
  it('an unknown receiver is rejected with E21', () => {
    const r = routeMessage(message('LOG_INNLAGT', patientAt(), '123456', '654321'), undefined, ctx);
    expect(!r.ok && r.error.code).to.equal('E21');
  });
  it('a split postcode is held for manual routing', () => {
    const r = routeMessage(message('LOG_UTSKRIVNINGSKLAR', patientAt({ type: 'H', postalCode: '0484' })), undefined, ctx);
    expect(r.ok && r.value.action).to.equal('hold');
  });
});

describe('route stage: the stay and dialog services (Oslo procedure §4.4)', () => {
  const SECRET = 'a-test-secret-of-some-length';
  const home = (street: string, postalCode: string) => patientAt({ type: 'H', street, postalCode });
  const stayAt = (bydel: string, patient: Patient) => ({
    bydel,
    admissionMsgId: '11111111-2222-4333-8444-555555555555',
    addressKey: addressKey({ patient }, SECRET),
  });
  const dialogCtx: RoutingContext = { ...ctx, serviceByType: { ...ctx.serviceByType, DIALOG_NOTAT: 'KP02' } };

  it('the second message of a stay goes where the first went, even where the address alone would be held', () => {
    const patient = home('Hemmeligveien 7', '0484');
    const m = message('LOG_UTSKRIVNINGSKLAR', patient);
    const r = routeMessage(m, { stay: stayAt('030103', patient), addressKey: addressKey(m, SECRET) }, ctx);
    expect(r.ok && r.value).to.include({ action: 'deliver', rerouted: true, bydel: '030103', rule: 'stay', toHerId: '9920003' });
    expect(r.ok && r.value.action === 'deliver' && r.value.explanation).to.equal(
      "the stay's LOG_INNLAGT 11111111-2222-4333-8444-555555555555 went to bydel Sagene (030103)",
    );
  });

  it('the same address written otherwise is the same address; no address at all follows the stay too', () => {
    const stay = stayAt('030103', home('Kjelsåsveien 10 B', '0484'));
    const spelled = message('LOG_UTSKRIVNINGSKLAR', home('KJELSÅSVN. 10b', '0484'));
    expect(routeMessage(spelled, { stay, addressKey: addressKey(spelled, SECRET) }, ctx)).to.deep.nested.include({ 'value.rule': 'stay' });
    const none = message('LOG_UTSKREVET', patientAt());
    expect(routeMessage(none, { stay, addressKey: addressKey(none, SECRET) }, ctx)).to.deep.nested.include({
      'value.rule': 'stay',
      'value.toHerId': '9930003',
    });
  });

  it('a newer address wins over the stay: the rules decide, and say why the stay did not', () => {
    const stay = stayAt('030103', home('Hemmeligveien 7', '0484'));
    const moved = message('LOG_UTSKRIVNINGSKLAR', home('Annenveien 3', '0350'));
    const r = routeMessage(moved, { stay, addressKey: addressKey(moved, SECRET) }, ctx);
    expect(r.ok && r.value).to.include({ bydel: '030105', rule: 'postcode' });
    expect(r.ok && r.value.action === 'deliver' && r.value.explanation).to.match(/but the message carries a different address$/);
    const split = message('LOG_UTSKRIVNINGSKLAR', home('Annenveien 3', '0484'));
    const held = routeMessage(split, { stay, addressKey: addressKey(split, SECRET) }, ctx);
    expect(held.ok && held.value.action === 'hold' && held.value.reasons[0]).to.equal('stay-address-changed');
  });

  it('an EPJ hint wins over the stay; an admission begins a stay of its own and never follows one', () => {
    const patient = home('Hemmeligveien 7', '0484');
    const stay = stayAt('030103', patient);
    const m = message('LOG_UTSKRIVNINGSKLAR', patient);
    expect(routeMessage(m, { bydelHint: '030108', stay, addressKey: addressKey(m, SECRET) }, ctx)).to.deep.nested.include({
      'value.rule': 'epj-hint',
      'value.bydel': '030108',
    });
    const admission = message('LOG_INNLAGT', patient);
    expect(routeMessage(admission, { stay, addressKey: addressKey(admission, SECRET) }, ctx)).to.deep.nested.include({ 'value.action': 'hold' });
  });

  it("a dialog message keeps the EPJ's service when it belongs to the bydel", () => {
    // Frogner's Saksbehandling (KD0501) chosen by hand, where the configured dialog service is KP02
    const r = routeMessage(message('DIALOG_NOTAT', home('Annenveien 3', '0350'), '9900000', '9920005'), undefined, dialogCtx);
    expect(r.ok && r.value).to.include({ bydel: '030105', toHerId: '9920005' });
    expect(r.ok && r.value.action === 'deliver' && r.value.explanation).to.contain("the EPJ's chosen service 9920005 belongs to it and is kept");
  });

  it("a dialog message to another bydel's service, or a logistics message, gets the configured service", () => {
    const other = routeMessage(message('DIALOG_NOTAT', home('Annenveien 3', '0350'), '9900000', '9920003'), undefined, dialogCtx);
    expect(other.ok && other.value).to.include({ bydel: '030105', toHerId: '9930005' });
    const logistics = routeMessage(message('LOG_UTSKRIVNINGSKLAR', home('Annenveien 3', '0350'), '9900000', '9930005'), undefined, dialogCtx);
    expect(logistics.ok && logistics.value).to.include({ toHerId: '9920005' });
  });

  it('what a delivered message is to its stay', () => {
    expect(stayRole({ type: 'LOG_INNLAGT' })).to.equal('begin');
    expect(stayRole({ type: 'LOG_INNLAGT', forsendelsesstatus: 'C' })).to.equal('end');
    expect(stayRole({ type: 'LOG_UTSKREVET' })).to.equal('end');
    expect(stayRole({ type: 'LOG_DOD' })).to.equal('end');
    expect(stayRole({ type: 'LOG_UTSKRIVNINGSKLAR' })).to.equal(null);
  });
});
