/**
 * The lab's run directory and everything it owns. Every process the lab starts (QEMU, ganesha,
 * etcd) gets a pid file in <dir>/pids/ holding its pid and a marker that appears in its command
 * line (the run dir), so the next run can kill what a SIGKILLed harness left behind without ever
 * touching a process it did not start. <dir>/harness.pid names the harness; a run dir whose harness
 * is gone is swept: its processes killed, the directory removed.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const RUN_DIR_PREFIX = 'sqlite-ha-lab-';

export function cmdline(pid: number): string[] | null {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null;
  }
}

const isLabHarness = (pid: number) => cmdline(pid)?.some((a) => /lab[/\\]main\.js$/.test(a)) ?? false;

/** A run directory with pid files: create() for a new run, sweep() for leftovers of dead runs. */
export class RunState {
  private constructor(readonly dir: string) {}

  static create(base = os.tmpdir()): RunState {
    const dir = fs.mkdtempSync(path.join(base, RUN_DIR_PREFIX));
    fs.mkdirSync(path.join(dir, 'pids'));
    fs.writeFileSync(path.join(dir, 'harness.pid'), `${process.pid}\n`);
    return new RunState(dir);
  }

  /** Records a process: its pid and a string its command line must contain to be ours. */
  track(name: string, pid: number, marker: string): void {
    fs.writeFileSync(path.join(this.dir, 'pids', `${name}.pid`), JSON.stringify({ pid, marker }) + '\n');
  }

  untrack(name: string): void {
    fs.rmSync(path.join(this.dir, 'pids', `${name}.pid`), { force: true });
  }

  /** SIGKILLs every tracked process that still is ours (SIGCONT first: a stopped one too). */
  killAll(): number[] {
    return killTracked(this.dir);
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Leftovers of lab runs whose harness is gone (SIGKILL, a crash): kills their processes and
   * removes their directories. Returns what it removed.
   */
  static sweep(base = os.tmpdir()): { dirs: string[]; pids: number[] } {
    const out = { dirs: [] as string[], pids: [] as number[] };
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(base).filter((e) => e.startsWith(RUN_DIR_PREFIX));
    } catch {
      return out;
    }
    for (const e of entries) {
      const dir = path.join(base, e);
      let harness = NaN;
      try {
        harness = Number(fs.readFileSync(path.join(dir, 'harness.pid'), 'utf8').trim());
      } catch {
        /* no pid file: a run that died while creating its dir */
      }
      if (harness === process.pid) continue;
      if (Number.isInteger(harness) && isLabHarness(harness)) continue; // alive
      if (fs.existsSync(path.join(dir, 'KEEP'))) {
        out.pids.push(...killTracked(dir)); // --keep: processes go, the evidence stays
        continue;
      }
      out.pids.push(...killTracked(dir));
      fs.rmSync(dir, { recursive: true, force: true });
      out.dirs.push(dir);
    }
    return out;
  }
}

function killTracked(dir: string): number[] {
  const killed: number[] = [];
  let files: string[] = [];
  try {
    files = fs.readdirSync(path.join(dir, 'pids'));
  } catch {
    return killed;
  }
  for (const f of files) {
    try {
      const { pid, marker } = JSON.parse(fs.readFileSync(path.join(dir, 'pids', f), 'utf8')) as { pid: number; marker: string };
      if (!cmdline(pid)?.some((a) => a.includes(marker))) continue; // gone, or the pid was reused
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      /* already gone */
    }
  }
  return killed;
}
