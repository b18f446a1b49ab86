// The address rule in the resolution order (override → EPJ hint → address → postcode → held),
// and versioned routing data: the index and the register entries valid on the message's day.
import { expect } from 'chai';
import type { MsgHeadModel, Patient } from '../../src/mapping/model.js';
import { AddressIndex, AddressIndexSet } from '../../src/routing/addressIndex/indexFile.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { parseOverrides } from '../../src/routing/overrides.js';
import { loadPostcodeIndex } from '../../src/routing/postcodeIndex.js';
import { explainBydel, type RoutingData, resolveBydel } from '../../src/routing/resolveBydel.js';
import { routeMessage } from '../../src/routing/route.js';
import { messageDay } from '../../src/routing/validity.js';
import { buildFromCsv } from '../support/addressIndex.js';
import { type Area, bydelAreas, interiorPoints, type PlacedAddress, random, toCsv } from '../support/kartverket.js';
import { ADDRESS_REGISTER, POSTCODE_INDEX } from '../support/paths.js';

const SAGENE = '030103';
const NORDRE_AKER = '030108';
const ULLERN = '030106';

const home = (street: string, postalCode: string): Patient => ({ idents: [], addresses: [{ type: 'H', street, postalCode }] });

describe('the address rule', () => {
  const areas = bydelAreas();
  const rnd = random(7);
  const at = (code: string) => interiorPoints(areas, areas.find((a: Area) => a.code === code)!, 1, rnd)[0];
  const listed = (street: string, number: number, postcode: string, code: string): PlacedAddress => ({
    street,
    number,
    postcode,
    lonLat: at(code),
    kommune: '0301',
    expected: { code },
  });
  const postcodes = loadPostcodeIndex(POSTCODE_INDEX);
  let before2028: AddressIndex;
  let from2028: AddressIndex;
  let data: RoutingData;

  before(async () => {
    // The same street before and after a border change, as the 2028 reform would move it.
    before2028 = (
      await buildFromCsv(toCsv([listed('Grensegata', 4, '0484', SAGENE), listed('Vestliveien', 9, '0350', ULLERN)]), {
        validFrom: '2026-01-01',
        validTo: '2028-01-01',
      })
    ).index;
    from2028 = (await buildFromCsv(toCsv([listed('Grensegata', 4, '0484', NORDRE_AKER)]), { validFrom: '2028-01-01' })).index;
    data = {
      overrides: parseOverrides(JSON.stringify([{ street: 'Grensegata 4', postalCode: '0484', bydel: '030101' }])),
      postcodes,
      postcodeMinShare: 0.95,
      addressIndexes: new AddressIndexSet([from2028, before2028]),
    };
  });

  const withoutOverrides = () => ({ ...data, overrides: new Map() });

  it('an exact address decides a split postcode without a hint', () => {
    expect(resolveBydel(home('Grensegata 4', '0484'), undefined, withoutOverrides(), '2026-06-01')).to.include({
      decided: true,
      bydel: SAGENE,
      rule: 'address',
    });
  });

  it('the ops override wins over the address', () => {
    expect(resolveBydel(home('Grensegata 4', '0484'), undefined, data, '2026-06-01')).to.include({ rule: 'override', bydel: '030101' });
  });

  it('the EPJ hint wins over the address', () => {
    expect(resolveBydel(home('Grensegata 4', '0484'), '030102', withoutOverrides(), '2026-06-01')).to.include({ rule: 'epj-hint', bydel: '030102' });
  });

  it('the address wins over a postcode that would decide alone', () => {
    // 0350 lies wholly in Frogner by postcode; the indexed address is in Ullern.
    expect(resolveBydel(home('Vestliveien 9', '0350'), undefined, withoutOverrides(), '2026-06-01')).to.include({ rule: 'address', bydel: ULLERN });
    expect(resolveBydel(home('Annenveien 1', '0350'), undefined, withoutOverrides(), '2026-06-01')).to.include({ rule: 'postcode', bydel: '030105' });
  });

  it('an unknown address in a split postcode is still held, and no verdict quotes it', () => {
    const d = resolveBydel(home('Hemmeligveien 7', '0484'), undefined, withoutOverrides(), '2026-06-01');
    expect(d.decided).to.equal(false);
    if (d.decided) return;
    expect(d.verdicts).to.include('address: the street is not in the address index for the postcode');
    expect(d.verdicts.join(' ')).not.to.match(/Hemmelig|0484|\b7\b/);
  });

  it('the index valid on the message day decides: a border change is a new file, not new code', () => {
    const at = (day: string) => resolveBydel(home('Grensegata 4', '0484'), undefined, withoutOverrides(), day);
    expect(at('2027-12-31')).to.include({ rule: 'address', bydel: SAGENE });
    expect(at('2028-01-01')).to.include({ rule: 'address', bydel: NORDRE_AKER });
    const before = at('2025-12-31');
    expect(before.decided).to.equal(false);
    if (!before.decided) expect(before.verdicts).to.include('address: no address index is valid on the message date');
  });

  it('where periods overlap the later start wins, and two files starting the same day are refused', () => {
    const refresh = new AddressIndex({ ...emptyFileLike(before2028), validFrom: '2026-09-01', validTo: undefined }, 'refresh');
    const set = new AddressIndexSet([before2028, refresh]);
    expect(set.validOn('2026-08-31')).to.equal(before2028);
    expect(set.validOn('2026-09-01')).to.equal(refresh);
    expect(() => new AddressIndexSet([before2028, new AddressIndex(emptyFileLike(before2028), 'copy')])).to.throw(/both valid from 2026-01-01/);
  });

  it("the message's GenDate gives its day, in Oslo time", () => {
    const now = new Date('2030-05-05T12:00:00Z');
    expect(messageDay('2027-12-31T23:30:00', now)).to.equal('2027-12-31');
    expect(messageDay('2027-12-31T23:30:00Z', now)).to.equal('2028-01-01');
    expect(messageDay('2027-12-31T23:30:00+01:00', now)).to.equal('2027-12-31');
    expect(messageDay(undefined, now)).to.equal('2030-05-05');
    expect(messageDay('not a date', now)).to.equal('2030-05-05');
  });

  it('routing explain shows every rule, also those after the deciding one', () => {
    const { decision, verdicts } = explainBydel(home('Grensegata 4', '0484'), undefined, withoutOverrides(), '2026-06-01');
    expect(decision).to.include({ rule: 'address', bydel: SAGENE });
    expect(verdicts.map((v) => v.rule)).to.deep.equal(['override', 'epj-hint', 'address', 'postcode']);
    expect(verdicts.map((v) => Boolean(v.decision))).to.deep.equal([false, false, true, false]);
    expect(verdicts[3].verdict).to.match(/^postcode: the postcode is split/);
  });

  it('without an index the address rule says so and the order is otherwise unchanged', () => {
    const d = resolveBydel(home('Grensegata 4', '0484'), undefined, { ...withoutOverrides(), addressIndexes: undefined }, '2026-06-01');
    expect(!d.decided && d.verdicts).to.include('address: no address index is configured');
  });

  it('a routed message records the address rule, and goes to the service valid on its day', () => {
    const register = AddressRegister.load(ADDRESS_REGISTER);
    const ctx = { ...withoutOverrides(), register, routeByBydel: new Set(register.osloKommuneHerIds()), serviceByType: { LOG_UTSKRIVNINGSKLAR: 'KD0501' } };
    const message = (genDate: string): MsgHeadModel => ({
      kind: 'msghead',
      type: 'LOG_UTSKRIVNINGSKLAR',
      msgId: 'a6b1c2d3-0000-4000-8000-000000000001',
      genDate,
      sender: { level1: { name: 'Sykehus', herId: '59' } },
      receiver: { level1: { name: 'Oslo kommune', herId: '9900000' } },
      patient: home('Grensegata 4', '0484'),
      hendelsekoder: [],
      temaKodet: [],
    });
    const r = routeMessage(message('2026-06-01T10:00:00'), undefined, ctx);
    expect(r.ok && r.value).to.include({ action: 'deliver', rule: 'address', bydel: SAGENE, toHerId: '9920003' });
    const later = routeMessage(message('2028-02-01T10:00:00'), undefined, ctx);
    expect(later.ok && later.value).to.include({ rule: 'address', bydel: NORDRE_AKER, toHerId: '9920008' });
  });
});

