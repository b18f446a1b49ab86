// The ops console in a real browser (Debian's chromium, driven by playwright-core) against a real
// gateway on RabbitMQ and SQLite: an operator logs in, replays a dead letter and sees it leave,
// routes a held message from its page and sees it delivered on the broker; a viewer sees no
// action buttons and a forged POST is refused (403); the audit rows name the logged-in user; a
// revoked user is out at once. Screenshots of each page go to test-artifacts/console/.
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { alertsQueueName } from '../../src/broker/topology.js';
import type { GatewayConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/log.js';
import { DeadLetterRepository } from '../../src/ops/deadLetters/repository.js';
import { UserStore } from '../../src/ops/users.js';
import { openDatabase } from '../../src/tracking/db.js';
import { Store } from '../../src/tracking/store.js';
import { LogCapture, Peer, testConfig } from '../support/harness.js';
import { eventually } from '../support/poll.js';
import { readdressToOslo, readSample } from '../support/samples.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join('test-artifacts', 'console');
const SAGENE_KD0501 = '9920003';
const UTSKRIVNINGSKLAR = 'plo-1.6/Pasientlogistikk_Utskrivningsklar_pasient_v1-6_Ny.xml';
const PERSONAL = ['15076500565', 'Gundersen', 'Testveien', 'Hemmeligveien'];

describe('ops console in a browser (chromium + RabbitMQ + SQLite)', function () {
  this.timeout(120000);
  let config: GatewayConfig;
  let gateway: Gateway;
  let logs: LogCapture;
  let peer: Peer;
  let store: Store;
  let users: UserStore;
  let deadLetters: DeadLetterRepository;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const tokens: Record<string, string> = {};
  /** every page's text, to search for personal data at the end */
  const seen: string[] = [];

  const base = () => `http://127.0.0.1:${gateway.httpPort()}`;
  const scratchQueue = () => `${config.broker.queues.dlq}.scratch`;
  const audit = async (action: string) => store.db.kysely.selectFrom('audit').selectAll().where('action', '=', action).orderBy('id').execute();
  const shot = async (page: Page, name: string) => {
    seen.push(await page.content());
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  };
  const injectDeadLetter = async (msgId: string, reason = 'Injected by the test.') => {
    await peer.send(config.broker.queues.dlq, `<dead-letter-${msgId}/>`, {
      headers: {
        'x-error-code': 'GW-TEST-CONSOLE',
        'x-error-reason': reason,
        'x-stage': 'validate',
        'x-source-queue': scratchQueue(),
        'x-first-failed-at': new Date().toISOString(),
        'x-attempts': '1',
        'msg-id': msgId,
      },
    });
    return eventually(`dead letter ${msgId}`, async () => (await deadLetters.list({ state: 'open' })).find((d) => d.msg_id === msgId), 20000);
  };
  /** a fresh browser context, logged in through the login form with the keyboard */
  const loginAs = async (name: string): Promise<Page> => {
    const context = await browser.newContext({ baseURL: base() });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto('/console/dlq');
    expect(new URL(page.url()).pathname, 'not logged in: sent to the login page').to.equal('/console/login');
    await page.locator('input[name=token]').fill(tokens[name]);
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/console\/dlq$/);
    return page;
  };

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    config = testConfig((c) => {
      c.ops.recordDeadLetters = true;
      c.ops.checkInterval = 'PT0.3S';
      c.apiToken = randomUUID();
      c.logLevel = 'info';
    });
    logs = new LogCapture();
    gateway = new Gateway(config, createLogger(config.logLevel, logs));
    await gateway.start();
    peer = await Peer.connect();
    await peer.ch.assertQueue(scratchQueue(), { durable: false, autoDelete: true });
    store = new Store(await openDatabase(config.database.url));
    deadLetters = new DeadLetterRepository(store.db);
    users = new UserStore(store.db);
    for (const [name, role] of [
      ['ola', 'operator'],
      ['vera', 'viewer'],
    ] as const) {
      const r = await users.add(name, role, {}, { actor: 'test', via: 'cli' });
      if (!r.ok) throw new Error(r.reason);
      tokens[name] = r.value.token;
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await gateway?.stop();
    await store?.close();
    await peer?.ch.deleteQueue(scratchQueue()).catch(() => undefined);
    await peer?.deleteRun(config);
    await peer?.close();
  });

  it('the login page refuses a wrong token; an operator logs in and sees the overview: health, queues, alerts, messages per hour', async () => {
    const context = await browser.newContext({ baseURL: base() });
    contexts.push(context);
    const page = await context.newPage();
    await page.goto('/console');
    await page.locator('input[name=token]').fill('plo_not-a-real-token');
    await page.keyboard.press('Enter');
    await page.waitForLoadState();
    expect(await page.getByRole('alert').textContent()).to.match(/not valid/);
    await shot(page, '01-login-refused');

    const ola = await loginAs('ola');
    await ola.getByRole('link', { name: 'Overview' }).click();
    await ola.waitForURL(/\/console$/);
    const health = ola.locator('table', { has: ola.locator('caption', { hasText: 'Health' }) });
    for (const check of ['broker', 'database', 'schemas', 'running']) expect(await health.locator('tr', { hasText: check }).textContent()).to.contain('ok');
    expect(await ola.locator('h2').allTextContents()).to.include.members(['Health', 'Queues', 'Alerts firing now', 'Messages per hour']);
    expect(await ola.locator('.who').textContent()).to.contain('ola (operator)');
    await shot(ola, '02-overview');
  });

  it('an operator replays a dead letter from its page and it leaves for its queue; the audit row names ola', async () => {
    const dead = await injectDeadLetter(`console-${randomUUID()}`);
    const page = await loginAs('ola');
    await page.goto('/console/dlq?code=GW-TEST-CONSOLE');
    expect(await page.locator('tbody tr').count()).to.equal(1);
    await shot(page, '03-dead-letters');
    await page.getByRole('link', { name: `#${dead.id}` }).click();
    await page.waitForURL(new RegExp(`/console/dlq/${dead.id}$`));
    expect(await page.locator('dl.fields').textContent()).to.contain('GW-TEST-CONSOLE');
    await shot(page, '04-dead-letter');
    const replay = page.locator('form', { has: page.getByRole('button', { name: 'Replay' }) });
    await replay.locator('input[name=reason]').fill('fixed upstream');
    await replay.getByRole('button', { name: 'Replay' }).click();
    await page.waitForLoadState();
    expect(await page.getByRole('status').textContent()).to.equal(`Dead letter #${dead.id} replayed to ${scratchQueue()}.`);
    await shot(page, '05-replayed');
    const [left] = await peer.take(scratchQueue(), 1);
    expect(left?.content.toString()).to.equal(`<dead-letter-${dead.msg_id}/>`);
    expect((await deadLetters.get(dead.id))?.state).to.equal('replayed');
    const [row] = (await audit('dlq.replay')).filter((a) => a.target === `dead-letter:${dead.id}`);
    expect(row).to.include({ actor: 'ola', reason: 'fixed upstream' });
    expect(JSON.parse(row.detail ?? '{}')).to.include({ via: 'console' });
  });

  it('an operator routes a held message from its page, with every rule verdict shown, and it is delivered on the broker', async () => {
    const { xml, msgId } = readdressToOslo(readSample(UTSKRIVNINGSKLAR), { postalCode: '0484', street: 'Hemmeligveien 7' });
    await peer.send(config.broker.queues.epjOutbound, xml);
    await eventually('held', async () => (await store.findByMsgId(msgId))[0]?.state === 'held', 15000);
    const page = await loginAs('ola');
    await page.getByRole('link', { name: 'Held messages' }).click();
    const section = page.locator('section', { has: page.getByRole('link', { name: msgId }) });
    expect(await section.locator('ol.verdicts li').count()).to.be.greaterThan(1);
    expect(await section.locator('ol.verdicts').textContent()).to.match(/postcode: /);
    await shot(page, '06-held');
    await section.getByRole('link', { name: msgId }).click();
    await page.waitForURL(/\/console\/messages\//);
    expect(await page.locator('table', { has: page.locator('caption', { hasText: 'Timeline' }) }).textContent()).to.contain('held-unroutable');
    await shot(page, '07-message-held');
    await page.locator('select[name=bydel]').selectOption('030103');
    await page
      .locator('form', { has: page.locator('select[name=bydel]') })
      .locator('input[name=reason]')
      .fill('ward confirmed');
    await page.getByRole('button', { name: 'Route to this bydel' }).click();
    await page.waitForLoadState();
    // "delivered to the broker": the alert's resolution went out with it, to the gateway's own durable alerts queue
    expect(await page.getByRole('status').textContent()).to.equal(`Routed: to Sagene (030103), HER-id ${SAGENE_KD0501}; delivered to the broker.`);
    const alertsLog = await peer.ch.checkQueue(alertsQueueName(config.broker));
    expect(alertsLog.messageCount, 'unroutable firing and resolved').to.be.at.least(2);
    await shot(page, '08-routed');
    const [m] = await peer.take(`${config.broker.receiverQueuePrefix}${SAGENE_KD0501}`, 1);
    expect(m?.properties.headers).to.include({ 'msg-id': msgId, 'to-her-id': SAGENE_KD0501 });
    expect((await audit('message.route')).at(-1)).to.include({ actor: 'ola', reason: 'ward confirmed', target: `message:${msgId}` });

    await page.getByRole('link', { name: 'Waiting for the kommune' }).click();
    const row = page.locator('tbody tr', { has: page.getByRole('link', { name: msgId }) });
    expect(await row.count()).to.be.greaterThan(0);
    expect(await row.first().textContent()).to.contain('030103 Sagene');
    await shot(page, '09-waiting');
  });

  it('overtid and indicators: the period per bydel, and the report with its charts drawn (Chart.js inlined, allowed on that page only)', async () => {
    const page = await loginAs('ola');
    await page.getByRole('link', { name: 'Overtid' }).click();
    await page.waitForURL(/\/console\/overtid$/);
    const total = page.locator('tbody tr', { hasText: 'Alle bydeler' });
    expect(await total.count()).to.equal(1);
    // the utskrivningsklar notice routed above is this month's
    expect(Number((await total.locator('td').nth(1).textContent()) ?? 0)).to.be.greaterThan(0);
    await shot(page, '11-overtid');
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content.Security.Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.getByRole('link', { name: /The report with its charts/ }).click();
    await page.waitForURL(/\/console\/overtid\/report\?/);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('canvas')).some((c) => c.width > 0));
    expect(await page.locator('canvas').count()).to.equal(3);
    expect(violations).to.deep.equal([]);
    await shot(page, '12-overtid-report');
    const bad = await fetch(`${base()}/console/overtid?from=2026-13-01`, { headers: { authorization: `Bearer ${tokens.ola}` } });
    expect(bad.status).to.equal(400);
  });

  it('a viewer sees no action buttons, and a forged POST is refused (403): a viewer with a valid form, a session without the CSRF token, another origin', async () => {
    const dead = await injectDeadLetter(`console-viewer-${randomUUID()}`, 'Bad <img src=x onerror=alert(1)> "input"');
    const page = await loginAs('vera');
    for (const path of ['/console/dlq', `/console/dlq/${dead.id}`, '/console/held', '/console/waiting', '/console']) {
      await page.goto(path);
      // only the GET filter forms remain: nothing that acts
      expect(await page.locator('main form[method=post]').count(), path).to.equal(0);
      expect(await page.locator('main button').allTextContents(), path).to.satisfy((labels: string[]) => labels.every((l) => l === 'Filter'));
    }
    await page.goto(`/console/dlq/${dead.id}`);
    expect(await page.locator('main img').count(), 'what a message carries is text, never markup').to.equal(0);
    expect(await page.locator('dl.fields').textContent()).to.contain('Bad <img src=x onerror=alert(1)> "input"');
    await shot(page, '10-viewer-dead-letter');
    const csrf = await page.locator('.who input[name=_csrf]').inputValue();
    const asViewer = await page.request.post(`/console/dlq/${dead.id}/discard`, { form: { _csrf: csrf, reason: 'forged' } });
    expect(asViewer.status()).to.equal(403);
    expect(await asViewer.text()).to.contain('may not act');

    const ola = await loginAs('ola');
    const noCsrf = await ola.request.post(`/console/dlq/${dead.id}/discard`, { form: { reason: 'forged' } });
    expect(noCsrf.status()).to.equal(403);
    const olaCsrf = await ola.locator('.who input[name=_csrf]').inputValue();
    const wrongCsrf = await ola.request.post(`/console/dlq/${dead.id}/discard`, { form: { _csrf: `${olaCsrf}x`, reason: 'forged' } });
    expect(wrongCsrf.status()).to.equal(403);
    const crossSite = await ola.request.post(`/console/dlq/${dead.id}/discard`, {
      form: { _csrf: olaCsrf, reason: 'forged' },
      headers: { origin: 'http://evil.example' },
    });
    expect(crossSite.status()).to.equal(403);
    const anonymous = await fetch(`${base()}/console/dlq/${dead.id}/discard`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'reason=forged',
    });
    expect(anonymous.status).to.equal(403);
    expect((await deadLetters.get(dead.id))?.state, 'nothing forged got through').to.equal('open');

    const discarded = await ola.request.post(`/console/dlq/${dead.id}/discard`, { form: { _csrf: olaCsrf, reason: 'test done' } });
    expect(discarded.status()).to.equal(200);
    expect((await audit('dlq.discard')).at(-1)).to.include({ actor: 'ola', reason: 'test done' });
  });

  it('scripts may use Authorization: Bearer on the console too; the break-glass token opens no session', async () => {
    const r = await fetch(`${base()}/console/waiting`, { headers: { authorization: `Bearer ${tokens.ola}` } });
    expect(r.status).to.equal(200);
    expect(r.headers.get('content-security-policy')).to.contain("default-src 'none'");
    expect(await r.text()).to.contain('ola (operator)');
    const glass = await fetch(`${base()}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${encodeURIComponent(config.apiToken ?? '')}`,
      redirect: 'manual',
    });
    expect(glass.status).to.equal(403);
    expect(glass.headers.get('set-cookie')).to.equal(null);
    expect(await glass.text()).to.contain('Authorization: Bearer');
  });

  it('a revoked user is out at once: the next page is the login page', async () => {
    const page = await loginAs('vera');
    const r = await users.revoke('vera', { actor: 'test', via: 'cli' });
    expect(r.ok).to.equal(true);
    await page.goto('/console/dlq');
    expect(new URL(page.url()).pathname).to.equal('/console/login');
    const post = await fetch(`${base()}/api/dlq`, { headers: { authorization: `Bearer ${tokens.vera}` } });
    expect(post.status).to.equal(401);
  });

  it('no personal data on any page the console showed, nor in the log', () => {
    expect(seen.length).to.be.greaterThan(5);
    for (const secret of PERSONAL) {
      expect(seen.join('\n'), secret).not.to.contain(secret);
      expect(logs.text(), secret).not.to.contain(secret);
    }
    for (const token of Object.values(tokens)) expect(logs.text()).not.to.contain(token);
  });
});
