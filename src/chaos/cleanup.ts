/**
 * Cleanup that happens whatever ends the run: normal exit, SIGINT/SIGTERM/SIGHUP, an uncaught
 * exception. Tasks are synchronous (they must also run inside an `exit` handler), idempotent, and
 * run newest first; one failing does not stop the others. Install before creating anything.
 */
import * as fs from 'fs';
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

/**
 * Processes left by a chaos run that died without cleaning up (SIGKILL of the harness): node
 * workers and etcd members whose parent is no longer a chaos harness. A stopped one (SIGSTOP) would
 * otherwise stay forever. Linux only; returns the pids it killed.
 */
export function sweepOrphans(): number[] {
  const killed: number[] = [];
  let pids: number[];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return killed;
  }
  const isHarness = (pid: number | null) => pid !== null && (cmdline(pid)?.some((a) => /chaos[/\\]main\.js$/.test(a)) ?? false);
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const args = cmdline(pid);
    if (!args) continue;
    const worker = args.some((a) => /chaos[/\\]node-worker\.js$/.test(a));
    const etcd = /(^|\/)etcd$/.test(args[0] ?? '') && args.some((a) => a.includes('/sqlite-ha-chaos-'));
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
