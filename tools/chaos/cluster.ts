/**
 * The chaos etcd: three real members (EtcdCluster) listening on the chaos bridge address, so the
 * node namespaces reach them over their veths, serving clients over mutual TLS (--client-cert-auth,
 * certificates made at start by tools/cluster/certs.ts), plus the questions the fault injector asks: which
 * member leads (etcdctl endpoint status), and which node holds the write lease (the lowest create
 * revision under the lock prefix, as the Mutex recipe defines it).
 */
import { spawn } from 'child_process';
import { X509Certificate } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CertFiles, TestCa } from '../cluster/certs';
import { EtcdCluster } from '../cluster/etcd-process';
import { Keys } from '../../src/coordinator/etcd/keys';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with a hard timeout (SIGKILL), never throwing. */
export function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ETCDCTL_API: '3' } });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const done = (code: number | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    };
    p.on('error', (e) => ((stderr += String(e)), done(-1)));
    p.on('close', (code) => done(code));
  });
}

export interface LockHolder {
  node: string;
  pid: number | null;
  revision: number;
}

export class ChaosEtcd {
  private rotations = 0;

  private constructor(
    readonly cluster: EtcdCluster, readonly keys: Keys, private readonly ca: TestCa,
    private readonly host: string, private readonly server: CertFiles, readonly clientTls: { ca: string; cert: string; key: string },
  ) {}

  static async start(host: string, members: number, dir: string, prefix: string, dbName: string): Promise<ChaosEtcd> {
    const ca = TestCa.create(path.join(dir, 'tls'), 'chaos-ca');
    const server = ca.server('server', { hosts: [host] });
    const client = ca.client('client', 'sqlite-ha-chaos-node');
    const cluster = await EtcdCluster.start({
      members, host, dir, startTimeoutMs: 30000,
      tls: { ca: ca.cert, cert: server.cert, key: server.key, clientCertAuth: true, client },
    });
    return new ChaosEtcd(cluster, new Keys(prefix, dbName), ca, host, server, { ca: ca.cert, cert: client.cert, key: client.key });
  }

  /**
   * Kills member i, replaces the server certificate with a freshly issued one (new key, same CA:
   * a rotation), and restarts the member with its data; clients must reconnect over TLS to it.
   */
  async restartWithNewCertificate(i: number): Promise<void> {
    await this.cluster.kill(i);
    const fresh = this.ca.server(`server-${++this.rotations}`, { hosts: [this.host] });
    // Renamed over the files every member was started with: members still running loaded theirs.
    fs.renameSync(fresh.key, this.server.key);
    fs.renameSync(fresh.cert, this.server.cert);
    await this.cluster.restart(i);
  }

  /** Serial number of the certificate member i presents now (to prove the rotation took). */
  presentedSerial(i: number): Promise<string | null> {
    const url = new URL(this.cluster.members[i].clientUrl);
    return run('openssl', [
      's_client', '-connect', `${url.hostname}:${url.port}`, '-CAfile', this.clientTls.ca,
      '-cert', this.clientTls.cert, '-key', this.clientTls.key, '-servername', 'localhost',
    ], 5000).then((r) => {
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
      return pem ? new X509Certificate(pem).serialNumber : null;
    });
  }

  get endpoints(): string[] {
    return this.cluster.endpoints;
  }

  get size(): number {
    return this.cluster.members.length;
  }

  pids(): number[] {
    return this.cluster.members.map((m) => m.process?.pid).filter((p): p is number => typeof p === 'number');
  }

  isRunning(i: number): boolean {
    const p = this.cluster.members[i]?.process;
    return Boolean(p && p.exitCode === null && p.signalCode === null);
  }

  /** Index of the leader, asking each running member separately (a paused one just times out). */
  async leader(): Promise<number | null> {
    const answers = await Promise.all(
      this.cluster.members.map(async (m, i) => {
        if (!this.isRunning(i)) return null;
        const r = await run('etcdctl', ['--endpoints', m.clientUrl, ...this.cluster.etcdctlTlsArgs(), '--command-timeout=1s', 'endpoint', 'status', '-w', 'json'], 3000);
        if (r.code !== 0) return null;
        // member ids are uint64: compare the digits as text, JSON.parse would round them.
        const id = /"member_id":(\d+)/.exec(r.stdout)?.[1];
        const leader = /"leader":(\d+)/.exec(r.stdout)?.[1];
        return id && leader ? { i, id, leader } : null;
      }),
    );
    for (const a of answers) if (a && a.id === a.leader) return a.i;
    return null;
  }

  /** The current lease holder per etcd, or null when nobody holds it or etcd does not answer. */
  async holder(): Promise<LockHolder | null> {
    const r = await run(
      'etcdctl',
      ['--endpoints', this.endpoints.join(','), ...this.cluster.etcdctlTlsArgs(), '--command-timeout=1s', 'get', '--prefix', this.keys.lockPrefix, '-w', 'json'],
      3000,
    );
    if (r.code !== 0) return null;
    try {
      const res = JSON.parse(r.stdout) as { kvs?: { create_revision: number; value?: string }[] };
      const kvs = (res.kvs ?? []).slice().sort((a, b) => a.create_revision - b.create_revision);
      if (!kvs[0]) return null;
      const rec = JSON.parse(Buffer.from(kvs[0].value ?? '', 'base64').toString('utf8')) as { node?: string; pid?: number };
      return { node: rec.node ?? '(unknown)', pid: typeof rec.pid === 'number' ? rec.pid : null, revision: kvs[0].create_revision };
    } catch {
      return null;
    }
  }

  signal(i: number, sig: 'SIGSTOP' | 'SIGCONT'): void {
    this.cluster.signal(i, sig);
  }

  kill(i: number): Promise<void> {
    return this.cluster.kill(i);
  }

  /** Brings a killed member back with its data and waits until the cluster is healthy. */
  restart(i: number): Promise<void> {
    return this.cluster.restart(i);
  }

  /** Synchronous, for cleanup: wake and kill every member. */
  killAllSync(): void {
    for (const m of this.cluster.members) {
      try {
        m.process?.kill('SIGCONT');
        m.process?.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  stop(keepData: boolean): Promise<void> {
    return this.cluster.stop({ keepData });
  }
}
