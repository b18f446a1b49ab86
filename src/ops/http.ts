// Liveness and readiness for the container and the orchestrator (node:http: three routes do
// not justify a framework). Readiness names what is missing, never any message content.
import { createServer, type Server } from 'node:http';

export interface ReadinessCheck {
  name: string;
  check: () => Promise<boolean> | boolean;
}

export function startHttpServer(port: number, checks: ReadinessCheck[]): Promise<Server> {
  const server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
    if (req.url === '/healthz') return send(200, { status: 'ok' });
    if (req.url === '/readyz') {
      const failing: string[] = [];
      for (const c of checks) {
        const ok = await Promise.resolve()
          .then(c.check)
          .catch(() => false);
        if (!ok) failing.push(c.name);
      }
      return failing.length === 0 ? send(200, { status: 'ready' }) : send(503, { status: 'not ready', failing });
    }
    send(404, { error: 'not found' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}
