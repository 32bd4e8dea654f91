/**
 * The node workload: what every app node runs in compose/ (and what the demo starts N times), so
 * there is one small, real program exercising the library end to end: append rows under the write
 * lease, sometimes read linearizably, report every outcome, and let go of the lease on SIGTERM.
 *
 * Run: node dist/cluster/workload.js --db /shared/events.db --etcd-endpoints http://etcd1:2379
 * (every flag has a SQLITE_HA_* variable; `--help` lists them; see workload-config.ts).
 *
 * Output, a stable contract (the demo parses it): one JSON object per line on stdout, `at` in
 * wall-clock ms; diagnostics go to stderr.
 *   {"op":"start","node":N,"pid":P,"at":T}
 *   {"op":"lease","node":N,"event":"acquired"|"released","fence":F,"at":T}
 *   {"op":"lease","node":N,"event":"lost","fence":null,"code":C,"message":M,"at":T}
 *   {"op":"append","node":N,"seq":S,"id":ROWID,"txid":X,"ok":true,"at":T}    acknowledged write
 *   {"op":"append","node":N,"seq":S,"ok":false,"code":C,"message":M,"at":T}  failed write
 *   {"op":"count","node":N,"count":K,"ok":true,"at":T}                        linearizable read
 *   {"op":"count","node":N,"ok":false,"code":C,"message":M,"at":T}
 *   {"summary":true,"node":N,"acked":A,"failed":F,"reads":R,"at":T}           always last
 * `seq` counts this process's append attempts from 1; a row (node, seq) exists for every
 * acknowledged append. A failed append with code SQLITE_HA_COMMIT_OUTCOME_UNKNOWN may or may not
 * have its row. A count read that misses this node's last acknowledged row fails with code
 * WORKLOAD_STALE_READ (docs/HAZARDS.md H4).
 * Exit status: 0 after SIGTERM/SIGINT or when --duration-ms / --max-writes is reached, 1 when the
 * database cannot be opened or closing fails, 2 for bad settings.
 */
import * as fs from 'fs';
import * as os from 'os';
import { open } from '../../src/index';
import { readMeta } from '../../src/storage/meta';
import { parseWorkloadArgs, WorkloadConfig } from './workload-config';

type Db = Awaited<ReturnType<typeof open>>;

/** Resolves once SIGTERM or SIGINT arrives; the loop checks it between writes, never inside one. */
class StopSignal {
  stopped = false;
  private wake: () => void = () => undefined;
  private readonly promise = new Promise<void>((r) => { this.wake = r; });
  stop(): void {
    this.stopped = true;
    this.wake();
  }
  /** Sleeps up to ms, returning early on stop. */
  async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => { timer = setTimeout(r, ms); }), this.promise]);
    clearTimeout(timer);
  }
}

function emit(record: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ...record, at: Date.now() }) + '\n');
}

/** Touches the heartbeat file; a failure is reported, never fatal (the healthcheck will notice). */
function beat(file: string | null): void {
  if (!file) return;
  try {
    fs.writeFileSync(file, String(Date.now()));
  } catch (err) {
    process.stderr.write(`workload: heartbeat ${file}: ${failure(err).message}\n`);
  }
}

function failure(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : 'UNKNOWN', message: String(e?.message ?? err) };
}

interface Tally {
  acked: number;
  failed: number;
  reads: number;
}

function emitSummary(node: string, t: Tally): void {
  emit({ summary: true, node, acked: t.acked, failed: t.failed, reads: t.reads });
}

