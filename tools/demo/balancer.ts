/**
 * The demo's stand-in for HAProxy (compose/haproxy.cfg does the same in Docker): one loopback
 * address in front of the serve nodes, round robin over those whose GET /health answered 200 at the
 * last poll. A request is tried on another node only when the connection was refused (it cannot
 * have run); anything else is answered 502, because Hrana requests must never run twice.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';

export class Balancer {
  private readonly healthy = new Set<string>();
  private next = 0;
  private server: http.Server | null = null;
  private poller: NodeJS.Timeout | null = null;
  private readonly agent = new http.Agent({ keepAlive: true });
  url = '';

  constructor(private readonly backends: string[]) {}

  async start(): Promise<string> {
    // Bounded wait for the first healthy node (a new node's first check dials etcd).
    for (let i = 0; i < 20 && this.up.length === 0; i++) {
      await this.poll();
      if (this.up.length === 0) await new Promise((r) => setTimeout(r, 500));
    }
    this.poller = setInterval(() => void this.poll(), 500);
    this.poller.unref();
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.send(req, res, Buffer.concat(chunks), 0));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  /** Backends that answered /health with 200 at the last poll. */
  get up(): string[] {
    return this.backends.filter((b) => this.healthy.has(b));
  }

  private async poll(): Promise<void> {
    await Promise.all(this.backends.map(async (b) => {
      try {
        const r = await fetch(`${b}/health`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        if (r.status === 200) this.healthy.add(b);
        else this.healthy.delete(b);
      } catch {
        this.healthy.delete(b);
      }
    }));
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, attempt: number): void {
    const up = this.up;
    if (up.length === 0 || attempt >= this.backends.length) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'no healthy sqlite-ha node', code: 'NO_BACKEND' }));
      return;
    }
    const target = new URL(req.url ?? '/', up[this.next++ % up.length]);
    const headers = { ...req.headers, host: target.host, 'content-length': String(body.length) };
    const out = http.request(target, { method: req.method, headers, agent: this.agent }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    let connected = false;
    out.on('socket', (s) => {
      // A reused keep-alive socket is connected already; only a new one gets a 'connect'.
      if (!s.connecting) connected = true;
      else s.once('connect', () => (connected = true));
    });
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && err.code === 'ECONNREFUSED') {
        this.healthy.delete(`${target.protocol}//${target.host}`);
        this.send(req, res, body, attempt + 1);
        return;
      }
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: `node ${target.host} failed mid-request (${err.code ?? err.message}): outcome unknown`, code: 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN' }));
      } else {
        res.destroy();
      }
    });
    out.end(body);
  }

  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    this.agent.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
  }
}
