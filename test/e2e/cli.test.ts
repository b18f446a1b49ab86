// `plo-gateway config check` as ops run it: every problem on its own line, exit codes 0/1/2.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { makeSigner, pemFiles } from '../support/certificates.js';
import { cli } from '../support/cli.js';
import { ADDRESS_REGISTER } from '../support/paths.js';

describe('plo-gateway config check', function () {
  this.timeout(30000);

  it('accepts the shipped configuration', async () => {
    const r = await cli(['config', 'check']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('configuration OK');
  });

  it('prints every problem on its own line and exits 1', async () => {
    const cfg = JSON.parse(readFileSync('config/default.json', 'utf8'));
    cfg.broker.prefetch = 0;
    cfg.signing.algorithm = 'md5';
    cfg.ownHerId = 'not-a-her-id';
    const file = join(mkdtempSync(join(tmpdir(), 'gw-cfg-')), 'bad.json');
    writeFileSync(file, JSON.stringify(cfg));
    const r = await cli(['config', 'check'], { env: { GATEWAY_CONFIG: file, AMQP_URL: 'http://wrong' } });
    expect(r.status).to.equal(1);
    const lines = r.stderr.split('\n');
    expect(lines).to.have.length(4);
    for (const field of ['ownHerId', 'broker.url', 'broker.prefetch', 'signing.algorithm']) {
      expect(
        lines.some((l) => l.startsWith(`${field}:`)),
        field,
      ).to.equal(true);
    }
  });

  it('reports files that are missing or unusable', async () => {
    const r = await cli(['config', 'check'], { env: { GATEWAY_SCHEMA_DIR: '/nonexistent', GATEWAY_SIGNING_KEY: '/nonexistent/key.pem' } });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/^schemaDir: /m);
    expect(r.stderr).to.match(/^signing\.keyFile: /m);
  });

  it('checks the encryption pairs of GATEWAY_ENCRYPTION_KEY/CERT: a certificate of another key, one only for signing, a count that does not match', async () => {
    const pair = async (name: string, extensions: unknown) => {
      const { keyFile, certFile } = pemFiles(await makeSigner(name, { extensions: extensions as never }));
      return { key: keyFile, cert: certFile };
    };
    const good = await pair('good', [{ name: 'keyUsage', keyEncipherment: true, critical: true }]);
    const other = await pair('other', [{ name: 'keyUsage', keyEncipherment: true, critical: true }]);
    const signingOnly = await pair('signing-only', [{ name: 'keyUsage', digitalSignature: true, nonRepudiation: true, critical: true }]);
    const ok = await cli(['config', 'check'], {
      env: { GATEWAY_ENCRYPTION_KEY: `${good.key},${other.key}`, GATEWAY_ENCRYPTION_CERT: `${good.cert},${other.cert}` },
    });
    expect(ok.status, ok.stderr).to.equal(0);
    const bad = await cli(['config', 'check'], {
      env: { GATEWAY_ENCRYPTION_KEY: `${good.key},${signingOnly.key}`, GATEWAY_ENCRYPTION_CERT: `${other.cert},${signingOnly.cert}` },
    });
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.match(/^encryption\.keys\.0: the certificate does not belong to the key$/m);
    expect(bad.stderr).to.match(/^encryption\.keys\.1\.certFile: .*(key usage|encipherment)/im);
    const uneven = await cli(['config', 'check'], { env: { GATEWAY_ENCRYPTION_KEY: `${good.key},${other.key}`, GATEWAY_ENCRYPTION_CERT: good.cert } });
    expect(uneven.status).to.equal(1);
    expect(uneven.stderr).to.match(/^encryption\.keys\.1\.certFile: /m);
  });

  it('names every bydel service the register gives no usable encryption certificate, since messages to it would be held', async () => {
    const parties = JSON.parse(readFileSync(ADDRESS_REGISTER, 'utf8')) as { herId: number; encryptionCertificate?: string }[];
    for (const p of parties) if (p.herId === 9920005) delete p.encryptionCertificate;
    const file = join(mkdtempSync(join(tmpdir(), 'gw-reg-')), 'register.json');
    writeFileSync(file, JSON.stringify(parties));
    const r = await cli(['config', 'check'], { env: { GATEWAY_ADDRESS_REGISTER: file } });
    expect(r.status).to.equal(1);
    expect(r.stderr.split('\n').filter((l) => l.includes('encryption certificate'))).to.deep.equal([
      'routing.addressRegisterFile: the address register has no encryption certificate for HER-id 9920005; messages routed to it will be held',
    ]);
  });

  it("checks the HTTP listener's TLS pair: both files, a certificate of that key", async () => {
    const a = pemFiles(await makeSigner('gateway-a'));
    const b = pemFiles(await makeSigner('gateway-b'));
    const ok = await cli(['config', 'check'], { env: { GATEWAY_HTTP_TLS_KEY: a.keyFile, GATEWAY_HTTP_TLS_CERT: a.certFile } });
    expect(ok.status, ok.stderr).to.equal(0);
    const mismatch = await cli(['config', 'check'], { env: { GATEWAY_HTTP_TLS_KEY: a.keyFile, GATEWAY_HTTP_TLS_CERT: b.certFile } });
    expect(mismatch.status).to.equal(1);
    expect(mismatch.stderr).to.match(/^http\.tls: the certificate does not belong to the key$/m);
    const half = await cli(['config', 'check'], { env: { GATEWAY_HTTP_TLS_KEY: a.keyFile } });
    expect(half.status).to.equal(1);
    expect(half.stderr).to.match(/^http\.tls\.certFile: /m);
  });

  it('exits 2 on a usage error', async () => {
    expect((await cli(['no-such-command'])).status).to.equal(2);
  });
});
