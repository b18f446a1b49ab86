import { expect } from 'chai';
import type { MsgHeadModel, Patient } from '../../src/mapping/model.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { parseOverrides } from '../../src/routing/overrides.js';
import { loadPostcodeIndex, lookupPostcode } from '../../src/routing/postcodeIndex.js';
import { chooseAddress, resolveBydel } from '../../src/routing/resolveBydel.js';
import { type RoutingContext, routeMessage } from '../../src/routing/route.js';
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
