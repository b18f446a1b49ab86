// What EPJs really send, matched against what Kartverket lists: one test per normalisation case.
import { expect } from 'chai';
import type { AddressIndex } from '../../src/routing/addressIndex/indexFile.js';
import { type AddressMatch, lookupAddress } from '../../src/routing/addressIndex/lookup.js';
import { houseKey, normaliseStreetName, parseStreetAddress } from '../../src/routing/addressIndex/normalise.js';
import { buildFromCsv } from '../support/addressIndex.js';
import { type Area, bydelAreas, interiorPoints, type PlacedAddress, random, toCsv } from '../support/kartverket.js';

const SAGENE = '030103';
const NORDRE_AKER = '030108';
const GRUNERLOKKA = '030102';
const FROGNER = '030105';

describe('street addresses as EPJs write them', () => {
  let index: AddressIndex;

  before(async () => {
    const areas = bydelAreas();
    const rnd = random(42);
    const at = (code: string) => interiorPoints(areas, areas.find((a: Area) => a.code === code)!, 1, rnd)[0];
    const listed = (street: string, number: number, letter: string | undefined, postcode: string, code: string): PlacedAddress => ({
      street,
      number,
      letter,
      postcode,
      lonLat: at(code),
      kommune: '0301',
      expected: { code },
    });
    const csv = toCsv([
      listed('Kjelsåsveien', 10, undefined, '0484', NORDRE_AKER),
      listed('Kjelsåsveien', 12, 'A', '0484', NORDRE_AKER),
      listed('Kjelsåsveien', 14, 'A', '0484', SAGENE),
      listed('Kjelsåsveien', 14, 'B', '0484', SAGENE),
      listed('Kjelsåsveien', 16, 'A', '0484', SAGENE),
      listed('Kjelsåsveien', 16, 'B', '0484', NORDRE_AKER),
      listed('Thorvald Meyers gate', 5, undefined, '0555', GRUNERLOKKA),
      listed('Storgata', 3, undefined, '0555', GRUNERLOKKA),
      listed('Storgata', 1, undefined, '0484', SAGENE),
      listed('Storgate', 1, undefined, '0484', NORDRE_AKER),
      listed('Bygdøy allé', 2, undefined, '0257', FROGNER),
      listed('Sæterveien', 4, undefined, '0484', SAGENE),
    ]);
    ({ index } = await buildFromCsv(csv));
  });

  const bydelOf = (street: string, postcode: string) => {
    const m = lookupAddress(index, street, postcode);
    return m.found ? m.entry.bydel : undefined;
  };
  const reasonOf = (street: string, postcode: string) => (lookupAddress(index, street, postcode) as Extract<AddressMatch, { found: false }>).reason;

  it('capital letters do not matter', () => {
    expect(bydelOf('KJELSÅSVEIEN 10', '0484')).to.equal(NORDRE_AKER);
    expect(bydelOf('kjelsåsveien 10', '0484')).to.equal(NORDRE_AKER);
  });

  it('extra spaces, and a name written together or apart, do not matter', () => {
    expect(bydelOf('  Thorvald   Meyers  gate   5 ', '0555')).to.equal(GRUNERLOKKA);
    expect(bydelOf('Thorvald Meyersgate 5', '0555')).to.equal(GRUNERLOKKA);
    expect(bydelOf('Kjelsås veien 10', '0484')).to.equal(NORDRE_AKER);
  });

  it('gate, gata and gt. are the same street', () => {
    expect(bydelOf('Thorvald Meyers gt. 5', '0555')).to.equal(GRUNERLOKKA);
    expect(bydelOf('Thorvald Meyers gt 5', '0555')).to.equal(GRUNERLOKKA);
    expect(bydelOf('Storgt. 3', '0555')).to.equal(GRUNERLOKKA);
    expect(bydelOf('Storgate 3', '0555')).to.equal(GRUNERLOKKA);
  });

  it('vei, veien, vn. and v. are the same street', () => {
    for (const written of ['Kjelsåsvei 10', 'Kjelsåsv. 10', 'Kjelsåsvn. 10', 'Kjelsås vei 10', 'Kjelsåsveien 10']) {
      expect(bydelOf(written, '0484'), written).to.equal(NORDRE_AKER);
    }
  });

  it('allé and alle are the same street', () => {
    expect(bydelOf('Bygdøy alle 2', '0257')).to.equal(FROGNER);
    expect(bydelOf('Bygdøy Allé 2', '0257')).to.equal(FROGNER);
    expect(normaliseStreetName('Bygdøy allé')).to.equal(normaliseStreetName('Bygdøy alle'));
  });

  it('a letter written 12 B, 12b or 12B is the same entrance', () => {
    for (const written of ['Kjelsåsveien 14 B', 'Kjelsåsveien 14b', 'Kjelsåsveien 14B', 'Kjelsåsveien 14  b']) {
      expect(bydelOf(written, '0484'), written).to.equal(SAGENE);
    }
    expect(houseKey(14, 'B')).to.equal(houseKey(14, 'b'));
  });

  it('a missing letter matches when the number has only one entrance', () => {
    const m = lookupAddress(index, 'Kjelsåsveien 12', '0484');
    expect(m).to.deep.include({ found: true, letterMissing: true });
    expect(m.found && m.entry.bydel).to.equal(NORDRE_AKER);
  });

  it('a missing letter matches when every entrance of the number lies in the same bydel', () => {
    expect(bydelOf('Kjelsåsveien 14', '0484')).to.equal(SAGENE);
  });

  it('a missing letter is not guessed when the entrances lie in different bydeler', () => {
    expect(reasonOf('Kjelsåsveien 16', '0484')).to.contain('different bydeler');
  });

  it('a letter that is not listed does not match the number without it', () => {
    expect(reasonOf('Kjelsåsveien 10 C', '0484')).to.contain('letter is not in the address index');
  });

  it('æ, ø and å are never dropped', () => {
    expect(bydelOf('Sæterveien 4', '0484')).to.equal(SAGENE);
    expect(bydelOf('Saeterveien 4', '0484')).to.equal(undefined);
    expect(bydelOf('Kjelsasveien 10', '0484')).to.equal(undefined);
    expect(normaliseStreetName('Bjørnstjerne Bjørnsons gate')).to.contain('bjørnstjernebjørnsons');
    expect(normaliseStreetName('Grüners gate')).to.not.equal(normaliseStreetName('Gruners gate'));
  });

  it('a name that matches several streets in one postcode is ambiguous and falls through', () => {
    expect(reasonOf('Storgata 1', '0484')).to.equal('the street name matches several streets in the postcode');
    expect(reasonOf('Storgate 1', '0484')).to.equal('the street name matches several streets in the postcode');
    // The same name alone in another postcode is not ambiguous.
    expect(bydelOf('Storgata 3', '0555')).to.equal(GRUNERLOKKA);
  });

  it("MsgHead's StreetAdr is read as street name, number and letter", () => {
    expect(parseStreetAddress('Storgata 12 B')).to.deep.equal({ name: 'Storgata', number: 12, letter: 'B' });
    expect(parseStreetAddress('Storgata 12B')).to.deep.equal({ name: 'Storgata', number: 12, letter: 'B' });
    expect(parseStreetAddress('Thorvald Meyers gate 5')).to.deep.equal({ name: 'Thorvald Meyers gate', number: 5, letter: undefined });
    expect(parseStreetAddress('7. juni-plassen 3')).to.deep.equal({ name: '7. juni-plassen', number: 3, letter: undefined });
    expect(parseStreetAddress('Storgata 12 B, H0201')).to.deep.equal({ name: 'Storgata', number: 12, letter: 'B' });
  });

  it('a range, a postbox without number or free text is not read as one address', () => {
    for (const text of ['Storgata 12-14', 'Postboks', 'ukjent adresse', '12', '']) expect(parseStreetAddress(text), text).to.equal(undefined);
  });

  it('no reason quotes the address or the postcode', () => {
    for (const [street, postcode] of [
      ['Kjelsåsveien 16', '0484'],
      ['Storgata 1', '0484'],
      ['Kjelsåsveien 10 C', '0484'],
      ['Hemmeligveien 7', '0484'],
      ['Hemmeligveien 7', '0999'],
    ]) {
      expect(reasonOf(street, postcode)).not.to.match(/Kjelsås|Storgat|Hemmelig|0484|0999|\b1[046]\b/i);
    }
  });
});
