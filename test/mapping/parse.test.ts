import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { xmlRegisterInputProvider } from 'libxml2-wasm';
import type { AppRecModel, MsgHeadModel, ParsedMessage } from '../../src/mapping/model.js';
import { buildMultipart } from '../../src/mapping/multipart.js';
import { parseInbound, parseMessage } from '../../src/mapping/parse.js';
import { SAMPLES } from '../support/paths.js';

const MAX = 1_000_000;
const sample = (folder: string, file: string) => readFileSync(join(SAMPLES, folder, file));
const UTSKRIVNINGSKLAR_16 = sample('plo-1.6', 'Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml');

function parsed(body: Buffer, contentType?: string): ParsedMessage {
  const result = parseMessage(body, { maxBytes: MAX, contentType });
  if (!result.ok) throw new Error(`${result.error.code}: ${result.error.reason}`);
  return result.value;
}

const msgHead = (message: ParsedMessage) => message.doc as MsgHeadModel;

function failure(body: Buffer | string, maxBytes = MAX, contentType?: string) {
  const result = parseMessage(Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), { maxBytes, contentType });
  if (result.ok) throw new Error('expected the parse to fail');
  return result.error;
}

/** The business document as it would sit inside a SOAP body: no declaration, no BOM. */
const inlineXml = (bytes: Buffer) => bytes.toString('utf8').replace(/^\uFEFF?<\?xml[^>]*\?>/, '');

function ebxmlEnvelope(body: string, action = 'LOG_UTSKRIVNINGSKLAR', service = `S-${action}`): Buffer {
  return Buffer.from(
    `<?xml version="1.0" encoding="UTF-8"?>
<SOAP:Envelope xmlns:SOAP="http://schemas.xmlsoap.org/soap/envelope/" xmlns:eb="http://www.oasis-open.org/committees/ebxml-msg/schema/msg-header-2_0.xsd" xmlns:xlink="http://www.w3.org/1999/xlink">
  <SOAP:Header>
    <eb:MessageHeader SOAP:mustUnderstand="1" eb:version="2.0">
      <eb:From><eb:PartyId eb:type="HER">90998</eb:PartyId><eb:Role>${action}sender</eb:Role></eb:From>
      <eb:To><eb:PartyId eb:type="HER">5078</eb:PartyId><eb:Role>${action}receiver</eb:Role></eb:To>
      <eb:CPAId>5078_90998</eb:CPAId>
      <eb:ConversationId>774a6ed1-76dd-4f89-9239-6ed3c1bd7caf</eb:ConversationId>
      <eb:Service eb:type="kithService">${service}</eb:Service>
      <eb:Action>${action}</eb:Action>
      <eb:MessageData>
        <eb:MessageId>955536cb-fb9a-49d9-848d-2baca7b116e1</eb:MessageId>
        <eb:Timestamp>2025-03-10T09:20:12Z</eb:Timestamp>
        <eb:RefToMessageId>11111111-2222-4333-8444-555555555555</eb:RefToMessageId>
      </eb:MessageData>
      <eb:DuplicateElimination/>
    </eb:MessageHeader>
  </SOAP:Header>
  <SOAP:Body>${body}</SOAP:Body>
</SOAP:Envelope>`,
    'utf8',
  );
}

const manifest = (cid: string) => `<eb:Manifest eb:version="2.0"><eb:Reference xlink:href="cid:${cid}" xlink:type="simple"/></eb:Manifest>`;

function multipart(payload: Buffer, payloadCharset = 'UTF-8') {
  return buildMultipart([
    { contentId: 'soap-part@gateway.test', contentType: 'text/xml; charset=UTF-8', body: ebxmlEnvelope(manifest('payload-1@gateway.test')) },
    { contentId: 'payload-1@gateway.test', contentType: `application/xml; charset=${payloadCharset}`, body: payload },
  ]);
}

