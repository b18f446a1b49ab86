// The gateway as ops run it: its own process, started by the CLI (`plo-gateway start`), for tests
// of replicas, crashes and shutdown.
import { type ChildProcess, spawn } from 'node:child_process';
import type { GatewayConfig } from '../../src/config/config.js';
import { cliCommand, cliEnv } from './cli.js';
import { eventually } from './poll.js';

export interface GatewayProcess {
  proc: ChildProcess;
  /** stdout and stderr lines, newest last (the gateway logs JSON lines to stdout) */
  output: string[];
  /** resolves with the exit code (null when killed by a signal) */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnOptions {
  /**
   * Resolve once the process logged its start-up line (GW-2100), which needs a log level of info
   * or lower; rejects if it exits first. With false, resolve once it is spawned (default true).
   */
  awaitStart?: boolean;
}

const LOGS_START_LINE = new Set(['info', 'debug', 'trace']);

/** Starts `plo-gateway start` with `config` (its file, database and broker) and `env` on top. */
export async function spawnGateway(config: GatewayConfig, env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<GatewayProcess> {
  const awaitStart = options.awaitStart ?? true;
  if (awaitStart && !LOGS_START_LINE.has(env.GATEWAY_LOG_LEVEL ?? config.logLevel)) {
    throw new Error(`log level ${env.GATEWAY_LOG_LEVEL ?? config.logLevel} hides the start-up line: use info, or spawnGateway(…, { awaitStart: false })`);
  }
  const [file, args] = cliCommand(['start']);
  const proc = spawn(file, args, { env: { ...cliEnv(config), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const lines = (b: Buffer) => output.push(...b.toString('utf8').split('\n').filter(Boolean));
  proc.stdout?.on('data', lines);
  proc.stderr?.on('data', lines);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const gateway: GatewayProcess = { proc, output, exited, kill: (signal = 'SIGKILL') => void proc.kill(signal) };
  if (awaitStart) {
    await eventually(
      'the gateway process to log its start-up line (GW-2100)',
      () => {
        if (output.some((l) => l.includes('"GW-2100"'))) return true;
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`gateway exited with ${proc.exitCode ?? proc.signalCode} before it started: ${output.slice(-20).join('\n')}`);
        }
        return false;
      },
      60_000,
    ).catch((e) => {
      proc.kill('SIGKILL');
      throw e;
    });
  }
  return gateway;
}
