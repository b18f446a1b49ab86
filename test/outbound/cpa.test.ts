// The CPA reader on NHN's sample CPA (samples/cppa) and on variants of it the CPPA stand-in
// writes: what the gateway's party sends under it, per Service and Action.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { readAgreement, termsFor } from '../../src/outbound/agreements/cpa.js';
import { cpaXml } from '../support/cppaStandIn.js';
import { SAMPLES } from '../support/paths.js';

const SAMPLE = readFileSync(join(SAMPLES, 'cppa', 'helsenorge-CPA_93252.xml'));
const DIALOG = 'S-DIALOG_INNBYGGER_DIGITALBRUKER|DIALOG_INNBYGGER_DIGITALBRUKER';

describe('CPA reader (ebXML CPPA 2.0)', () => {
  it("reads NHN's sample as its first party sends under it: cpaid, status, period, rsa-sha1, Retries 0, enveloped-data", () => {
    const a = readAgreement(SAMPLE, '93238');
    expect(a).to.include({ cpaId: '9333f3de-e85c-4c26-9066-6800055b1b8e', status: 'proposed' });
    expect(a.start).to.equal('2016-10-21T08:59:06.535Z');
    expect(a.end).to.equal('2017-02-05T22:59:00.000Z');
    expect(a.sends[DIALOG]).to.deep.equal({ signatureAlgorithm: 'rsa-sha1', ackRequested: true, retries: 0, encrypted: true });
    expect(a.sends['S-DIALOG_INNBYGGER_DIGITALBRUKER|APPREC']).to.include({ encrypted: true, signatureAlgorithm: 'rsa-sha1' });
    expect(Object.keys(a.sends)).to.include('S-DIALOG_INNBYGGER_EKONSULTASJON|DIALOG_INNBYGGER_EKONSULTASJON');
  });

  it('applies terms only inside the period and for a Service and Action it covers', () => {
    const a = readAgreement(SAMPLE, '93238');
    expect(termsFor(a, 'S-DIALOG_INNBYGGER_DIGITALBRUKER', 'DIALOG_INNBYGGER_DIGITALBRUKER', new Date('2016-12-01T00:00:00Z'))).to.include({ retries: 0 });
    expect(termsFor(a, 'S-DIALOG_INNBYGGER_DIGITALBRUKER', 'DIALOG_INNBYGGER_DIGITALBRUKER', new Date('2016-10-01T00:00:00Z')), 'before Start').to.equal(
      undefined,
    );
    expect(termsFor(a, 'S-DIALOG_INNBYGGER_DIGITALBRUKER', 'DIALOG_INNBYGGER_DIGITALBRUKER', new Date('2026-12-01T00:00:00Z')), 'after End').to.equal(
      undefined,
    );
    expect(termsFor(a, 'S-LOG_UTSKRIVNINGSKLAR', 'LOG_UTSKRIVNINGSKLAR', new Date('2016-12-01T00:00:00Z')), 'not covered').to.equal(undefined);
  });

  it('reads what a CPA sets otherwise: rsa-sha256, ackRequested never, Retries with a RetryInterval, a payload in clear', () => {
    const xml = cpaXml('8143060', {
      partnerHerId: '9920005',
      msgTypes: ['LOG_UTSKRIVNINGSKLAR', 'LOG_INNLAGT'],
      cpaId: 'c0ffee00-0000-4000-8000-000000000001',
      signatureAlgorithm: 'rsa-sha256',
      ackRequested: 'never',
      retries: 2,
      retryInterval: 'PT10M',
      plain: true,
    });
    const a = readAgreement(Buffer.from(xml), '8143060');
    expect(a.cpaId).to.equal('c0ffee00-0000-4000-8000-000000000001');
    expect(a.sends['S-LOG_UTSKRIVNINGSKLAR|LOG_UTSKRIVNINGSKLAR']).to.deep.equal({
      signatureAlgorithm: 'rsa-sha256',
      ackRequested: false,
      retries: 2,
      retryInterval: 'PT10M',
      encrypted: false,
    });
    expect(a.sends['S-LOG_INNLAGT|APPREC']).to.include({ ackRequested: false });
  });

  it('refuses, with one sentence, a CPA that does not name our party, asks for an algorithm the gateway cannot make, or is no CPA', () => {
    expect(() => readAgreement(SAMPLE, '8143060')).to.throw('does not name our HER-id 8143060');
    const md5 = SAMPLE.toString('utf8').replaceAll('http://www.w3.org/2000/09/xmldsig#rsa-sha1', 'http://www.w3.org/2001/04/xmldsig-more#rsa-md5');
    expect(() => readAgreement(Buffer.from(md5), '93238')).to.throw('asks for the signature algorithm http://www.w3.org/2001/04/xmldsig-more#rsa-md5');
    const mixed = SAMPLE.toString('utf8').replaceAll('http://www.w3.org/2000/09/xmldsig#sha1<', 'http://www.w3.org/2001/04/xmlenc#sha256<');
    expect(() => readAgreement(Buffer.from(mixed), '93238')).to.throw('pairs the signature algorithm');
    expect(() => readAgreement(Buffer.from('<html><body>Service Unavailable</body></html>'), '93238')).to.throw('other than a CollaborationProtocolAgreement');
    expect(() => readAgreement(SAMPLE, "1' or '1'='1")).to.throw('is not a HER-id');
  });

  it('parses safely: a DOCTYPE (the door to external entities) is refused', () => {
    const xxe = SAMPLE.toString('utf8')
      .replace(/^<\?xml[^>]*\?>\s*/, '')
      .replace('<tns:CollaborationProtocolAgreement', '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><tns:CollaborationProtocolAgreement')
      .replace('<tns:Status tns:value="proposed" />', '<tns:Status tns:value="&e;" />');
    expect(() => readAgreement(Buffer.from(xxe), '93238')).to.throw('contains a DOCTYPE declaration, which is not accepted');
  });
});
