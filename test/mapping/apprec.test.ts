// The negative AppRec the gateway owes the EPJ: the version its standard demands, valid
// against the official schema, with the addresses mirrored.
import { expect } from 'chai';
import { loadSchemaSet, type SchemaSet } from '../../src/inbound/schemas.js';
import { appRecVersionFor, buildAppRec } from '../../src/mapping/apprec.js';
import { NS } from '../../src/mapping/model.js';
import { parseMessage } from '../../src/mapping/parse.js';
import { SCHEMA_DIR } from '../support/paths.js';

const hospital = { level1: { name: 'Sykehus HF', herId: '59' }, level2: { name: 'Ortopedi', herId: '90998' } };
const kommune = { level1: { name: 'Oslo kommune', herId: '9900000' } };

describe('negative AppRec to the EPJ', () => {
  let schemas: SchemaSet;
  before(async () => {
    schemas = await loadSchemaSet(SCHEMA_DIR);
  });
  after(() => schemas.close());

  it('PLO 1.6 and Dialogmelding 1.1 get AppRec 1.1; PLO 1.5, Dialogmelding 1.0 and the unreadable get 1.0', () => {
    expect(appRecVersionFor({ family: 'plo', version: '1.6', rootLocalName: 'Pasientlogistikk', rootNamespace: '' })).to.equal('1.1');
    expect(appRecVersionFor({ family: 'dialogmelding', version: '1.1', rootLocalName: 'Dialogmelding', rootNamespace: '' })).to.equal('1.1');
    expect(appRecVersionFor({ family: 'plo', version: '1.5', rootLocalName: 'Pasientlogistikk', rootNamespace: '' })).to.equal('1.0');
    expect(appRecVersionFor({ family: 'dialogmelding', version: '1.0', rootLocalName: 'Dialogmelding', rootNamespace: '' })).to.equal('1.0');
    expect(appRecVersionFor(undefined)).to.equal('1.0');
  });

  for (const version of ['1.0', '1.1'] as const) {
    it(`AppRec ${version} with status Avvist validates against the official XSD and mirrors the addresses`, () => {
      const xml = buildAppRec({
        version,
        status: '2',
        errors: [{ code: 'T02', details: 'The element MsgHead/MsgInfo/Foo on line 3 is not expected.' }, { code: 'GW-9999' }],
        original: {
          msgType: 'LOG_UTSKRIVNINGSKLAR',
          msgTypeDn: 'Melding om utskrivningsklar pasient',
          issueDate: '2026-01-05T10:20:11',
          msgId: '79c55ed0-0692-11e8-b566-0800200c9a66',
        },
        sender: kommune,
        receiver: hospital,
      });
      expect(xml).to.contain(version === '1.1' ? NS.appRec11 : NS.appRec10);
      const validation = schemas.validate(xml);
      expect(validation.ok, JSON.stringify(validation)).to.equal(true);
      const parsed = parseMessage(Buffer.from(xml), { maxBytes: 100_000 });
      if (!parsed.ok || parsed.value.doc.kind !== 'apprec') throw new Error('not an AppRec');
      const rec = parsed.value.doc;
      expect(rec.status).to.equal('2');
      expect(rec.errors.map((e) => e.code)).to.deep.equal(['T02', 'X99']);
      expect(rec.originalMsgId.id).to.equal('79c55ed0-0692-11e8-b566-0800200c9a66');
      expect(rec.receiverHerIds).to.include.members(['59', '90998']);
      expect(rec.senderHerIds).to.include('9900000');
    });
  }

  it('GenDate is Norwegian local time, whatever zone the process runs in (summer and winter)', () => {
    const genDateOf = (at: string) => {
      const xml = buildAppRec({
        version: '1.1',
        status: '1',
        errors: [],
        original: { msgType: 'LOG_INNLAGT', msgTypeDn: 'Innlagt', issueDate: '2026-01-05T10:20:11', msgId: 'm' },
        sender: kommune,
        receiver: hospital,
        genDate: new Date(at),
      });
      return /<GenDate>([^<]+)<\/GenDate>/.exec(xml)?.[1];
    };
    expect(genDateOf('2026-07-01T10:00:00Z')).to.equal('2026-07-01T12:00:00');
    expect(genDateOf('2026-12-31T23:30:00Z')).to.equal('2027-01-01T00:30:00');
  });
});
