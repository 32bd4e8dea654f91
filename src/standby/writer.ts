/**
 * StandbyWriter: the holder's side of the standby. It observes the fenced write path (one call
 * before COMMIT, one after) and appends each captured transaction to the chain in `dir`:
 *
 * - sync: the segment is written and fsynced inside the commit call, so a write resolves only
 *   once it is in the standby (RPO 0); a failed segment rejects that write with StandbyWriteError
 *   (committed in the primary, not acknowledged).
 * - async: captured pages are merged into one pending segment and written behind the commit with
 *   asynchronous I/O, one write in flight (so a burst coalesces). A failed write keeps its pages
 *   pending and retries, so a full disk that frees up continues the chain without a new snapshot.
 *   Lag past maxLagMs is visible in status() and raises a 'lagging' event.
 *
 * At the start of every tenure (before the fence-raising transaction) it compares the chain's
 * newest position with the file's; when they differ (a crash lost the old holder's last segment,
 * the directory is new, the page size changed) it writes a full snapshot as a new generation.
 */
import type Database from 'better-sqlite3';
import { EventEmitter } from 'events';
import * as fs from 'fs';
import { StandbyWriteError } from '../errors';
import type { ResolvedStandbyOptions } from '../options';
import { readMeta } from '../storage/meta';
import type { CommitObserver, CommitPosition } from '../txn/fenced';
import { materialise } from './apply';
import { afterCommit, beforeCommit, PreCommit } from './capture';
import { Chain } from './chain';
import { compact } from './compact';
import { checksumOfFileAsync, DbChecksum } from './checksum';
import { pageCount, pageSizeOf, readPage } from './pages';
import { comparePos, decodeHeader, encodeSegment, HEADER_BYTES, Position, writeSegmentAsync, writeSegmentFd } from './segment';

/** db.standby: where the standby stands, as this node knows it. */
export interface StandbyStatus {
  dir: string;
  mode: 'async' | 'sync';
  /** Newest txid durable in the standby chain (null: none yet). */
  txid: number | null;
  fence: number | null;
  /** Newest txid captured (committed on the primary) by this node. */
  capturedTxid: number | null;
  /** Transactions captured but not yet durable in the standby. */
  pending: number;
  /** Age of the oldest transaction not yet durable, ms (0 when none). */
  lagMs: number;
  /** True while lagMs exceeds maxLagMs or a write failed and the standby is behind. */
  lagging: boolean;
  generation: string | null;
  /** txid of the materialised copy `<dir>/<name>`. */
  appliedTxid: number | null;
  segmentsWritten: number;
  snapshotsWritten: number;
  bytesWritten: number;
  lastError: { code: string; message: string; time: number } | null;
}

/** Largest file the async mode re-snapshots synchronously mid-tenure (the copy blocks the event loop). */
const SYNC_SNAPSHOT_MAX_BYTES = 32 << 20;

/** Shortest interval between two routine reports to etcd. */
const REPORT_MS = 1000;

interface Pending {
  prev: Position;
  pos: Position;
  epoch: number;
  pageSize: number;
  dbPages: number;
  pages: Map<number, Buffer>;
  checksum: bigint;
  firstAt: number;
  timeMs: number;
  count: number;
}

/**
 * Events: 'segment' (pos), 'snapshot' (pos), 'error' (StandbyWriteError), 'lagging' (lagMs),
 * 'caught-up', 'report' (a StandbyRecord for etcd: at most one per REPORT_MS, at once on a change
 * of health).
 */
export class StandbyWriter extends EventEmitter implements CommitObserver {
  readonly chain: Chain;
  private generation: string | null = null;
  /** Position of the newest captured transaction (pending or durable). */
  private pos: Position | null = null;
  private durable: Position | null = null;
  private checksums: DbChecksum | null = null;
  private pageSize = 0;
  private pending: Pending | null = null;
  private inFlight: Promise<void> | null = null;
  private needSnapshot = true;
  private lastError: StandbyStatus['lastError'] = null;
  private laggingNow = false;
  private lagTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private applyTimer: NodeJS.Timeout | null = null;
  private appliedTxid: number | null = null;
  private closed = false;
  private stats = { segments: 0, snapshots: 0, bytes: 0 };
  private segmentsAtCompactCheck = 0;

