/**
 * Prometheus metrics for `monitor --metrics-port`, on a private prom-client Registry. Gauges are
 * computed from the monitor's current cluster view at scrape time; counters and histograms count
 * what the monitor's watch saw since it started (hand-over records, refusal events); the keep-alive
 * round trip is measured on the monitor's own lease (KeepAliveProbe).
 */
import * as http from 'http';
import type { AddressInfo } from 'net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Etcd3 } from 'etcd3';
import type { EventRecord, HandoverRecord } from '../coordinator/etcd/keys';
import { ClusterView, ttlLeftAt } from './cluster-state';

export class ClusterMetrics {
  readonly registry = new Registry();
  private readonly held: Gauge<'db'>;
  private readonly holderInfo: Gauge<'db' | 'node'>;
  private readonly fence: Gauge<'db'>;
  private readonly ttl: Gauge<'db'>;
  private readonly waiters: Gauge<'db'>;
  private readonly txid: Gauge<'db'>;
  private readonly handovers: Counter<'db' | 'cause'>;
  private readonly acquireLatency: Histogram<'db'>;
  private readonly handoverLatency: Histogram<'db'>;
  private readonly refused: Counter<'db'>;
  private readonly events: Counter<'db' | 'kind'>;
  private readonly rtt: Histogram<string>;
  private readonly rttLast: Gauge<string>;
  private readonly up: Gauge<string>;
  private readonly standbyTxid: Gauge<'db'>;
  private readonly standbyBehind: Gauge<'db'>;
  private readonly standbyLag: Gauge<'db'>;
  private readonly standbyError: Gauge<'db'>;
  private readonly seen = new Set<string>();

