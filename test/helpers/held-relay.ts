/**
 * A loopback TCP relay in front of etcd that holds what its clients send until release(): a test
 * can let a node's etcd request wait (as on a slow network) while another node runs ahead.
 */
import * as net from 'net';

export class HeldRelay {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly flushes: (() => void)[] = [];
  private holding = true;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      this.sockets.add(client).add(upstream);
      const held: Buffer[] = [];
      client.on('data', (d) => (this.holding ? held.push(d) : upstream.write(d)));
      this.flushes.push(() => held.splice(0).forEach((d) => upstream.write(d)));
      upstream.on('data', (d) => client.write(d));
      for (const [a, b] of [[client, upstream], [upstream, client]]) {
        a.on('error', () => b.destroy());
        a.on('close', () => (b.destroy(), this.sockets.delete(a)));
      }
    });
  }

  /** Listens on a free loopback port; resolves with the endpoint to give the node. */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(`http://127.0.0.1:${this.port}`);
      });
    });
  }

  /** Lets everything held, and everything from now on, through. */
  release(): void {
    this.holding = false;
    for (const flush of this.flushes.splice(0)) flush();
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}
