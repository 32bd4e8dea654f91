/**
 * `sqlite-ha monitor`: a live view of every database under the prefix, driven by one etcd watch on
 * the prefix. On a terminal it redraws in place (alternate screen, TTL bars, holder, queue, recent
 * events) and restores the terminal on exit; otherwise it writes JSON lines (a snapshot, then one
 * line per event). `--metrics-port` also serves Prometheus metrics.
 *
 * State changes come only from the watch. Lease TTLs are not watchable, so the holders' leases are
 * asked for their TTL (LeaseTimeToLive) twice a second; that also tells a lease that ran out
 * (expired) from one that was given up (released) when its key disappears.
 */
import type { Server } from 'http';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { EventRecord, HandoverRecord } from '../coordinator/etcd/keys';
import { parseJson } from '../coordinator/etcd/keys';
import {
  ClusterView, DatabaseView, LeaseTtl, QueueEntry, classify, deriveView, readKeys, readLeaseTtl, readQueueLeases,
  viewToJson,
} from './cluster-state';
import { ConnectionSettings, createClient, withDeadline } from './connection';
import { clock, duration, fit, jsonText, printableCopy, styleFor, ttlBar } from './format';
import { ClusterMetrics, KeepAliveProbe, serveMetrics } from './metrics';
import { standbyText } from './status';

export interface MonitorOptions {
  json?: boolean;
  metricsPort?: number;
  metricsHost: string;
  /** Events kept for the terminal view. */
  events: number;
}

export interface MonitorIo {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  input: NodeJS.ReadStream;
}

export type MonitorEventType =
  | 'acquired' | 'released' | 'expired' | 'queued' | 'left-queue' | 'handover'
  | EventRecord['kind'] | 'etcd-disconnected' | 'etcd-reconnected' | 'resync';

export interface MonitorEvent {
  type: MonitorEventType;
  time: number;
  db: string | null;
  node?: string;
  fence?: number;
  [field: string]: unknown;
}

const TTL_REFRESH_MS = 500;
const REDRAW_MS = 250;

export async function runMonitor(s: ConnectionSettings, opts: MonitorOptions, io: MonitorIo): Promise<number> {
  const m = new Monitor(createClient(s), s, opts, io);
  return m.run();
}