describe('parseMessage', () => {
  describe('every official sample parses', () => {
    for (const folder of ['plo-1.5', 'plo-1.6', 'dialogmelding']) {
      for (const file of readdirSync(join(SAMPLES, folder))) {
        it(`${folder}/${file} gives a MsgHead model`, () => {
          const message = parsed(sample(folder, file));
          expect(message.framing).to.equal('msghead');
          const doc = msgHead(message);
          expect(doc.kind).to.equal('msghead');
          expect(doc.type).to.match(/^[A-Z_]+$/);
          expect(doc.msgId).to.not.equal('');
          expect(doc.sender.level1.name).to.not.equal('');
          expect(doc.content?.family).to.equal(folder === 'dialogmelding' ? 'dialogmelding' : 'plo');
          // as received; a declaration, when present, now says UTF-8
          expect(message.businessXml).to.not.match(/^<\?xml[^>]*encoding="(?!UTF-8)/i);
        });
      }
    }
    for (const file of readdirSync(join(SAMPLES, 'apprec'))) {
      it(`apprec/${file} gives an AppRec model`, () => {
        const doc = parsed(sample('apprec', file)).doc as AppRecModel;
        expect(doc.kind).to.equal('apprec');
        expect(doc.status).to.match(/^[123]$/);
        expect(doc.originalMsgId.id).to.not.equal('');
      });
    }
  });

  it('reads the PLO 1.6 utskrivningsklar sample field by field', () => {
    const doc = msgHead(parsed(UTSKRIVNINGSKLAR_16));
    expect(doc).to.deep.include({
      type: 'LOG_UTSKRIVNINGSKLAR',
      typeDn: 'Melding om utskrivningsklar pasient',
      msgId: '79c55ed0-0692-11e8-b566-0800200c9a66',
      genDate: '2018-01-31T10:20:11',
      conversationRef: undefined,
      hendelsekoder: ['1', '3'],
      forsendelsesstatus: 'N',
      temaKodet: [],
    });
    expect(doc.sender).to.deep.equal({
      level1: { name: 'ST OLAVS HOSPITAL HF', herId: '59' },
      level2: { name: 'Ortopedisk kirurgi', herId: '90998' },
    });
    expect(doc.receiver.level1.herId).to.equal('99387');
    expect(doc.receiver.level2?.herId).to.equal('5078');
    expect(doc.content).to.deep.equal({
      rootLocalName: 'Pasientlogistikk',
      rootNamespace: 'http://www.kith.no/xmlstds/po/Pasientlogistikk/2012-04-01',
      messageLocalName: 'MeldingUtskrivningsklarPasient',
      family: 'plo',
      version: '1.6',
    });
    expect(doc.patient).to.deep.equal({
      familyName: 'Gundersen',
      givenName: 'Roland',
      idents: [{ id: '15076500565', type: 'FNR' }],
      addresses: [{ type: undefined, street: 'Flåklypa 31', postalCode: '2560', city: 'Alvdal' }],
    });
  });

  it('derives the standard version from the content namespace', () => {
    const version = (folder: string, file: string) => msgHead(parsed(sample(folder, file))).content?.version;
    expect(version('plo-1.5', 'Pasientlogistikk_Utskrivningsklar_pasient_v1-5_Ny.xml')).to.equal('1.5');
    expect(version('dialogmelding', 'Dialogmelding_avvik_v1-0.xml')).to.equal('1.0');
    expect(version('dialogmelding', 'Helsefaglig_dialog_angi_profesjon_hos_mottaker.xml')).to.equal('1.1');
  });

  it('reads ConversationRef, TemaKodet and a person at level 2', () => {
    const svar = msgHead(parsed(sample('dialogmelding', 'Dialogmelding_svar_foresporsel_PLO_v1-0.xml')));
    expect(svar.conversationRef?.refToConversation).to.match(/^[0-9a-f-]{36}$/);
    expect(svar.temaKodet).to.deep.equal(['2.16.578.1.12.4.1.1.9069/5']);
    const toDoctor = msgHead(parsed(sample('dialogmelding', 'Case1_1-Dialogmelding-Foresporsel_medisinske_opplysninger.xml')));
    expect(toDoctor.receiver).to.deep.equal({
      level1: { name: 'Kattskinnet legesenter', herId: undefined },
      level2: { name: 'August September', herId: '9144897' },
    });
  });

  it('reads an ISO-8859-1 AppRec and hands it on as UTF-8', () => {
    const message = parsed(sample('apprec', 'sarepta-apprec-1.0-eksempel-avvist-iso8859-1.xml'));
    const doc = message.doc as AppRecModel;
    expect(doc).to.deep.include({ version: '1.0', status: '2', id: '4a0a523a-be46-4895-b822-26a0becc405d' });
    expect(doc.errors).to.deep.equal([{ code: 'E30', text: 'Pasientens fødselsnummer mangler', details: undefined }]);
    expect(message.businessXml).to.match(/^<\?xml version="1.0" encoding="utf-8"\?>/i);
    expect(message.businessXml).to.contain('Køfri sykehus HF');
  });

  it('collects the HER-ids of AppRec 1.1 Inst, Dept and HCPerson', () => {
    const doc = parsed(sample('apprec', 'apprec-1.1-all-data.xml')).doc as AppRecModel;
    expect(doc.version).to.equal('1.1');
    expect(doc.senderHerIds).to.deep.equal(['8142987', '8143060', '123456']);
    expect(doc.receiverHerIds).to.deep.equal(['998877', '555111', '9512']);
    expect(doc.originalMsgId).to.deep.equal({
      msgType: 'DIALOG_HELSEFAGLIG',
      issueDate: '2025-05-25T00:00:00',
      id: '5d79bd68-a58c-4599-a4e7-9db28ea20099',
    });
  });

  describe('packaging', () => {
    const bare = parsed(UTSKRIVNINGSKLAR_16);

    it('a SOAP envelope with the MsgHead after the manifest gives the same model', () => {
      const message = parsed(ebxmlEnvelope(manifest('unused@gateway.test') + inlineXml(UTSKRIVNINGSKLAR_16)));
      expect(message.framing).to.equal('soap');
      expect(message.doc).to.deep.equal(bare.doc);
      expect(message.envelopeXml).to.contain('SOAP:Envelope');
      expect(message.ebxml).to.deep.equal({
        fromPartyIds: [{ type: 'HER', id: '90998' }],
        toPartyIds: [{ type: 'HER', id: '5078' }],
        cpaId: '5078_90998',
        conversationId: '774a6ed1-76dd-4f89-9239-6ed3c1bd7caf',
        service: 'S-LOG_UTSKRIVNINGSKLAR',
        action: 'LOG_UTSKRIVNINGSKLAR',
        messageId: '955536cb-fb9a-49d9-848d-2baca7b116e1',
        refToMessageId: '11111111-2222-4333-8444-555555555555',
        timestamp: '2025-03-10T09:20:12Z',
        signal: undefined,
        ackRequested: false,
      });
    });

    it('eb:AckRequested is read: the sender waits for our signed Acknowledgment', () => {
      const withAck = ebxmlEnvelope(inlineXml(UTSKRIVNINGSKLAR_16))
        .toString('utf8')
        .replace('</eb:MessageHeader>', '</eb:MessageHeader><eb:AckRequested SOAP:mustUnderstand="1" eb:version="2.0" eb:signed="1"/>');
      expect(parsed(Buffer.from(withAck, 'utf8')).ebxml?.ackRequested).to.equal(true);
    });

    it('an inline MsgHead becomes a standalone document that keeps its namespaces', () => {
      const message = parsed(ebxmlEnvelope(inlineXml(UTSKRIVNINGSKLAR_16)));
      expect(message.businessXml).to.match(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<MsgHead /);
      expect(msgHead(parsed(Buffer.from(message.businessXml, 'utf8')))).to.deep.equal(bare.doc);
    });

    it('a bare SOAP envelope without ebXML header is accepted too', () => {
      const soap = `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>${inlineXml(UTSKRIVNINGSKLAR_16)}</S:Body></S:Envelope>`;
      const message = parsed(Buffer.from(soap, 'utf8'));
      expect(message.ebxml).to.equal(undefined);
      expect(message.doc).to.deep.equal(bare.doc);
    });

    it('an ebMS multipart message gives the same model and the payload text as received', () => {
      const { body, contentType } = multipart(UTSKRIVNINGSKLAR_16);
      for (const message of [parsed(body, contentType), parsed(body)]) {
        expect(message.framing).to.equal('multipart');
        expect(message.doc).to.deep.equal(bare.doc);
        expect(message.businessXml).to.equal(bare.businessXml);
        expect(message.ebxml?.action).to.equal('LOG_UTSKRIVNINGSKLAR');
        expect(message.envelopeXml).to.contain('eb:Manifest');
      }
    });

    it('a multipart payload in ISO-8859-1 is decoded by its charset', () => {
      const apprec = sample('apprec', 'sarepta-apprec-1.0-eksempel-avvist-iso8859-1.xml');
      const message = parsed(multipart(apprec, 'ISO-8859-1').body);
      expect((message.doc as AppRecModel).status).to.equal('2');
      expect(message.businessXml).to.contain('Køfri sykehus HF');
    });

    it('a multipart body whose closing boundary never comes (a transfer cut off) is T01', () => {
      const { body, contentType } = multipart(UTSKRIVNINGSKLAR_16);
      const text = body.toString('latin1');
      const cutAfterMsgHead = Buffer.from(text.slice(0, text.lastIndexOf('</MsgHead>') + '</MsgHead>'.length), 'latin1');
      const withoutClose = Buffer.from(text.slice(0, text.lastIndexOf('\r\n--')), 'latin1');
      for (const cut of [cutAfterMsgHead, withoutClose]) {
        for (const error of [failure(cut, MAX, contentType), failure(cut)]) {
          expect(error.code).to.equal('T01');
          expect(error.reason).to.contain('closing boundary');
        }
      }
    });

    it('a multipart part cut short inside its headers is T01', () => {
      const { body, contentType } = multipart(UTSKRIVNINGSKLAR_16);
      const text = body.toString('latin1');
      const boundary = /boundary="([^"]+)"/.exec(contentType)![1];
      const lastPart = text.lastIndexOf(`--${boundary}\r\nContent-Type: application/xml`);
      const truncated = `${text.slice(0, lastPart)}--${boundary}\r\nContent-Type: application/xml\r\n--${boundary}--\r\n`;
      const error = failure(Buffer.from(truncated, 'latin1'), MAX, contentType);
      expect(error.code).to.equal('T01');
      expect(error.reason).to.contain('no blank line');
    });

    it('a manifest that names a missing part is T01', () => {
      const { body } = buildMultipart([
        { contentId: 'soap-part@gateway.test', contentType: 'text/xml', body: ebxmlEnvelope(manifest('elsewhere@gateway.test')) },
      ]);
      const error = failure(body);
      expect(error.code).to.equal('T01');
      expect(error.reason).to.contain('elsewhere@gateway.test');
    });
  });

  describe('ebXML samples', () => {
    // ebxml-eksempel.xml and the SVAR_CYT header sample are envelopes only: their manifests
    // name a payload part (cid:…) that the stored sample does not include.
    for (const file of ['ebxml-eksempel.xml', 'ebxml-header-Description-overvakning-SVAR_CYT.xml']) {
      it(`${file} (envelope without its payload part) is T01`, () => {
        const error = failure(sample('ebxml', file));
        expect(error.code).to.equal('T01');
        expect(error.reason).to.match(/manifest refers to payload .+ no MIME part/);
      });
    }

    for (const file of ['Acknowledgment.xml', 'Acknowledgment-Description.xml']) {
      it(`${file} is an Acknowledgment signal for parseInbound and T10 for parseMessage`, () => {
        const result = parseInbound(sample('ebxml', file), { maxBytes: MAX });
        if (!result.ok || result.value.kind !== 'signal') throw new Error('expected a signal');
        const { signal } = result.value;
        expect(signal.framing).to.equal('soap');
        expect(signal.ebxml.signal).to.equal('Acknowledgment');
        expect(signal.ebxml.refToMessageId).to.match(/^[0-9a-f-]{36}$/);
        expect(signal.errors).to.deep.equal([]);
        expect(failure(sample('ebxml', file)).code).to.equal('T10');
      });
    }

    it('a MessageError signal carries its eb:Error list', () => {
      const errorList = ebxmlEnvelope('', 'MessageError', 'urn:oasis:names:tc:ebxml-msg:service')
        .toString('utf8')
        .replace(
          '</SOAP:Header>',
          `<eb:ErrorList eb:version="2.0" SOAP:mustUnderstand="1" eb:highestSeverity="Error">
             <eb:Error eb:errorCode="SecurityFailure" eb:severity="Error" eb:location="cid:payload-1"><eb:Description xml:lang="en">Signature invalid</eb:Description></eb:Error>
           </eb:ErrorList></SOAP:Header>`,
        );
      const result = parseInbound(Buffer.from(errorList, 'utf8'), { maxBytes: MAX });
      if (!result.ok || result.value.kind !== 'signal') throw new Error('expected a signal');
      expect(result.value.signal.ebxml.signal).to.equal('MessageError');
      expect(result.value.signal.errors).to.deep.equal([
        { code: 'SecurityFailure', severity: 'Error', location: 'cid:payload-1', description: 'Signature invalid' },
      ]);
    });
  });

  describe('unsafe or unreadable input', () => {
    // Records every URL libxml2 tries to open while these tests run. Input providers are
    // process-wide and cannot be removed one by one, so it stays registered but goes quiet.
    const opened: string[] = [];
    let recording = false;
    before(() => {
      recording = true;
      xmlRegisterInputProvider({
        match: (url: string) => {
          if (recording) opened.push(url);
          return false;
        },
        open: () => undefined,
        read: () => -1,
        close: () => true,
      });
    });
    after(() => (recording = false));
    afterEach(() => expect(opened, 'URLs libxml2 tried to open').to.deep.equal([]));

    it('text that is not XML is T01', () => {
      const error = failure('this is not XML');
      expect(error.code).to.equal('T01');
      expect(error.reason).to.match(/^The message is not well-formed XML at line 1: /);
    });

    it('a mismatched end tag is T01 and quotes no content', () => {
      const error = failure('<MsgHead><MsgId>15076500565</MsgId></MsgHead');
      expect(error.code).to.equal('T01');
      expect(error.reason).to.not.contain('15076500565');
    });

    it('an external entity (XXE) is T01 and no file is read', () => {
      const error = failure('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>');
      expect(error).to.deep.equal({ code: 'T01', reason: 'The message contains a DOCTYPE declaration, which is not accepted.', transient: false });
    });

    it('an external DTD is T01', () => {
      expect(failure('<!DOCTYPE a SYSTEM "http://attacker.example/x.dtd"><a/>').code).to.equal('T01');
    });

    it('an XXE in UTF-16 is caught as well', () => {
      const xxe = '\uFEFF<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>';
      expect(failure(Buffer.from(xxe, 'utf16le')).reason).to.contain('DOCTYPE');
    });

    it('billion laughs is T01', () => {
      const entities = Array.from({ length: 9 }, (_, i) => `<!ENTITY l${i + 1} "${`&l${i};`.repeat(10)}">`).join('');
      const error = failure(`<!DOCTYPE lolz [<!ENTITY l0 "lol">${entities}]><lolz>&l9;</lolz>`);
      expect(error.code).to.equal('T01');
    });

    it('a message over the size limit is T01 and is not parsed', () => {
      const error = failure(UTSKRIVNINGSKLAR_16, 1024);
      expect(error.code).to.equal('T01');
      expect(error.reason).to.equal(`The message is ${UTSKRIVNINGSKLAR_16.length} bytes, more than the limit of 1024 bytes.`);
    });

    it('an unknown root element is T10', () => {
      expect(failure('<Epikrise xmlns="urn:other"/>')).to.deep.include({ code: 'T10' });
    });

    it('a SOAP envelope with neither document nor manifest is T01', () => {
      expect(failure(ebxmlEnvelope('')).code).to.equal('T01');
    });
  });
});
