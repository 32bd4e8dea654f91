/**
 * The fenced transaction, synchronous from BEGIN to COMMIT (all lease work happens before BEGIN):
 *   BEGIN IMMEDIATE → stored fence > ours? FencedError → fence := ours, txid += 1 → user work →
 *   commit deadline passed? LeaseLostError → COMMIT (an I/O error here: CommitOutcomeUnknownError).
 * Anything thrown before COMMIT rolls back, so nothing half-written survives.
 *
 * Lock waits: the read-write connection's own busy_timeout is a short slice, because SQLite waits
 * synchronously and a blocked event loop sends no keep-alives. BEGIN is retried asynchronously by
 * db.write() (tryBegin between event-loop turns) and synchronously, slice by slice, by the
 * better-sqlite3 surface (begin()).
 */
import { monotonicNow } from '../clock';
import type Database from 'better-sqlite3';
import {
  ClosedError, CommitOutcomeUnknownError, DatabaseIdentityError, FencedError, LeaseLostError, StaleViewError, StorageFaultError,
} from '../errors';
import type { Lease } from '../coordinator/types';
import { isBusy, isStorageFailure } from '../storage/sqlite-errors';
import { claimFence, MetaStatements, readStoredMeta } from '../storage/meta';

export type BeginMode = 'IMMEDIATE' | 'EXCLUSIVE';

/**
 * What the file must show before the holder's first transaction writes anything (H4, issue 10
 * defect 5): a view at least as new as the published commit, and the database id decided by the
 * caller (written into the meta row when `writeDbid`).
 */
export interface FenceExpectations {
  publishedTxid: number;
  dbid: string | null;
  writeDbid: boolean;
}

export interface FencedHooks {
  /**
   * Called before a FencedError, CommitOutcomeUnknownError or deadline LeaseLostError is thrown:
   * in each case this node must stop using the lease and re-acquire before writing again.
   */
  onLeaseGone(err: FencedError | CommitOutcomeUnknownError | LeaseLostError | StorageFaultError): void;
}

/** Where a commit left the database: the txid, the fence it was written under, the file's epoch. */
export interface CommitPosition {
  txid: number;
  fence: number;
  epoch: number;
}

/**
 * Watches every commit of the fenced path (the standby capture, src/standby/writer.ts). Each call
 * runs synchronously with the lease held and no other transaction in between.
 */
export interface CommitObserver {
  /**
   * Once per tenure, before the fence-raising transaction (no transaction open); asynchronous so
   * that long work (a snapshot) leaves the event loop, and the lease's keep-alives, running.
   */
  beginTenure(conn: Database.Database): Promise<void>;
  /** Inside the transaction, just before COMMIT; a throw rolls it back. Returns a token for afterCommit. */
  beforeCommit(): unknown;
  /** Right after COMMIT succeeded; a throw rejects the write (it is committed but not acknowledged). */
  afterCommit(at: CommitPosition, token: unknown): void;
}

export class FencedTransactions {
  private readonly meta: MetaStatements;
  private readonly stmts: Record<'IMMEDIATE' | 'EXCLUSIVE' | 'COMMIT' | 'ROLLBACK', Database.Statement>;
  /** txid of the newest commit on this connection. */
  lastTxid = 0;
  /** The file's epoch (lockless mode moves the file to a new inode on an unclean hand-over). */
  readonly epoch: number;
  private pendingTxid = 0;