async function run(cfg: WorkloadConfig, stop: StopSignal, tally: Tally): Promise<number> {
  const node = cfg.nodeId;
  emit({ op: 'start', node, pid: process.pid });
  let db: Db;
  try {
    db = await open(cfg.dbPath, {
      // The lockfile coordinator has no lease TTL; its stale time plays that part (takeover after a crash).
      coordinator: cfg.coordinator.kind === 'lockfile' ? { kind: 'lockfile', staleMs: cfg.leaseTtlMs } : cfg.coordinator,
      nodeId: node,
      leaseTtlMs: cfg.leaseTtlMs,
      acquireTimeoutMs: cfg.acquireTimeoutMs,
    });
  } catch (err) {
    emit({ op: 'open', node, ok: false, ...failure(err) });
    emitSummary(node, tally);
    return 1;
  }
  db.lease.on('acquired', (e: { fence: number }) => emit({ op: 'lease', node, event: 'acquired', fence: e.fence }));
  db.lease.on('released', (e: { fence: number }) => emit({ op: 'lease', node, event: 'released', fence: e.fence }));
  db.lease.on('lost', (err: unknown) => emit({ op: 'lease', node, event: 'lost', fence: null, ...failure(err) }));

  let seq = 0;
  let schemaReady = false;
  const deadline = cfg.durationMs > 0 ? Date.now() + cfg.durationMs : Infinity;
  while (!stop.stopped && Date.now() < deadline && (cfg.maxWrites === 0 || seq < cfg.maxWrites)) {
    beat(cfg.heartbeatFile);
    seq++;
    try {
      const written = await db.write((conn) => {
        // Every node may be first, so each creates the table until one of its writes succeeded.
        if (!schemaReady) {
          conn.exec('CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, node TEXT, seq INTEGER, at INTEGER)');
        }
        const info = conn.prepare('INSERT INTO events(node, seq, at) VALUES (?, ?, ?)').run(node, seq, Date.now());
        // The fenced transaction has already advanced the meta row: this is this commit's txid.
        return { id: Number(info.lastInsertRowid), txid: readMeta(conn).txid };
      });
      schemaReady = true;
      tally.acked++;
      emit({ op: 'append', node, seq, id: written.id, txid: written.txid, ok: true });
      if (cfg.readEvery > 0 && tally.acked % cfg.readEvery === 0) {
        tally.reads++;
        await countRows(db, node, written.id);
      }
    } catch (err) {
      tally.failed++;
      emit({ op: 'append', node, seq, ok: false, ...failure(err) });
    }
    await stop.sleep(cfg.writeIntervalMs);
  }

  let status = 0;
  try {
    await db.close();
  } catch (err) {
    process.stderr.write(`workload: close failed: ${failure(err).message}\n`);
    status = 1;
  }
  emitSummary(node, tally);
  return status;
}

/** Linearizable count(*); it must include this node's last acknowledged row. */
async function countRows(db: Db, node: string, lastAckedId: number): Promise<void> {
  try {
    const row = await db.read(
      (conn) => conn.prepare('SELECT count(*) AS n, max(id) AS maxId FROM events').get() as { n: number; maxId: number | null },
      { consistency: 'linearizable' },
    );
    if ((row.maxId ?? 0) < lastAckedId) {
      emit({ op: 'count', node, ok: false, code: 'WORKLOAD_STALE_READ', message: `max(id) ${row.maxId} < acknowledged id ${lastAckedId}` });
    } else {
      emit({ op: 'count', node, count: row.n, ok: true });
    }
  } catch (err) {
    emit({ op: 'count', node, ok: false, ...failure(err) });
  }
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseWorkloadArgs(process.argv.slice(2), process.env, `${os.hostname()}:${process.pid}`);
  } catch (err) {
    process.stderr.write(`workload: ${failure(err).message}\n`);
    process.exit(2);
  }
  if (parsed.kind === 'help') {
    process.stdout.write(parsed.text);
    return;
  }
  const cfg = parsed.config;
  const stop = new StopSignal();
  const tally: Tally = { acked: 0, failed: 0, reads: 0 };
  const abandon = (why: string) => {
    process.stderr.write(`workload: ${why}; exiting without closing\n`);
    emitSummary(cfg.nodeId, tally);
    process.exit(1);
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (stop.stopped) abandon(`${sig} again`);
      stop.stop();
      // The graceful path is one write (bounded by the acquire timeout) plus close; past that, it is stuck.
      const graceMs = cfg.acquireTimeoutMs + cfg.leaseTtlMs + 5000;
      setTimeout(() => abandon(`not stopped within ${graceMs} ms`), graceMs).unref();
    });
  }
  process.exit(await run(cfg, stop, tally));
}

void main();
