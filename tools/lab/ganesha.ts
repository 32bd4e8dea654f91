/**
 * nfs-ganesha as a plain user-space process on the host loopback: NFSv4 only, VFS backend, one
 * export of a host directory. Guests reach it at 10.0.2.2:<port> (QEMU user-mode networking maps
 * that to the host's 127.0.0.1). The port is a free one, so lab runs never collide on 2049.
 */
import { ChildProcess, spawn } from 'child_process';
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
}

/** The ganesha.conf text for one export (exported for the doc and a unit test). */
export function ganeshaConfig(o: { exportDir: string; port: number; leaseSeconds: number; recoveryDir: string; delegations?: boolean }): string {
  return `NFS_CORE_PARAM {
  Protocols = 4;
  Bind_addr = 127.0.0.1;
  NFS_Port = ${o.port};
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
  Protocols = 4;
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
      recoveryDir: path.join(opts.dir, 'recovery'), delegations: opts.delegations,
    }));
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  /** Starts ganesha in the foreground (our child) and waits until its port accepts. */
  async start(timeoutMs = 30000): Promise<void> {
    const log = fs.openSync(path.join(this.opts.dir, 'ganesha.out'), 'a');
    this.proc = spawn('ganesha.nfsd', [
      '-F', '-f', this.conf, '-L', path.join(this.opts.dir, 'ganesha.log'), '-p', path.join(this.opts.dir, 'ganesha.pid'),
    ], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    this.proc.on('error', () => undefined);
    this.state.track('ganesha', this.proc.pid!, this.conf);
    const deadline = Date.now() + timeoutMs;
    while (!(await canConnect(this.opts.port))) {
      if (this.proc.exitCode !== null) throw new Error(`ganesha exited (${this.proc.exitCode}); see ${this.opts.dir}/ganesha.log`);
      if (Date.now() > deadline) throw new Error(`ganesha did not listen on 127.0.0.1:${this.opts.port} within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** SIGKILL and wait for the exit: the server's state (opens, locks) is gone with it. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await exited;
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
