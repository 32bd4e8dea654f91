/**
 * Cleanup that happens whatever ends the run: normal exit, SIGINT/SIGTERM/SIGHUP, an uncaught
 * exception. Tasks are synchronous (they must also run inside an `exit` handler), idempotent, and
 * run newest first; one failing does not stop the others. Install before creating anything.
 */
import * as fs from 'fs';
import * as path from 'path';
import { isSshfsMounted, SshfsExport, unmount } from '../cluster/sshfs';

export class Cleanup {
  private tasks: { name: string; fn: () => void }[] = [];
  private ran = false;

  constructor(private readonly log: (msg: string) => void) {}

  /** Registers a task; returns a function that runs it now and unregisters it. */
  add(name: string, fn: () => void): () => void {
    const task = { name, fn };
    this.tasks.push(task);
    return () => {
      this.tasks = this.tasks.filter((t) => t !== task);
      this.runTask(task);
    };
  }

  private runTask(t: { name: string; fn: () => void }): void {
    try {
      t.fn();
    } catch (err) {
      this.log(`cleanup ${t.name}: ${(err as Error).message}`);
    }
  }

  runAll(): void {
    if (this.ran) return;
    this.ran = true;
    for (const t of this.tasks.slice().reverse()) this.runTask(t);
    this.tasks = [];
  }

  /** Signals and crashes run every task, then exit (128+signal, or 3 for a crash). */
  install(): void {
    const onSignal = (sig: NodeJS.Signals, code: number) => {
      this.log(`${sig}: undoing faults, stopping processes, removing namespaces`);
      this.runAll();
      process.exit(code);
    };
    process.once('SIGINT', () => onSignal('SIGINT', 130));
    process.once('SIGTERM', () => onSignal('SIGTERM', 143));
    process.once('SIGHUP', () => onSignal('SIGHUP', 129));
    process.once('uncaughtException', (err) => {
      this.log(`uncaught exception: ${err?.stack ?? err}`);
      this.runAll();
      process.exit(3);
    });
    process.once('unhandledRejection', (err) => {
      this.log(`unhandled rejection: ${(err as Error)?.stack ?? err}`);
      this.runAll();
      process.exit(3);
    });
    process.once('exit', () => this.runAll());
  }
}

function cmdline(pid: number): string[] | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null;
  }
}

function parentPid(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

const isHarness = (pid: number | null) => pid !== null && (cmdline(pid)?.some((a) => /chaos[/\\]main\.js$/.test(a)) ?? false);

/**
 * The chaos work dir an sshfs path belongs to (`<dir>/sshfs/mnt-<i>`, `<dir>/sshfs/export`,
 * `<dir>/sshfs/sshd_config`, `-oIdentityFile=<dir>/sshfs/client_ed25519` of the ssh under sshfs,
 * with `<dir>/harness.pid` next to it), and whether the harness that
 * wrote that pid is gone.
 */
function chaosSshfsOwner(p: string): { dir: string; dead: boolean } | null {
  const m = /^(?:[^@\s]*@[^:]*:|-oIdentityFile=)?(\/.*)\/sshfs\/(?:mnt-\d+|export|sshd_config|client_ed25519)$/.exec(p);
  if (!m) return null;
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(m[1], 'harness.pid'), 'utf8').trim());
  } catch {
    return null; // not a chaos work dir (another user of SshfsExport): none of our business
  }
  return { dir: m[1], dead: pid !== process.pid && !isHarness(pid) };
}

function killQuiet(pid: number): boolean {
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

function allPids(): number[] {
  try {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
}

/**
 * Synchronous stop of this run's sshfs export, for the cleanup path (signals, crashes, exit): lazy
 * unmount of every mount (the node namespaces' copies go too: `ip netns exec` makes them slaves),
 * then SIGKILL of the sshfs clients, sshd and its sessions. The orderly path uses `await
 * SshfsExport.stop()`; after it this finds nothing to do.
 */
export function stopSshfsSync(exp: SshfsExport): void {
  for (const mnt of exp.mounts) if (isSshfsMounted(mnt)) unmount(mnt);
  const sshd = exp.sshdPid;
  const victims = new Set<number>();
  if (sshd) {
    victims.add(sshd);
    // sshd's sessions (and their sftp-servers) are its descendants.
    const parents = new Map(allPids().map((p) => [p, parentPid(p)] as const));
    const queue = [sshd];
    while (queue.length) {
      const p = queue.shift()!;
      for (const [child, pp] of parents) if (pp === p && !victims.has(child)) (victims.add(child), queue.push(child));
    }
  }
  const prefix = `${exp.dir}${path.sep}`;
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    if (cmdline(pid)?.some((a) => a.startsWith(prefix) || a.includes(`:${prefix}`))) victims.add(pid);
  }
  for (const pid of victims) killQuiet(pid);
}

/**
 * sshfs mounts of chaos runs whose harness is gone (killed with SIGKILL): lazily unmounted.
 * Returns the mount points.
 */
export function sweepStaleMounts(): string[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3 || f[2] !== 'fuse.sshfs') continue;
    const mnt = unescape(f[1]);
    if (chaosSshfsOwner(mnt)?.dead) {
      unmount(mnt);
      out.push(mnt);
    }
  }
  return out;
}

/**
 * Processes left by a chaos run that died without cleaning up (SIGKILL of the harness): node
 * workers and etcd members whose parent is no longer a chaos harness, and the sshfs clients and
 * sshd of a `--fs sshfs` run whose harness (per `harness.pid` in its work dir) is gone. A stopped
 * one (SIGSTOP) would otherwise stay forever. Linux only; returns the pids it killed.
 */
export function sweepOrphans(): number[] {
  const killed: number[] = [];
  let pids: number[];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return killed;
  }
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const args = cmdline(pid);
    if (!args) continue;
    const worker = args.some((a) => /chaos[/\\]node-worker\.js$/.test(a));
    const etcd = /(^|\/)etcd$/.test(args[0] ?? '') && args.some((a) => a.includes('/sqlite-ha-chaos-'));
    // sshd rewrites its title into one string ("sshd: /usr/sbin/sshd -D -e -f <config> [listener]").
    const words = args.join(' ').split(/\s+/);
    const sshfs = /^(sshfs|ssh|sshd:?|\/usr\/sbin\/sshd)$/.test(words[0] ?? '') && words.some((a) => chaosSshfsOwner(a)?.dead === true);
    if (sshfs) {
      if (killQuiet(pid)) killed.push(pid);
      continue;
    }
    if (!worker && !etcd) continue;
    if (isHarness(parentPid(pid))) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      /* gone or not ours */
    }
  }
  return killed;
}
