// `plo-gateway routing build-index` and `routing explain` as ops and the EPJ team run them.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { AddressIndex } from '../../src/routing/addressIndex/indexFile.js';
import { cli } from '../support/cli.js';
import { addressesAt, BYDEL_POLYGONS, bydelAreas, type PlacedAddress, pointsInPostcode, random, SSB_CODES, toCsv } from '../support/kartverket.js';

describe('plo-gateway routing', function () {
  this.timeout(60000);
  const dir = mkdtempSync(join(tmpdir(), 'gw-routing-cli-'));
  const csv = join(dir, 'Basisdata_0301_Oslo_25833_MatrikkelenAdresse.csv');
  const out = join(dir, 'address-index-2026.json');
  let addresses: PlacedAddress[];

  before(() => {
    const points = pointsInPostcode(bydelAreas(), '0484', 3, random(11));
    addresses = addressesAt(
      points.map(({ p, code }) => ({ p, postcode: '0484', expected: { code } })),
      0,
      1,
    );
    writeFileSync(csv, toCsv(addresses));
  });

  const code = (a: PlacedAddress) => (a.expected as { code: string }).code;
  const streetOf = (a: PlacedAddress) => `${a.street} ${a.number}${a.letter ?? ''}`;

  it('build-index writes the index and prints what it read, indexed, skipped and how postcodes split', async () => {
    const r = await cli([
      'routing',
      'build-index',
      '--addresses',
      csv,
      '--polygons',
      BYDEL_POLYGONS,
      '--out',
      out,
      '--codes',
      SSB_CODES,
      '--valid-from',
      '2026-01-01',
      '--valid-to',
      '2028-01-01',
    ]);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain(`address index written to ${out} (valid from 2026-01-01 until 2028-01-01)`);
    expect(r.stdout).to.match(/addresses read\s+6/);
    expect(r.stdout).to.match(/030103 Sagene\s+3/);
    expect(r.stdout).to.match(/skipped: outside Oslo\s+0/);
    expect(r.stdout).to.match(/^0484\s+6\s+2\s+/m);
    const index = AddressIndex.load(out);
    expect(index).to.include({ validFrom: '2026-01-01', validTo: '2028-01-01' });
  });

  it('build-index --json is for machines', async () => {
    const r = await cli([
      'routing',
      'build-index',
      '--addresses',
      csv,
      '--polygons',
      BYDEL_POLYGONS,
      '--out',
      join(dir, 'j.json'),
      '--valid-from',
      '2026-01-01',
      '--json',
    ]);
    expect(r.status, r.stderr).to.equal(0);
    const json = JSON.parse(r.stdout);
    expect(json).to.deep.include({ validFrom: '2026-01-01', validTo: null });
    expect(json.summary).to.include({ read: 6, indexed: 6 });
    expect(json.summary.postcodes).to.deep.equal([{ postcode: '0484', addresses: 6, bydeler: 2, perBydel: { '030103': 3, '030108': 3 } }]);
  });

  it('build-index exits 2 on usage errors and 1 when a file cannot be read', async () => {
    const base = ['routing', 'build-index', '--addresses', csv, '--polygons', BYDEL_POLYGONS, '--out', join(dir, 'x.json')];
    expect((await cli([...base, '--valid-from', '2026-13-01'])).status).to.equal(2);
    expect((await cli([...base, '--valid-from', '2028-01-01', '--valid-to', '2026-01-01'])).status).to.equal(2);
    expect((await cli([...base, '--epsg', '3857'])).status).to.equal(2);
    expect((await cli(['routing', 'build-index', '--addresses', csv])).status).to.equal(2);
    const missing = await cli(['routing', 'build-index', '--addresses', join(dir, 'none.csv'), '--polygons', BYDEL_POLYGONS, '--out', join(dir, 'x.json')]);
    expect(missing.status).to.equal(1);
    expect(missing.stderr).to.contain('none.csv');
  });

  it('explain prints the decision and every rule, using the configured index', async () => {
    const a = addresses.find((x) => code(x) === '030108')!;
    const r = await cli(['routing', 'explain', '--street', streetOf(a), '--postcode', '0484', '--date', '2027-06-01'], { env: { GATEWAY_ADDRESS_INDEX: out } });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('decision: 030108 Nordre Aker, by rule address');
    for (const rule of ['override', 'epj-hint', 'address', 'postcode']) expect(r.stdout).to.match(new RegExp(`^${rule}\\s`, 'm'));
    expect(r.stdout).to.match(/^postcode\s+no\s+the postcode is split/m);
  });

  it('explain --json, and an unknown address that would be held', async () => {
    const r = await cli(['routing', 'explain', '--street', 'Ukjentveien 99', '--postcode', '0484', '--date', '2027-06-01', '--json'], {
      env: { GATEWAY_ADDRESS_INDEX: out },
    });
    expect(r.status, r.stderr).to.equal(0);
    const json = JSON.parse(r.stdout);
    expect(json.decision.decided).to.equal(false);
    expect(json.rules.map((v: { rule: string }) => v.rule)).to.deep.equal(['override', 'epj-hint', 'address', 'postcode']);
    expect(json.addressIndex).to.include({ validFrom: '2026-01-01', validTo: '2028-01-01' });
  });

  it('explain uses the index valid on the date given, and exits 2 on usage errors', async () => {
    const a = addresses[0];
    const after = await cli(['routing', 'explain', '--street', streetOf(a), '--postcode', '0484', '--date', '2028-01-01', '--json'], {
      env: { GATEWAY_ADDRESS_INDEX: out },
    });
    expect(JSON.parse(after.stdout).rules[2].verdict).to.equal('address: no address index is valid on the message date');
    expect((await cli(['routing', 'explain', '--street', streetOf(a), '--postcode', '484'])).status).to.equal(2);
    expect((await cli(['routing', 'explain', '--postcode', '0484'])).status).to.equal(2);
  });

  it('config check loads the address index files', async () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"format":"something else"}');
    const r = await cli(['config', 'check'], { env: { GATEWAY_ADDRESS_INDEX: `${out},${broken}` } });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^routing\.addressIndexFiles: .*broken\.json: not an address index/m);
  });
});
