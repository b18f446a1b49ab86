// Runs `plo-gateway` as ops would: a separate process, configured by environment.
import { spawnSync } from 'node:child_process';
import { SCHEMA_DIR } from './paths.js';

export function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, GATEWAY_SCHEMA_DIR: SCHEMA_DIR, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}
