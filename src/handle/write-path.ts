/**
 * Writes, all through the lease and one fenced transaction each (docs/HAZARDS.md H5), and all
 * ending in the same sequence: COMMIT → keep or hand over the lease → publish the commit record.
 * db.write() waits for the lease; the synchronous better-sqlite3 surface (runSync, control) writes
 * only while the lease is held.
 */
import type Database from 'better-sqlite3';
import { LeaseLostError, NotLeaseHolderError, UnsafeStorageError } from '../errors';
import type { ResolvedOptions } from '../options';
import { pinnedState, runGuarded } from '../storage/sql-guard';
import type { BeginMode } from '../txn/fenced';
import type { Connections } from './connections';
import type { Holding, LeaseHolder } from './lease-holder';
import type { StorageMode } from './modes/mode';
import type { Reads } from './reads';
import { IN_WRITE } from './sql-policy';
import { transactionVerb } from './sql-text';

const NO_CHANGE: Database.RunResult = Object.freeze({ changes: 0, lastInsertRowid: 0 });

export class WritePath {
  constructor(
    private readonly opts: ResolvedOptions,
    private readonly mode: StorageMode,
    private readonly conns: Connections,
    private readonly holder: LeaseHolder,
    private readonly reads: Reads,
  ) {}

  /**
   * Runs the synchronous fn(conn) in one fenced BEGIN IMMEDIATE transaction, commits, publishes
   * the commit record, and resolves with fn's result.
   */
  async write<T>(fn: (conn: Database.Database) => T): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('db.write(fn) expects a synchronous function');
    this.conns.assertOpen();
    this.reads.assertNotInRead('db.write()');
    return this.mode.serialize(() => this.writeOnce(fn));
  }

  private async writeOnce<T>(fn: (conn: Database.Database) => T): Promise<T> {
    const busyDeadline = Date.now() + this.opts.busyTimeoutMs;
    for (;;) {
      if (!this.holder.usable) await this.holder.take();
      const h = this.holder.holding;
      if (!h) throw new LeaseLostError('the lease was lost right after it was acquired');
      // BEGIN is retried here, not inside SQLite, so keep-alives flow while the file is busy;
      // past the deadline one last blocking attempt throws SQLITE_BUSY.
      if (!h.fenced.tryBegin('IMMEDIATE', Date.now() >= busyDeadline)) {
        await sleep(10);
        continue;
      }
      const result = h.fenced.work(() => {
        const r = runGuarded(h.rw, IN_WRITE, () => fn(h.rw));
        this.assertWriteIntact(h);
        return r;
      });
      await this.commit(h);
      return result;
    }
  }

  /**
   * After the user's function, before COMMIT: the transaction is still the handle's and the pinned
   * pragmas are unchanged (the guard refuses both up front; this catches any way around it).
   */
  private assertWriteIntact(h: Holding): void {
    if (!h.rw.inTransaction) {
      throw new UnsafeStorageError('the write transaction was ended inside db.write(fn); the handle commits it itself');
    }
    if (pinnedState(h.rw) !== `${this.opts.journalMode.toLowerCase()},normal,2`) {
      // Back to the pinned values before the rollback that follows releases the file lock.
      h.rw.pragma('locking_mode = NORMAL');
      h.rw.pragma('synchronous = FULL');
      throw new UnsafeStorageError('a pinned pragma was changed inside db.write(fn) (docs/HAZARDS.md H1); the transaction was rolled back');
    }
  }

  /** The holder's synchronous write: fn in its own fenced transaction, or in the one already open. */
  runSync<T>(what: string, fn: () => T, mode: BeginMode = 'IMMEDIATE'): T {
    const h = this.syncHolding(what);
    if (h.rw.inTransaction) return fn(); // inside a fenced transaction already
    h.fenced.begin(mode);
    const result = h.fenced.work(fn);
    void this.commit(h);
    return result;
  }

  /** The holding a synchronous write may use; throws NotLeaseHolderError without the lease. */
  syncHolding(what: string): Holding {
    this.conns.assertOpen();
    this.mode.assertSyncSurface('write', what);
    this.reads.assertNotInRead(what);
    const h = this.holder.usable;
    if (!h) throw new NotLeaseHolderError(what);
    return h;
  }

  /** BEGIN/COMMIT/ROLLBACK issued as SQL by code written for plain better-sqlite3; null for other SQL. */
  control(sql: string): Database.RunResult | null {
    this.conns.assertOpen();
    const tc = transactionVerb(sql);
    if (!tc) return null;
    this.mode.assertSyncSurface('write', sql.trim());
    const h = this.holder.holding;
    if (!h) {
      this.conns.ro.exec(sql); // read transactions work without the lease
      return NO_CHANGE;
    }
    this.reads.assertNotInRead(sql.trim());
    if (tc.verb === 'BEGIN') {
      h.fenced.begin(tc.mode);
      h.manualTxn = true;
    } else if (tc.verb === 'ROLLBACK') {
      h.manualTxn = false;
      h.fenced.rollback();
    } else {
      h.manualTxn = false;
      void this.commit(h);
    }
    return NO_CHANGE;
  }

  /** The one commit sequence: COMMIT → afterCommit (idle timer, hand-over) → publish. */
  private commit(h: Holding): Promise<void> {
    return this.mode.commit(h, () => this.holder.afterCommit(h));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
