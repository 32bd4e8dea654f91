/**
 * The node processes: each runs node-worker.js inside its network namespace. The manager starts,
 * signals, kills and restarts them (a restart is a new incarnation appending to the same history
 * file), and follows their stdout events (acks, the large transaction, lease changes).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { WorkerConfig } from './node-worker';

export interface WorkerEvent {
  ev: string;
  at?: number;
  id?: string;
  event?: string;
  [k: string]: unknown;
}

export interface NodeProc {
  index: number;
  nodeId: string;
  incarnation: number;
  proc: ChildProcess | null;
  pid: number | null;
  exited: Promise<void>;
  paused: boolean;
  /** Latest lease event seen from this node. */
  leaseHeld: boolean;
  lastAckAt: number;
  stderrTail: string;
}

type Listener = (node: NodeProc, e: WorkerEvent) => void;

export class NodeManager {
  readonly nodes: NodeProc[] = [];
  private listeners = new Set<Listener>();
  /** Time of the newest ack from any node. */
  lastAckAt = 0;
  acks = 0;
  /** Storage modes the node starts reported (`ready` events, every incarnation): mode → count. */
  readonly locksSeen: Record<string, number> = {};
  /** Exits nobody asked for (not SIGKILL by the harness, not a clean stop). */
  readonly unexpectedExits: string[] = [];

  constructor(
    private readonly count: number,
    private readonly execPrefix: (i: number) => string[],
    private readonly configFor: (i: number, incarnation: number) => WorkerConfig,
    private readonly log: (msg: string) => void,
    /** Each node's stdout events and stderr go to <logDir>/<node>.log. */
    private readonly logDir: string,
  ) {
    for (let i = 1; i <= count; i++) {
      this.nodes.push({
        index: i, nodeId: `n${i}`, incarnation: 0, proc: null, pid: null, exited: Promise.resolve(),
        paused: false, leaseHeld: false, lastAckAt: 0, stderrTail: '',
      });
    }
  }

  node(i: number): NodeProc {
    return this.nodes[i - 1];
  }

  isAlive(i: number): boolean {
    const p = this.node(i).proc;
    return Boolean(p && p.exitCode === null && p.signalCode === null);
  }

