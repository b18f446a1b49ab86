// Liveness, readiness and metrics for the container and the orchestrator, the ops API under
// /api/ and the ops console under /console (node:http: a handful of routes do not justify a
// framework). Readiness names what is missing, never any message content. The listener binds to
// loopback unless configured otherwise (`http.host`).
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

export interface ReadinessCheck {
  name: string;
  /** what /readyz says when the check fails */
  reason?: string;
  check: () => Promise<boolean> | boolean;
}

export interface HttpExtras {
  /** GET /metrics (Prometheus text format) */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** everything under /api/, any method (authenticated by the handler) */
  api?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** /console and everything under it (authenticated by the handler); `readiness` runs the checks as /readyz does */
  console?: (req: IncomingMessage, res: ServerResponse, readiness: () => Promise<Readiness>) => Promise<void>;
}

export interface Readiness {
  failing: string[];
  reasons: Record<string, string>;
}

/** A check that does not answer in time (e.g. an unreachable database) counts as failing. */
const CHECK_TIMEOUT_MS = 2000;

/** Runs every check, each within CHECK_TIMEOUT_MS. */
export async function readiness(checks: ReadinessCheck[]): Promise<Readiness> {
  const failing: string[] = [];
  const reasons: Record<string, string> = {};
  for (const c of checks) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), CHECK_TIMEOUT_MS)));
    const ok = await Promise.race([
      Promise.resolve()
        .then(c.check)
        .catch(() => false),
      timeout,
    ]);
    clearTimeout(timer);
    if (!ok) {
      failing.push(c.name);
      reasons[c.name] = c.reason ?? `${c.name} check failed`;
    }
  }
  return { failing, reasons };
}

export interface ListenOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** serve HTTPS with this key and certificate (PEM files) */
  tls?: { keyFile: string; certFile: string };
}

export function startHttpServer(port: number, checks: ReadinessCheck[], extras: HttpExtras = {}, listen: ListenOptions = {}): Promise<Server> {
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (extras.api && req.url?.startsWith('/api/')) return extras.api(req, res);
    if (extras.console && (req.url === '/console' || req.url?.startsWith('/console/') || req.url?.startsWith('/console?')))
      return extras.console(req, res, () => readiness(checks));
    if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
    if (req.url === '/metrics' && extras.metrics) {
      // a rejection here would be unhandled (the listener's promise is not awaited): answer 500
      const text = await extras.metrics().catch(() => undefined);
      if (!text) return send(500, { error: 'metrics unavailable' });
      res.writeHead(200, { 'content-type': text.contentType });
      return res.end(text.body);
    }
    if (req.url === '/healthz') return send(200, { status: 'ok' });
    if (req.url === '/readyz') {
      const { failing, reasons } = await readiness(checks);
      return failing.length === 0 ? send(200, { status: 'ready' }) : send(503, { status: 'not ready', failing, reasons });
    }
    send(404, { error: 'not found' });
  };
  const server: Server = listen.tls
    ? createHttpsServer({ key: readFileSync(listen.tls.keyFile), cert: readFileSync(listen.tls.certFile) }, handler)
    : createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, listen.host ?? '127.0.0.1', () => resolve(server));
  });
}
