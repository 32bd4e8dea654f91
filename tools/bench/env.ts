/**
 * What every benchmark shares: the settings of a quick or full run, the run context (etcd
 * endpoints, a scratch directory on the file system under test, a unique key prefix), raw
 * better-sqlite3 opened with sqlite-ha's pinned pragmas, sqlite-ha opened against the run's etcd,
 * and timed loops that yield to the event loop so lease keep-alives keep flowing.
 */
import Database from 'better-sqlite3';
import * as path from 'path';
import { setImmediate as immediate } from 'timers/promises';
import { open } from '../../src/index';
import type { HADatabase } from '../../src/handle/database';
import type { OpenOptions } from '../../src/options';
import type { WorkerPool } from './workers';

export interface Settings {
  /**
   * Paired comparisons: `runs` runs, each of `pairs` back-to-back pairs of slices (one raw, one
   * sqlite-ha, the order alternating); a run's figure is ops/s over its slices, its ratio
   * sqlite-ha ÷ raw, and the spread is over runs.
   */
  writeRuns: number;
  writePairs: number;
  writeSliceMs: number;
  /** db.write calls started together by Promise.all in the concurrent variant. */
  concurrentBatch: number;
  readRuns: number;
  readPairs: number;
  readSliceMs: number;
  /** Linearizable reads (and as many etcd range round trips) per read run. */
  linearizableReads: number;
  contentionTrials: number;
  contentionSingleMs: number;
  contentionMs: number;
  failoverTrials: number;
  /** Failover trials run at once, each on its own database and key prefix (they mostly wait on the TTL). */
  failoverParallel: number;
  gracefulTrials: number;
  scalingTrials: number;
  scalingMs: number;
  readerCounts: number[];
  /**
   * sshfs (lockless mode): `sshfsRuns` runs, each of `sshfsRounds` rounds per side count; a round
   * runs one slice of every side (raw, trusted, none, ...) in an order rotated from round to round.
   */
  sshfsRuns: number;
  sshfsRounds: number;
  sshfsWriteSliceMs: number;
  /** Also the slice of the plain etcd round-trip side in both rotations. */
  sshfsReadSliceMs: number;
  /** Lockless unclean takeover on sshfs: database sizes (MB), one trial each. */
  takeoverSizesMb: number[];
}

export const QUICK: Settings = {
  writeRuns: 3,
  writePairs: 3,
  writeSliceMs: 80,
  concurrentBatch: 64,
  readRuns: 3,
  readPairs: 10,
  readSliceMs: 20,
  linearizableReads: 100,
  contentionTrials: 2,
  contentionSingleMs: 700,
  contentionMs: 1000,
  failoverTrials: 3,
  failoverParallel: 3,
  gracefulTrials: 6,
  scalingTrials: 2,
  scalingMs: 400,
  readerCounts: [1, 2, 4],
  sshfsRuns: 3,
  sshfsRounds: 1,
  sshfsWriteSliceMs: 120,
  sshfsReadSliceMs: 80,
  takeoverSizesMb: [10, 100],
};

export const FULL: Settings = {
  writeRuns: 5,
  writePairs: 6,
  writeSliceMs: 150,
  concurrentBatch: 64,
  readRuns: 5,
  readPairs: 20,
  readSliceMs: 25,
  linearizableReads: 300,
  contentionTrials: 3,
  contentionSingleMs: 1500,
  contentionMs: 3000,
  failoverTrials: 12,
  failoverParallel: 3,
  gracefulTrials: 30,
  scalingTrials: 3,
  scalingMs: 1500,
  readerCounts: [1, 2, 4],
  sshfsRuns: 5,
  sshfsRounds: 1,
  sshfsWriteSliceMs: 300,
  sshfsReadSliceMs: 150,
  takeoverSizesMb: [10, 100, 1024],
};

export interface BenchContext {
  settings: Settings;
  endpoints: string[];
  /** Directory on the file system under test; every database file of the run goes here. */
  dir: string;
  /** Unique etcd key prefix for this run; each benchmark appends its own segment. */
  prefix: string;
  /** Worker processes shared by the multi-process benchmarks. */
  pool: WorkerPool;
  /** Progress lines (stderr). */
  log(msg: string): void;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export const BUSY_TIMEOUT_MS = 5000;
/** The row every benchmark inserts: an integer key and 100 bytes of text. */
export const PAYLOAD = 'x'.repeat(100);
export const SCHEMA = 'CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL)';
export const INSERT = 'INSERT INTO bench (k, v) VALUES (?, ?)';
export const SELECT = 'SELECT k, v FROM bench WHERE id = ?';

/**
 * Raw better-sqlite3 with exactly the pragmas sqlite-ha pins on its read-write connection:
 * journal_mode=TRUNCATE, synchronous=FULL, locking_mode=NORMAL, and a busy_timeout.
 */
export function openRaw(file: string, opts: { readonly?: boolean } = {}): Database.Database {
  const db = new Database(file, opts.readonly ? { readonly: true, fileMustExist: true } : {});
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('locking_mode = NORMAL');
  if (!opts.readonly) {
    db.pragma('synchronous = FULL');
    const mode = String(db.pragma('journal_mode = TRUNCATE', { simple: true })).toUpperCase();
    if (mode !== 'TRUNCATE') throw new Error(`raw: journal_mode is ${mode}, not TRUNCATE`);
  }
  return db;
}

/** Creates the bench table (and `rows` rows) in a plain rollback-journal file sqlite-ha can adopt. */
export function createDatabase(file: string, rows = 0): void {
  const db = openRaw(file);
  try {
    db.exec(SCHEMA);
    const ins = db.prepare(INSERT);
    db.transaction(() => {
      for (let i = 0; i < rows; i++) ins.run(i, PAYLOAD);
    })();
  } finally {
    db.close();
  }
}

export function dbFile(ctx: BenchContext, name: string): string {
  return path.join(ctx.dir, `${name}.db`);
}

/** sqlite-ha against the run's etcd with default lease settings unless overridden. */
export function openHa(
  ctx: BenchContext, file: string, prefix: string, nodeId: string, extra: Partial<OpenOptions> = {},
): Promise<HADatabase> {
  return open(file, {
    coordinator: { kind: 'etcd', endpoints: ctx.endpoints, prefix },
    nodeId,
    busyTimeoutMs: BUSY_TIMEOUT_MS,
    ...extra,
  });
}

/** Longest stretch a timed loop blocks the event loop before yielding (keep-alives, IPC). */
export const SLICE_MS = 50;

export interface Timed {
  /** Operations completed. */
  ops: number;
  /** Elapsed seconds. */
  seconds: number;
  /** ops / seconds */
  rate: number;
  /** CPU time this process spent (user + system), microseconds. */
  cpuUs: number;
}

function cpuUs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return u.user + u.system;
}

