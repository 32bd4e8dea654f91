/**
 * A real network filesystem WITHOUT cross-host locks, for tests: one export directory served by a
 * private `sshd` on loopback, mounted N times with `sshfs`. Each mount behaves like another host:
 * POSIX locks taken through one mount are invisible through the others (docs/HAZARDS.md H2-H4), and the
 * mounts use sshfs's default caching, so reads can be stale the way they are on real hosts.
 *
 * Observed with sshfs 3.7.3 defaults (Debian 12): a fresh open() through mount B sees what A wrote
 * at once (and refreshes B's page cache for that file, also for descriptors already open). A
 * descriptor kept open on B that only reads stays stale indefinitely (> 40 s) after a same-size
 * overwrite through A; with fstat() calls (as SQLite makes) it turned fresh after ~20 s, the
 * sshfs attribute cache (dcache_timeout=20). A read-only better-sqlite3 handle kept open on B saw
 * a commit through A only after ~20 s.
 *
 * Needs root (sshd, FUSE mounts), `sshfs`, `/usr/sbin/sshd`, `ssh-keygen` and `/dev/fuse`.
 */
import { ChildProcess, execFile, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import { parseMounts } from '../../src/storage/mounts';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { freePort } from './etcd-process';

export interface SshfsExportOptions {
  /** How many sshfs mounts of the one export (default 2). */
  mounts?: number;
  /**
   * Working directory (export, mount points, keys, logs). By default a fresh temp dir that stop()
   * removes; a directory given here is created if missing and left in place by stop().
   */
  dir?: string;
  /** Bound on each wait (sshd listening, each mount appearing, each unmount); default 15 s. */
  timeoutMs?: number;
}

const SSHD = '/usr/sbin/sshd';
/** Written into the export during start() and read through each mount to prove it works. */
const PROBE = '.sshfs-harness-probe';
const SFTP_SERVER_CANDIDATES = ['/usr/lib/openssh/sftp-server', '/usr/libexec/openssh/sftp-server', '/usr/libexec/sftp-server'];

export class SshfsExport {
  /** Working directory: holds export/, mnt-*, keys, sshd_config and logs. */
  readonly dir: string;
  /** The directory the server exports (the "server's disk"). */
  readonly exportDir: string;
  /** One mount point per simulated host, in order. */
  readonly mounts: string[];
  /** Loopback port of the private sshd. */
  port = 0;

  private readonly timeoutMs: number;
  private readonly ownsDir: boolean;
  private sshd: ChildProcess | null = null;
  private readonly sshfsProcs: (ChildProcess | null)[];
  private stopped = false;
  private readonly probeToken = `probe-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  private readonly onExit = () => this.stopSync();

  private constructor(opts: SshfsExportOptions) {
    const n = opts.mounts ?? 2;
    if (!Number.isInteger(n) || n < 1) throw new Error(`SshfsExport: mounts must be a positive integer, got ${n}`);
    this.ownsDir = opts.dir === undefined;
    if (opts.dir !== undefined) fs.mkdirSync(opts.dir, { recursive: true });
    // Real path: /proc/mounts lists resolved mount points.
    this.dir = fs.realpathSync(opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-sshfs-')));
    this.timeoutMs = opts.timeoutMs ?? 15000;
    this.exportDir = path.join(this.dir, 'export');
    this.mounts = Array.from({ length: n }, (_, i) => path.join(this.dir, `mnt-${i}`));
    this.sshfsProcs = this.mounts.map(() => null);
  }

  /** Pid of the private sshd while it runs. */
  get sshdPid(): number | undefined {
    const p = this.sshd;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  /** True when sshfs, sshd, ssh-keygen and /dev/fuse are all present. */
  static available(): boolean {
    const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
    return onPath('sshfs') && fs.existsSync(SSHD) && onPath('ssh-keygen') && fs.existsSync('/dev/fuse');
  }

  /** Starts a private sshd on 127.0.0.1 and mounts its export `mounts` times. */
  static async start(opts: SshfsExportOptions = {}): Promise<SshfsExport> {
    const exp = new SshfsExport(opts);
    process.on('exit', exp.onExit);
    try {
      exp.prepare();
      await exp.startSshd();
      fs.writeFileSync(path.join(exp.exportDir, PROBE), exp.probeToken);
      for (let i = 0; i < exp.mounts.length; i++) await exp.mount(i);
      fs.rmSync(path.join(exp.exportDir, PROBE), { force: true });
    } catch (err) {
      await exp.stop();
      throw err;
    }
    return exp;
  }

  private get sshdLog(): string {
    return path.join(this.dir, 'sshd.log');
  }

  private prepare(): void {
    fs.mkdirSync(this.exportDir, { recursive: true });
    for (const m of this.mounts) fs.mkdirSync(m, { recursive: true });
    // sshd refuses to start without its privilege-separation directory.
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const hostKey = path.join(this.dir, 'host_ed25519');
    const clientKey = path.join(this.dir, 'client_ed25519');
    for (const k of [hostKey, clientKey]) {
      for (const f of [k, `${k}.pub`]) fs.rmSync(f, { force: true });
      const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'sqlite-ha-test', '-f', k], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ssh-keygen failed for ${k}: ${r.stderr || r.error}`);
    }
    const authorized = path.join(this.dir, 'authorized_keys');
    fs.writeFileSync(authorized, fs.readFileSync(`${clientKey}.pub`), { mode: 0o600 });
    const sftp = SFTP_SERVER_CANDIDATES.find((p) => fs.existsSync(p));
    // With UsePAM no, sshd rejects a root whose password is locked ('!'); PAM does not.
    const usePam = rootPasswordLocked() && fs.existsSync('/etc/pam.d/sshd');
    const config = [
      'ListenAddress 127.0.0.1',
      // Port is filled in by startSshd().
      `HostKey ${hostKey}`,
      `PidFile ${path.join(this.dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorized}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      `UsePAM ${usePam ? 'yes' : 'no'}`,
      'StrictModes no',
      'UseDNS no',
      'PrintMotd no',
      'X11Forwarding no',
      'AllowTcpForwarding no',
      'MaxStartups 100',
      'MaxSessions 100',
      'LogLevel VERBOSE',
      `Subsystem sftp ${sftp ?? 'internal-sftp'}`,
    ];
    fs.writeFileSync(path.join(this.dir, 'sshd_config.base'), config.join('\n') + '\n');
  }

  private async startSshd(): Promise<void> {
    this.port = await freePort('127.0.0.1');
    const base = fs.readFileSync(path.join(this.dir, 'sshd_config.base'), 'utf8');
    const config = path.join(this.dir, 'sshd_config');
    fs.writeFileSync(config, `Port ${this.port}\n${base}`);
    const log = fs.openSync(this.sshdLog, 'a');
    try {
      this.sshd = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', log, log] });
    } finally {
      fs.closeSync(log);
    }
    this.sshd.on('error', () => undefined);
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      if (this.sshd.exitCode !== null || this.sshd.signalCode !== null) {
        throw new Error(`sshd exited (${this.sshd.exitCode ?? this.sshd.signalCode}) before listening on 127.0.0.1:${this.port}\n${this.logTail()}`);
      }
      if (await sshBanner(this.port)) return;
      if (Date.now() > deadline) {
        throw new Error(`sshd did not accept connections on 127.0.0.1:${this.port} within ${this.timeoutMs} ms\n${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  private async mount(i: number): Promise<void> {
    const mnt = this.mounts[i];
    const logFile = path.join(this.dir, `sshfs-${i}.log`);
    const log = fs.openSync(logFile, 'a');
    const sshOpts = [
      `IdentityFile=${path.join(this.dir, 'client_ed25519')}`,
      'IdentitiesOnly=yes',
      'StrictHostKeyChecking=no',
      'UserKnownHostsFile=/dev/null',
      'BatchMode=yes',
      'ConnectTimeout=5',
      'LogLevel=ERROR',
    ];
    let proc: ChildProcess;
    try {
      // Foreground (-f) so the sshfs process is ours to wait for and kill; default caching options.
      proc = spawn(
        'sshfs',
        ['-f', '-F', '/dev/null', '-p', String(this.port), '-o', sshOpts.join(','), `root@127.0.0.1:${this.exportDir}`, mnt],
        { stdio: ['ignore', log, log] },
      );
    } finally {
      fs.closeSync(log);
    }
    proc.on('error', () => undefined);
    this.sshfsProcs[i] = proc;
    const deadline = Date.now() + this.timeoutMs;
    let probeErr = '';
    for (;;) {
      // sshfs shows up in /proc/mounts before its ssh session is authenticated, so also read the
      // probe file through the mount (in a child with a timeout: a dead FUSE mount can block).
      if (isSshfsMounted(mnt)) {
        const got = await readWithTimeout(path.join(mnt, PROBE), Math.max(500, Math.min(5000, deadline - Date.now())));
        if (got.ok && got.text === this.probeToken) return;
        probeErr = got.ok ? `probe read '${got.text}'` : got.error;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `sshfs for ${mnt} exited (${proc.exitCode ?? proc.signalCode}) before its mount worked: ${readTail(logFile)}\n${this.logTail()}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${mnt} did not become a working fuse.sshfs mount within ${this.timeoutMs} ms` +
            `${probeErr ? ` (${probeErr})` : ''}: ${readTail(logFile)}\n${this.logTail()}`,
        );
      }
      await sleep(50);
    }
  }

  /**
   * Unmounts every mount (lazily), ends the sshfs processes and sshd with its sessions, and removes
   * the working directory if it made it. Idempotent; never throws.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    process.removeListener('exit', this.onExit);
    for (const mnt of this.mounts) unmount(mnt);
    await Promise.all(this.sshfsProcs.map((p) => endProcess(p, 3000)));
    // Session processes leave once their sshfs hangs up; wait for that while sshd is still there
    // to reap them, kill any that linger, then end sshd itself.
    const sessions = this.sshd?.pid ? descendants(this.sshd.pid) : [];
    await endPids(sessions, 3000);
    await endProcess(this.sshd, 3000);
    const deadline = Date.now() + this.timeoutMs;
    while (this.mounts.some(isSshfsMounted) && Date.now() < deadline) {
      for (const mnt of this.mounts.filter(isSshfsMounted)) unmount(mnt);
      await sleep(50);
    }
    if (this.ownsDir && !this.mounts.some(isSshfsMounted)) {
      try {
        fs.rmSync(this.dir, { recursive: true, force: true });
      } catch {
        // A lingering mount point or a racing writer; leave the temp dir behind.
      }
    }
  }

  /** Best-effort synchronous cleanup for process exit. */
  private stopSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const mnt of this.mounts) unmount(mnt);
    const sessions = this.sshd?.pid ? descendants(this.sshd.pid) : [];
    for (const p of this.sshfsProcs) killQuiet(p?.pid, 'SIGKILL');
    killQuiet(this.sshd?.pid, 'SIGKILL');
    for (const pid of sessions) killQuiet(pid, 'SIGKILL');
  }

  /** The last lines of the sshd log, for error messages. */
  logTail(lines = 30): string {
    return `--- sshd log tail (${this.sshdLog}) ---\n${readTail(this.sshdLog, lines)}`;
  }
}