  constructor(private readonly dbPath: string, name: string, readonly settings: ResolvedStandbyOptions) {
    super();
    this.chain = new Chain(settings.dir, name);
    // An 'error' event without a listener would throw; the status carries it anyway.
    this.on('error', () => undefined);
  }

  // ---- CommitObserver ----------------------------------------------------------------------

  /**
   * Start of a tenure, before the fence-raising transaction: continue the chain, or snapshot the
   * file as a new generation (asynchronous I/O, under a read transaction that holds the file still).
   */
  async beginTenure(conn: Database.Database): Promise<void> {
    conn.exec('BEGIN'); // a read lock: the file holds still (a hot journal was rolled back by now)
    try {
      const meta = readMeta(conn);
      const filePos = { txid: meta.txid, fence: meta.fence };
      if (this.pos && !this.needSnapshot && comparePos(this.pos, filePos) === 0) return; // our own last commit
      const tip = this.chain.tip();
      this.pending = null; // anything still pending belongs to a position the file has moved past
      if (tip && comparePos(tip.pos, filePos) === 0 && (await this.loadChecksums(tip.generation))) {
        this.generation = tip.generation;
        this.pos = this.durable = filePos;
        this.needSnapshot = false;
        return;
      }
      await this.snapshotAsync(filePos, meta.epoch, Number(conn.pragma('page_size', { simple: true })));
    } catch (err) {
      if (this.settings.mode === 'sync') throw err;
      // async: the primary keeps working; the next commit retries the snapshot.
    } finally {
      if (conn.open && conn.inTransaction) conn.exec('COMMIT');
    }
  }

  /** Inside the transaction, just before COMMIT. */
  beforeCommit(): PreCommit | null {
    if (this.needSnapshot) return null;
    try {
      return beforeCommit(this.dbPath);
    } catch (err) {
      const e = new StandbyWriteError(this.settings.dir, err);
      if (this.settings.mode === 'sync') throw e;
      this.fail(e);
      this.needSnapshot = true;
      return null;
    }
  }

  /** Right after COMMIT, before this process writes again. */
  afterCommit(at: CommitPosition, token: unknown): void {
    const pos = { txid: at.txid, fence: at.fence };
    const pre = token as PreCommit | null;
    try {
      const cap = pre && !this.needSnapshot ? afterCommit(this.dbPath, pre) : null;
      if (!cap || !this.pos || !this.checksums || cap.pageSize !== this.pageSize) {
        this.resnapshot(pos, at.epoch);
        return;
      }
      for (const [pgno, data] of cap.pages) this.checksums.set(pgno, data);
      this.checksums.truncate(cap.dbPages);
      const now = Date.now();
      if (this.settings.mode === 'sync') {
        const header = {
          snapshot: false, prev: this.pos, pos, epoch: at.epoch, pageSize: cap.pageSize, dbPages: cap.dbPages,
          timeMs: now, checksum: this.checksums.value,
        };
        try {
          this.chain.appendSync(this.generation!, header, cap.pages);
        } catch (err) {
          this.needSnapshot = true;
          const e = new StandbyWriteError(this.settings.dir, err, at.txid);
          this.fail(e);
          throw e;
        }
        this.stats.segments++;
        this.stats.bytes += cap.pages.size * (cap.pageSize + 4);
        this.pos = this.durable = pos;
        this.caughtUp();
        this.emit('segment', pos);
        this.scheduleApply();
        return;
      }
      const p = this.pending;
      if (p) {
        for (const [pgno, data] of cap.pages) p.pages.set(pgno, data);
        for (const pgno of p.pages.keys()) if (pgno > cap.dbPages) p.pages.delete(pgno);
        Object.assign(p, { pos, epoch: at.epoch, dbPages: cap.dbPages, checksum: this.checksums.value, timeMs: now, count: p.count + 1 });
      } else {
        this.pending = {
          prev: this.pos, pos, epoch: at.epoch, pageSize: cap.pageSize, dbPages: cap.dbPages, pages: cap.pages,
          checksum: this.checksums.value, firstAt: now, timeMs: now, count: 1,
        };
      }
      this.pos = pos;
      this.kick();
    } catch (err) {
      this.needSnapshot = true;
      // StandbyWriteErrors were reported where they arose; anything else (a read failing) here.
      const e = err instanceof StandbyWriteError ? err : new StandbyWriteError(this.settings.dir, err);
      if (!(err instanceof StandbyWriteError)) this.fail(e);
      if (this.settings.mode === 'sync') {
        throw e.committedTxid === at.txid ? e : new StandbyWriteError(this.settings.dir, e.cause ?? e, at.txid);
      }
    }
  }

