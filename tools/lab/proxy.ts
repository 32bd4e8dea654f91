/**
 * A TCP relay per VM in front of etcd, so one VM can be cut off from etcd while its NFS traffic
 * (same 10.0.2.2) flows on. cut() black-holes the VM: open connections stop relaying (their bytes
 * are dropped, nothing is answered) and new ones are accepted and ignored, as a dead network
 * would; heal() closes the black-holed connections so the client reconnects at once.
 */
import * as net from 'net';

export class EtcdRelay {
  private readonly server: net.Server;
  private readonly live = new Set<net.Socket>();
  private readonly held = new Set<net.Socket>();
  private cutOff = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      client.on('error', () => undefined);
      if (this.cutOff) {
        this.held.add(client);
        client.on('data', () => undefined);
        return;
      }
      const upstream = net.connect(this.target);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.on('close', () => (upstream.destroy(), this.live.delete(client)));
      upstream.on('close', () => client.destroy());
      client.on('data', (d) => {
        if (!this.cutOff) upstream.write(d);
      });
      upstream.on('data', (d) => {
        if (!this.cutOff) client.write(d);
      });
      this.live.add(client);
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  cut(): void {
    this.cutOff = true;
    for (const s of this.live) this.held.add(s);
    this.live.clear();
  }

  heal(): void {
    this.cutOff = false;
    for (const s of this.held) s.destroy();
    this.held.clear();
  }

  close(): void {
    for (const s of [...this.live, ...this.held]) s.destroy();
    this.server.close();
  }
}
