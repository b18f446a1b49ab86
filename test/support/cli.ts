// Runs `plo-gateway` as ops do: a separate process, configured by its environment. Always
// asynchronously: a blocked event loop would stall an in-process gateway meanwhile.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GatewayConfig } from '../../src/config/config.js';
import { SCHEMA_DIR } from './paths.js';

/** The command line of `plo-gateway <args>`, run from source. */
export const cliCommand = (args: string[]): [string, string[]] => [process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args]];

/** Writes the configuration where `GATEWAY_CONFIG` can point. */
export function writeConfig(config: GatewayConfig): string {
  const file = join(mkdtempSync(join(tmpdir(), 'gw-cfg-')), 'config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * The environment of a CLI process: the test's own, the schemas, and with `config` its file
 * (`configFile`, or written now), database and broker, which win over the environment's.
 */
export function cliEnv(config?: GatewayConfig, configFile?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GATEWAY_SCHEMA_DIR: SCHEMA_DIR };
  if (!config) return env;
  return { ...env, GATEWAY_CONFIG: configFile ?? writeConfig(config), DATABASE_URL: config.database.url, AMQP_URL: config.broker.url };
}

export interface CliOptions {
  /** run against this configuration: its file, database and broker */
  config?: GatewayConfig;
  /** where `config` is written already (writeConfig); otherwise it is written for this run */
  configFile?: string;
  /** more environment, applied last */
  env?: Record<string, string>;
}

export interface CliResult {
  /** the exit code; 1 when the process was killed */
  status: number;
  stdout: string;
  /** trimmed */
  stderr: string;
}

/** `plo-gateway <args>`; ops actions are audited as `ops-tester`. */
export function cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const [file, argv] = cliCommand(args);
  const env = { ...cliEnv(options.config, options.configFile), USER: 'ops-tester', ...options.env };
  return new Promise((resolve) => {
    execFile(file, argv, { env }, (err, stdout, stderr) =>
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr: stderr.trim() }),
    );
  });
}
