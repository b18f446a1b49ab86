// The ops surface end to end, as ops staff use it: a real gateway on the real RabbitMQ and a real
// SQLite file, the CLI as a separate process, the HTTP API with its bearer token.
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { expect } from 'chai';
import sinon from 'sinon';
import type { GatewayConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { openDatabase } from '../../src/tracking/db.js';
import { OutcomeRecorder } from '../../src/tracking/recorder.js';
import { Store } from '../../src/tracking/store.js';
import { cli as runCli, writeConfig } from '../support/cli.js';
import { LogCapture, Peer, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const TOKEN = randomUUID();
const FROGNER_KD0501 = '9920005';
const SAGENE_KD0501 = '9920003';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const PERSONAL = ['15076500565', 'Gundersen', 'Testveien', 'Hemmeligveien'];

describe('ops: dead letters, manual routing, metrics (RabbitMQ + SQLite + CLI + HTTP)', function () {
  this.timeout(90000);
  let config: GatewayConfig;
  let configFile: string;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let store: Store;
  let deadLetters: DeadLetterRepository;
  const alerts: Record<string, unknown>[] = [];
  const sandbox = sinon.createSandbox();

  const cli = (...args: string[]) => runCli(args, { config, configFile });
  const bydelQueue = (herId: string) => `${config.broker.receiverQueuePrefix}${herId}`;
  const scratchQueue = () => `${config.broker.queues.dlq}.scratch`;
  const http = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const { token = TOKEN, ...rest } = init;
    return fetch(`http://127.0.0.1:${gateway.httpPort()}${path}`, {
      ...rest,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  };
  const openDeadLetter = (msgId: string, code?: string) =>
    eventually(
      `dead letter for ${msgId}`,
      async () => (await deadLetters.list({ state: 'open' })).find((d) => d.msg_id === msgId && (!code || d.code === code)),
      20000,
    );
  const audit = async (action: string) => store.db.kysely.selectFrom('audit').selectAll().where('action', '=', action).orderBy('id').execute();
  /** A dead letter as the gateway writes it, put straight into the DLQ (replays go to `sourceQueue`). */
  const injectDeadLetter = async (body: string, headers: Record<string, string>) =>
    peer.send(config.broker.queues.dlq, body, {
      headers: {
        'x-error-reason': 'Injected by the test.',
        'x-stage': 'validate',
        'x-first-failed-at': new Date().toISOString(),
        'x-attempts': '1',
        ...headers,
      },
    });

  before(async () => {
    config = testConfig((c) => {
      c.ops.recordDeadLetters = true;
      c.ops.checkInterval = 'PT0.3S';
      c.apiToken = TOKEN;
      c.logLevel = 'info';
      // a transient failure goes straight back to the queue, and the second return dead-letters it
      c.retry = { initialDelay: 'PT0.05S', maxDelay: 'PT0.1S', maxAttempts: 1 };
      c.broker.deliveryLimit = 1;
    });
    configFile = writeConfig(config);
    logs = new LogCapture();
    gateway = new Gateway(config, createLogger(config.logLevel, logs));
    await gateway.start();
    peer = await Peer.connect();
    await peer.ch.assertQueue(scratchQueue(), { durable: false, autoDelete: true });
    const tap = `${config.broker.queues.dlq}.alerts-tap`;
    await peer.ch.assertQueue(tap, { exclusive: true });
    await peer.ch.bindQueue(tap, config.broker.exchanges.alerts, '#');
    await peer.ch.consume(tap, (m: ConsumeMessage | null) => m && alerts.push(JSON.parse(m.content.toString('utf8'))), { noAck: true });
    store = new Store(await openDatabase(config.database.url));
    deadLetters = new DeadLetterRepository(store.db);
  });

  after(async () => {
    sandbox.restore();
    await gateway?.stop();
    await store?.close();
    await peer?.ch.deleteQueue(scratchQueue()).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it('a rejected message is a dead letter ops can list, show (payload audited) and discard with a reason', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR));
    const invalid = xml.replace('<MIGversion>', '<Unexpected/><MIGversion>');
    await peer.send(config.broker.queues.epjOutbound, invalid);
    const dead = await openDeadLetter(msgId);
    expect(dead).to.include({
      code: 'T02',
      origin: 'gateway',
      source_queue: config.broker.queues.epjOutbound,
      stage: 'validate',
      msg_type: 'LOG_UTSKRIVNINGSKLAR',
    });

    const table = await cli('dlq', 'list');
    expect(table.status, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^id\s+age\s+queue\s+code\s+reason\s+msgId\s+type\s+bydel$/m);
    expect(table.stdout).to.contain(msgId);
    const listed = JSON.parse((await cli('dlq', 'list', '--json')).stdout);
    expect(listed.find((d: { id: number }) => d.id === dead.id)).to.include({ code: 'T02', msgId, sourceQueue: config.broker.queues.epjOutbound });
    for (const secret of PERSONAL) expect(table.stdout + JSON.stringify(listed), secret).not.to.contain(secret);

    const shown = JSON.parse((await cli('dlq', 'show', String(dead.id), '--json')).stdout);
    expect(shown.headers).to.include({ 'x-error-code': 'T02', 'msg-id': msgId });
    expect(shown).not.to.have.property('payload');
    expect(await audit('dlq.show-payload')).to.have.length(0);
    const withPayload = JSON.parse((await cli('dlq', 'show', String(dead.id), '--with-payload', '--json', '--reason', 'checking the XSD error')).stdout);
    expect(withPayload.payload.body).to.equal(invalid);
    const [read] = await audit('dlq.show-payload');
    expect(read).to.include({ actor: 'ops-tester', target: `dead-letter:${dead.id}`, reason: 'checking the XSD error' });

    expect((await cli('dlq', 'discard', String(dead.id))).status, 'no reason').to.equal(2);
    const discarded = await cli('dlq', 'discard', String(dead.id), '--reason', 'the EPJ sent a corrected message');
    expect(discarded.status, discarded.stderr).to.equal(0);
    expect((await deadLetters.get(dead.id))?.state).to.equal('discarded');
    expect(await audit('dlq.discard')).to.have.length(1);
    expect((await audit('dlq.discard'))[0]).to.include({ actor: 'ops-tester', reason: 'the EPJ sent a corrected message' });
    expect((await cli('dlq', 'discard', String(dead.id), '--reason', 'again')).status, 'no longer open').to.equal(1);
    expect((await cli('dlq', 'show', '999999')).status, 'unknown id').to.equal(1);
  });

  it('a message the broker dead-letters at its delivery limit is recorded, replayed with confirms, and reaches its bydel', async () => {
    const write = sandbox.stub(OutcomeRecorder.prototype, 'record').rejects(new Error('SQLITE_BUSY: database is locked'));
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const dead = await openDeadLetter(msgId);
    write.restore();
    expect(dead).to.include({ origin: 'broker', code: 'GW-DELIVERY-LIMIT', source_queue: config.broker.queues.epjOutbound, msg_type: 'LOG_UTSKRIVNINGSKLAR' });

    const replay = await cli('dlq', 'replay', String(dead.id), '--reason', 'database was locked', '--json');
    expect(replay.status, replay.stderr).to.equal(0);
    const [m] = await peer.take(bydelQueue(FROGNER_KD0501), 1);
    expect(m?.properties.headers?.['msg-id']).to.equal(msgId);
    expect((await deadLetters.get(dead.id))?.state).to.equal('replayed');
    const [audited] = await audit('dlq.replay');
    expect(audited).to.include({ actor: 'ops-tester', target: `dead-letter:${dead.id}`, reason: 'database was locked' });
    expect(JSON.parse(audited.detail!)).to.include({ msgId, skipDedupe: false, sourceQueue: config.broker.queues.epjOutbound });
  });

  it('a replay of a message already delivered is a duplicate, unless ops replay it with --skip-dedupe (audited)', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    expect((await peer.take(bydelQueue(FROGNER_KD0501), 1))[0]?.properties.headers?.['msg-id']).to.equal(msgId);
    const headers = { 'x-error-code': 'GW-TEST', 'x-source-queue': config.broker.queues.epjOutbound, 'msg-id': msgId };

    await injectDeadLetter(xml, headers);
    const plain = await openDeadLetter(msgId);
    expect((await cli('dlq', 'replay', String(plain.id))).status).to.equal(0);
    expect(await peer.take(bydelQueue(FROGNER_KD0501), 1, 1500), 'deduped').to.have.length(0);

    // the header alone, without a replay ops granted, changes nothing
    await peer.send(config.broker.queues.epjOutbound, xml, { headers: { 'x-replay-skip-dedupe': 'true', 'x-replay-of': String(plain.id) } });
    expect(await peer.take(bydelQueue(FROGNER_KD0501), 1, 1500), 'forged header').to.have.length(0);
    expect(logs.text()).to.contain('"GW-5006"');

    await injectDeadLetter(xml, headers);
    const skip = await openDeadLetter(msgId);
    const replayed = await cli('dlq', 'replay', String(skip.id), '--skip-dedupe', '--reason', 'the bydel lost it');
    expect(replayed.status, replayed.stderr).to.equal(0);
    expect((await peer.take(bydelQueue(FROGNER_KD0501), 1))[0]?.properties.headers?.['msg-id']).to.equal(msgId);
    const events = (await store.timeline(msgId))[0].events.map((e) => e.event);
    expect(events).to.include('replayed-skipping-dedupe');
    expect(JSON.parse((await audit('dlq.replay')).at(-1)!.detail!)).to.include({ skipDedupe: true });
  });

  it('a batch replay of one code stops before its next item while paused, and continues after resume', async () => {
    const code = `GW-TEST-${randomUUID().slice(0, 4)}`;
    for (let i = 0; i < 3; i++)
      await injectDeadLetter(`<batch n="${i}"/>`, { 'x-error-code': code, 'x-source-queue': scratchQueue(), 'msg-id': `batch-${code}-${i}` });
    await eventually('three dead letters', async () => (await deadLetters.list({ code })).length === 3, 15000);

    expect((await cli('dlq', 'replay', '--all')).status, '--all without --code').to.equal(2);
    expect((await cli('dlq', 'pause', '--reason', 'broker maintenance')).status).to.equal(0);
    const paused = JSON.parse((await cli('dlq', 'replay', '--all', '--code', code, '--json')).stdout);
    expect(paused).to.include({ paused: true, remaining: 3 });
    expect(paused.replayed).to.have.length(0);
    expect((await cli('dlq', 'resume')).status).to.equal(0);
    const done = JSON.parse((await cli('dlq', 'replay', '--all', '--code', code, '--json')).stdout);
    expect(done).to.include({ paused: false, remaining: 0 });
    expect(done.replayed).to.have.length(3);
    const replayed = await peer.take(scratchQueue(), 3);
    expect(replayed.map((m) => String(m.properties.headers?.['x-replay-of'])).sort()).to.deep.equal(done.replayed.map(String).sort());
    expect(replayed.every((m) => m.properties.headers?.['x-error-code'] === undefined)).to.equal(true);
    expect((await audit('dlq.pause')).length).to.be.at.least(1);
    expect((await audit('dlq.resume')).length).to.be.at.least(1);
  });

  it('the same operations over HTTP with a token from `users add`: 401 without it, GET lists, POST replays as the user; revoked, it stops', async () => {
    const added = await cli('users', 'add', 'kari', '--role', 'operator');
    expect(added.status, added.stderr).to.equal(0);
    const kari = added.stdout.trimEnd().split('\n').at(-1) ?? '';
    expect(kari).to.match(/^plo_\S+$/);
    const listedUsers = await cli('users', 'list');
    expect(listedUsers.stdout).to.match(/^kari\s+operator\s+no\s+active/m);
    expect(listedUsers.stdout).not.to.contain(kari);
    expect((await http('/api/dlq', { token: null })).status).to.equal(401);
    expect((await http('/api/dlq', { token: 'wrong' })).status).to.equal(401);
    await injectDeadLetter('<over-http/>', { 'x-error-code': 'GW-TEST-HTTP', 'x-source-queue': scratchQueue(), 'msg-id': 'over-http' });
    const dead = await openDeadLetter('over-http');
    const listed = await (await http('/api/dlq?code=GW-TEST-HTTP', { token: kari })).json();
    expect(listed.map((d: { id: number }) => d.id)).to.deep.equal([dead.id]);
    expect((await http(`/api/dlq/${dead.id}/replay`, { token: kari })).status, 'GET changes nothing').to.equal(405);
    const r = await http(`/api/dlq/${dead.id}/replay`, { method: 'POST', body: JSON.stringify({ reason: 'fixed' }), token: kari });
    expect(r.status).to.equal(200);
    expect((await peer.take(scratchQueue(), 1))[0]?.content.toString()).to.equal('<over-http/>');
    expect((await audit('dlq.replay')).at(-1)).to.include({ actor: 'kari', reason: 'fixed' });
    expect((await http('/api/dlq', { token: TOKEN })).status, 'GATEWAY_API_TOKEN: break-glass').to.equal(200);
    const revoked = await cli('users', 'revoke', 'kari', '--reason', 'test done');
    expect(revoked.status, revoked.stderr).to.equal(0);
    expect((await http('/api/dlq', { token: kari })).status).to.equal(401);
    expect((await audit('user.revoke')).at(-1)).to.include({ actor: 'ops-tester', target: 'user:kari', reason: 'test done' });
  });

  it('dlq-not-empty fires while dead letters wait and resolves when none do: never once per check', async () => {
    for (const d of await deadLetters.list({ state: 'open' }))
      await deadLetters.resolve(d.id, 'discarded', { actor: 'test', action: 'dlq.discard', reason: 'cleanup' });
    await eventually('dlq-not-empty resolved', () => alerts.filter((a) => a.kind === 'dlq-not-empty').at(-1)?.state === 'resolved', 10000);
    const states = alerts.filter((a) => a.kind === 'dlq-not-empty').map((a) => a.state);
    expect(states.length).to.be.at.least(2);
    for (const [i, s] of states.entries()) expect(s, `alert ${i}`).to.equal(i % 2 === 0 ? 'firing' : 'resolved');
  });

  it('a held message routed by ops with `route --bydel` is delivered there, the alert resolves, and it is audited', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0484', street: 'Hemmeligveien 7' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    const firing = await eventually('unroutable firing', () => alerts.find((a) => a.kind === 'unroutable' && a.msgId === msgId && a.state === 'firing'), 15000);
    expect((await store.findByMsgId(msgId))[0].state).to.equal('held');

    expect((await cli('route', msgId, '--bydel', '030117')).status, 'Marka is never guessed').to.equal(1);
    const routed = await cli('route', msgId, '--bydel', '030103', '--reason', 'confirmed by the ward', '--json');
    expect(routed.status, routed.stderr).to.equal(0);
    expect(JSON.parse(routed.stdout)).to.include({ msgId, bydel: '030103', toHerId: SAGENE_KD0501, published: true });

    const [m] = await peer.take(bydelQueue(SAGENE_KD0501), 1);
    expect(m?.properties.headers).to.include({ 'msg-id': msgId, 'to-her-id': SAGENE_KD0501 });
    const resolved = await eventually(
      'unroutable resolved',
      () => alerts.find((a) => a.kind === 'unroutable' && a.msgId === msgId && a.state === 'resolved'),
      10000,
    );
    expect(resolved).to.include({ firingId: firing.id, bydel: '030103' });
    expect(alerts.filter((a) => a.kind === 'unroutable' && a.msgId === msgId)).to.have.length(2);
    for (const secret of PERSONAL) expect(JSON.stringify(resolved)).not.to.contain(secret);

    const [row] = await store.findByMsgId(msgId);
    expect(row).to.include({ route_rule: 'manual', bydel: '030103', receiver_l2_her_id: SAGENE_KD0501 });
    const kinds = (await store.db.kysely.selectFrom('expectations').select(['kind', 'state']).where('message_id', '=', row.id).execute()).map(
      (x) => `${x.kind}:${x.state}`,
    );
    expect(kinds).to.include.members(['transport-ack:open', 'apprec:open', 'answer:open', 'routing:met']);
    const [audited] = await audit('message.route');
    expect(audited).to.include({ actor: 'ops-tester', reason: 'confirmed by the ward', target: `message:${msgId}` });
    expect((await cli('route', msgId, '--bydel', '030103')).status, 'no longer held').to.equal(1);
  });

  it('/metrics is Prometheus text and its counters move with traffic', async () => {
    const scrape = async () => {
      const r = await fetch(`http://127.0.0.1:${gateway.httpPort()}/metrics`);
      expect(r.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
      return r.text();
    };
    const delivered = (text: string) =>
      Number(
        /^plo_gateway_messages_total\{direction="out",stage="publish",outcome="delivered",type="LOG_UTSKRIVNINGSKLAR",bydel="030105"\} (\d+)$/m.exec(
          text,
        )?.[1] ?? 0,
      );
    const before = await scrape();
    const { xml } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0350' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    await peer.take(bydelQueue(FROGNER_KD0501), 1);
    const after = await eventually(
      'the delivered counter',
      async () => {
        const text = await scrape();
        return delivered(text) === delivered(before) + 1 ? text : undefined;
      },
      10000,
    );

    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/;
    for (const line of after.split('\n').filter(Boolean)) {
      if (line.startsWith('#')) expect(line, line).to.match(/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/);
      else expect(line, line).to.match(sample);
    }
    for (const name of [
      'plo_gateway_dlq_open',
      'plo_gateway_expectations_open{kind="apprec"}',
      'plo_gateway_oldest_pending_seconds{what="outbox"}',
      'plo_gateway_stage_duration_seconds_bucket{le="0.001",direction="out",stage="validate"}',
      'plo_gateway_queue_messages{queue=',
      'plo_gateway_process_cpu_seconds_total',
    ]) {
      expect(after, name).to.contain(name);
    }
    for (const secret of PERSONAL) expect(after).not.to.contain(secret);
  });

  it('no personal data in any log line of the run', () => {
    for (const secret of PERSONAL) expect(logs.text(), secret).not.to.contain(secret);
  });
});
