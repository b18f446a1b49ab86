// Which payload protection a receiver gets: from the configuration and the register's certificate.
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { type GatewayConfig, loadConfig } from '../../src/config/config.js';
import { payloadProtectionFor } from '../../src/outbound/protection.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { makeSigner } from '../support/certificates.js';

const NOW = new Date('2026-11-24T09:00:00Z');
const DEMO_BYDEL_CERT = readFileSync('config/demo-keys/bydel-encryption-cert.pem', 'utf8');

function configWith(patch: (c: GatewayConfig) => void = () => {}): GatewayConfig {
  const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const c = structuredClone(loaded.config);
  patch(c);
  return c;
}

const party = (herId: string, encryptionCertificate?: string) => ({ herId, name: 'T', type: 'Service' as const, active: true, encryptionCertificate });

describe('payload protection per receiver', () => {
  let register: AddressRegister;

  before(async () => {
    const signingOnly = await makeSigner('signing-only', { extensions: [{ name: 'keyUsage', digitalSignature: true, critical: true }] as never });
    register = new AddressRegister([party('1', DEMO_BYDEL_CERT), party('2'), party('3', signingOnly.certPem)]);
  });

  it('encrypts by default: AES-256-CBC, RSA PKCS#1 v1.5, to the register certificate', () => {
    const p = payloadProtectionFor(configWith(), register, '1', NOW);
    expect(p).to.deep.include({ mode: 'encrypted', certificatePem: DEMO_BYDEL_CERT, algorithms: { contentCipher: 'aes-256-cbc', keyTransport: 'rsa-pkcs1' } });
  });

  it('a partner configured for 3DES and RSA-OAEP gets them; one configured plain gets clear text, certificate or not', () => {
    const config = configWith((c) => {
      c.encryption.outbound.partners = { '1': { contentCipher: 'des-ede3-cbc', keyTransport: 'rsa-oaep' }, '2': { payload: 'plain' } };
    });
    expect(payloadProtectionFor(config, register, '1', NOW)).to.deep.include({ algorithms: { contentCipher: 'des-ede3-cbc', keyTransport: 'rsa-oaep' } });
    expect(payloadProtectionFor(config, register, '2', NOW)).to.deep.equal({ mode: 'plain' });
  });

  it('plain for everyone when the default says so', () => {
    const config = configWith((c) => {
      c.encryption.outbound.payload = 'plain';
    });
    expect(payloadProtectionFor(config, register, '1', NOW)).to.deep.equal({ mode: 'plain' });
  });

  it('no certificate, a signing-only certificate, an expired one, an unknown party: unusable, with one sentence why', () => {
    const config = configWith();
    const reasons = ['2', '3', '4'].map((h) => payloadProtectionFor(config, register, h, new Date()));
    expect(reasons[0]).to.deep.equal({ mode: 'unusable', reason: 'the address register has no encryption certificate for HER-id 2' });
    expect(reasons[1]).to.deep.include({ mode: 'unusable' });
    expect((reasons[1] as { reason: string }).reason).to.contain('key usage does not allow encryption');
    expect(reasons[2]).to.deep.equal({ mode: 'unusable', reason: 'the address register has no encryption certificate for HER-id 4' });
    const expired = payloadProtectionFor(config, register, '1', new Date('2041-01-01T00:00:00Z'));
    expect((expired as { reason: string }).reason).to.match(/HER-id 1 cannot be used: the certificate expired on 2040-12-31/);
  });
});