/** True when /proc/mounts lists `mountPoint` as a fuse.sshfs mount. */
export function isSshfsMounted(mountPoint: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync('/proc/mounts', 'utf8');
  } catch {
    return false;
  }
  return parseMounts(text).some((m) => m.fsType === 'fuse.sshfs' && m.mountPoint === mountPoint);
}

/** Lazily unmounts a FUSE mount with whichever tool works here; a no-op if it is not mounted. */
export function unmount(mnt: string): void {
  if (!isSshfsMounted(mnt)) return;
  for (const [cmd, args] of [
    ['fusermount3', ['-u', '-z', mnt]],
    ['fusermount', ['-u', '-z', mnt]],
    ['umount', ['-l', mnt]],
  ] as const) {
    const r = spawnSync(cmd, [...args], { stdio: 'ignore', timeout: 5000 });
    if (r.status === 0 || !isSshfsMounted(mnt)) return;
  }
}

function rootPasswordLocked(): boolean {
  try {
    const line = fs.readFileSync('/etc/shadow', 'utf8').split('\n').find((l) => l.startsWith('root:'));
    return !!line && line.split(':')[1].startsWith('!');
  } catch {
    return false;
  }
}

/** Reads a file in a child process (`cat`) so a hung FUSE request cannot block this process. */
function readWithTimeout(file: string, timeoutMs: number): Promise<{ ok: true; text: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    execFile('cat', [file], { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) resolve({ ok: false, error: (stderr || err.message).trim() });
      else resolve({ ok: true, text: stdout });
    });
  });
}

