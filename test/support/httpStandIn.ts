// What the stand-ins for NHN's services have in common: a real HTTP server on 127.0.0.1 that can
// be stopped (the service down) and started again on the same port (it comes back).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export abstract class HttpStandIn {
  private server?: Server;
  protected port = 0;

  protected abstract answer(req: IncomingMessage, res: ServerResponse): void | Promise<void>;

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the port it had. */
  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.answer(req, res));
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }
}