class Monitor {
  private readonly keys = new Map<string, IKeyValue>();
  private readonly leases = new Map<string, LeaseTtl>();
  /** When this monitor first saw a lock key appear, and when it saw it become the holder. */
  private readonly firstSeen = new Map<string, number>();
  private readonly holderSince = new Map<string, number>();
  private view: ClusterView | null = null;
  private revision = 0;
  private readonly recent: MonitorEvent[] = [];
  private watcher: Watcher | null = null;
  private etcdUp = false;
  private readonly tty: boolean;
  private readonly metrics: ClusterMetrics;
  private readonly probe: KeepAliveProbe;
  private metricsServer: Server | null = null;
  private metricsUrl: string | null = null;
  private timers: NodeJS.Timeout[] = [];
  private renderPending = false;
  private stopping = false;
  private finish: (code: number) => void = () => undefined;
  private screenActive = false;
  private rawMode = false;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly client: Etcd3,
    private readonly s: ConnectionSettings,
    private readonly opts: MonitorOptions,
    private readonly io: MonitorIo,
  ) {
    this.tty = Boolean(io.out.isTTY) && !opts.json;
    this.metrics = new ClusterMetrics(() => this.currentView());
    this.probe = new KeepAliveProbe(client, s.timeoutMs, (ms) => {
      this.metrics.keepAliveRtt(ms);
      this.scheduleRender();
    });
  }

  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.finish = resolve));
    try {
      await this.snapshot();
      if (this.opts.metricsPort !== undefined) {
        const { server, url } = await serveMetrics(this.metrics, this.opts.metricsPort, this.opts.metricsHost);
        this.metricsServer = server;
        this.metricsUrl = url;
        this.io.err.write(`sqlite-ha monitor: Prometheus metrics at ${url}\n`);
      }
      await this.watch();
    } catch (err) {
      await this.teardown();
      throw err;
    }
    this.installExitHandlers();
    if (this.tty) this.enterScreen();
    else this.emitLine({ type: 'snapshot', ...(viewToJson(this.currentView()!) as object) });
    this.probe.start();
    this.timers.push(setInterval(() => void this.refreshHolderTtls(), TTL_REFRESH_MS));
    if (this.tty) this.timers.push(setInterval(() => this.render(), REDRAW_MS));
    this.render();
    return done;
  }

  /** Reads every key and the queue leases at one revision, replacing the local copy. */
  private async snapshot(): Promise<void> {
    const { kvs, revision } = await withDeadline(this.s, `reading ${this.s.prefix}`, async () => {
      const r = await readKeys(this.client, this.s.prefix);
      const leases = await readQueueLeases(this.client, this.s.prefix, r.kvs);
      this.leases.clear();
      for (const [k, v] of leases) this.leases.set(k, v);
      return r;
    });
    this.keys.clear();
    for (const kv of kvs) this.keys.set(kv.key.toString(), kv);
    this.revision = revision;
    this.view = this.derive();
    for (const d of this.view.databases) if (d.holder) this.holderSince.set(d.holder.key, NaN);
  }

  private async watch(): Promise<void> {
    // Listeners go on before the watch is created: etcd may deliver the create response and the
    // first events in one read, before a promise continuation could attach them.
    const w = this.client.watch().prefix(this.s.prefix + '/').withPreviousKV().startRevision(String(this.revision + 1)).watcher();
    w.on('put', (kv) => this.onChange('put', kv));
    w.on('delete', (kv) => this.onChange('delete', kv));
    w.on('data', (res) => {
      const rev = Number(res.header.revision);
      if (rev > this.revision) this.revision = rev;
    });
    w.on('disconnected', () => this.setUp(false));
    this.watcher = w;
    try {
      await withDeadline(this.s, `watching ${this.s.prefix}`, () =>
        new Promise<void>((resolve, reject) => {
          w.once('connected', () => resolve());
          w.once('error', reject);
        }),
      );
    } catch (err) {
      this.watcher = null;
      w.removeAllListeners();
      void w.cancel().catch(() => undefined);
      throw err;
    }
    w.on('connected', () => this.setUp(true));
    w.on('error', () => void this.resync());
    this.setUp(true);
  }

  /** After the watch was cancelled (e.g. compaction), start over from a fresh snapshot. */
  private async resync(): Promise<void> {
    if (this.stopping) return;
    const w = this.watcher;
    this.watcher = null;
    w?.removeAllListeners();
    await w?.cancel().catch(() => undefined);
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.snapshot();
        await this.watch();
        this.push({ type: 'resync', time: Date.now(), db: null, revision: this.revision });
        if (!this.tty) this.emitLine({ type: 'snapshot', ...(viewToJson(this.currentView()!) as object) });
        return;
      } catch {
        this.setUp(false);
        await sleep(Math.min(2000, 200 * 2 ** attempt));
      }
    }
  }

  private connectedOnce = false;
  private setUp(up: boolean): void {
    if (up === this.etcdUp) return;
    this.etcdUp = up;
    this.metrics.etcdUp(up);
    if (!up) {
      this.push({ type: 'etcd-disconnected', time: Date.now(), db: null });
    } else {
      if (this.connectedOnce) this.push({ type: 'etcd-reconnected', time: Date.now(), db: null });
      this.connectedOnce = true;
      void this.refreshHolderTtls();
    }
    this.scheduleRender();
  }

  private onChange(type: 'put' | 'delete', kv: IKeyValue): void {
    const key = kv.key.toString();
    const c = classify(this.s.prefix, key);
    if (!c) return;
    const now = Date.now();
    const before = this.currentView();
    if (type === 'put') this.keys.set(key, kv);
    else this.keys.delete(key);

    if (c.kind === 'lock') {
      if (type === 'put' && !this.firstSeen.has(key)) this.firstSeen.set(key, now);
      if (type === 'put' && kv.lease !== '0' && !this.leases.has(kv.lease)) void this.fetchLease(kv.lease);
      this.view = this.derive();
      this.diffQueue(c.db, before, this.view, now);
      if (type === 'delete') this.firstSeen.delete(key);
    } else if (type === 'put' && c.kind === 'history') {
      const h = parseJson<HandoverRecord>(kv.value);
      if (h) {
        this.metrics.handover(c.db, h);
        this.push({
          type: 'handover', time: now, db: c.db, node: h.node, fence: h.fence, previousNode: h.previousNode,
          cause: h.cause, waitedMs: h.waitedMs, handoverMs: h.handoverMs,
        });
      }
      this.view = this.derive();
    } else if (type === 'put' && c.kind === 'event') {
      const e = parseJson<EventRecord>(kv.value);
      if (e && typeof e.kind === 'string') {
        this.metrics.event(c.db, e);
        this.push({ type: e.kind, time: now, db: c.db, node: e.node, fence: e.fence, detail: e.detail, reportedAt: e.time });
      }
      this.view = this.derive();
    } else {
      this.view = null; // commit/info: recomputed lazily at the next render
    }
    this.scheduleRender();
  }

  /** Events for one database's queue: holder changes, arrivals and departures. */
  private diffQueue(db: string, before: ClusterView | null, after: ClusterView, now: number): void {
    const was = before?.databases.find((d) => d.name === db) ?? null;
    const is = after.databases.find((d) => d.name === db) ?? null;
    const oldHolder = was?.holder ?? null;
    const newHolder = is?.holder ?? null;
    const oldQueue = new Map<string, QueueEntry>([...(was ? queueOf(was) : [])].map((e) => [e.key, e]));
    const newQueue = new Map<string, QueueEntry>([...(is ? queueOf(is) : [])].map((e) => [e.key, e]));

    if (oldHolder && oldHolder.key !== newHolder?.key && !this.keys.has(oldHolder.key)) {
      const since = this.holderSince.get(oldHolder.key);
      this.push({
        type: this.inferCause(oldHolder, now), time: now, db, node: oldHolder.node, fence: oldHolder.createRevision,
        heldMs: since !== undefined && Number.isFinite(since) ? now - since : null,
      });
      this.holderSince.delete(oldHolder.key);
    }
    if (newHolder && newHolder.key !== oldHolder?.key) {
      this.holderSince.set(newHolder.key, now);
      const seen = this.firstSeen.get(newHolder.key);
      this.push({
        type: 'acquired', time: now, db, node: newHolder.node, fence: newHolder.createRevision,
        previousNode: oldHolder?.node ?? null,
        waitedMs: seen !== undefined && seen < now ? now - seen : newHolder.queuedAt !== null ? Math.max(0, now - newHolder.queuedAt) : 0,
      });
    }
    for (const [key, e] of newQueue) {
      if (!oldQueue.has(key) && key !== newHolder?.key) {
        const position = is!.waiters.findIndex((w) => w.key === key) + 1;
        this.push({ type: 'queued', time: now, db, node: e.node, position, createRevision: e.createRevision });
      }
    }
    for (const [key, e] of oldQueue) {
      if (!newQueue.has(key) && key !== oldHolder?.key) {
        this.push({ type: 'left-queue', time: now, db, node: e.node, createRevision: e.createRevision });
      }
    }
  }

  /**
   * A holder key vanished: if its lease had run down to zero by our last TTL reading, it expired;
   * otherwise its holder let go (deleted the key or revoked the lease).
   */
  private inferCause(h: QueueEntry, now: number): 'expired' | 'released' {
    const lease = this.leases.get(h.lease);
    if (!lease) return 'released';
    if (lease.ttlLeftMs === null) return 'expired';
    return lease.ttlLeftMs - (now - lease.measuredAt) <= 0 ? 'expired' : 'released';
  }

  private async fetchLease(id: string): Promise<void> {
    try {
      this.leases.set(id, await readLeaseTtl(this.client, id));
      this.view = null;
      this.scheduleRender();
    } catch {
      // Shown without a TTL until the next refresh.
    }
  }

  /** TTL of every holder's lease (and waiters whose TTL is unknown); forgets leases no key uses. */
  private refreshing = false;
  private async refreshHolderTtls(): Promise<void> {
    if (this.refreshing || this.stopping || !this.etcdUp) return;
    this.refreshing = true;
    try {
      const view = this.currentView();
      if (!view) return;
      const wanted = new Set<string>();
      const inUse = new Set<string>();
      for (const d of view.databases) {
        for (const e of queueOf(d)) {
          if (e.lease === '0') continue;
          inUse.add(e.lease);
          if (e === d.holder || !this.leases.has(e.lease)) wanted.add(e.lease);
        }
      }
      await Promise.all([...wanted].map(async (id) => {
        try {
          this.leases.set(id, await readLeaseTtl(this.client, id));
        } catch {
          // Keep the last reading; the local countdown continues.
        }
      }));
      for (const id of [...this.leases.keys()]) if (!inUse.has(id)) this.leases.delete(id);
      this.view = null;
    } finally {
      this.refreshing = false;
    }
  }

  private derive(): ClusterView {
    return deriveView(this.s.prefix, this.keys.values(), this.leases, this.revision, Date.now());
  }

  private currentView(): ClusterView | null {
    if (!this.view && this.revision > 0) this.view = this.derive();
    return this.view;
  }

  private push(e: MonitorEvent): void {
    this.recent.unshift(e);
    if (this.recent.length > Math.max(this.opts.events, 1)) this.recent.length = Math.max(this.opts.events, 1);
    if (!this.tty) {
      const { type, time, ...rest } = e;
      this.emitLine({ type, time: new Date(time).toISOString(), ...rest });
    }
  }

  /** Event lines wait until the first snapshot line is out (the watch may deliver before it). */
  private snapshotSent = false;
  private readonly held: string[] = [];
  private emitLine(obj: Record<string, unknown>): void {
    if (this.stopping) return;
    if (obj.time === undefined) obj = { ...obj, time: new Date().toISOString() };
    const line = jsonText(obj) + '\n';
    if (obj.type === 'snapshot' && !this.snapshotSent) {
      this.snapshotSent = true;
      this.io.out.write(line + this.held.splice(0).join(''));
    } else if (!this.snapshotSent) {
      this.held.push(line);
    } else {
      this.io.out.write(line);
    }
  }

  // ---- terminal --------------------------------------------------------------------------------

  private scheduleRender(): void {
    if (!this.tty || this.renderPending || this.stopping) return;
    this.renderPending = true;
    setTimeout(() => {
      this.renderPending = false;
      this.render();
    }, 50);
  }

  private enterScreen(): void {
    // Alternate screen, cursor hidden; restored by leaveScreen on every way out.
    this.io.out.write('\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J');
    this.screenActive = true;
    if (this.io.input.isTTY && typeof this.io.input.setRawMode === 'function') {
      this.io.input.setRawMode(true);
      this.rawMode = true;
      this.io.input.resume();
      const onKey = (buf: Buffer) => {
        const k = buf.toString();
        // Ctrl-C arrives as a byte in raw mode; Ctrl-D, q and Esc quit as well.
        if (k.includes('\x03') || k.includes('\x04') || k === 'q' || k === 'Q' || k === '\x1b') void this.stop(0);
      };
      this.io.input.on('data', onKey);
      this.cleanups.push(() => this.io.input.off('data', onKey));
    }
    const onResize = () => {
      this.io.out.write('\x1b[2J');
      this.render();
    };
    this.io.out.on('resize', onResize);
    this.cleanups.push(() => this.io.out.off('resize', onResize));
  }

  /** Synchronous, so it also runs from process.on('exit'). */
  private leaveScreen(): void {
    if (this.rawMode) {
      try {
        this.io.input.setRawMode(false);
      } catch {
        // stdin already gone
      }
      this.rawMode = false;
      this.io.input.pause();
    }
    if (this.screenActive) {
      this.screenActive = false;
      this.io.out.write('\x1b[?25h\x1b[?1049l');
    }
  }

  private render(): void {
    if (!this.tty || this.stopping) return;
    const raw = this.currentView();
    if (!raw) return;
    const view = printableCopy(raw); // names, nodes and keys come from etcd: never raw to the terminal
    const cols = Math.max(40, this.io.out.columns || 120);
    const rows = Math.max(10, this.io.out.rows || 40);
    const st = styleFor(this.io.out);
    const now = Date.now();
    const out: string[] = [];
    const rtt = this.probe.lastRttMs;
    const conn = this.etcdUp ? st.green('watching') : st.red('DISCONNECTED (retrying)');
    out.push(st.bold(fit(`sqlite-ha monitor  ${view.prefix}`, cols)));
    out.push(fit(`etcd ${this.s.endpoints.join(',')}  `, cols - 30) + conn +
      `  rev ${view.revision}  keep-alive rtt ${rtt === null ? '-' : rtt.toFixed(1) + ' ms'}  ${clock(now).slice(0, 8)}`);
    out.push(st.dim(fit(`q or Ctrl-C to quit${this.metricsUrl ? `   metrics: ${this.metricsUrl}` : ''}`, cols)));
    out.push('');

    if (view.databases.length === 0) {
      out.push(st.dim(`no databases under ${view.prefix} yet`));
    } else {
      const nameW = Math.min(24, Math.max(8, ...view.databases.map((d) => d.name.length)));
      const holderW = Math.min(28, Math.max(6, ...view.databases.map((d) => (d.holder?.node ?? '(none)').length)));
      const header = `${'DATABASE'.padEnd(nameW)}  ${'HOLDER'.padEnd(holderW)}  ${'FENCE'.padEnd(7)}  ${'LEASE TTL'.padEnd(33)}  QUEUE`;
      out.push(st.bold(fit(header, cols)));
      for (const d of view.databases) {
        const ttl = d.holder
          ? `${ttlBar(d.ttlLeftMs, d.holder.leaseTtlMs, 20)} ${fmtSec(d.ttlLeftMs)}/${fmtSec(d.holder.leaseTtlMs)}`
          : '';
        const queue = d.waiters.length ? d.waiters.map((w, i) => `${i + 1}.${w.node}`).join(' ') : '-';
        const line = `${fit(d.name, nameW).padEnd(nameW)}  ${fit(d.holder?.node ?? '(none)', holderW).padEnd(holderW)}  ` +
          `${(d.fence === null ? '-' : String(d.fence)).padEnd(7)}  ${ttl.padEnd(33)}  ${queue}`;
        out.push(fit(line, cols));
        const commit = d.lastCommit
          ? `last commit txid ${d.lastCommit.txid} by ${d.lastCommit.node}, ${duration(Math.max(0, now - d.lastCommit.time))} ago`
          : 'no commit recorded';
        const mode = d.storageMode === 'none'
          ? `  locks none (lockless): ${d.readers} reader${d.readers === 1 ? '' : 's'}${d.committing ? ', committing' : ''}`
          : d.storageMode ? `  locks ${d.storageMode}` : '';
        const ho = d.lastHandover
          ? `  last hand-over ${d.lastHandover.cause} ${duration(d.lastHandover.handoverMs)}`
          : '';
        out.push(st.dim(fit(`${' '.repeat(nameW)}  ${commit}${mode}${ho}`, cols)));
        if (d.standby) {
          const text = fit(`${' '.repeat(nameW)}  standby ${standbyText(d)}`, cols);
          out.push(d.standby.lastError || d.standby.lagging ? st.yellow(text) : st.dim(text));
        }
        if (d.promoted) out.push(st.yellow(fit(`${' '.repeat(nameW)}  promoted to ${d.promoted.path} (epoch ${d.promoted.epoch})`, cols)));
      }
    }
    out.push('');
    out.push(st.bold('RECENT EVENTS'));
    const room = rows - out.length - 1;
    if (this.recent.length === 0) out.push(st.dim('(none yet)'));
    for (const e of this.recent.slice(0, Math.max(0, room))) {
      const text = fit(describeEvent(printableCopy(e)), cols);
      out.push(e.type === 'expired' || e.type === 'lease-lost' || e.type === 'fenced-write-refused' ||
        e.type === 'commit-outcome-unknown' || e.type === 'etcd-disconnected' ? st.yellow(text) : text);
    }
    const lines = out.slice(0, rows - 1);
    this.io.out.write('\x1b[H' + lines.map((l) => l + '\x1b[K').join('\r\n') + '\x1b[J');
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  private installExitHandlers(): void {
    const onSignal = () => void this.stop(0);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, onSignal);
      this.cleanups.push(() => process.off(sig, onSignal));
    }
    const onExit = () => this.leaveScreen();
    process.on('exit', onExit);
    this.cleanups.push(() => process.off('exit', onExit));
    // Output closed (a pipe reader went away): stop quietly.
    const onOutErr = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') void this.stop(0);
    };
    this.io.out.on('error', onOutErr);
    this.cleanups.push(() => this.io.out.off('error', onOutErr));
  }

  private async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.leaveScreen();
    await this.teardown();
    this.finish(code);
  }

  private async teardown(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const c of this.cleanups.splice(0)) c();
    this.leaveScreen();
    const w = this.watcher;
    this.watcher = null;
    await Promise.race([
      Promise.all([
        w?.cancel().catch(() => undefined),
        this.probe.stop(),
        new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r())),
      ]),
      sleep(1500),
    ]);
    this.metricsServer?.closeAllConnections?.();
    this.client.close();
  }
}

