/**
 * The demo's node processes: each runs the workload (src/cluster/workload.ts) and reports one JSON
 * line per event, which lands verbatim in logs/<node>.jsonl and updates this side's picture of the
 * node (acknowledged writes, whether it holds the lease). Nodes run in their own process groups so
 * a Ctrl-C reaches the demo, which stops them in order, and they carry a run-time limit of their
 * own, so even a demo killed with SIGKILL leaves nothing running for long.
 */
import { ChildProcess, spawn } from 'child_process';
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { killAtExit } from './cleanup';

/** One line of workload output (see the contract at the top of workload.ts). */
export interface WorkloadEvent {
  op?: 'start' | 'open' | 'lease' | 'append' | 'count';
  summary?: boolean;
  node: string;
  at: number;
  pid?: number;
  event?: 'acquired' | 'released' | 'lost';
  fence?: number | null;
  seq?: number;
  id?: number;
  ok?: boolean;
  code?: string;
  message?: string;
  count?: number;
  acked?: number;
  failed?: number;
  reads?: number;
}

export interface NodeSettings {
  workloadJs: string;
  dbPath: string;
  coordinator: { kind: 'etcd'; endpoints: string[]; prefix: string } | { kind: 'lockfile' };
  leaseTtlMs: number;
  acquireTimeoutMs: number;
  writeIntervalMs: number;
  readEvery: number;
  /** The workload stops by itself after this long (a backstop; the demo stops it first). */
  maxRunMs: number;
  logDir: string;
  /** Network namespace per slot (--netns), or null. */
  netnsOf: ((slot: number) => string) | null;
}

export interface Acquisition {
  node: string;
  fence: number;
  at: number;
}

export class DemoNode extends EventEmitter {
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly stderrFile: string;
  /** seq → acknowledged write. */
  readonly acks = new Map<number, { id: number; at: number }>();
  readonly failures = new Map<string, number>();
  readonly reads = { ok: 0, failed: 0, stale: 0 };
  readonly acquisitions: Acquisition[] = [];
  readonly lost: WorkloadEvent[] = [];
  /** True between this node's `acquired` and its `released`/`lost` (as far as its output tells). */
  holding = false;
  holdingSince = 0;
  /** The last lease event the node reported; unlike `holding`, kept after the process is gone. */
  lastLease: 'acquired' | 'released' | 'lost' | null = null;
  fence: number | null = null;
  pid: number | null = null;
  started = false;
  /** The node process's network namespace (/proc/<pid>/ns/net), read when it starts. */
  netNamespace: string | null = null;
  openFailure: WorkloadEvent | null = null;
  summary: WorkloadEvent | null = null;
  unparsed = 0;
  signalled: { signal: NodeJS.Signals; at: number } | null = null;
  exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;
  /** Resolves once the process exited and its output was read to the end. */
  readonly done: Promise<void>;

