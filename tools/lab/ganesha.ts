/**
 * nfs-ganesha as a plain user-space process on the host loopback: NFSv4 (and, when asked, NFSv3
 * with its MOUNT service on a second fixed port, no NLM), VFS backend, one export of a host
 * directory. Guests reach it at 10.0.2.2:<port> (QEMU user-mode networking maps that to the
 * host's 127.0.0.1). The ports are free ones, so lab runs never collide on 2049.
 *
 * NFSv3: ganesha refuses to start unless it can register v3 and MOUNT with rpcbind, though the
 * guests never ask rpcbind (they mount with port= and mountport=). So an rpcbind of our own runs
 * only while ganesha starts, and is killed once ganesha's registrations are in.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import type { RunState } from './state';

export interface GaneshaOptions {
  dir: string;
  port: number;
  /** NFSv4 lease lifetime (s): how long a dead client's locks outlive it. */
  leaseSeconds: number;
  /** Hand out delegations (ganesha's default is off). */
  delegations?: boolean;
  /** Also serve NFSv3 (MOUNT on mntPort; no NLM: clients mount nolock). */
  nfsv3?: boolean;
  mntPort?: number;
}

/** The ganesha.conf text for one export (exported for the doc and a unit test). */
export function ganeshaConfig(o: {
  exportDir: string; port: number; leaseSeconds: number; recoveryDir: string; delegations?: boolean; nfsv3?: boolean; mntPort?: number;
}): string {
  const protocols = o.nfsv3 ? '3, 4' : '4';
  // v3: MOUNT on a fixed port, TCP only, and the v3 mount path is the export's Pseudo path (/export).
  const v3 = o.nfsv3 ? `\n  MNT_Port = ${o.mntPort};\n  Enable_UDP = false;\n  Mount_Path_Pseudo = true;` : '';
  return `NFS_CORE_PARAM {
  Protocols = ${protocols};
  Bind_addr = 127.0.0.1;
  NFS_Port = ${o.port};${v3}
  Enable_NLM = false;
  Enable_RQUOTA = false;
}
NFSV4 {
  Lease_Lifetime = ${o.leaseSeconds};
  Grace_Period = ${Math.max(o.leaseSeconds, 5)};
  RecoveryBackend = fs;
  RecoveryRoot = ${o.recoveryDir};
  Delegations = ${o.delegations ? 'true' : 'false'};
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1;
  Path = ${o.exportDir};
  Pseudo = /export;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = ${protocols};
  Transports = TCP;
  SecType = sys;
  Delegations = ${o.delegations ? 'RW' : 'None'};
  FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
`;
}

export class Ganesha {
  readonly exportDir: string;
  private proc: ChildProcess | null = null;
  private readonly conf: string;

  constructor(private readonly state: RunState, readonly opts: GaneshaOptions) {
    this.exportDir = path.join(opts.dir, 'export');
    fs.mkdirSync(this.exportDir, { recursive: true });
    fs.mkdirSync(path.join(opts.dir, 'recovery'), { recursive: true });
    this.conf = path.join(opts.dir, 'ganesha.conf');
    fs.writeFileSync(this.conf, ganeshaConfig({
      exportDir: this.exportDir, port: opts.port, leaseSeconds: opts.leaseSeconds,
      recoveryDir: path.join(opts.dir, 'recovery'), delegations: opts.delegations, nfsv3: opts.nfsv3, mntPort: opts.mntPort,
    }));
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  /** Starts ganesha in the foreground (our child) and waits until its port accepts. */
  async start(timeoutMs = 30000): Promise<void> {
    const rpcbind = this.opts.nfsv3 ? await this.startRpcbind(timeoutMs) : null;
    try {
      await this.startGanesha(timeoutMs);
      // ganesha listens before it registers: kill rpcbind only once the last registration (NFSv4) is in.
      if (rpcbind) await this.waitRegistered(timeoutMs);
    } finally {
      if (rpcbind) await killChild(rpcbind).then(() => this.state.untrack('rpcbind'));
    }
  }

  /** rpcbind in the foreground, our child, until its port 111 accepts (only for ganesha's registration). */
  private async startRpcbind(timeoutMs: number): Promise<ChildProcess> {
    if (await canConnect(111)) throw new Error('an rpcbind is already running on this host: the lab does not use a service it did not start');
    const p = spawn('rpcbind', ['-f'], { stdio: 'ignore', detached: true });
    p.on('error', () => undefined);
    this.state.track('rpcbind', p.pid!, 'rpcbind');
    const deadline = Date.now() + timeoutMs;
    while (!(await canConnect(111))) {
      if (p.exitCode !== null || Date.now() > deadline) throw new Error('rpcbind did not start (needed by ganesha to start NFSv3)');
      await sleep(100);
    }
    return p;
  }

  private async waitRegistered(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = spawnSync('rpcinfo', ['-p', '127.0.0.1'], { encoding: 'utf8', timeout: 5000 });
      if (/^\s*100003\s+4\s+tcp\b/m.test(r.stdout ?? '')) return;
      if (this.proc?.exitCode !== null) throw new Error(`ganesha exited (${this.proc?.exitCode}); see ${this.opts.dir}/ganesha.log`);
      if (Date.now() > deadline) throw new Error(`ganesha did not register with rpcbind within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  private async startGanesha(timeoutMs: number): Promise<void> {
    const log = fs.openSync(path.join(this.opts.dir, 'ganesha.out'), 'a');
    this.proc = spawn('ganesha.nfsd', [
      '-F', '-f', this.conf, '-L', path.join(this.opts.dir, 'ganesha.log'), '-p', path.join(this.opts.dir, 'ganesha.pid'),
    ], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.proc.on('error', () => undefined);
    this.state.track('ganesha', this.proc.pid!, this.conf);
    const deadline = Date.now() + timeoutMs;
    while (!(await canConnect(this.opts.port)) || (this.opts.nfsv3 && !(await canConnect(this.opts.mntPort!)))) {
      if (this.proc.exitCode !== null) throw new Error(`ganesha exited (${this.proc.exitCode}); see ${this.opts.dir}/ganesha.log`);
      if (Date.now() > deadline) throw new Error(`ganesha did not listen on 127.0.0.1:${this.opts.port} within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** SIGKILL and wait for the exit: the server's state (opens, locks) is gone with it. */
  async kill(): Promise<void> {
    if (this.proc) await killChild(this.proc);
    this.state.untrack('ganesha');
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }
}

/** SIGKILL (after SIGCONT: a stopped process too) and wait for the exit. */
async function killChild(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGCONT');
  p.kill('SIGKILL');
  await exited;
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
