// Runs a real gateway against the real RabbitMQ and a real SQLite file, on queue names of its
// own, and plays the EPJ and the bydeler around it.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { alertsQueueName } from '../../src/broker/topology.js';
import { type GatewayConfig, loadConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import { AddressRegister } from '../../src/routing/addressRegister.js';
import { ADDRESS_REGISTER, POSTCODE_INDEX, SCHEMA_DIR } from './paths.js';
import { sleep } from './poll.js';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

let keys: { keyFile: string; certFile: string } | undefined;

/** A throwaway signing key with a nonRepudiation certificate, made once per test run. */
export function testSigningKeys(): { keyFile: string; certFile: string; certPem: string } {
  if (!keys) {
    const dir = mkdtempSync(join(tmpdir(), 'gw-keys-'));
    keys = { keyFile: join(dir, 'key.pem'), certFile: join(dir, 'cert.pem') };
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-sha256',
        '-days',
        '400',
        '-nodes',
        '-keyout',
        keys.keyFile,
        '-out',
        keys.certFile,
        '-subj',
        '/C=NO/O=Test/CN=gateway-test',
        '-addext',
        'keyUsage=critical,digitalSignature,nonRepudiation',
      ],
      { stdio: 'ignore' },
    );
  }
  return { ...keys, certPem: readFileSync(keys.certFile, 'utf8') };
}

export function testConfig(patch: (c: GatewayConfig) => void = () => {}): GatewayConfig {
  const loaded = loadConfig({ GATEWAY_CONFIG: 'config/default.json' });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const c = structuredClone(loaded.config);
  const run = `t${randomUUID().slice(0, 8)}`;
  c.broker.url = AMQP_URL;
  c.broker.queues = { epjOutbound: `${run}.epj.outbound`, epjInbound: `${run}.epj.inbound`, nhnInbound: `${run}.nhn.inbound`, dlq: `${run}.gateway.dlq` };
  c.broker.exchanges = { nhnOutbound: `${run}.nhn.outbound`, alerts: `${run}.gateway.alerts` };
  c.broker.receiverQueuePrefix = `${run}.bydel.`;
  c.database.url = `sqlite:${join(mkdtempSync(join(tmpdir(), 'gw-db-')), 'gateway.db')}`;
  c.http.port = 0;
  c.schemaDir = SCHEMA_DIR;
  c.routing.addressRegisterFile = ADDRESS_REGISTER;
  c.routing.postcodeIndexFile = POSTCODE_INDEX;
  c.routing.overridesFile = undefined;
  const k = testSigningKeys();
  c.signing.keyFile = k.keyFile;
  c.signing.certFile = k.certFile;
  c.logLevel = 'debug';
  // Tests that look into gateway.dlq themselves play its reader; the ops tests switch the
  // gateway's own DLQ recorder back on.
  c.ops.recordDeadLetters = false;
  patch(c);
  return c;
}

/** Every log line the gateway wrote, as text, so tests can search it for personal data. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void) {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  text(): string {
    return this.lines.join('\n');
  }
}

export async function startGateway(config: GatewayConfig): Promise<{ gateway: Gateway; logs: LogCapture }> {
  const logs = new LogCapture();
  const gateway = new Gateway(config, createLogger(config.logLevel, logs));
  await gateway.start({ http: false });
  return { gateway, logs };
}

/** The EPJ and the bydeler: a plain AMQP client. */
export class Peer {
  private constructor(
    readonly conn: ChannelModel,
    readonly ch: Channel,
  ) {}

  static async connect(url = AMQP_URL): Promise<Peer> {
    const conn = await amqp.connect(url);
    const ch = await conn.createConfirmChannel();
    return new Peer(conn, ch);
  }

  async send(queue: string, body: string | Buffer, options: amqp.Options.Publish = {}): Promise<void> {
    this.ch.sendToQueue(queue, Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), { persistent: true, messageId: randomUUID(), ...options });
    await (this.ch as amqp.ConfirmChannel).waitForConfirms();
  }

  /** Waits until `count` messages have been taken from `queue` (or the time runs out). */
  async take(queue: string, count: number, timeoutMs = 15000): Promise<GetMessage[]> {
    const got: GetMessage[] = [];
    const deadline = performance.now() + timeoutMs; // not Date: some tests freeze it
    while (got.length < count && performance.now() < deadline) {
      const m = await this.ch.get(queue, { noAck: true });
      if (m) got.push(m);
      else await sleep(25);
    }
    return got;
  }

  /** Removes every queue and exchange of a test run, receiver stand-ins included. */
  async deleteRun(config: GatewayConfig): Promise<void> {
    const q = config.broker.queues;
    const services = AddressRegister.load(config.routing.addressRegisterFile).parties.filter((p) => p.type === 'Service');
    const receivers = config.broker.receiverQueuePrefix ? services.map((p) => `${config.broker.receiverQueuePrefix}${p.herId}`) : [];
    for (const name of [q.epjOutbound, q.epjInbound, q.nhnInbound, q.dlq, alertsQueueName(config.broker), ...receivers]) {
      await this.ch.deleteQueue(name).catch(() => undefined);
    }
    for (const ex of [config.broker.exchanges.nhnOutbound, config.broker.exchanges.alerts]) await this.ch.deleteExchange(ex).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.conn.close().catch(() => undefined);
  }
}
