// Ops tests run the CLI as ops do, as a separate process on the gateway's config, database and
// broker. Asynchronously: a blocked event loop would stall the in-process gateway meanwhile.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GatewayConfig } from '../../src/config/config.js';
import { SCHEMA_DIR } from './paths.js';

/** Writes the configuration where `GATEWAY_CONFIG` can point. */
export function writeConfig(config: GatewayConfig): string {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-cfg-')), 'config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** `plo-gateway <args>` against this configuration (its database and broker win over the environment's). */
export function opsCli(config: GatewayConfig, configFile: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', ...args],
      {
        env: {
          ...process.env,
          GATEWAY_CONFIG: configFile,
          GATEWAY_SCHEMA_DIR: SCHEMA_DIR,
          DATABASE_URL: config.database.url,
          AMQP_URL: config.broker.url,
          USER: 'ops-tester',
          ...env,
        },
      },
      (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Polls until `probe` returns a value (not undefined) or the time runs out. */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 15000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