/** Connects to the port and waits for the server's "SSH-" identification line. */
function sshBanner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.startsWith('SSH-')) done(true);
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(false));
  });
}

/** All descendant pids of `pid` (children, grandchildren, ...), from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  for (const e of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(e), Number(rest[1]));
    } catch {
      // Process already gone.
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); treat it as gone.
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function killQuiet(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited (or, if even SIGKILL
 * does not end it, e.g. stuck in the kernel, after another `graceMs`). Never throws.
 */
async function endProcess(p: ChildProcess | null, graceMs: number): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  let kill: NodeJS.Timeout | undefined;
  let giveUp: NodeJS.Timeout | undefined;
  const exited = new Promise<void>((r) => {
    p.once('exit', () => r());
    kill = setTimeout(() => killQuiet(p.pid, 'SIGKILL'), graceMs);
    giveUp = setTimeout(r, 2 * graceMs);
  });
  killQuiet(p.pid, 'SIGTERM');
  await exited;
  clearTimeout(kill);
  clearTimeout(giveUp);
}

async function endPids(pids: number[], graceMs: number): Promise<void> {
  let left = pids.filter(alive);
  const deadline = Date.now() + graceMs;
  while (left.length && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(alive);
  }
  for (const pid of left) killQuiet(pid, 'SIGKILL');
}

function readTail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
