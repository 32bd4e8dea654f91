/**
 * The parent's side of worker.ts: fork benchmark nodes, call their commands, collect their lease
 * events, and kill them. Set BENCH_WORKER_EXEC_ARGV (e.g. "--cpu-prof --cpu-prof-dir=prof") to
 * profile the workers; by default they run with no Node flags.
 */
import { ChildProcess, fork } from 'child_process';
import * as path from 'path';

export interface LeaseEvent {
  ev: 'acquired' | 'released' | 'lost';
  node: string;
  fence?: number;
  message?: string;
  at: number;
}

export class Worker {
  readonly events: LeaseEvent[] = [];
  readonly exited: Promise<void>;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private stderr = '';

  private constructor(readonly name: string, readonly proc: ChildProcess) {
    this.exited = new Promise((r) => proc.once('exit', () => r()));
    proc.on('message', (m: any) => {
      if (m && typeof m.id === 'number') {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve(m.result);
        else p.reject(Object.assign(new Error(`${name}: ${m.error.message}`), { code: m.error.code }));
      } else if (m && (m.ev === 'acquired' || m.ev === 'released' || m.ev === 'lost')) {
        this.events.push(m);
      }
    });
    proc.stderr?.on('data', (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    proc.once('exit', (code, signal) => {
      for (const p of this.pending.values()) {
        p.reject(new Error(`${name} exited (${signal ?? code}) with a call pending; stderr: ${this.stderr.trim()}`));
      }
      this.pending.clear();
    });
  }

  static start(name: string): Promise<Worker> {
    const execArgv = (process.env.BENCH_WORKER_EXEC_ARGV ?? '').split(/\s+/).filter(Boolean);
    const proc = fork(path.join(__dirname, 'worker.js'), [], { execArgv, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    const w = new Worker(name, proc);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name} did not start within 20 s`)), 20000);
      proc.once('error', reject);
      proc.on('message', function ready(m: any) {
        if (m?.ev !== 'ready') return;
        clearTimeout(t);
        proc.off('message', ready);
        resolve(w);
      });
      proc.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready: ${w.stderr}`)));
    });
  }

  call<T = any>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 60000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(t), resolve(v)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      try {
        this.proc.send({ id, cmd, ...args });
      } catch (err) {
        clearTimeout(t);
        this.pending.delete(id);
        reject(err as Error);
      }
    });
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Sends a signal and waits for the exit (SIGKILL by default). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    this.proc.kill(signal);
    await this.exited;
  }

  /** Asks the worker to exit; kills it if it has not after timeoutMs. */
  async stop(timeoutMs = 3000): Promise<void> {
    if (!this.alive) return;
    await Promise.race([this.call('exit', {}, timeoutMs).catch(() => undefined), this.exited]);
    const t = setTimeout(() => void this.kill(), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

export async function stopWorkers(ws: Worker[]): Promise<void> {
  await Promise.all(ws.map((w) => w.stop().catch(() => w.kill())));
}

/**
 * Worker processes reused across benchmarks (starting one costs about half a second of CPU):
 * take() hands out live idle workers and starts more as needed; give() closes their handles and
 * takes them back; killed ones are dropped.
 */
export class WorkerPool {
  private idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private started = 0;

  async take(n: number): Promise<Worker[]> {
    this.idle = this.idle.filter((w) => w.alive);
    const reused = this.idle.splice(0, n);
    const fresh = await Promise.all(
      Array.from({ length: n - reused.length }, () => Worker.start(`worker${++this.started}`)),
    );
    for (const w of fresh) this.all.add(w);
    return [...reused, ...fresh];
  }

  async give(ws: Worker[]): Promise<void> {
    await Promise.all(ws.map((w) => (w.alive ? w.call('close', {}, 10000).catch(() => w.kill()) : undefined)));
    for (const w of ws) {
      w.events.length = 0;
      if (w.alive) this.idle.push(w);
      else this.all.delete(w);
    }
  }

  async stop(): Promise<void> {
    await stopWorkers([...this.all]);
    this.all.clear();
    this.idle = [];
  }
}
