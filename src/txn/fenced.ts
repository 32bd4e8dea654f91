/**
 * The fenced transaction, synchronous from BEGIN to COMMIT (all lease work happens before BEGIN):
 *   BEGIN IMMEDIATE → stored fence > ours? FencedError → fence := ours, txid += 1 → user work →
 *   commit deadline passed? LeaseLostError → COMMIT (an I/O error here: CommitOutcomeUnknownError).
 * Anything thrown before COMMIT rolls back, so nothing half-written survives.
 */
import type Database from 'better-sqlite3';
import { CommitOutcomeUnknownError, FencedError, LeaseLostError } from '../errors';
import type { Lease } from '../coordinator/types';
import { ensureMetaTable, MetaStatements } from '../storage/meta';

export type BeginMode = 'IMMEDIATE' | 'EXCLUSIVE';

export interface FencedHooks {
  /** Called with the refusing error before it is thrown, so the handle can drop the lease. */
  onFenced(err: FencedError): void;
  onOutcomeUnknown(err: CommitOutcomeUnknownError): void;
}

export class FencedTransactions {
  private readonly meta: MetaStatements;
  private readonly stmts: Record<'IMMEDIATE' | 'EXCLUSIVE' | 'COMMIT' | 'ROLLBACK', Database.Statement>;
  /** txid of the newest commit on this connection. */
  lastTxid = 0;
  private pendingTxid = 0;

  /** Runs the holder's first transaction, which raises the fence (H5), then prepares the hot path. */
  constructor(readonly conn: Database.Database, readonly lease: Lease, private readonly hooks: FencedHooks) {
    conn.exec('BEGIN IMMEDIATE');
    try {
      ensureMetaTable(conn);
      const stored = new MetaStatements(conn).read();
      if (stored.fence > lease.fence) throw new FencedError(lease.fence, stored.fence);
      conn.prepare('UPDATE _sqlite_ha_meta SET fence = ? WHERE id = 1').run(lease.fence);
      this.lastTxid = stored.txid;
      conn.exec('COMMIT');
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

  /** Runs fn in one fenced transaction; returns its result and the new txid. */
  run<T>(fn: () => T, mode: BeginMode = 'IMMEDIATE'): { result: T; txid: number } {
    this.begin(mode);
    let result: T;
    try {
      result = fn();
      if (isThenable(result)) {
        throw new TypeError('the write function returned a promise: it must be synchronous (do async work before write())');
      }
    } catch (err) {
      this.rollback();
      throw err;
    }
    return { result, txid: this.commit() };
  }

  /** BEGIN plus the fence check and txid bump; the caller must end with commit() or rollback(). */
  begin(mode: BeginMode = 'IMMEDIATE'): void {
    this.assertLeaseUsable();
    this.stmts[mode].run();
    try {
      const stored = this.meta.read();
      if (stored.fence > this.lease.fence) {
        const err = new FencedError(this.lease.fence, stored.fence);
        this.hooks.onFenced(err);
        throw err;
      }
      this.meta.advance(this.lease.fence);
      this.pendingTxid = stored.txid + 1;
    } catch (err) {
      this.rollback();
      throw err;
    }
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
    try {
      this.stmts.COMMIT.run();
    } catch (err) {
      if (isIoError(err)) {
        if (this.conn.inTransaction) this.rollback();
        const unknown = new CommitOutcomeUnknownError({ cause: err });
        this.hooks.onOutcomeUnknown(unknown);
        throw unknown;
      }
      // SQLITE_BUSY and friends leave the transaction open: roll back, the outcome is "not committed".
      this.rollback();
      throw err;
    }
    this.lastTxid = txid;
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
    if (!this.lease.valid) throw new LeaseLostError('the lease was released or lost');
    const now = Date.now();
    if (now >= this.lease.commitDeadline) {
      throw new LeaseLostError(
        `the commit deadline passed ${now - this.lease.commitDeadline} ms ago (no keep-alive acknowledged in time)`,
      );
    }
  }
}

function isThenable(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function isIoError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_CORRUPT' ||
    code === 'SQLITE_FULL' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_PROTOCOL');
}
