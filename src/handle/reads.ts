/**
 * Reads: db.read() in one read transaction on the read-only connection (fresh as asked: a
 * `linearizable` read first reaches every commit published before the call, docs/HAZARDS.md H4),
 * and the guard every reading call of the better-sqlite3 surface goes through.
 */
import type Database from 'better-sqlite3';
import { NotLeaseHolderError, RecoveryPendingError, StaleViewError } from '../errors';
import type { ResolvedOptions } from '../options';
import { readMeta } from '../storage/meta';
import { isHotJournalReadOnly, isReadonly } from '../storage/sqlite-errors';
import type { Connections } from './connections';
import type { LeaseHolder } from './lease-holder';
import type { Consistency, LocalReads, StorageMode } from './modes/mode';

export class Reads implements LocalReads {
  /** Depth of db.read() callbacks running now. */
  private depth = 0;
  /** The read-only connection `tx` was prepared on. */
  private txConn: Database.Database | null = null;
  private tx: { begin: Database.Statement; commit: Database.Statement } | null = null;

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly mode: StorageMode,
    private readonly conns: Connections,
    private readonly holder: LeaseHolder,
  ) {}

  /** True while a db.read() callback runs. */
  get inRead(): boolean {
    return this.depth > 0;
  }

  enter(): void {
    this.depth++;
  }
  leave(): void {
    this.depth--;
  }

  /** A write inside a read callback would wait for its own read lock until busyTimeoutMs. */
  assertNotInRead(what: string): void {
    if (this.depth > 0) {
      throw new TypeError(`${what} inside a db.read() callback: reads cannot write; use db.write() after the read`);
    }
  }

  /**
   * db.read(): validates, then reads the way the storage mode needs. Not async: a local read
   * settles with one already-resolved promise instead of a chain of async frames (issue #11
   * item 4); every failure still rejects, none throws to the caller.
   */
  read<T>(fn: (conn: Database.Database) => T, options: { consistency?: Consistency } = {}): Promise<T> {
    try {
      if (typeof fn !== 'function') throw new TypeError('db.read(fn) expects a synchronous function');
      const consistency = options.consistency ?? 'local';
      if (consistency !== 'local' && consistency !== 'linearizable') {
        throw new TypeError(`db.read: consistency must be 'local' or 'linearizable', got ${JSON.stringify(consistency)}`);
      }
      this.conns.assertOpen();
      return this.mode.read(fn, consistency, this);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The local read path (LocalReads); never throws, it rejects. */
  readLocal<T>(fn: (conn: Database.Database) => T, consistency: Consistency): Promise<T> {
    if (consistency !== 'local') return this.readLinearizable(fn);
    try {
      return Promise.resolve(this.readOnce(fn, 0) as T);
    } catch (err) {
      return this.recover(err, () => this.readOnce(fn, 0) as T);
    }
  }

  private async readLinearizable<T>(fn: (conn: Database.Database) => T): Promise<T> {
    const record = await this.mode.coordinator.readCommit();
    const want = record?.txid ?? 0;
    const deadline = Date.now() + this.opts.acquireTimeoutMs;
    for (;;) {
      this.conns.assertOpen();
      const attempt = () => this.readOnce(fn, want);
      let r: T | Stale;
      try {
        r = attempt();
      } catch (err) {
        r = await this.recover(err, attempt);
      }
      if (!(r instanceof Stale)) return r;
      if (Date.now() > deadline) throw new StaleViewError(r.txid, want, this.opts.acquireTimeoutMs);
      this.conns.reopenReadOnly();
      await sleep(20);
    }
  }

  /** One read transaction; fn runs only if the view's txid reaches `want`, else the view's txid. */
  private readOnce<T>(fn: (conn: Database.Database) => T, want: number): T | Stale {
    // Always the read-only connection, also on the holder: a write slipped into a read callback
    // must fail, never commit unfenced. The file lock makes it see every commit (H4).
    this.conns.assertOpen();
    const conn = this.conns.ro;
    const own = conn.inTransaction;
    const tx = this.readTransaction(conn);
    if (!own) tx.begin.run();
    try {
      if (want > 0) {
        const txid = readMeta(conn).txid;
        if (txid < want) return new Stale(txid);
      }
      // What run() does for a reading call, inlined: this is the hot path, and inside a read
      // callback the sync-surface check does not apply (depth > 0).
      this.depth++;
      let result: T;
      try {
        result = fn(conn);
      } catch (err) {
        throw this.readError(err);
      } finally {
        this.depth--;
      }
      if (result && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('the read function returned a promise: it must be synchronous');
      }
      return result;
    } finally {
      if (!own && conn.inTransaction) tx.commit.run();
    }
  }

  /** BEGIN/COMMIT prepared once per read-only connection (a reopen makes a new one). */
  private readTransaction(conn: Database.Database): { begin: Database.Statement; commit: Database.Statement } {
    if (this.txConn !== conn || this.tx === null) {
      this.tx = { begin: conn.prepare('BEGIN'), commit: conn.prepare('COMMIT') };
      this.txConn = conn;
    }
    return this.tx;
  }
  /** Runs a reading call; a hidden write on the read-only connection means "not the holder". */
  run<T>(fn: () => T): T {
    this.conns.assertOpen();
    if (this.depth === 0) this.mode.assertSyncSurface('read', 'this statement');
    try {
      return fn();
    } catch (err) {
      throw this.readError(err);
    }
  }

  /** What a failed reading call throws: a hot journal's typed error, NotLeaseHolderError for a hidden write, or itself. */
  private readError(err: unknown): unknown {
    const hot = this.hotJournalError(err);
    if (hot !== err) return hot;
    if (!this.holder.holding && isReadonly(err)) return new NotLeaseHolderError('this statement');
    return err;
  }

  /**
   * A hot journal seen through the read-only connection (docs/HAZARDS.md H8): a holder crashed
   * mid-commit, and only a new holder may roll it back (H2). Recovery is driven, not waited for:
   * this node starts taking the lease now (its read-write open recovers the file); the synchronous
   * surface cannot wait, so it gets RecoveryPendingError, and db.read() waits (recovering()).
   */
  hotJournalError(err: unknown): unknown {
    if (!isHotJournalReadOnly(err) || this.holder.holding) return err;
    void this.holder.take().catch(() => undefined);
    return new RecoveryPendingError(
      'this node is taking the write lease to roll it back; db.read() waits for that, a synchronous call must be retried',
      { cause: err },
    );
  }

  /** After a failed attempt: on a hot journal, takes the lease (which recovers the file) and tries once more. */
  private async recover<T>(err: unknown, attempt: () => T): Promise<T> {
    const hot = err instanceof RecoveryPendingError || isHotJournalReadOnly(err);
    if (!hot || this.holder.holding) throw err;
    try {
      await this.holder.take();
    } catch (e) {
      throw new RecoveryPendingError(
        `no node could take the write lease to roll it back within ${this.opts.acquireTimeoutMs} ms (${(e as Error).message})`,
        { cause: e },
      );
    }
    this.conns.reopenReadOnly();
    return attempt();
  }
}

/** A view older than a linearizable read asked for (allocated only then: the fresh path returns fn's result as is). */
class Stale {
  constructor(readonly txid: number) {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
