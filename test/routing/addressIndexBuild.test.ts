// Building the address index from a Kartverket-format export placed on the real bydel polygons:
// inside known polygons, a few metres either side of borders, in Marka, and outside Oslo.
import { expect } from 'chai';
import type { BuildSummary } from '../../src/routing/addressIndex/build.js';
import type { AddressIndex } from '../../src/routing/addressIndex/indexFile.js';
import { readHeader } from '../../src/routing/addressIndex/kartverketCsv.js';
import { lookupAddress } from '../../src/routing/addressIndex/lookup.js';
import { SENTRUM, ST_HANSHAUGEN, serviceBydel } from '../../src/routing/bydeler.js';
import { buildFromCsv } from '../support/addressIndex.js';
import {
  addressesAt,
  borderPairs,
  bydelAreas,
  interiorPoints,
  KARTVERKET_HEADER,
  markaPoints,
  type PlacedAddress,
  pointsInPostcode,
  random,
  toCsv,
} from '../support/kartverket.js';

/** The bydel and flags an address placed this way must get from the index. */
function expectedEntry(a: PlacedAddress) {
  if (a.expected === 'outside-oslo') throw new Error('no entry expected');
  const { code, marka } = a.expected;
  return { bydel: serviceBydel(code)!, marka: marka === true, sentrum: code === SENTRUM };
}

function share(addresses: PlacedAddress[], index: AddressIndex): { right: number; total: number; wrong: string[] } {
  const wrong: string[] = [];
  for (const a of addresses) {
    const m = lookupAddress(index, `${a.street} ${a.number}${a.letter ?? ''}`, a.postcode);
    const got = m.found ? { bydel: m.entry.bydel, marka: m.entry.marka === true, sentrum: m.entry.sentrum === true } : undefined;
    if (JSON.stringify(got) !== JSON.stringify(expectedEntry(a))) wrong.push(`${JSON.stringify(a.expected)} at ${a.lonLat} → ${JSON.stringify(got ?? m)}`);
  }
  return { right: addresses.length - wrong.length, total: addresses.length, wrong };
}