  /** Opens the fenced path, retrying the fence-raising transaction asynchronously while the file is busy. */
  static async create(
    conn: Database.Database, lease: Lease, hooks: FencedHooks, busyTimeoutMs: number, newEpoch?: number,
    expect?: FenceExpectations,
    observer?: CommitObserver,
  ): Promise<FencedTransactions> {
    await observer?.beginTenure(conn);
    const deadline = Date.now() + busyTimeoutMs;
    for (;;) {
      try {
        return new FencedTransactions(conn, lease, hooks, busyTimeoutMs, newEpoch, expect, observer);
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline || !lease.valid) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Runs the holder's first transaction, which raises the fence (H5), then prepares the hot path. */
  constructor(
    readonly conn: Database.Database,
    readonly lease: Lease,
    private readonly hooks: FencedHooks,
    private readonly busyTimeoutMs = 5000,
    newEpoch?: number,
    expect?: FenceExpectations,
    private readonly observer?: CommitObserver,
  ) {
    conn.exec('BEGIN IMMEDIATE');
    try {
      // Everything is checked before the first write: a refused file stays exactly as it was.
      const stored = readStoredMeta(conn);
      if (stored.fence > lease.fence) throw new FencedError(lease.fence, stored.fence);
      if (expect && stored.txid < expect.publishedTxid) throw new StaleViewError(stored.txid, expect.publishedTxid, 0);
      if (expect?.dbid && stored.dbid !== null && stored.dbid !== expect.dbid) {
        throw new DatabaseIdentityError(`the file became database ${stored.dbid} while this node was taking it over as ${expect.dbid}`,
          { fileId: stored.dbid, recordedId: expect.dbid });
      }
      this.epoch = newEpoch ?? stored.epoch;
      this.lastTxid = stored.txid;
      // The fence-raising transaction is a commit too (a takeover may have taken long): same check.
      if (!lease.valid || monotonicNow() >= lease.commitDeadline) {
        throw new LeaseLostError('the commit deadline passed before the fence-raising transaction could commit');
      }
      claimFence(conn, lease.fence, this.epoch, expect?.writeDbid ? expect.dbid : null);
      const token = observer?.beforeCommit();
      conn.exec('COMMIT');
      observer?.afterCommit({ txid: stored.txid, fence: lease.fence, epoch: this.epoch }, token);
    } catch (err) {
      if (conn.inTransaction) conn.exec('ROLLBACK');
      throw err;
    }
    this.meta = new MetaStatements(conn);
    this.stmts = {
      IMMEDIATE: conn.prepare('BEGIN IMMEDIATE'),
      EXCLUSIVE: conn.prepare('BEGIN EXCLUSIVE'),
      COMMIT: conn.prepare('COMMIT'),
      ROLLBACK: conn.prepare('ROLLBACK'),
    };
  }

  /** Runs fn in one fenced transaction, waiting (blocking) for the file lock up to busyTimeoutMs. */
  run<T>(fn: () => T, mode: BeginMode = 'IMMEDIATE'): { result: T; txid: number } {
    this.begin(mode);
    return this.body(fn);
  }

  private body<T>(fn: () => T): { result: T; txid: number } {
    const result = this.work(fn);
    return { result, txid: this.commit() };
  }

  /**
   * Runs fn inside the open transaction; rolls back and rethrows if it throws or is async. A
   * storage error from fn's own statements (a torn page the NFS client served after a server
   * restart, an I/O error) is not the caller's SQL going wrong: it becomes a StorageFaultError
   * (not committed, the view reopened), like one at BEGIN; SQL errors pass through as they are.
   */
  work<T>(fn: () => T): T {
    try {
      const result = fn();
      if (isThenable(result)) {
        throw new TypeError('the write function returned a promise: it must be synchronous (do async work before write())');
      }
      return result;
    } catch (err) {
      if (isStorageFailure(err)) throw this.storageFault('a statement of the write transaction', err);
      this.rollback();
      throw err;
    }
  }

  /** BEGIN plus the fence check and txid bump; the caller must end with commit() or rollback(). */
  begin(mode: BeginMode = 'IMMEDIATE'): void {
    const deadline = Date.now() + this.busyTimeoutMs;
    while (!this.tryBegin(mode, Date.now() >= deadline)) {
      /* each try waits one busy slice inside SQLite */
    }
  }

  /** begin() that returns false instead of waiting past one busy slice (throws if `last`). */
  tryBegin(mode: BeginMode = 'IMMEDIATE', last = false): boolean {
    this.assertLeaseUsable();
    try {
      this.stmts[mode].run();
    } catch (err) {
      if (isBusy(err) && !last) return false;
      if (isStorageFailure(err)) throw this.storageFault('BEGIN', err);
      throw err;
    }
    try {
      let stored;
      try {
        stored = this.meta.read();
      } catch (err) {
        if (isStorageFailure(err)) throw this.storageFault('reading the meta row', err);
        throw err;
      }
      if (stored.fence > this.lease.fence) {
        const err = new FencedError(this.lease.fence, stored.fence);
        this.hooks.onLeaseGone(err);
        throw err;
      }
      this.meta.advance(this.lease.fence);
      this.pendingTxid = stored.txid + 1;
    } catch (err) {
      this.rollback();
      throw err;
    }
    return true;
  }

  /** A storage error before anything was written: not committed; this connection's view is suspect. */
  private storageFault(during: string, cause: unknown): StorageFaultError {
    this.rollback();
    const err = new StorageFaultError(during, cause);
    this.hooks.onLeaseGone(err);
    return err;
  }

  /** Checks the lease deadline, then COMMITs; returns the committed txid. */
  commit(): number {
    try {
      this.assertLeaseUsable();
    } catch (err) {
      this.rollback();
      throw err;
    }
    const txid = this.pendingTxid;
    const busyDeadline = Date.now() + this.busyTimeoutMs;
    let token: unknown;
    try {
      token = this.observer?.beforeCommit();
    } catch (err) {
      this.rollback();
      throw err;
    }
    try {
      // COMMIT waits for readers' SHARED locks; SQLITE_BUSY leaves the transaction open to retry.
      for (;;) {
        try {
          this.stmts.COMMIT.run();
          break;
        } catch (err) {
          if (!isBusy(err) || Date.now() >= busyDeadline) throw err;
          this.assertLeaseUsable();
        }
      }
    } catch (err) {
      if (isStorageFailure(err)) {
        if (this.conn.inTransaction) this.rollback();
        const unknown = new CommitOutcomeUnknownError({ cause: err });
        this.hooks.onLeaseGone(unknown);
        throw unknown;
      }
      // SQLITE_BUSY and friends leave the transaction open: roll back, the outcome is "not committed".
      this.rollback();
      throw err;
    }
    this.lastTxid = txid;
    this.observer?.afterCommit({ txid, fence: this.lease.fence, epoch: this.epoch }, token);
    return txid;
  }

  rollback(): void {
    if (this.conn.inTransaction) {
      try {
        this.stmts.ROLLBACK.run();
      } catch {
        /* SQLite may already have rolled back (e.g. after SQLITE_FULL) */
      }
    }
  }

  private assertLeaseUsable(): void {
    // The handle closed its connections (close() is synchronous, like better-sqlite3's).
    if (!this.conn.open) throw new ClosedError();
    if (!this.lease.valid) throw new LeaseLostError('the lease was released or lost');
    const now = monotonicNow();
    if (now >= this.lease.commitDeadline) {
      const err = new LeaseLostError(
        `the commit deadline passed ${Math.round(now - this.lease.commitDeadline)} ms ago (no keep-alive acknowledged in time)`,
      );
      this.hooks.onLeaseGone(err);
      throw err;
    }
  }
}

function isThenable(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}
