/**
 * Starts real etcd members from PATH on free loopback ports: the test harness, the demo, the
 * benchmarks and the chaos suite all use this, so there is one way to run a local cluster.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  process: ChildProcess | null;
}

export interface EtcdClusterOptions {
  members?: number;
  /** Where data dirs and logs go; a fresh temp dir by default. */
  dir?: string;
  /** Host to bind; 127.0.0.1 unless a namespace bridge address is wanted. */
  host?: string;
  startTimeoutMs?: number;
  /** Serve clients over TLS (https:// client URLs); peers stay plain on loopback. */
  tls?: EtcdTls;
  /** More etcd flags, e.g. ['--auto-compaction-retention', '1']. */
  extraArgs?: string[];
}

/** PEM file paths for a TLS cluster. */
export interface EtcdTls {
  /** CA that signed the client certificates (and the one etcdctl trusts for the server). */
  ca: string;
  /** The members' server certificate and key. */
  cert: string;
  key: string;
  /** --client-cert-auth: clients must present a certificate signed by `ca` (false: server-only TLS). */
  clientCertAuth?: boolean;
  /** The client certificate the harness's own etcdctl calls present (needed with clientCertAuth). */
  client?: { cert: string; key: string };
}

/** True when an `etcd` binary is on PATH. */
export function etcdOnPath(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export class EtcdCluster {
  readonly members: EtcdMember[] = [];
  readonly dir: string;
  private readonly host: string;
  private readonly startTimeoutMs: number;
  readonly tls: EtcdTls | null;
  private readonly extraArgs: string[];

  private constructor(opts: EtcdClusterOptions) {
    this.dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-etcd-'));
    this.host = opts.host ?? '127.0.0.1';
    this.startTimeoutMs = opts.startTimeoutMs ?? 20000;
    this.tls = opts.tls ?? null;
    this.extraArgs = opts.extraArgs ?? [];
    if (this.tls?.clientCertAuth && !this.tls.client) {
      throw new Error('EtcdCluster: tls.clientCertAuth needs tls.client (the certificate etcdctl presents)');
    }
  }

  /** Starts `members` etcd processes as one cluster and waits until it answers. */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const cluster = new EtcdCluster(opts);
    const n = opts.members ?? 1;
    for (let i = 0; i < n; i++) {
      const name = `m${i + 1}`;
      cluster.members.push({
        name,
        clientUrl: `${cluster.tls ? 'https' : 'http'}://${cluster.host}:${await freePort(cluster.host)}`,
        peerUrl: `http://${cluster.host}:${await freePort(cluster.host)}`,
        dataDir: path.join(cluster.dir, name),
        process: null,
      });
    }
    for (const m of cluster.members) cluster.spawnMember(m);
    try {
      await cluster.waitHealthy();
    } catch (err) {
      await cluster.stop({ keepData: true }); // the error message points at the member logs
      throw err;
    }
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  private spawnMember(m: EtcdMember, state: 'new' | 'existing' = 'new'): void {
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const log = fs.openSync(path.join(this.dir, `${m.name}.log`), 'a');
    m.process = spawn(
      'etcd',
      [
        '--name', m.name,
        '--data-dir', m.dataDir,
        '--listen-client-urls', m.clientUrl,
        '--advertise-client-urls', m.clientUrl,
        '--listen-peer-urls', m.peerUrl,
        '--initial-advertise-peer-urls', m.peerUrl,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', state,
        '--initial-cluster-token', path.basename(this.dir),
        // Short heartbeats: loopback members, fast leader election after a kill.
        '--heartbeat-interval', '50',
        '--election-timeout', '500',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
        ...this.tlsArgs(),
        ...this.extraArgs,
      ],
      // Own process group: a Ctrl-C in the terminal must not stop etcd before the nodes let go.
      { stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log);
    m.process.on('error', () => undefined);
  }

  private tlsArgs(): string[] {
    if (!this.tls) return [];
    // etcd 3.4 requires client certificates whenever --trusted-ca-file is given: server-only TLS omits it.
    return [
      '--cert-file', this.tls.cert, '--key-file', this.tls.key,
      ...(this.tls.clientCertAuth ? ['--trusted-ca-file', this.tls.ca, '--client-cert-auth'] : []),
    ];
  }

  /** etcdctl's flags for this cluster's TLS (empty when plain). */
  etcdctlTlsArgs(): string[] {
    if (!this.tls) return [];
    return ['--cacert', this.tls.ca, ...(this.tls.client ? ['--cert', this.tls.client.cert, '--key', this.tls.client.key] : [])];
  }

  /** Waits until every running member reports healthy through etcdctl. */
  async waitHealthy(timeoutMs = this.startTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const running = this.members.filter((m) => m.process && m.process.exitCode === null);
    for (;;) {
      const r = spawnSync(
        'etcdctl',
        ['--endpoints', running.map((m) => m.clientUrl).join(','), ...this.etcdctlTlsArgs(), '--command-timeout=1s', 'endpoint', 'health'],
        { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } },
      );
      if (r.status === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`etcd did not become healthy within ${timeoutMs} ms (logs in ${this.dir}): ${r.stderr}`);
      }
      await sleep(100);
    }
  }

  /** Runs etcdctl against this cluster and returns stdout (throws on failure). */
  etcdctl(args: string[]): string {
    const r = spawnSync('etcdctl', ['--endpoints', this.endpoints.join(','), ...this.etcdctlTlsArgs(), ...args], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  }

  /** SIGSTOP / SIGCONT / SIGKILL a member; restart() brings a killed member back with its data. */
  signal(member: number, sig: NodeJS.Signals): void {
    this.members[member].process?.kill(sig);
  }

  async kill(member: number): Promise<void> {
    const p = this.members[member].process;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async restart(member: number): Promise<void> {
    await this.kill(member);
    this.spawnMember(this.members[member], 'existing');
    await this.waitHealthy();
  }

  /** Stops every member and removes the data dir unless keepData. */
  async stop(opts: { keepData?: boolean } = {}): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        const p = m.process;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGCONT');
        p.kill('SIGKILL');
        await exited;
      }),
    );
    if (!opts.keepData) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