  /**
   * Starts (or restarts, as the next incarnation) node i; `override` changes its config for this
   * incarnation, and `refusalExpected` marks a start that open() should refuse (its exit is no surprise).
   */
  start(i: number, override: Partial<WorkerConfig> = {}, refusalExpected = false): NodeProc {
    const n = this.node(i);
    if (this.isAlive(i)) throw new Error(`node ${n.nodeId} is still running`);
    n.incarnation++;
    n.paused = false;
    n.leaseHeld = false;
    n.stderrTail = '';
    const cfg = { ...this.configFor(i, n.incarnation), ...override };
    const script = path.join(__dirname, 'node-worker.js');
    const [cmd, ...pre] = this.execPrefix(i);
    const logFd = fs.openSync(path.join(this.logDir, `${n.nodeId}.log`), 'a');
    fs.writeSync(logFd, `--- ${n.nodeId} incarnation ${n.incarnation} started ${new Date().toISOString()}\n`);
    const proc = spawn(cmd, [...pre, process.execPath, script, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const toLog = (d: Buffer | string) => {
      try {
        fs.writeSync(logFd, d.toString());
      } catch {
        /* closed */
      }
    };
    proc.once('close', () => {
      try {
        fs.closeSync(logFd);
      } catch {
        /* already closed */
      }
    });
    n.proc = proc;
    n.pid = proc.pid ?? null;
    n.exited = new Promise((r) => proc.once('exit', () => r()));
    proc.on('error', (e) => this.log(`${n.nodeId}: spawn failed: ${e.message}`));
    let buf = '';
    proc.stdout!.on('data', (d) => {
      toLog(d);
      buf += d.toString();
      for (let k = buf.indexOf('\n'); k >= 0; k = buf.indexOf('\n')) {
        const line = buf.slice(0, k);
        buf = buf.slice(k + 1);
        let e: WorkerEvent;
        try {
          e = JSON.parse(line);
        } catch {
          continue;
        }
        this.onEvent(n, e);
      }
    });
    proc.stderr!.on('data', (d) => {
      toLog(d);
      n.stderrTail = (n.stderrTail + d.toString()).slice(-4000);
    });
    proc.once('exit', (code, sig) => {
      if (n.proc === proc && code !== 0 && sig !== 'SIGKILL' && !refusalExpected) {
        this.unexpectedExits.push(`${n.nodeId}#${n.incarnation} code=${code} signal=${sig}: ${n.stderrTail.trim().split('\n').slice(-3).join(' | ')}`);
        this.log(`${n.nodeId}#${n.incarnation} exited code=${code} signal=${sig} ${n.stderrTail.trim().split('\n').slice(-3).join(' | ')}`);
      }
    });
    return n;
  }

  private onEvent(n: NodeProc, e: WorkerEvent): void {
    if (e.ev === 'ack') {
      n.lastAckAt = e.at ?? Date.now();
      this.lastAckAt = Math.max(this.lastAckAt, n.lastAckAt);
      this.acks++;
    } else if (e.ev === 'lease') {
      n.leaseHeld = e.event === 'acquired';
    } else if (e.ev === 'ready') {
      const mode = typeof e.locks === 'string' ? e.locks : '(not reported)';
      this.locksSeen[mode] = (this.locksSeen[mode] ?? 0) + 1;
    } else if (e.ev === 'fatal') {
      if (e.code === 'LOCKS_MISMATCH' && typeof e.locks === 'string') this.locksSeen[e.locks] = (this.locksSeen[e.locks] ?? 0) + 1;
      this.log(`${n.nodeId}#${n.incarnation} fatal: ${String(e.code)} ${String(e.message)}`);
    }
    for (const l of this.listeners) l(n, e);
  }

  /** Resolves with the first event from node i matching pred, or null after timeoutMs. */
  waitEvent(i: number | null, pred: (e: WorkerEvent) => boolean, timeoutMs: number): Promise<{ node: NodeProc; event: WorkerEvent } | null> {
    return new Promise((resolve) => {
      const l: Listener = (node, event) => {
        if ((i === null || node.index === i) && pred(event)) finish({ node, event });
      };
      const t = setTimeout(() => finish(null), timeoutMs);
      const finish = (v: { node: NodeProc; event: WorkerEvent } | null) => {
        clearTimeout(t);
        this.listeners.delete(l);
        resolve(v);
      };
      this.listeners.add(l);
    });
  }

  /** Waits until some write is acknowledged after `since`; returns its time or null at the deadline. */
  async waitAckAfter(since: number, timeoutMs: number): Promise<number | null> {
    if (this.lastAckAt > since) return this.lastAckAt;
    const r = await this.waitEvent(null, (e) => e.ev === 'ack' && (e.at ?? 0) > since, timeoutMs);
    return r ? r.event.at ?? Date.now() : null;
  }

  signal(i: number, sig: NodeJS.Signals): boolean {
    const n = this.node(i);
    if (!this.isAlive(i)) return false;
    try {
      n.proc!.kill(sig);
    } catch {
      return false;
    }
    if (sig === 'SIGSTOP') n.paused = true;
    if (sig === 'SIGCONT') n.paused = false;
    return true;
  }

  async kill(i: number): Promise<void> {
    const n = this.node(i);
    if (!this.isAlive(i)) return;
    n.proc!.kill('SIGKILL');
    n.proc!.kill('SIGCONT');
    n.paused = false;
    await n.exited;
  }

  /** Index of the node running with this pid, if any. */
  byPid(pid: number | null): number | null {
    if (pid === null) return null;
    const n = this.nodes.find((x) => x.pid === pid && this.isAlive(x.index));
    return n ? n.index : null;
  }

  byNodeId(nodeId: string): number | null {
    const n = this.nodes.find((x) => x.nodeId === nodeId);
    return n ? n.index : null;
  }

  /** Resumes paused nodes, restarts dead ones. */
  reviveAll(): void {
    for (const n of this.nodes) {
      if (n.paused) this.signal(n.index, 'SIGCONT');
      if (!this.isAlive(n.index)) this.start(n.index);
    }
  }

  /** SIGTERM everyone, wait up to graceMs, then SIGKILL the rest. */
  async stopAll(graceMs: number): Promise<void> {
    for (const n of this.nodes) {
      if (this.isAlive(n.index)) {
        n.proc!.kill('SIGCONT');
        n.proc!.kill('SIGTERM');
      }
    }
    const all = Promise.all(this.nodes.map((n) => n.exited));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      for (const n of this.nodes) {
        if (this.isAlive(n.index)) {
          this.log(`${n.nodeId} did not stop within ${graceMs} ms: SIGKILL`);
          await this.kill(n.index);
        }
      }
    }
  }

  /** Synchronous, for cleanup. */
  killAllSync(): void {
    for (const n of this.nodes) {
      try {
        n.proc?.kill('SIGKILL');
        n.proc?.kill('SIGCONT');
      } catch {
        /* gone */
      }
    }
  }
}
