// Production configuration: the example the image carries loads with the hospital's own keys and
// secret, and `start` refuses the demo's (public in the repository) when NODE_ENV=production.
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { productionProblems } from '../../src/config/check.js';
import { type GatewayConfig, loadConfig } from '../../src/config/config.js';
import { makeSigner, pemFiles } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { testConfig } from '../support/harness.js';

const PRODUCTION = { NODE_ENV: 'production' };

function load(env: NodeJS.ProcessEnv): GatewayConfig {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  return loaded.config;
}

describe('production configuration', function () {
  this.timeout(60000);

  it("config/production.example.json has no receiver stand-in queues and no demo keys, and needs the hospital's own secret", async () => {
    const without = loadConfig({ GATEWAY_CONFIG: 'config/production.example.json' });
    expect(without.ok).to.equal(false);
    if (!without.ok)
      expect(without.problems).to.deep.equal(['tracking.patientKeySecret: required: the secret of the keyed patient hash; set GATEWAY_PATIENT_KEY_SECRET']);
    const signing = pemFiles(await makeSigner('sykehus-hf-signing'));
    const encryption = pemFiles(await makeSigner('sykehus-hf-encryption'));
    const config = load({
      GATEWAY_CONFIG: 'config/production.example.json',
      GATEWAY_PATIENT_KEY_SECRET: 'the hospital’s own, 32 characters',
      GATEWAY_SIGNING_KEY: signing.keyFile,
      GATEWAY_SIGNING_CERT: signing.certFile,
      GATEWAY_ENCRYPTION_KEY: encryption.keyFile,
      GATEWAY_ENCRYPTION_CERT: encryption.certFile,
    });
    expect(config.broker.receiverQueuePrefix).to.equal(undefined);
    expect(config.encryption.acceptPlain).to.equal('listed');
    expect(productionProblems(config, PRODUCTION)).to.deep.equal([]);
  });

  it('under NODE_ENV=production the demo secret and the demo keys are refused, also a copy of a demo key kept elsewhere; outside production nothing is', () => {
    const demo = load({ GATEWAY_CONFIG: 'config/default.json' });
    expect(productionProblems(demo, {})).to.deep.equal([]);
    const problems = productionProblems(demo, PRODUCTION);
    expect(problems.map((p) => p.split(':')[0])).to.deep.equal([
      'tracking.patientKeySecret',
      'signing.keyFile',
      'signing.certFile',
      'encryption.keys.0.keyFile',
      'encryption.keys.0.certFile',
    ]);
    const copy = join(mkdtempSync(join(tmpdir(), 'gw-copy-')), 'my-key.pem');
    copyFileSync('config/demo-keys/signing-key.pem', copy);
    const copied = { ...demo, signing: { ...demo.signing, keyFile: copy } };
    expect(productionProblems(copied, PRODUCTION)).to.include(
      `signing.keyFile: ${copy} is a demo key or certificate, public in the repository; configure the hospital's own before starting in production`,
    );
  });

  it('plo-gateway start refuses to run on the demo configuration in production, one line per problem', async () => {
    const demoSigning = testConfig((c) => {
      c.signing.keyFile = 'config/demo-keys/signing-key.pem';
      c.signing.certFile = 'config/demo-keys/signing-cert.pem';
    });
    const started = await cli(['start'], {
      config: demoSigning,
      env: { NODE_ENV: 'production', GATEWAY_PATIENT_KEY_SECRET: 'demo-only-change-me-in-production' },
    });
    expect(started.status).to.equal(1);
    expect(started.stderr).to.match(
      /^tracking\.patientKeySecret: the demo secret; set the hospital's own in GATEWAY_PATIENT_KEY_SECRET before starting in production$/m,
    );
    expect(started.stderr).to.match(/^signing\.keyFile: .*config\/demo-keys\/signing-key\.pem is a demo key or certificate/m);
  });
});
