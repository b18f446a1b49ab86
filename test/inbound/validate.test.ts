import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { checkRules, isValidFnr } from '../../src/inbound/rules.js';
import type { SchemaSet } from '../../src/inbound/schemas.js';
import { loadSchemaSet } from '../../src/inbound/schemas.js';
import { validateMessage } from '../../src/inbound/validate.js';
import type { MsgHeadModel, ParsedMessage, StageError } from '../../src/mapping/model.js';
import { parseMessage } from '../../src/mapping/parse.js';
import { SAMPLES, SCHEMA_DIR } from '../support/paths.js';

const sampleText = (folder: string, file: string) => readFileSync(join(SAMPLES, folder, file), 'utf8');
const UTSKRIVNINGSKLAR = sampleText('plo-1.6', 'Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');

function parse(xml: string | Buffer): ParsedMessage {
  const result = parseMessage(Buffer.isBuffer(xml) ? xml : Buffer.from(xml, 'utf8'), { maxBytes: 1_000_000 });
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.reason}`);
  return result.value;
}

/** A well-formed message that breaks one rule; the model is edited, the XML is not. */
function withModel(edit: (doc: MsgHeadModel) => void): MsgHeadModel {
  const doc = structuredClone(parse(UTSKRIVNINGSKLAR).doc as MsgHeadModel);
  edit(doc);
  return doc;
}

function ruleError(edit: (doc: MsgHeadModel) => void): StageError {
  const result = checkRules(withModel(edit));
  if (result.ok) throw new Error('expected a rule to fail');
  return result.error;
}

describe('validateMessage', () => {
  let schemas: SchemaSet;
  before(async () => {
    schemas = await loadSchemaSet(SCHEMA_DIR);
  });
  after(() => schemas.close());

  it('compiles the XSD bundle once, quickly', () => {
    expect(schemas.compileMs).to.be.below(2000);
  });

  describe('every official sample passes XSD and rules', () => {
    // Case1_1 (2009) addresses a fastlege whose organisation carries only an org.nr (ENH):
    // XSD-valid, but without a level-1 HER-id the receiver cannot be identified (E21).
    const expectedFailures: Record<string, string> = {
      'Case1_1-Dialogmelding-Foresporsel_medisinske_opplysninger.xml': 'E21',
    };
    for (const folder of ['plo-1.5', 'plo-1.6', 'dialogmelding', 'apprec']) {
      for (const file of readdirSync(join(SAMPLES, folder))) {
        const expected = expectedFailures[file];
        it(`${folder}/${file}${expected ? ` fails with ${expected} (documented)` : ''}`, () => {
          const message = parse(readFileSync(join(SAMPLES, folder, file)));
          expect(schemas.validate(message.businessXml)).to.deep.equal({ ok: true, value: undefined });
          const result = validateMessage(message, schemas);
          expect(result.ok ? 'ok' : result.error.code).to.equal(expected ?? 'ok');
        });
      }
    }
  });

  it('validates an inline (SOAP) MsgHead from its standalone text', () => {
    const body = UTSKRIVNINGSKLAR.replace(/^<\?xml[^>]*\?>/, '');
    const soap = `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>${body}</S:Body></S:Envelope>`;
    expect(validateMessage(parse(soap), schemas).ok).to.equal(true);
  });

  describe('XSD failures are T02 and never quote the message', () => {
    const invalid = (from: string, to: string) => {
      expect(UTSKRIVNINGSKLAR).to.contain(from);
      const result = validateMessage(parse(UTSKRIVNINGSKLAR.replaceAll(from, to)), schemas);
      if (result.ok) throw new Error('expected T02');
      expect(result.error.code).to.equal('T02');
      return result.error.reason;
    };

    it('a wrong date type names the element and line, not the value', () => {
      const reason = invalid('<GenDate>2018-01-31T10:20:11</GenDate>', '<GenDate>Gundersen 15076500565</GenDate>');
      expect(reason).to.match(/element GenDate at line 9: .*xs:dateTime/);
      expect(reason).to.not.match(/Gundersen|15076500565/);
    });

    it('a pattern failure on an attribute hides both value and pattern', () => {
      const reason = invalid('S="2.16.578.1.12.4.1.1.8116"', 'S="Roland-15076500565"');
      expect(reason).to.contain('element TypeId, attribute S');
      expect(reason).to.not.match(/Roland|15076500565/);
    });

    it('an unexpected element with text in it does not leak that text', () => {
      const reason = invalid('<MIGversion>', '<Hemmelig>Flåklypa 31</Hemmelig><MIGversion>');
      expect(reason).to.contain('element Hemmelig');
      expect(reason).to.not.contain('Flåklypa');
    });

    it('a content element the strict wildcard does not know is T02', () => {
      const reason = invalid('p1:MeldingUtskrivningsklarPasient>', 'p1:MeldingUkjent>');
      expect(reason).to.contain('element MeldingUkjent');
    });
  });

  describe('business rules', () => {
    it('the unchanged sample passes every rule', () => {
      expect(checkRules(withModel(() => {}))).to.deep.equal({ ok: true, value: undefined });
    });

    it('a MsgId that is not a UUID is E10', () => {
      expect(ruleError((d) => (d.msgId = 'MSG-2018-0001'))).to.deep.equal({
        code: 'E10',
        reason: 'MsgInfo/MsgId is not a UUID.',
        transient: false,
      });
    });

    it('an unknown message type is T10', () => {
      const error = ruleError((d) => (d.type = 'LOG_UKJENT'));
      expect(error.code).to.equal('T10');
      expect(error.reason).to.contain('LOG_UKJENT');
    });

    it('a type that does not match the Pasientlogistikk message is T02, end to end', () => {
      const xml = UTSKRIVNINGSKLAR.replace('V="LOG_UTSKRIVNINGSKLAR"', 'V="LOG_INNLAGT"');
      const result = validateMessage(parse(xml), schemas);
      expect(result).to.deep.equal({
        ok: false,
        error: {
          code: 'T02',
          reason: 'The message type LOG_INNLAGT does not match its content MeldingUtskrivningsklarPasient.',
          transient: false,
        },
      });
    });

    it('a PLO type on a dialogmelding is T02', () => {
      const dialog = parse(sampleText('dialogmelding', 'Dialogmelding_avvik_v1-0.xml')).doc as MsgHeadModel;
      const result = checkRules({ ...dialog, type: 'INNLEGGELSESRAPPORT' });
      expect(!result.ok && result.error.reason).to.equal('The message type INNLEGGELSESRAPPORT does not match its content Dialogmelding.');
    });

    it('LOG_UTSKRIVNINGSKLAR without Hendelsekode 3 is T02', () => {
      const error = ruleError((d) => (d.hendelsekoder = ['1']));
      expect(error.code).to.equal('T02');
      expect(error.reason).to.equal('LOG_UTSKRIVNINGSKLAR must carry Hendelsekode 1 and 3; 3 is missing.');
    });

    it('a sender without a level-1 HER-id is T02', () => {
      expect(ruleError((d) => (d.sender.level1.herId = undefined)).code).to.equal('T02');
    });

    it('a receiver without a level-1 HER-id is E21', () => {
      expect(ruleError((d) => (d.receiver.level1.herId = undefined)).code).to.equal('E21');
    });

    it('a PLO message without a patient is E36', () => {
      expect(ruleError((d) => (d.patient = undefined)).code).to.equal('E36');
    });

    it('a patient identified only by an HPR number is E36', () => {
      const error = ruleError((d) => (d.patient!.idents = [{ id: '9876543', type: 'HPR' }]));
      expect(error).to.deep.include({ code: 'E36', reason: 'The patient has no FNR, DNR, HNR or FHN identifier.' });
    });

    it('a patient without a name is E36', () => {
      expect(ruleError((d) => Object.assign(d.patient!, { familyName: undefined, givenName: undefined })).code).to.equal('E36');
    });

    it('a patient with an HNR or FHN is identified (no mod-11 check on those)', () => {
      for (const type of ['HNR', 'FHN']) {
        expect(checkRules(withModel((d) => (d.patient!.idents = [{ id: '12345', type }]))).ok, type).to.equal(true);
      }
    });

    it('a fødselsnummer with a wrong check digit is E31, and the reason holds no number', () => {
      const error = ruleError((d) => (d.patient!.idents[0].id = '15076500566'));
      expect(error.code).to.equal('E31');
      expect(error.reason).to.not.match(/\d{6}/);
    });

    it('a DNR that fails the check is E31 too', () => {
      expect(ruleError((d) => (d.patient!.idents = [{ id: '55076500045', type: 'DNR' }])).code).to.equal('E31');
    });
  });

  describe('isValidFnr (mod-11)', () => {
    it('accepts every fødselsnummer in the official samples', () => {
      for (const fnr of ['15076500565', '12057900499', '13116900216', '15072500552', '15720255178', '21014605158']) {
        expect(isValidFnr(fnr), fnr).to.equal(true);
      }
    });

    it('accepts a D-number (day + 40) and a synthetic test number (month + 80)', () => {
      expect(isValidFnr('55076500044')).to.equal(true);
      expect(isValidFnr('15876500016')).to.equal(true);
    });

    it('rejects wrong check digits', () => {
      expect(isValidFnr('15076500566')).to.equal(false); // second check digit
      expect(isValidFnr('15076500575')).to.equal(false); // first check digit
    });

    it('rejects an impossible day even when both check digits fit', () => {
      expect(isValidFnr('32076500095')).to.equal(false);
      expect(isValidFnr('81076500010')).to.equal(false);
    });

    it('rejects anything that is not 11 digits', () => {
      for (const id of ['1507650056', '150765005650', '1507650056X', '', ' 15076500565']) {
        expect(isValidFnr(id), JSON.stringify(id)).to.equal(false);
      }
    });
  });
});