  // ---- control -----------------------------------------------------------------------------

  /** Resolves once everything captured is durable in the standby, or once a write attempt failed. */
  async flush(): Promise<void> {
    for (let i = 0; i < 1000 && (this.pending || this.inFlight); i++) {
      if (!this.inFlight) this.kick();
      const before = this.stats.segments;
      await this.inFlight?.catch(() => undefined);
      if (this.pending && this.stats.segments === before && this.lastError) return; // failing: do not hang release()
    }
  }

  /** Flushes and stops timers (the handle is closing). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    const applyDue = this.applyTimer !== null;
    for (const t of [this.lagTimer, this.retryTimer, this.applyTimer, this.reportTimer]) if (t) clearTimeout(t);
    if (applyDue) this.applyNow();
    if (this.stats.segments + this.stats.snapshots > 0) this.report(true);
  }

  status(): StandbyStatus {
    const lagMs = this.pending ? Date.now() - this.pending.firstAt : 0;
    return {
      dir: this.settings.dir,
      mode: this.settings.mode,
      txid: this.durable?.txid ?? null,
      fence: this.durable?.fence ?? null,
      capturedTxid: this.pos?.txid ?? null,
      pending: this.pending?.count ?? 0,
      lagMs,
      lagging: lagMs > this.settings.maxLagMs || (this.needSnapshot && this.lastError !== null),
      generation: this.generation,
      appliedTxid: this.appliedTxid,
      segmentsWritten: this.stats.segments,
      snapshotsWritten: this.stats.snapshots,
      bytesWritten: this.stats.bytes,
      lastError: this.lastError,
    };
  }

  // ---- internals ---------------------------------------------------------------------------

  /** Starts the async write of the pending segment unless one is in flight. */
  private kick(): void {
    if (this.inFlight || !this.pending || this.closed && !this.pending) return;
    const batch = this.pending;
    this.pending = null;
    const gen = this.generation!;
    const encoded = encodeSegment(
      { snapshot: false, prev: batch.prev, pos: batch.pos, epoch: batch.epoch, pageSize: batch.pageSize, dbPages: batch.dbPages, timeMs: batch.timeMs, checksum: batch.checksum },
      batch.pages,
    );
    this.watchLag();
    this.inFlight = this.chain.appendAsync(gen, batch.pos, encoded).then(
      () => {
        this.stats.segments++;
        this.stats.bytes += encoded.length;
        if (this.generation === gen && (!this.durable || comparePos(batch.pos, this.durable) > 0)) this.durable = batch.pos;
        this.emit('segment', batch.pos);
        if (!this.pending) this.caughtUp();
        this.scheduleApply();
      },
      (err: StandbyWriteError) => {
        this.fail(err);
        if (this.generation !== gen) return;
        // Keep the pages: newer captures overlay them, and the retry continues the chain.
        const newer = this.pending;
        if (newer) {
          for (const [pgno, data] of newer.pages) batch.pages.set(pgno, data);
          for (const pgno of batch.pages.keys()) if (pgno > newer.dbPages) batch.pages.delete(pgno);
          Object.assign(batch, { pos: newer.pos, epoch: newer.epoch, dbPages: newer.dbPages, checksum: newer.checksum, timeMs: newer.timeMs, count: batch.count + newer.count });
        }
        this.pending = batch;
        this.scheduleRetry();
      },
    ).finally(() => {
      this.inFlight = null;
      if (this.pending && !this.retryTimer) setImmediate(() => this.kick());
    });
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, Math.max(50, Math.min(1000, this.settings.maxLagMs / 2)));
    this.retryTimer.unref();
  }

  /** Checks the lag while something is pending; emits 'lagging' once per episode. */
  private watchLag(): void {
    if (this.lagTimer || this.closed) return;
    this.lagTimer = setTimeout(() => {
      this.lagTimer = null;
      const s = this.status();
      if (s.lagMs > this.settings.maxLagMs && !this.laggingNow) {
        this.laggingNow = true;
        this.emit('lagging', s.lagMs);
        this.report(true);
      }
      if (this.pending || this.inFlight) this.watchLag();
    }, Math.max(10, Math.floor(this.settings.maxLagMs / 4)));
    this.lagTimer.unref();
  }

  private caughtUp(): void {
    const changed = this.laggingNow || this.lastError !== null;
    if (changed) {
      this.laggingNow = false;
      this.emit('caught-up', this.durable);
    }
    this.lastError = null;
    this.report(changed);
  }

  private fail(err: StandbyWriteError): void {
    const first = this.lastError === null;
    this.lastError = { code: err.code, message: err.message, time: Date.now() };
    this.emit('error', err);
    this.report(first);
  }

  private reportTimer: NodeJS.Timeout | null = null;
  private lastReport = 0;
  /** Emits 'report' now (health changed) or once the interval has passed (trailing). */
  private report(now = false): void {
    const emit = () => {
      this.lastReport = Date.now();
      const s = this.status();
      this.emit('report', {
        dir: s.dir, mode: s.mode, txid: s.txid, capturedTxid: s.capturedTxid, lagMs: s.lagMs, lagging: s.lagging,
        lastError: s.lastError, time: Date.now(),
      });
    };
    if (now) return emit();
    if (this.reportTimer || this.closed) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = null;
      emit();
    }, Math.max(0, REPORT_MS - (Date.now() - this.lastReport)));
    this.reportTimer.unref();
  }

  /** After a failed capture or write: a fresh snapshot, at most once per retry interval (async). */
  private lastSnapshotTry = 0;
  private resnapshot(pos: Position, epoch: number): void {
    this.needSnapshot = true;
    this.pending = null;
    this.pos = pos;
    if (this.settings.mode === 'async') {
      if (Date.now() - this.lastSnapshotTry < Math.min(1000, this.settings.maxLagMs)) return;
      // A synchronous copy of a large file would block keep-alives past the lease: the next
      // tenure snapshots it asynchronously instead (the lag shows meanwhile).
      if (fs.statSync(this.dbPath).size > SYNC_SNAPSHOT_MAX_BYTES) return;
    }
    this.lastSnapshotTry = Date.now();
    this.snapshot(pos, epoch);
  }

  /** Writes the whole file as a new generation (the caller holds the lease, no transaction open). */
  private snapshot(pos: Position, epoch: number, emptyPageSize = 4096): void {
    try {
      const fd = fs.openSync(this.dbPath, 'r');
      const checksums = new DbChecksum();
      let pageSize = 0;
      try {
        const header = Buffer.alloc(100);
        // A zero-byte file is a valid empty database: its page size is the connection's.
        pageSize = fs.readSync(fd, header, 0, 100, 0) === 100 ? pageSizeOf(header) : emptyPageSize;
        const dbPages = pageCount(fs.fstatSync(fd).size, pageSize);
        const pages = function* (): Generator<[number, Buffer]> {
          for (let pgno = 1; pgno <= dbPages; pgno++) {
            yield [pgno, readPage(fd, pgno, pageSize)!];
          }
        };
        // The checksum in the header must be known before the pages stream: hash first.
        for (let pgno = 1; pgno <= dbPages; pgno++) checksums.set(pgno, readPage(fd, pgno, pageSize)!);
        const value = checksums.value;
        this.generation = this.chain.startGeneration(pos, (out) =>
          writeSegmentFd(out, { snapshot: true, prev: pos, pos, epoch, pageSize, dbPages, timeMs: Date.now(), checksum: value }, pages(), dbPages),
        );
        this.stats.bytes += dbPages * (pageSize + 4);
      } finally {
        fs.closeSync(fd);
      }
      this.snapshotWritten(pos, checksums, pageSize);
    } catch (err) {
      throw this.snapshotFailed(err);
    }
  }

  /** The snapshot is the chain's new head: its hashes and position are the writer's. */
  private snapshotWritten(pos: Position, checksums: DbChecksum, pageSize: number): void {
    this.stats.snapshots++;
    this.checksums = checksums;
    this.pageSize = pageSize;
    this.pos = this.durable = pos;
    this.needSnapshot = false;
    this.caughtUp();
    this.emit('snapshot', pos);
    this.scheduleApply();
  }

  /** A failed snapshot is still owed: the standby has no usable head until one is written. */
  private snapshotFailed(err: unknown): StandbyWriteError {
    const e = err instanceof StandbyWriteError ? err : new StandbyWriteError(this.settings.dir, err);
    this.needSnapshot = true;
    this.fail(e);
    return e;
  }

  /** Per-page hashes of the file, when the chain's newest checksum agrees with them. */
  private async loadChecksums(gen: string): Promise<boolean> {
    const entries = this.chain.entries(gen);
    const last = entries[entries.length - 1];
    if (!last) return false;
    let stated: bigint;
    try {
      stated = decodeHeader(await readPrefix(last.file, HEADER_BYTES), last.file).checksum;
    } catch {
      return false;
    }
    const head = await readPrefix(this.dbPath, 100);
    if (head.length < 100) return false;
    const pageSize = pageSizeOf(head);
    const sums = await checksumOfFileAsync(this.dbPath, pageSize);
    if (sums.value !== stated) return false;
    this.checksums = sums;
    this.pageSize = pageSize;
    return true;
  }

  /** snapshot() with asynchronous I/O, for the start of a tenure (no commit can run meanwhile). */
  private async snapshotAsync(pos: Position, epoch: number, emptyPageSize: number): Promise<void> {
    try {
      const head = await readPrefix(this.dbPath, 100);
      const pageSize = head.length === 100 ? pageSizeOf(head) : emptyPageSize;
      const dbPages = pageCount((await fs.promises.stat(this.dbPath)).size, pageSize);
      const checksums = dbPages > 0 ? await checksumOfFileAsync(this.dbPath, pageSize) : new DbChecksum();
      const fh = await fs.promises.open(this.dbPath, 'r');
      try {
        const pages = async function* (): AsyncGenerator<[number, Buffer]> {
          const per = Math.max(1, Math.floor((1 << 20) / pageSize)); // ~1 MiB reads
          for (let first = 1; first <= dbPages; first += per) {
            const n = Math.min(per, dbPages - first + 1);
            const buf = Buffer.alloc(n * pageSize);
            await fh.read(buf, 0, buf.length, (first - 1) * pageSize);
            for (let i = 0; i < n; i++) yield [first + i, buf.subarray(i * pageSize, (i + 1) * pageSize)];
          }
        };
        const header = { snapshot: true, prev: pos, pos, epoch, pageSize, dbPages, timeMs: Date.now(), checksum: checksums.value };
        this.generation = await this.chain.startGenerationAsync(pos, (out) => writeSegmentAsync(out, header, pages(), dbPages));
      } finally {
        await fh.close();
      }
      this.stats.bytes += dbPages * (pageSize + 4);
      this.snapshotWritten(pos, checksums, pageSize);
    } catch (err) {
      throw this.snapshotFailed(err);
    }
  }

  /** Brings `<dir>/<name>` forward behind the chain, coalesced. */
  private scheduleApply(): void {
    if (this.applyTimer || this.closed) return;
    this.applyTimer = setTimeout(() => {
      this.applyTimer = null;
      this.applyNow();
    }, 200);
    this.applyTimer.unref();
  }

  private applyNow(): void {
    try {
      // Everything here is synchronous I/O on the holder's event loop: a rebuild or compaction
      // of a large file would block keep-alives past the lease, so those are left to the CLI
      // (sqlite-ha standby apply|compact, promote, restore) above SYNC_SNAPSHOT_MAX_BYTES.
      const small = fs.statSync(this.dbPath).size <= SYNC_SNAPSHOT_MAX_BYTES;
      const state = materialise(this.chain, { rebuild: small });
      if (state) this.appliedTxid = state.txid;
      if (small && this.stats.segments - this.segmentsAtCompactCheck >= this.settings.retainSegments) {
        this.segmentsAtCompactCheck = this.stats.segments;
        compact(this.chain, this.settings);
      }
    } catch (err) {
      this.fail(err instanceof StandbyWriteError ? err : new StandbyWriteError(this.settings.dir, err));
    }
  }
}

/** The first `n` bytes of a file (fewer if it is shorter). */
async function readPrefix(file: string, n: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
