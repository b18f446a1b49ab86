// What the ops commands share. They run as their own processes beside (or without) a running
// gateway: they open the same store (DATABASE_URL), and a broker connection only when they
// publish. Logs go to stderr so that `--json` output on stdout stays machine-readable.
import { userInfo } from 'node:os';
import { pino } from 'pino';
import { Broker } from '../../broker/connection.js';
import { durationMs, type GatewayConfig } from '../../config/config.js';
import { createLogger, type Logger } from '../../observability/log.js';
import { openDatabase } from '../../tracking/db.js';
import { Store } from '../../tracking/store.js';
import type { OpsFailure } from '../result.js';
import { configOrExit } from './common.js';

export interface OpsContext {
  config: GatewayConfig;
  log: Logger;
  store: Store;
}

/** `--actor`, else the operating-system user: the audit trail records who acted. */
export function actorName(option: string | undefined): string {
  return option ?? process.env.USER ?? userInfo().username;
}

/** Runs a command with the store open and closes it whatever happens; the exit code is set by `done`. */
export async function withStore(run: (ctx: OpsContext) => Promise<void>): Promise<void> {
  const config = configOrExit();
  const log = createLogger(config.logLevel === 'debug' || config.logLevel === 'trace' ? config.logLevel : 'warn', pino.destination({ fd: 2, sync: true }));
  const store = new Store(await openDatabase(config.database.url));
  try {
    await run({ config, log, store });
  } finally {
    await store.close();
  }
}

/**
 * Connects to the broker, waiting at most `broker.confirmTimeout`: a command must not hang
 * while RabbitMQ is down. Undefined when it cannot connect.
 */
export async function connectBroker(config: GatewayConfig, log: Logger): Promise<Broker | undefined> {
  const broker = new Broker(config.broker, log);
  const timer = setTimeout(() => void broker.close(), durationMs(config.broker.confirmTimeout));
  try {
    await broker.connect();
    return broker;
  } catch {
    await broker.close().catch(() => {});
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Prints the failure on stderr and sets exit code 1. */
export function failed(f: OpsFailure, json: boolean): void {
  if (json) console.log(JSON.stringify({ error: f.status, reason: f.reason }));
  console.error(`${f.status}: ${f.reason}`);
  process.exitCode = 1;
}

export const printJson = (value: unknown) => console.log(JSON.stringify(value, null, 2));