  constructor(readonly id: string, readonly slot: number, s: NodeSettings, env: NodeJS.ProcessEnv) {
    super();
    this.logFile = path.join(s.logDir, `${id}.jsonl`);
    this.stderrFile = path.join(s.logDir, `${id}.stderr.log`);
    const args = [s.workloadJs, ...workloadFlags(id, s)];
    const [cmd, argv] = s.netnsOf
      ? ['ip', ['netns', 'exec', s.netnsOf(slot), process.execPath, ...args]]
      : [process.execPath, args];
    const errFd = fs.openSync(this.stderrFile, 'a');
    this.child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', errFd], env, detached: true });
    fs.closeSync(errFd);
    this.pid = this.child.pid ?? null;
    const unregister = killAtExit(id, this.child);
    const log = fs.createWriteStream(this.logFile, { flags: 'a' });
    let buf = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => {
      log.write(chunk);
      buf += chunk;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) this.onLine(line);
      }
    });
    this.child.on('error', (err) => {
      this.emit('spawn-error', err);
    });
    this.child.on('exit', (code, signal) => {
      this.exit = { code, signal, at: Date.now() };
    });
    this.done = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.exit ??= { code, signal, at: Date.now() };
        if (buf.trim()) this.onLine(buf);
        buf = '';
        this.holding = false;
        unregister();
        log.end(() => resolve());
        this.emit('exit', this);
      });
    });
  }

  get running(): boolean {
    return this.exit === null;
  }

  get ackCount(): number {
    return this.acks.size;
  }

  /** Sends a signal (to the node process; `ip netns exec` execs it, so the pid is the node's). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    if (sig !== 'SIGSTOP' && sig !== 'SIGCONT') this.signalled = { signal: sig, at: Date.now() };
    this.child.kill(sig);
  }

  private onLine(line: string): void {
    let e: WorkloadEvent;
    try {
      e = JSON.parse(line);
      if (typeof e !== 'object' || e === null) throw new Error('not an object');
    } catch {
      this.unparsed++;
      return;
    }
    if (e.op === 'start') {
      this.started = true;
      if (typeof e.pid === 'number') this.pid = e.pid;
      this.netNamespace = netNamespaceOf(this.pid);
    } else if (e.op === 'open' && e.ok === false) {
      this.openFailure = e;
    } else if (e.op === 'lease') {
      if (e.event === 'acquired' || e.event === 'released' || e.event === 'lost') this.lastLease = e.event;
      if (e.event === 'acquired' && typeof e.fence === 'number') {
        this.holding = true;
        this.holdingSince = e.at;
        this.fence = e.fence;
        this.acquisitions.push({ node: this.id, fence: e.fence, at: e.at });
      } else {
        this.holding = false;
        if (e.event === 'lost') this.lost.push(e);
      }
    } else if (e.op === 'append') {
      if (e.ok && typeof e.seq === 'number') this.acks.set(e.seq, { id: e.id ?? 0, at: e.at });
      else if (!e.ok) this.failures.set(e.code ?? 'UNKNOWN', (this.failures.get(e.code ?? 'UNKNOWN') ?? 0) + 1);
    } else if (e.op === 'count') {
      if (e.ok) this.reads.ok++;
      else if (e.code === 'WORKLOAD_STALE_READ') this.reads.stale++;
      else this.reads.failed++;
    } else if (e.summary) {
      this.summary = e;
    }
    this.emit('event', e, this);
  }
}

/** The network namespace a process is in ('net:[4026531840]'), or null when unreadable. */
export function netNamespaceOf(pid: number | 'self' | null): string | null {
  if (pid === null) return null;
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

function workloadFlags(id: string, s: NodeSettings): string[] {
  const flags = [
    '--db', s.dbPath,
    '--node-id', id,
    '--coordinator', s.coordinator.kind,
    '--write-interval-ms', String(s.writeIntervalMs),
    '--read-every', String(s.readEvery),
    '--lease-ttl-ms', String(s.leaseTtlMs),
    '--acquire-timeout-ms', String(s.acquireTimeoutMs),
    '--duration-ms', String(s.maxRunMs),
  ];
  if (s.coordinator.kind === 'etcd') {
    flags.push('--etcd-endpoints', s.coordinator.endpoints.join(','), '--prefix', s.coordinator.prefix);
  }
  return flags;
}

/** Every node process of the demo, including stopped ones (their acknowledged writes still count). */
export class Fleet extends EventEmitter {
  readonly nodes: DemoNode[] = [];
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly settings: NodeSettings) {
    super();
    // The developer's SQLITE_HA_* settings must not leak into the demo's nodes.
    this.env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SQLITE_HA_')));
  }

  /** Starts a node process in a 1-based slot. */
  start(slot: number, id = `node-${slot}`): DemoNode {
    const node = new DemoNode(id, slot, this.settings, this.env);
    node.on('event', (e: WorkloadEvent, n: DemoNode) => this.emit('event', e, n));
    node.on('exit', (n: DemoNode) => this.emit('exit', n));
    node.on('spawn-error', (err: Error) => this.emit('spawn-error', err, node));
    this.nodes.push(node);
    return node;
  }

  /** Starts a fresh process in a stopped node's slot under a new id (node-2 → node-2.2): seqs restart at 1. */
  restart(old: DemoNode): DemoNode {
    const base = old.id.replace(/\.\d+$/, '');
    const incarnations = this.nodes.filter((n) => n.id === base || n.id.startsWith(`${base}.`)).length;
    return this.start(old.slot, `${base}.${incarnations + 1}`);
  }

  live(): DemoNode[] {
    return this.nodes.filter((n) => n.running);
  }

  /** The running node that says it holds the lease (the latest acquisition if two claim it). */
  holder(): DemoNode | null {
    let best: DemoNode | null = null;
    for (const n of this.live()) if (n.holding && (!best || (n.fence ?? 0) > (best.fence ?? 0))) best = n;
    return best;
  }

  /** Every acquisition reported by any node, in fence order. */
  acquisitions(): Acquisition[] {
    return this.nodes.flatMap((n) => n.acquisitions).sort((a, b) => a.fence - b.fence);
  }

  /** Times the lease moved from one node to another (consecutive acquisitions by different nodes). */
  handovers(): number {
    const acq = this.acquisitions();
    let count = 0;
    for (let i = 1; i < acq.length; i++) if (acq[i].node !== acq[i - 1].node) count++;
    return count;
  }

  totalAcks(): number {
    return this.nodes.reduce((sum, n) => sum + n.ackCount, 0);
  }

  /**
   * SIGTERM every running node (each finishes its write, closes, releases the lease), wait up to
   * graceMs, then SIGKILL what is left. Returns the ids that had to be killed.
   */
  async stopAll(graceMs: number): Promise<string[]> {
    const live = this.live();
    for (const n of live) {
      n.signal('SIGTERM');
      n.signal('SIGCONT'); // in case it was frozen while the demo checked who holds the lease
    }
    await waitAll(live, graceMs);
    const stuck = this.live();
    for (const n of stuck) n.signal('SIGKILL');
    await waitAll(stuck, 5000);
    return stuck.map((n) => n.id);
  }
}

/** Waits until every node's process is gone and its output read, at most ms. */
export async function waitAll(nodes: DemoNode[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.all(nodes.map((n) => n.done)).then(() => true);
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([all, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