  constructor(private readonly currentView: () => ClusterView | null) {
    const registers = [this.registry];
    this.held = new Gauge({ name: 'sqlite_ha_lease_held', help: '1 while some node holds the write lease of the database, else 0', labelNames: ['db'], registers });
    this.holderInfo = new Gauge({ name: 'sqlite_ha_lease_holder_info', help: 'Always 1, labelled with the current holder node ("(foreign)" for non-sqlite-ha lock holders)', labelNames: ['db', 'node'], registers });
    this.fence = new Gauge({ name: 'sqlite_ha_lease_fence', help: "Fence token of the current holder (its lock key's create revision)", labelNames: ['db'], registers });
    this.ttl = new Gauge({ name: 'sqlite_ha_lease_ttl_seconds', help: "Seconds left on the holder's etcd lease", labelNames: ['db'], registers });
    this.waiters = new Gauge({ name: 'sqlite_ha_lease_waiters', help: 'Processes queued behind the holder', labelNames: ['db'], registers });
    this.txid = new Gauge({ name: 'sqlite_ha_commit_txid', help: 'txid of the last commit published in etcd', labelNames: ['db'], registers });
    this.handovers = new Counter({ name: 'sqlite_ha_handovers_total', help: 'Lease acquisitions recorded in the hand-over history, by how the previous holder let go', labelNames: ['db', 'cause'], registers });
    const buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
    this.acquireLatency = new Histogram({ name: 'sqlite_ha_acquire_latency_seconds', help: 'Time from queueing to holding the lease (history waitedMs)', labelNames: ['db'], buckets, registers });
    this.handoverLatency = new Histogram({ name: 'sqlite_ha_handover_latency_seconds', help: 'Time from the previous holder letting go to the next holding (history handoverMs)', labelNames: ['db'], buckets, registers });
    this.refused = new Counter({ name: 'sqlite_ha_fenced_writes_refused_total', help: 'Writes refused because the database carried a higher fence token', labelNames: ['db'], registers });
    this.events = new Counter({ name: 'sqlite_ha_events_total', help: 'Events reported by nodes (fenced-write-refused, commit-outcome-unknown, lease-lost)', labelNames: ['db', 'kind'], registers });
    this.rtt = new Histogram({ name: 'sqlite_ha_keepalive_rtt_seconds', help: "Round trip of this monitor's own lease keep-alive to etcd", buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
    this.rttLast = new Gauge({ name: 'sqlite_ha_keepalive_rtt_last_seconds', help: 'Last keep-alive round trip (NaN when the last probe failed)', registers });
    this.up = new Gauge({ name: 'sqlite_ha_etcd_up', help: '1 while the monitor has a live watch on etcd', registers });
    this.up.set(0);
    this.standbyTxid = new Gauge({ name: 'sqlite_ha_standby_txid', help: 'Newest txid durable in the standby chain, as its writer last reported', labelNames: ['db'], registers });
    this.standbyBehind = new Gauge({ name: 'sqlite_ha_standby_behind_txids', help: 'Acknowledged commits (etcd commit record) not yet in the standby', labelNames: ['db'], registers });
    this.standbyLag = new Gauge({ name: 'sqlite_ha_standby_lag_seconds', help: 'Age of the oldest commit not yet durable in the standby, at the last report', labelNames: ['db'], registers });
    this.standbyError = new Gauge({ name: 'sqlite_ha_standby_error', help: '1 while the standby writer reports a failed write (and while it lags past maxLagMs), else 0', labelNames: ['db'], registers });
  }

  /** Recomputes the gauges from the current view (called at scrape time). */
  refresh(now = Date.now()): void {
    const view = this.currentView();
    for (const g of [this.held, this.holderInfo, this.fence, this.ttl, this.waiters, this.txid, this.standbyTxid, this.standbyBehind, this.standbyLag, this.standbyError]) g.reset();
    if (!view) return;
    for (const d of view.databases) {
      this.known(d.name);
      this.held.set({ db: d.name }, d.holder ? 1 : 0);
      this.waiters.set({ db: d.name }, d.waiters.length);
      if (d.holder) {
        this.holderInfo.set({ db: d.name, node: d.holder.node }, 1);
        this.fence.set({ db: d.name }, d.holder.createRevision);
        // The view's TTL was computed at view time; count it down to now.
        const left = ttlLeftAt({ ttlLeftMs: d.ttlLeftMs, grantedMs: null, measuredAt: view.time }, now);
        if (left !== null) this.ttl.set({ db: d.name }, left / 1000);
      }
      if (d.lastCommit) this.txid.set({ db: d.name }, d.lastCommit.txid);
      if (d.standby) {
        if (d.standby.txid !== null) this.standbyTxid.set({ db: d.name }, d.standby.txid);
        if (d.standby.behindTxids !== null) this.standbyBehind.set({ db: d.name }, d.standby.behindTxids);
        this.standbyLag.set({ db: d.name }, d.standby.lagMs / 1000);
        this.standbyError.set({ db: d.name }, d.standby.lastError || d.standby.lagging ? 1 : 0);
      }
    }
  }

  handover(db: string, rec: HandoverRecord): void {
    this.known(db);
    this.handovers.inc({ db, cause: String(rec.cause) });
    if (typeof rec.waitedMs === 'number') this.acquireLatency.observe({ db }, rec.waitedMs / 1000);
    if (typeof rec.handoverMs === 'number') this.handoverLatency.observe({ db }, rec.handoverMs / 1000);
  }

  event(db: string, rec: EventRecord): void {
    this.known(db);
    this.events.inc({ db, kind: String(rec.kind) });
    if (rec.kind === 'fenced-write-refused') this.refused.inc({ db });
  }

  keepAliveRtt(ms: number | null): void {
    if (ms === null) {
      this.rttLast.set(NaN);
      return;
    }
    this.rtt.observe(ms / 1000);
    this.rttLast.set(ms / 1000);
  }

  etcdUp(up: boolean): void {
    this.up.set(up ? 1 : 0);
  }

  async text(): Promise<string> {
    this.refresh();
    return this.registry.metrics();
  }

  /** Zero-valued series for a new database, so rate() works from the first event. */
  private known(db: string): void {
    if (this.seen.has(db)) return;
    this.seen.add(db);
    this.refused.inc({ db }, 0);
    for (const cause of ['released', 'expired', 'first']) this.handovers.inc({ db, cause }, 0);
  }
}

/** Serves GET /metrics; resolves once listening, with the bound address. */
export async function serveMetrics(metrics: ClusterMetrics, port: number, host: string): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET' }).end();
      return;
    }
    if (url === '/metrics') {
      metrics.text().then(
        (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body),
        (err) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(err)),
      );
      return;
    }
    if (url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('sqlite-ha monitor: metrics at /metrics\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const shownHost = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return { server, url: `http://${shownHost}:${a.port}/metrics` };
}

/**
 * Measures the keep-alive round trip the way sqlite-ha nodes experience it: the monitor holds its
 * own short lease (no keys attached) and times each LeaseKeepAlive request to its response.
 */
export class KeepAliveProbe {
  private leaseId: string | null = null;
  private stream: Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>> | null = null;
  private pending: { resolve: (ttl: number) => void; reject: (e: Error) => void } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  lastRttMs: number | null = null;

  constructor(
    private readonly client: Etcd3,
    private readonly timeoutMs: number,
    private readonly onRtt: (ms: number | null) => void,
    private readonly intervalMs = 2000,
    private readonly ttlSeconds = 10,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        const ms = await this.probe();
        this.lastRttMs = ms;
        this.onRtt(ms);
      } catch {
        this.lastRttMs = null;
        this.onRtt(null);
        this.dropStream();
      }
      if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
    };
    void tick();
  }

  private async probe(): Promise<number> {
    if (!this.leaseId) {
      const g = await this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds });
      this.leaseId = g.ID;
    }
    if (!this.stream) {
      const stream = await this.client.leaseClient.leaseKeepAlive();
      stream.on('data', (res) => {
        const p = this.pending;
        this.pending = null;
        p?.resolve(Number(res.TTL));
      });
      stream.on('error', (err: Error) => {
        const p = this.pending;
        this.pending = null;
        p?.reject(err);
        this.dropStream();
      });
      this.stream = stream;
    }
    const stream = this.stream;
    const started = process.hrtime.bigint();
    const ttl = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending = null;
        reject(new Error('keep-alive timed out'));
      }, this.timeoutMs);
      this.pending = {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
      stream.write({ ID: this.leaseId! });
    });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (ttl <= 0) this.leaseId = null; // expired meanwhile (etcd was away): grant a new one next time
    return ms;
  }

  private dropStream(): void {
    const s = this.stream;
    this.stream = null;
    try {
      s?.end();
    } catch {
      // already closed
    }
  }

  /** Stops probing and revokes the probe lease (best effort, bounded by the call deadline). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.dropStream();
    const id = this.leaseId;
    this.leaseId = null;
    if (id) {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: id }, { deadline: Date.now() + Math.min(this.timeoutMs, 1000) });
      } catch {
        // It expires on its own within ttlSeconds.
      }
    }
  }
}