describe("address index built from Kartverket's export", function () {
  this.timeout(60000);
  const rnd = random(2026);
  const areas = bydelAreas();
  const interior = addressesAt(
    areas.flatMap((a) => interiorPoints(areas, a, 120, rnd).map((p) => ({ p, expected: { code: a.code } }))),
    0,
  );
  const border = addressesAt(
    borderPairs(areas, 15, 3, rnd).map(({ p, code }) => ({ p, expected: { code } })),
    1000,
  );
  const marka = addressesAt(
    markaPoints(areas, 100, 300, rnd).map(({ p, nearest }) => ({ p, expected: { code: nearest, marka: true } })),
    2000,
  );
  const split = ['0484', '0555', '0950'].flatMap((postcode, i) =>
    addressesAt(
      pointsInPostcode(areas, postcode, 8, rnd).map(({ p, code }) => ({ p, postcode, expected: { code } })),
      3000 + i * 100,
    ),
  );
  const baerum = addressesAt(
    Array.from({ length: 20 }, (_, i) => ({ p: [10.5 + i * 0.002, 59.89] as [number, number], kommune: '3201', expected: 'outside-oslo' as const })),
    4000,
  );
  const farAway = addressesAt([{ p: [5.3221, 60.3913] as [number, number], expected: 'outside-oslo' as const }], 4100);
  const oslo = [...interior, ...border, ...marka, ...split];
  const extraRows = [
    '900001;0301;Oslo;matrikkeladresse;;;;;;;207;12;0;0;207/12;207/12;25833;6650000.00;262000.00;0890;OSLO;2026-01-01',
    '900002;0301;Oslo;vegadresse;;;12345;Mangler koordinater;1;;1;1;0;0;;;25833;;;0484;OSLO;2026-01-01',
    '900003;0301;Oslo;vegadresse;;;12346;Feil postnummer;1;;1;1;0;0;;;25833;6650000.00;262000.00;OSLO;OSLO;2026-01-01',
  ];
  let summary: BuildSummary;
  let index: AddressIndex;

  before(async () => {
    ({ summary, index } = await buildFromCsv(toCsv([...oslo, ...baerum, ...farAway], extraRows)));
  });

  it('at least 99.9 % of the addresses get the bydel of the polygon they were placed in', () => {
    const r = share(oslo, index);
    expect(r.total).to.be.greaterThan(2000);
    expect(r.right / r.total, r.wrong.slice(0, 5).join('\n')).to.be.at.least(0.999);
  });

  it('addresses a few metres either side of a border get the bydel of their own side', () => {
    const r = share(border, index);
    expect(r.total).to.be.greaterThan(300);
    expect(r.right / r.total, r.wrong.slice(0, 5).join('\n')).to.be.at.least(0.999);
  });

  it('a Sentrum address is indexed to St. Hanshaugen, which serves it', () => {
    const sentrum = interior.filter((a) => a.expected !== 'outside-oslo' && a.expected.code === SENTRUM);
    expect(sentrum).to.have.length(120);
    for (const a of sentrum) {
      const m = lookupAddress(index, `${a.street} ${a.number}${a.letter ?? ''}`, a.postcode);
      expect(m.found && m.entry).to.deep.equal({ bydel: ST_HANSHAUGEN, sentrum: true });
    }
  });

  it('a Marka address goes to the nearest bydel polygon and is flagged marka', () => {
    const r = share(marka, index);
    expect(r.right, r.wrong.join('\n')).to.equal(r.total);
    expect(summary.marka.total).to.equal(marka.length);
  });

  it('addresses outside Oslo are skipped and counted, other rows too', () => {
    expect(summary.read).to.equal(oslo.length + baerum.length + farAway.length + extraRows.length);
    expect(summary.skipped).to.deep.equal({ outsideOslo: baerum.length + farAway.length, notStreetAddress: 1 });
    expect(summary.bad.total).to.equal(2);
    expect(Object.keys(summary.bad.reasons)).to.have.members(['coordinates are missing or not numbers', 'postcode is missing or not four digits']);
    expect(summary.indexed).to.equal(oslo.length);
  });

  it('the summary counts per bydel and tells which postcodes span several bydeler', () => {
    expect(Object.values(summary.perBydel).reduce((s, n) => s + n, 0)).to.equal(summary.indexed);
    expect(summary.perBydel[SENTRUM], 'Sentrum is served, not indexed, as such').to.equal(undefined);
    const span = (postcode: string) => summary.postcodes.find((p) => p.postcode === postcode);
    expect(span('0484')).to.include({ bydeler: 2 });
    expect(Object.keys(span('0484')!.perBydel)).to.have.members(['030103', '030108']);
    expect(span('0555')!.bydeler).to.equal(2);
    expect(span('0950')!.bydeler).to.be.at.least(2);
  });

  it("accepts the real export's header and older spellings of it", () => {
    expect(readHeader(KARTVERKET_HEADER)).to.include({ street: 7, number: 8, letter: 9, epsg: 16, north: 17, east: 18, postcode: 19, kommune: 1 });
    expect(readHeader('\uFEFFADRESSENAVN;NUMMER;BOKSTAV;POSTNUMMER;NORD;ØST;KOORDINATSYSTEMKODE')).to.include({ street: 0, sosiCrs: 6 });
    expect(readHeader('adressenavn;nummer;bokstav;postnummer;poststed;nord;øst;EPSG-kode')).to.include({ east: 6, epsg: 7 });
    expect(() => readHeader('adressenavn;nummer;postnummer;øst')).to.throw(/no column nord/);
  });

  it('reads geographic coordinates, SOSI coordinate system codes, decimal commas and quoted cells', async () => {
    const [a, b] = interior.filter((x) => x.expected !== 'outside-oslo' && x.expected.code === '030105');
    const csv = [
      '\uFEFFADRESSENAVN;NUMMER;BOKSTAV;POSTNUMMER;NORD;ØST;KOORDINATSYSTEMKODE;EPSG-kode',
      `"Frognerveien; nedre";1;;0257;${a.lonLat[1].toString().replace('.', ',')};${a.lonLat[0].toString().replace('.', ',')};;4258`,
      `Frognerstien;2;;0257;${b.lonLat[1]};${b.lonLat[0]};84;`,
    ].join('\r\n');
    const built = await buildFromCsv(csv);
    expect(built.summary.indexed, JSON.stringify(built.summary.bad)).to.equal(2);
    expect(lookupAddress(built.index, 'Frognerveien; nedre 1', '0257')).to.deep.include({ found: true, entry: { bydel: '030105' } });
    expect(lookupAddress(built.index, 'Frognerstien 2', '0257')).to.deep.include({ found: true, entry: { bydel: '030105' } });
  });

  it('carries its validity period and refuses a file with no header it knows', async () => {
    const built = await buildFromCsv(toCsv(interior.slice(0, 3)), { validFrom: '2026-01-01', validTo: '2028-01-01' });
    expect(built.file).to.include({ format: 'plo-gateway/address-index', version: 1, validFrom: '2026-01-01', validTo: '2028-01-01' });
    let error: Error | undefined;
    await buildFromCsv('gate,nummer\nStorgata,1').catch((e: Error) => (error = e));
    expect(error?.message).to.match(/no column adressenavn/);
  });
});
