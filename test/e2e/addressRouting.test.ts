// Address-level routing through the real gateway (RabbitMQ + SQLite): with an index built from
// a Kartverket-format export, messages for split postcodes reach the right bydel without a hint,
// and an address the index does not know is still held for manual routing.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import type { Gateway } from '../../src/gateway.js';
import { buildAddressIndexFromFiles, writeAddressIndex } from '../../src/routing/addressIndex/files.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { cli } from '../support/cli.js';
import { type LogCapture, Peer, startGateway, testConfig } from '../support/harness.js';
import { addressesAt, BYDEL_POLYGONS, bydelAreas, type PlacedAddress, pointsInPostcode, random, toCsv } from '../support/kartverket.js';
import { ADDRESS_REGISTER } from '../support/paths.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const register = AddressRegister.load(ADDRESS_REGISTER);
const saksbehandling = (bydel: string) => register.bydelService(bydel, 'KD0501')!.service.herId;
const SAMPLE = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';

/** How different EPJs write the same address. */
const asEpjWrites = (a: PlacedAddress, i: number): string => {
  const letter = a.letter ? [` ${a.letter}`, a.letter.toLowerCase(), a.letter][i % 3] : '';
  const street = [a.street, a.street.toUpperCase(), a.street.replace(/veien$/, 'vn.').replace(/gata$/, 'gt.')][i % 3];
  return `${street} ${a.number}${letter}`;
};

describe('address-level routing, end to end (RabbitMQ + SQLite)', function () {
  this.timeout(120000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let addresses: PlacedAddress[];
  let firstRouted: string;
  const bydelQueue = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;

  before(async () => {
    const areas = bydelAreas();
    const rnd = random(484);
    addresses = ['0484', '0555', '0950'].flatMap((postcode, i) =>
      addressesAt(
        pointsInPostcode(areas, postcode, 2, rnd).map(({ p, code }) => ({ p, postcode, expected: { code } })),
        i * 10,
        1,
      ),
    );
    const dir = mkdtempSync(join(tmpdir(), 'gw-address-index-'));
    writeFileSync(join(dir, 'adresser.csv'), toCsv(addresses));
    const built = await buildAddressIndexFromFiles({ addresses: join(dir, 'adresser.csv'), polygons: BYDEL_POLYGONS, validFrom: '2000-01-01' });
    writeAddressIndex(built.file, join(dir, 'address-index.json'));
    config = testConfig((c) => {
      c.routing.addressIndexFiles = [join(dir, 'address-index.json')];
    });
    ({ gateway, logs } = await startGateway(config));
    peer = await Peer.connect();
  });

  after(async () => {
    await gateway?.stop();
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it('messages for split postcodes (0484, 0555, 0950) reach the bydel of the address, without a hint', async () => {
    const bydeler = (postcode: string) => new Set(addresses.filter((a) => a.postcode === postcode).map((a) => (a.expected as { code: string }).code));
    for (const postcode of ['0484', '0555', '0950']) expect(bydeler(postcode).size, postcode).to.be.at.least(2);

    const sent = new Map<string, string>();
    for (const [i, a] of addresses.entries()) {
      const { xml, msgId } = readdressToOslo(readSample(SAMPLE), { postalCode: a.postcode, street: asEpjWrites(a, i) });
      sent.set(msgId, saksbehandling((a.expected as { code: string }).code));
      await peer.send(config.broker.queues.epjOutbound, xml);
    }
    const perQueue = new Map<string, number>();
    for (const herId of sent.values()) perQueue.set(herId, (perQueue.get(herId) ?? 0) + 1);
    for (const [herId, n] of perQueue) {
      const got = await peer.take(bydelQueue(herId), n);
      expect(
        got.map((m) => sent.get(String(m.properties.headers?.['msg-id']))),
        herId,
      ).to.deep.equal(Array(n).fill(herId));
    }
    const routedBy = logs.lines.map((l) => JSON.parse(l)).filter((l) => sent.has(l.msgId) && l.stage === 'route');
    expect(routedBy.map((l) => l.rule)).to.deep.equal(Array(sent.size).fill('address'));
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
    firstRouted = [...sent.keys()][0];
  });

  it('the timeline shows that the address decided, without the address', async () => {
    const shown = await cli(['messages', 'show', firstRouted, '--json'], { env: { DATABASE_URL: config.database.url } });
    expect(shown.status, shown.stderr).to.equal(0);
    const [timeline] = JSON.parse(shown.stdout);
    expect(timeline).to.include({ routeRule: 'address', bydel: (addresses[0].expected as { code: string }).code });
    const routed = timeline.events.find((e: { event: string }) => e.event === 'routed');
    expect(routed.detail).to.include({ rule: 'address' });
    expect(routed.detail.explanation).to.match(/^the address index \(valid from 2000-01-01\) places the patient's home address in /);
    expect(shown.stdout).not.to.contain(addresses[0].street);
  });

  it('an address the index does not know, in a split postcode, is still held for manual routing', async () => {
    const alertQueue = `${config.broker.queues.dlq}.address-alerts-tap`;
    await peer.ch.assertQueue(alertQueue, { exclusive: true });
    await peer.ch.bindQueue(alertQueue, config.broker.exchanges.alerts, 'unroutable');
    const { xml, msgId } = readdressToOslo(readSample(SAMPLE), { postalCode: '0484', street: 'Hemmeligveien 7' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const [alert] = await peer.take(alertQueue, 1);
    const body = JSON.parse(alert.content.toString('utf8'));
    expect(body).to.include({ kind: 'unroutable', msgId });
    expect(body.text).to.contain('address: the street is not in the address index for the postcode');
    expect(alert.content.toString('utf8')).not.to.match(/Hemmelig|0484/);
    expect(await peer.take(config.broker.queues.dlq, 1, 300)).to.have.length(0);
  });

  it('no street name appears in any log line', () => {
    const text = logs.text();
    for (const a of addresses) expect(text).not.to.contain(a.street.split(' ')[0]);
    expect(text).not.to.contain('Hemmelig');
  });
});
