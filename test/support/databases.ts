// Real databases for tests: each run gets its own SQLite directory or PostgreSQL database,
// removed afterwards, so suites can run against both stores the gateway supports.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { DialectName } from '../../src/tracking/db.js';

export const TEST_PG_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface Backend {
  dialect: DialectName;
  /** a new, empty database; returns its `database.url` */
  create(): Promise<string>;
  removeAll(): Promise<void>;
}

export function sqliteBackend(): Backend {
  const dirs: string[] = [];
  return {
    dialect: 'sqlite',
    async create() {
      const dir = mkdtempSync(join(tmpdir(), 'gw-store-'));
      dirs.push(dir);
      // a directory that does not exist yet: openDatabase must create it
      return `sqlite:${join(dir, 'data', 'gateway.db')}`;
    },
    async removeAll() {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function postgresBackend(): Backend {
  const adminUrl = TEST_PG_URL;
  const names: string[] = [];
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  return {
    dialect: 'postgres',
    async create() {
      const name = `gw_test_${randomBytes(6).toString('hex')}`;
      await admin(`create database ${name}`);
      names.push(name);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async removeAll() {
      for (const name of names) await admin(`drop database if exists ${name} with (force)`);
    },
  };
}

/** Both back ends, for suites that must hold on SQLite and on PostgreSQL alike. */
export const testBackends = (): Backend[] => [sqliteBackend(), postgresBackend()];
