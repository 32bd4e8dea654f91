/** Real node processes for integration tests: spawn the fixture, read its JSON lines, signal it. */
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';

export interface NodeEvent {
  [field: string]: unknown;
  ev: string;
  seq?: number;
  fence?: number;
  code?: string;
  message?: string;
  acked?: number;
  failed?: number;
}

export class NodeProcess {
  readonly events: NodeEvent[] = [];
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  private listeners: (() => void)[] = [];
  stderr = '';

  constructor(config: Record<string, unknown>, fixture = 'ha-node.js') {
    const script = path.join(__dirname, '..', 'fixtures', fixture);
    this.proc = spawn(process.execPath, [script, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout!.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.events.push(JSON.parse(line));
        } catch {
          this.events.push({ ev: 'garbage', message: line });
        }
        for (const l of this.listeners) l();
      }
    });
    this.proc.stderr!.on('data', (d) => (this.stderr += d.toString()));
    this.exited = new Promise((r) => this.proc.on('exit', (code) => r(code)));
  }

  /** Resolves with the first event matching pred, rejects after timeoutMs. */
  waitFor(pred: (e: NodeEvent) => boolean, timeoutMs = 20000): Promise<NodeEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.events.find(pred);
        if (e) {
          clearTimeout(t);
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve(e);
        }
      };
      const t = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(new Error(`timed out after ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-5))} stderr: ${this.stderr}`));
      }, timeoutMs);
      this.listeners.push(check);
      check();
    });
  }

  acked(): number[] {
    return this.events.filter((e) => e.ev === 'ack').map((e) => e.seq!);
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * The list a test file pushes its node processes to: each is killed after its test (and any
 * left by a beforeAll at the end). Call it before useSshfs, so the processes go before the mounts.
 */
export function useNodeProcesses(): NodeProcess[] {
  const procs: NodeProcess[] = [];
  const killAll = async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill()));
  };
  afterEach(killAll);
  afterAll(killAll);
  return procs;
}