/** Calls the synchronous fn for durationMs, yielding to the event loop every SLICE_MS. */
export async function timedSync(durationMs: number, fn: () => void): Promise<Timed> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  let ops = 0;
  let t = start;
  while (t < end) {
    const sliceEnd = Math.min(end, t + SLICE_MS);
    while (t < sliceEnd) {
      fn();
      ops++;
      t = performance.now();
    }
    await immediate();
    t = performance.now();
  }
  const seconds = (t - start) / 1000;
  return { ops, seconds, rate: ops / seconds, cpuUs: cpuUs(cpu0) };
}

/** Awaits fn() back to back for durationMs; fn returns how many operations it completed. */
export async function timedAsync(durationMs: number, fn: () => Promise<number>): Promise<Timed> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  let ops = 0;
  let sliceStart = start;
  let t = start;
  while (t < end) {
    ops += await fn();
    t = performance.now();
    if (t - sliceStart >= SLICE_MS) {
      await immediate(); // an awaited call that never really waits would starve timers too
      sliceStart = t = performance.now();
    }
  }
  const seconds = (t - start) / 1000;
  return { ops, seconds, rate: ops / seconds, cpuUs: cpuUs(cpu0) };
}

export interface Paired {
  /** Per run: sqlite-ha ops/s ÷ raw ops/s. */
  ratios: number[];
  rawRates: number[];
  haRates: number[];
  /** Per run: CPU microseconds of this process per operation. */
  rawCpuPerOp: number[];
  haCpuPerOp: number[];
}

/**
 * Runs `runs` × `pairs` back-to-back pairs of trials, alternating which side goes first, and
 * aggregates each run's ops and seconds per side: slow drifts of a noisy machine hit both sides.
 */
export async function paired(runs: number, pairs: number, raw: () => Promise<Timed>, ha: () => Promise<Timed>): Promise<Paired> {
  const out: Paired = { ratios: [], rawRates: [], haRates: [], rawCpuPerOp: [], haCpuPerOp: [] };
  for (let r = 0; r < runs; r++) {
    const acc = { raw: { ops: 0, s: 0, cpu: 0 }, ha: { ops: 0, s: 0, cpu: 0 } };
    for (let p = 0; p < pairs; p++) {
      const order = (r * pairs + p) % 2 === 0 ? (['raw', 'ha'] as const) : (['ha', 'raw'] as const);
      for (const side of order) {
        const t = await (side === 'raw' ? raw() : ha());
        acc[side].ops += t.ops;
        acc[side].s += t.seconds;
        acc[side].cpu += t.cpuUs;
      }
    }
    const rawRate = acc.raw.ops / acc.raw.s;
    const haRate = acc.ha.ops / acc.ha.s;
    out.rawRates.push(rawRate);
    out.haRates.push(haRate);
    out.ratios.push(haRate / rawRate);
    out.rawCpuPerOp.push(acc.raw.cpu / acc.raw.ops);
    out.haCpuPerOp.push(acc.ha.cpu / acc.ha.ops);
  }
  return out;
}

/** Per side: one value per run. */
export type PerSide<K extends string> = Record<K, number[]>;

/**
 * paired() for more than two sides: `runs` runs, each of `rounds` × k rounds (k = number of
 * sides); a round runs one trial of every side back to back, the order rotated by one position
 * from round to round, so each side takes each position equally often. Per run and side: ops/s
 * over that side's trials (total ops ÷ total seconds).
 */
export async function rotated<K extends string>(
  runs: number, rounds: number, sides: Record<K, () => Promise<Timed>>,
): Promise<PerSide<K>> {
  const keys = Object.keys(sides) as K[];
  const rates = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as PerSide<K>;
  let round = 0;
  for (let r = 0; r < runs; r++) {
    const acc = new Map<K, { ops: number; s: number }>(keys.map((k) => [k, { ops: 0, s: 0 }]));
    for (let p = 0; p < rounds * keys.length; p++, round++) {
      const shift = round % keys.length;
      for (const k of [...keys.slice(shift), ...keys.slice(0, shift)]) {
        const t = await sides[k]();
        const a = acc.get(k)!;
        a.ops += t.ops;
        a.s += t.seconds;
      }
    }
    for (const k of keys) rates[k].push(acc.get(k)!.ops / acc.get(k)!.s);
  }
  return rates;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls pred every stepMs until it returns true; throws after timeoutMs. */
export async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}
