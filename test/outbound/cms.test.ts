import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import sinon from 'sinon';
import {
  type ContentCipher,
  type DecryptResult,
  decryptEnveloped,
  encryptEnveloped,
  encryptionCertificateProblem,
  type KeyTransport,
} from '../../src/outbound/cms.js';
import { DAY, makeSigner } from '../support/certificates.js';

// openssl 3.0 is the independent oracle; a missing binary is a test failure, never a skip.
function openssl(args: string[]): Buffer {
  const r = spawnSync('openssl', args, { maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`openssl could not be run (${r.error.message})`);
  if (r.status !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${r.stderr.toString()}`);
  return r.stdout;
}

interface Pair {
  keyPem: string;
  certPem: string;
  keyFile: string;
  certFile: string;
}

const ENCRYPTION_USAGE = 'keyUsage=critical,keyEncipherment,dataEncipherment';
const UNDECRYPTABLE = /^the content could not be decrypted/;
const MARKER = 'Kari Nordmann 01017012345';

/** A PLO-like document: UTF-8 with æøå, CRLF line ends, a tab, and a marker that must never leak into a reason. */
function ploXml(extraLines = 0): Buffer {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">',
    '  <MsgInfo><Type V="LOG_UTSKRIVNINGSKLAR" DN="Melding om utskrivningsklar pasient"/></MsgInfo>',
    `  <Patient><GivenName>${MARKER}</GivenName><Merknad>Pårørende varslet;\tbor i Grünerløkka, Sør-Øst. ÆØÅ æøå</Merknad></Patient>`,
    ...Array.from({ length: extraLines }, (_, i) => `  <Linje nr="${i}">Utskrivningsklar pasient, kommunen bes ta imot før kl. 14:00 – takk.</Linje>`),
    '</MsgHead>',
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}

function expectSentence(result: DecryptResult): string {
  if (result.ok) expect.fail('expected a refusal, got ok:true');
  expect(result.reason).to.be.a('string').and.not.empty;
  expect(result.reason).not.to.match(/[\r\n]/);
  expect(result.reason).not.to.include(MARKER);
  return result.reason;
}

describe('outbound/cms', () => {
  let dir: string;
  let a: Pair; // the gateway's current encryption certificate (issuer with æøå)
  let b: Pair; // the gateway's next one (rollover)
  let c: Pair; // a third party
  let signingOnly: Pair;
  let noKeyUsage: Pair;
  let ec: Pair;
  let n = 0;

  function pair(subject: string, extra: string[]): Pair {
    const keyFile = join(dir, `k${n}.pem`);
    const certFile = join(dir, `c${n++}.pem`);
    openssl(['req', '-x509', '-utf8', '-nodes', '-sha256', '-days', '30', ...extra, '-keyout', keyFile, '-out', certFile, '-subj', subject]);
    return { keyPem: readFileSync(keyFile, 'utf8'), certPem: readFileSync(certFile, 'utf8'), keyFile, certFile };
  }
  const rsa = (subject: string, usage: string | null = ENCRYPTION_USAGE) => pair(subject, ['-newkey', 'rsa:2048', ...(usage ? ['-addext', usage] : [])]);

  function file(bytes: Buffer): string {
    const f = join(dir, `f${n++}`);
    writeFileSync(f, bytes);
    return f;
  }
  const opensslDecrypt = (der: Buffer, p: Pair) =>
    openssl(['cms', '-decrypt', '-binary', '-inform', 'DER', '-in', file(der), '-recip', p.certFile, '-inkey', p.keyFile]);
  const opensslEncrypt = (content: Buffer, args: string[]) => openssl(['cms', '-encrypt', '-binary', '-outform', 'DER', '-in', file(content), ...args]);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gw-cms-'));
    a = rsa('/C=NO/O=Helse Sør-Øst RHF/OU=Sykehuset/CN=Gateway kryptering Ærlig');
    b = rsa('/C=NO/O=Sykehuset/CN=Gateway kryptering 2');
    c = rsa('/C=NO/O=Oslo kommune/CN=Bydel Frogner');
    signingOnly = rsa('/C=NO/O=Sykehuset/CN=Signering', 'keyUsage=critical,digitalSignature,nonRepudiation');
    noKeyUsage = rsa('/C=NO/O=Sykehuset/CN=Uten keyUsage', null);
    ec = pair('/C=NO/O=Sykehuset/CN=EC', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-addext', ENCRYPTION_USAGE]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('encryptEnveloped → openssl cms -decrypt', () => {
    const combos: [ContentCipher, KeyTransport][] = [
      ['aes-256-cbc', 'rsa-pkcs1'],
      ['aes-256-cbc', 'rsa-oaep'],
      ['des-ede3-cbc', 'rsa-pkcs1'],
      ['des-ede3-cbc', 'rsa-oaep'],
    ];
    for (const [contentCipher, keyTransport] of combos) {
      const big = contentCipher === 'aes-256-cbc' && keyTransport === 'rsa-pkcs1';
      it(`${contentCipher} + ${keyTransport}: openssl decrypts it to the exact bytes${big ? ' (1 MB body)' : ''}`, () => {
        const content = big ? ploXml(14_000) : ploXml();
        if (big) expect(content.length).to.be.greaterThan(1024 * 1024);
        const der = encryptEnveloped(content, a.certPem, { contentCipher, keyTransport });
        expect(opensslDecrypt(der, a).equals(content)).to.equal(true);

        const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', file(der)]).toString();
        expect(printed).to.include(contentCipher === 'aes-256-cbc' ? 'aes-256-cbc' : 'des-ede3-cbc');
        expect(printed).to.include(keyTransport === 'rsa-oaep' ? 'rsaesOaep' : 'rsaEncryption');
        expect(printed).to.include('d.issuerAndSerialNumber');

        const back = decryptEnveloped(der, [a]);
        expect(back).to.deep.include({ ok: true, keyIndex: 0, contentCipher, keyTransport });
        expect(back.ok && back.content.equals(content)).to.equal(true);
      });
    }

    it('defaults to AES-256-CBC with RSA PKCS#1 v1.5, and CRLF and æøå come back untouched', () => {
      const content = ploXml(3);
      const der = encryptEnveloped(content, a.certPem);
      const printed = openssl(['cms', '-cmsout', '-print', '-inform', 'DER', '-in', file(der)]).toString();
      expect(printed).to.include('aes-256-cbc').and.include('rsaEncryption');
      const out = opensslDecrypt(der, a);
      expect(out.equals(content)).to.equal(true);
      expect(out.toString('utf8')).to.include('\r\n').and.include('Sør-Øst');
    });

    it('writes DER: a primitive [0] encrypted content, and the issuer and serial exactly as in the certificate', () => {
      const der = encryptEnveloped(ploXml(), a.certPem, { keyTransport: 'rsa-oaep' });
      const parsed = openssl(['asn1parse', '-inform', 'DER', '-in', file(der)]).toString();
      expect(parsed).to.match(/prim: cont \[ 0 \]/);
      expect(parsed).not.to.match(/l=inf/);
      expect(parsed).to.match(/rsaesOaep\s*\n.*d=6\s+hl=2 l=\s*0 cons: SEQUENCE/); // RSAES-OAEP-params, all defaults

      // The certificate's issuer Name, located by openssl: tbsCertificate's 4th element.
      const certDer = Buffer.from(a.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const tbs = openssl(['asn1parse', '-in', a.certFile])
        .toString()
        .split('\n')
        .filter((l) => /d=2/.test(l));
      const [, serialLine, , issuerLine] = tbs;
      const field = (line: string) => {
        const [, offset, header, length] = /^\s*(\d+):d=2\s+hl=(\d+)\s+l=\s*(\d+)/.exec(line)!;
        return certDer.subarray(Number(offset), Number(offset) + Number(header) + Number(length));
      };
      expect(der.includes(field(issuerLine))).to.equal(true);
      expect(der.includes(field(serialLine))).to.equal(true);
    });

    it('encrypts empty content too', () => {
      const der = encryptEnveloped(Buffer.alloc(0), a.certPem);
      expect(opensslDecrypt(der, a).length).to.equal(0);
    });

    it('throws a readable error for a recipient certificate it cannot use', () => {
      expect(() => encryptEnveloped(ploXml(), 'not a certificate')).to.throw(/recipient certificate could not be read/);
      expect(() => encryptEnveloped(ploXml(), ec.certPem)).to.throw(/recipient certificate could not be read/);
    });
  });

  describe('openssl cms -encrypt → decryptEnveloped', () => {
    const cases: { name: string; args: (p: Pair) => string[]; contentCipher: string; keyTransport: string }[] = [
      { name: '-aes256', args: (p) => ['-aes256', p.certFile], contentCipher: 'aes-256-cbc', keyTransport: 'rsa-pkcs1' },
      { name: '-des3', args: (p) => ['-des3', p.certFile], contentCipher: 'des-ede3-cbc', keyTransport: 'rsa-pkcs1' },
      {
        name: '-aes256 with rsa_padding_mode:oaep',
        args: (p) => ['-aes256', '-recip', p.certFile, '-keyopt', 'rsa_padding_mode:oaep'],
        contentCipher: 'aes-256-cbc',
        keyTransport: 'rsa-oaep',
      },
      {
        name: '-des3 with rsa_padding_mode:oaep',
        args: (p) => ['-des3', '-recip', p.certFile, '-keyopt', 'rsa_padding_mode:oaep'],
        contentCipher: 'des-ede3-cbc',
        keyTransport: 'rsa-oaep',
      },
      {
        name: '-aes256 with OAEP SHA-256',
        args: (p) => ['-aes256', '-recip', p.certFile, '-keyopt', 'rsa_padding_mode:oaep', '-keyopt', 'rsa_oaep_md:sha256'],
        contentCipher: 'aes-256-cbc',
        keyTransport: 'rsa-oaep-sha256',
      },
      { name: '-aes128', args: (p) => ['-aes128', p.certFile], contentCipher: 'aes-128-cbc', keyTransport: 'rsa-pkcs1' },
      {
        name: '-aes256 -stream (BER, indefinite lengths)',
        args: (p) => ['-aes256', '-stream', p.certFile],
        contentCipher: 'aes-256-cbc',
        keyTransport: 'rsa-pkcs1',
      },
    ];
    for (const t of cases) {
      it(`${t.name}: decrypted to the exact bytes`, () => {
        const content = ploXml(40);
        const result = decryptEnveloped(opensslEncrypt(content, t.args(a)), [a]);
        expect(result).to.deep.include({ ok: true, keyIndex: 0, contentCipher: t.contentCipher, keyTransport: t.keyTransport });
        expect(result.ok && result.content.equals(content)).to.equal(true);
      });
    }

    it('reads a 1 MB body', () => {
      const content = ploXml(14_000);
      const result = decryptEnveloped(opensslEncrypt(content, ['-aes256', a.certFile]), [a]);
      expect(result.ok && result.content.equals(content)).to.equal(true);
    });
  });

  describe('certificate rollover: several keys configured', () => {
    it('picks the second key for a message addressed to the second certificate (ours and openssl’s)', () => {
      const content = ploXml();
      for (const der of [encryptEnveloped(content, b.certPem), opensslEncrypt(content, ['-aes256', b.certFile])]) {
        const result = decryptEnveloped(der, [a, b]);
        expect(result).to.deep.include({ ok: true, keyIndex: 1 });
        expect(result.ok && result.content.equals(content)).to.equal(true);
      }
    });

    it('finds its own RecipientInfo among several', () => {
      const content = ploXml();
      const result = decryptEnveloped(opensslEncrypt(content, ['-aes256', c.certFile, b.certFile]), [a, b]);
      expect(result).to.deep.include({ ok: true, keyIndex: 1 });
      expect(result.ok && result.content.equals(content)).to.equal(true);
    });

    it('refuses a message addressed to a third party', () => {
      const der = encryptEnveloped(ploXml(), c.certPem);
      expect(expectSentence(decryptEnveloped(der, [a, b]))).to.equal("the CMS object is addressed to none of the gateway's encryption certificates");
      expect(expectSentence(decryptEnveloped(der, []))).to.match(/none of the gateway's encryption certificates/);
    });

    it('skips a configured certificate it cannot read, and says so when nothing matched', () => {
      const der = encryptEnveloped(ploXml(), b.certPem);
      expect(decryptEnveloped(der, [{ keyPem: 'x', certPem: 'garbage' }, b])).to.deep.include({ ok: true, keyIndex: 1 });
      expect(expectSentence(decryptEnveloped(der, [{ keyPem: 'x', certPem: 'garbage' }]))).to.match(/none of .*1 configured certificate could not be read/);
    });

    it('refuses when the configured key does not belong to the certificate, or cannot be read', () => {
      for (const keyTransport of ['rsa-pkcs1', 'rsa-oaep'] as const) {
        const der = encryptEnveloped(ploXml(), a.certPem, { keyTransport });
        expect(expectSentence(decryptEnveloped(der, [{ keyPem: c.keyPem, certPem: a.certPem }]))).to.match(UNDECRYPTABLE);
        expect(expectSentence(decryptEnveloped(der, [{ keyPem: 'not a key', certPem: a.certPem }]))).to.match(/private key .* could not be read/);
      }
    });
  });

  describe('bad input: ok:false with one sentence, never a throw', () => {
    it('an empty buffer', () => {
      expect(expectSentence(decryptEnveloped(Buffer.alloc(0), [a]))).to.match(/empty/);
    });

    it('truncated DER', () => {
      const der = encryptEnveloped(ploXml(), a.certPem);
      for (const length of [1, 2, 10, 300, Math.floor(der.length / 2), der.length - 1]) {
        expect(expectSentence(decryptEnveloped(der.subarray(0, length), [a])), `cut at ${length}`).to.equal('the CMS object is truncated or not DER');
      }
    });

    it('random bytes, also behind a plausible SEQUENCE header', () => {
      for (let i = 0; i < 50; i++) {
        const bytes = randomBytes(1 + ((i * 37) % 3000));
        if (i % 2) bytes[0] = 0x30;
        expectSentence(decryptEnveloped(bytes, [a]));
      }
    });

    it('a flipped byte in the encrypted content is refused, not returned as content', () => {
      // 1024 bytes of content → a whole block of padding (16 × 0x10) follows. The ciphertext is the
      // last element of the DER; flipping bit 0 of the penultimate block's last byte turns the final
      // padding byte into 0x11, which no CBC implementation accepts.
      const content = Buffer.concat([ploXml(), Buffer.alloc(1024, 0x20)]).subarray(0, 1024);
      const der = encryptEnveloped(content, a.certPem);
      const tampered = Buffer.from(der);
      tampered[der.length - 17] ^= 0x01;
      expect(expectSentence(decryptEnveloped(tampered, [a]))).to.match(UNDECRYPTABLE);
      expect(decryptEnveloped(der, [a])).to.deep.include({ ok: true });
    });

    it('a flipped byte in the encrypted key is refused with the same sentence as a bad content padding', () => {
      for (const keyTransport of ['rsa-pkcs1', 'rsa-oaep'] as const) {
        const der = encryptEnveloped(ploXml(), a.certPem, { keyTransport });
        const printed = openssl(['asn1parse', '-inform', 'DER', '-in', file(der)]).toString();
        const [, offset, header] = /^\s*(\d+):d=5\s+hl=(\d+)\s+l=\s*256 prim: OCTET STRING/m.exec(printed)!;
        const tampered = Buffer.from(der);
        tampered[Number(offset) + Number(header) + 100] ^= 0x40;
        expect(expectSentence(decryptEnveloped(tampered, [a])), keyTransport).to.match(UNDECRYPTABLE);
      }
    });

    it('a CMS object of another type (SignedData)', () => {
      const signed = openssl([
        'cms',
        '-sign',
        '-binary',
        '-outform',
        'DER',
        '-in',
        file(ploXml()),
        '-signer',
        signingOnly.certFile,
        '-inkey',
        signingOnly.keyFile,
      ]);
      expect(expectSentence(decryptEnveloped(signed, [a]))).to.equal('the CMS object is not EnvelopedData but content type 1.2.840.113549.1.7.2');
    });

    it('an unsupported content encryption algorithm', () => {
      const der = opensslEncrypt(ploXml(), ['-camellia256', a.certFile]);
      expect(expectSentence(decryptEnveloped(der, [a]))).to.match(/^unsupported content encryption algorithm 1\.2\.392\.200011\.61\.1\.1\.1\.4$/);
    });

    it('never throws on any single-byte change', () => {
      const der = encryptEnveloped(ploXml(), a.certPem, { keyTransport: 'rsa-oaep' });
      for (let i = 0; i < der.length; i += 7) {
        const changed = Buffer.from(der);
        changed[i] ^= 0xa5;
        const result = decryptEnveloped(changed, [a, b]);
        if (!result.ok) expectSentence(result);
      }
    });
  });

  describe('encryptionCertificateProblem', () => {
    let now: Date;
    beforeEach(() => {
      now = new Date(); // after the certificates were made (openssl's notBefore is the second they were)
    });

    it('accepts an RSA certificate with keyEncipherment/dataEncipherment, and one without a KeyUsage extension', () => {
      expect(encryptionCertificateProblem(a.certPem, now)).to.equal(undefined);
      expect(openssl(['x509', '-in', noKeyUsage.certFile, '-noout', '-text']).toString()).not.to.include('Key Usage');
      expect(encryptionCertificateProblem(noKeyUsage.certPem, now)).to.equal(undefined);
    });

    it('refuses an expired certificate', async () => {
      const expired = await makeSigner('utløpt', {
        notBefore: new Date(Date.now() - 10 * DAY),
        notAfter: new Date(Date.now() - DAY),
        extensions: [{ name: 'keyUsage', keyEncipherment: true, dataEncipherment: true, critical: true }],
      });
      expect(encryptionCertificateProblem(expired.certPem, now)).to.match(/^the certificate expired on \d{4}-\d\d-\d\dT/);
      expect(encryptionCertificateProblem(a.certPem, new Date(Date.now() + 60 * DAY))).to.match(/^the certificate expired on /);
    });

    it('refuses a certificate that is not yet valid', async () => {
      const future = await makeSigner('fremtidig', {
        notBefore: new Date(Date.now() + DAY),
        notAfter: new Date(Date.now() + 30 * DAY),
        extensions: [{ name: 'keyUsage', keyEncipherment: true, critical: true }],
      });
      expect(encryptionCertificateProblem(future.certPem, now)).to.match(/^the certificate is not yet valid/);
      expect(encryptionCertificateProblem(future.certPem, new Date(Date.now() + 2 * DAY))).to.equal(undefined);
    });

    it('refuses a signing-only certificate (digitalSignature, nonRepudiation)', () => {
      expect(encryptionCertificateProblem(signingOnly.certPem, now)).to.equal(
        'the certificate key usage does not allow encryption (neither keyEncipherment nor dataEncipherment)',
      );
    });

    it('refuses a non-RSA certificate and garbage', () => {
      expect(encryptionCertificateProblem(ec.certPem, now)).to.match(/not RSA/);
      expect(encryptionCertificateProblem('garbage', now)).to.match(/^the text is not a certificate/);
      expect(encryptionCertificateProblem('', now)).to.match(/^the text is not a certificate/);
      expect(encryptionCertificateProblem(a.keyPem, now)).to.match(/^the text is not a certificate/);
    });
  });

  it('never logs', () => {
    const spies = [
      ...(['log', 'info', 'warn', 'error', 'debug', 'trace'] as const).map((m) => sinon.stub(console, m)),
      sinon.stub(process.stdout, 'write'),
      sinon.stub(process.stderr, 'write'),
    ];
    try {
      const der = encryptEnveloped(ploXml(), a.certPem);
      encryptEnveloped(ploXml(), b.certPem, { contentCipher: 'des-ede3-cbc', keyTransport: 'rsa-oaep' });
      decryptEnveloped(der, [c, a]);
      decryptEnveloped(der, [c]);
      decryptEnveloped(der.subarray(0, 100), [a]);
      decryptEnveloped(randomBytes(500), [a]);
      decryptEnveloped(der, [{ keyPem: 'x', certPem: 'y' }]);
      encryptionCertificateProblem(signingOnly.certPem, new Date());
      encryptionCertificateProblem('garbage', new Date());
      try {
        encryptEnveloped(ploXml(), 'garbage');
      } catch {
        // expected
      }
    } finally {
      for (const s of spies) s.restore();
    }
    for (const s of spies) expect(s.called).to.equal(false);
  });
});