function queueOf(d: DatabaseView): QueueEntry[] {
  return d.holder ? [d.holder, ...d.waiters] : [...d.waiters];
}

function fmtSec(ms: number | null): string {
  if (ms === null) return '-';
  const s = ms / 1000;
  return s >= 100 ? `${Math.round(s)}s` : `${s.toFixed(1)}s`;
}

/** One line of the terminal event list. */
function describeEvent(e: MonitorEvent): string {
  const head = `${clock(e.time)}  ${(e.db ?? '').padEnd(12)}  ${e.type.padEnd(13)}`;
  const fence = e.fence !== undefined ? `  fence ${e.fence}` : '';
  const ms = (v: unknown) => (typeof v === 'number' ? duration(v) : '-');
  switch (e.type) {
    case 'acquired':
      return `${head}  ${e.node}${fence}  waited ${ms(e.waitedMs)}${e.previousNode ? `  after ${e.previousNode}` : ''}`;
    case 'released':
    case 'expired':
      return `${head}  ${e.node}${fence}${typeof e.heldMs === 'number' ? `  held ${duration(e.heldMs)}` : ''}`;
    case 'queued':
      return `${head}  ${e.node}  position ${e.position}`;
    case 'left-queue':
      return `${head}  ${e.node}  gave up waiting`;
    case 'handover':
      return `${head}  ${e.previousNode ?? '-'} -> ${e.node}${fence}  cause ${e.cause}  hand-over ${ms(e.handoverMs)}  waited ${ms(e.waitedMs)}`;
    case 'fenced-write-refused':
    case 'commit-outcome-unknown':
    case 'lease-lost':
      return `${head}  ${e.node}${fence}  ${e.detail ?? ''}`;
    case 'etcd-disconnected':
      return `${clock(e.time)}  etcd connection lost; the watch reconnects and resumes where it stopped`;
    case 'etcd-reconnected':
      return `${clock(e.time)}  etcd connection back`;
    case 'resync':
      return `${clock(e.time)}  watch restarted from a fresh snapshot (revision ${e.revision})`;
    default:
      return head;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