describe('the bydel → HER-id mapping over time', () => {
  const party = (herId: number, extra: Record<string, unknown>) => ({ herId, name: `p${herId}`, municipality: '0301', active: true, ...extra });
  const register = AddressRegister.parse(
    JSON.stringify([
      party(1, { type: 'Organization', bydel: '030108' }),
      party(11, { type: 'Service', parentHerId: 1, bydel: '030108', serviceCode: 'KD0501', validTo: '2028-01-01' }),
      party(2, { type: 'Organization', bydel: '030108', validFrom: '2028-01-01' }),
      party(21, { type: 'Service', parentHerId: 2, bydel: '030108', serviceCode: 'KD0501', validFrom: '2028-01-01' }),
    ]),
  );

  it('the service valid on the message day receives it', () => {
    expect(register.bydelService('030108', 'KD0501', '2027-12-31')?.service.herId).to.equal('11');
    expect(register.bydelService('030108', 'KD0501', '2028-01-01')?.service.herId).to.equal('21');
    expect(register.bydelService('030108', 'KD0501', '2028-01-01')?.organisation.herId).to.equal('2');
  });

  it('a validity day must be a calendar day', () => {
    expect(() => AddressRegister.parse(JSON.stringify([party(3, { type: 'Organization', validFrom: '2028-13-01' })]))).to.throw(/calendar day/);
  });
});

/** An index file with the same start as `index` and no entries, to make variants of it. */
function emptyFileLike(index: AddressIndex) {
  return {
    format: 'plo-gateway/address-index' as const,
    version: 1 as const,
    validFrom: index.validFrom,
    builtAt: index.builtAt,
    source: { addresses: 'x', polygons: 'y', codeList: 'z', defaultEpsg: 25833 },
    names: {},
    entries: {},
    ambiguous: {},
  };
}
