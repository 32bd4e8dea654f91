/**
 * Helpers for the CLI tests: run `node dist/cli/main.js` to completion, start long-lived real
 * processes (sqlite-ha nodes, etcdctl lock holders, the monitor) that are all killed in afterAll,
 * and wait for their output with a bound on time.
 */
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
export const HOLDER = path.join(ROOT, 'test', 'fixtures', 'cli-holder.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Environment without any SQLITE_HA_ settings of the developer's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SQLITE_HA_') && !k.startsWith('ETCDCTL_')) env[k] = v;
  return { ...env, NO_COLOR: '1', ...extra };
}

/** Runs the CLI to completion (killed after timeoutMs). */
export function runCli(args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 15000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
    p.stdin.end(opts.input ?? '');
  });
}

/** A started process whose stdout lines are collected. */
export interface Proc {
  child: ChildProcess;
  lines: string[];
  stderr: string;
  exited: Promise<number | null>;
}

const started: Proc[] = [];

export function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Proc {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = {
    child,
    lines: [],
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      proc.lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr!.on('data', (d) => (proc.stderr += d));
  child.on('error', () => undefined);
  started.push(proc);
  return proc;
}

/** A real sqlite-ha node (test/fixtures/cli-holder.js) that takes the lease and holds it. */
export function startHolder(cfg: { db: string; endpoints: string[]; prefix: string; nodeId: string; ttlMs?: number }): Proc {
  return startProc(process.execPath, [HOLDER, JSON.stringify(cfg)]);
}

/** `etcdctl lock <prefix>/<db>/lock`: a foreign process in the same Mutex queue. */
export function startEtcdctlLock(endpoints: string[], lockName: string, ttl = 10): Proc {
  return startProc('etcdctl', ['--endpoints', endpoints.join(','), 'lock', `--ttl=${ttl}`, lockName], cleanEnv({ ETCDCTL_API: '3' }));
}

/** Kills every process started here and waits for them (afterAll). */
export async function killAll(): Promise<void> {
  await Promise.all(
    started.splice(0).map(async (p) => {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGCONT');
        p.child.kill('SIGKILL');
        await within(p.exited, 3000, 'still running');
      }
    }),
  );
}

/** `p`'s value, or `fallback` after `ms` (the timer does not outlive the call). */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every `everyMs` until it returns a value, at most `timeoutMs` (and 1000 tries). */
export async function waitFor<T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 10000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000; i++) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The first JSON line of `p` matching `pred`. */
export function waitLine<T = Record<string, unknown>>(p: Proc, pred: (o: T) => boolean, what: string, timeoutMs = 10000): Promise<T> {
  return waitFor(what, () => {
    for (const l of p.lines) {
      try {
        const o = JSON.parse(l) as T;
        if (pred(o)) return o;
      } catch {
        // not JSON (etcdctl prints the key name)
      }
    }
    return undefined;
  }, timeoutMs).catch((err) => {
    throw new Error(`${(err as Error).message}; output so far:\n${p.lines.join('\n')}\nstderr:\n${p.stderr}`);
  });
}
