// `plo-gateway users add|list|revoke` as ops run it: a separate process on a real SQLite store;
// the token alone on the last line of `add`, usage errors exit 2, failures exit 1.
import { expect } from 'chai';
import type { GatewayConfig } from '../../src/config/config.js';
import { sha256 } from '../../src/ops/users.js';
import { openDatabase } from '../../src/tracking/db.js';
import { cli as runCli } from '../support/cli.js';
import { testConfig } from '../support/harness.js';

describe('plo-gateway users', function () {
  this.timeout(60000);
  let config: GatewayConfig;
  const cli = (...args: string[]) => runCli(args, { config });

  before(() => {
    config = testConfig();
  });

  it('add prints the token once, alone on its last line; the store has only its hash; list never shows it', async () => {
    const r = await cli('users', 'add', 'kari.nordmann@ahus', '--role', 'operator', '--payload-access');
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.trimEnd().split('\n');
    const token = lines.at(-1) ?? '';
    expect(token).to.match(/^plo_[A-Za-z0-9_-]{43}$/);
    expect(lines.slice(0, -1).join('\n')).not.to.contain(token);
    const db = await openDatabase(config.database.url);
    try {
      const rows = await db.kysely.withTables<{ users: { name: string; token_hash: string } }>().selectFrom('users').selectAll().execute();
      expect(rows.map((u) => [u.name, u.token_hash])).to.deep.equal([['kari.nordmann@ahus', sha256(token)]]);
      const audit = await db.kysely.selectFrom('audit').selectAll().where('action', '=', 'user.add').execute();
      expect(audit.map((a) => `${a.actor}:${a.target}`)).to.deep.equal(['ops-tester:user:kari.nordmann@ahus']);
    } finally {
      await db.kysely.destroy();
    }
    const list = await cli('users', 'list', '--json');
    expect(list.status, list.stderr).to.equal(0);
    expect(JSON.parse(list.stdout)).to.deep.include.members([
      {
        name: 'kari.nordmann@ahus',
        role: 'operator',
        payloadAccess: true,
        state: 'active',
        createdAt: JSON.parse(list.stdout)[0].createdAt,
        createdBy: 'ops-tester',
        revokedAt: null,
        revokedBy: null,
      },
    ]);
    expect(list.stdout).not.to.contain(token);
  });

  it('refuses what cannot be: a second active user of a name (1), a bad role or name, no role, a viewer with payload access (2 or 1)', async () => {
    const again = await cli('users', 'add', 'kari.nordmann@ahus', '--role', 'viewer');
    expect(again.status).to.equal(1);
    expect(again.stderr).to.match(/exists; revoke it first/);
    expect((await cli('users', 'add', 'ola', '--role', 'superuser')).status).to.equal(2);
    expect((await cli('users', 'add', 'ola')).status).to.equal(2);
    expect((await cli('users', 'add', 'ola nordmann', '--role', 'viewer')).status).to.equal(2);
    const viewer = await cli('users', 'add', 'ola', '--role', 'viewer', '--payload-access');
    expect(viewer.status).to.equal(1);
    expect(viewer.stderr).to.match(/payload access needs the role operator or admin/);
  });

  it('revoke ends a user (audited); an unknown or already revoked one exits 1', async () => {
    const r = await cli('users', 'revoke', 'kari.nordmann@ahus', '--reason', 'moved to another team');
    expect(r.status, r.stderr).to.equal(0);
    expect((await cli('users', 'revoke', 'kari.nordmann@ahus')).status).to.equal(1);
    expect((await cli('users', 'revoke', 'nobody')).status).to.equal(1);
    const list = await cli('users', 'list');
    expect(list.stdout).to.match(/^kari\.nordmann@ahus\s+operator\s+yes\s+revoked\s+\S+ by ops-tester\s+\S+ by ops-tester$/m);
  });
});
