// The gateway as ops run it: its own process, started by the CLI (`plo-gateway start`), for tests
// of replicas, crashes and shutdown.
import { type ChildProcess, spawn } from 'node:child_process';
import type { GatewayConfig } from '../../src/config/config.js';
import { writeConfig } from './ops.js';

export interface GatewayProcess {
  proc: ChildProcess;
  /** stdout and stderr lines, newest last (the gateway logs JSON lines to stdout) */
  output: string[];
  /** resolves with the exit code (null when killed by a signal) */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Starts `plo-gateway start` with `config` and resolves once it logged its start-up line
 * (GW-2100: the config's log level must be info or lower); rejects if it exits first.
 */
export async function spawnGateway(config: GatewayConfig, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start'], {
    env: { ...process.env, GATEWAY_CONFIG: writeConfig(config), DATABASE_URL: config.database.url, AMQP_URL: config.broker.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const lines = (b: Buffer) => output.push(...b.toString('utf8').split('\n').filter(Boolean));
  proc.stdout!.on('data', lines);
  proc.stderr!.on('data', lines);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const gateway: GatewayProcess = { proc, output, exited, kill: (signal = 'SIGKILL') => void proc.kill(signal) };
  await new Promise<void>((resolve, reject) => {
    const started = () => output.some((l) => l.includes('"GW-2100"'));
    const timer = setInterval(() => {
      if (started()) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      if (!started()) reject(new Error(`gateway exited with ${code} before it started: ${output.slice(-20).join('\n')}`));
    });
  });
  return gateway;
}
