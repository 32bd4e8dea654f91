/**
 * HADatabase: the handle open() returns, and its better-sqlite3 surface. It reads like
 * better-sqlite3 on a local connection and writes only through the lease:
 *   open() → coordinator → lease (lease-holder.ts) → fenced transaction → commit record (write-path.ts).
 * The parts, one job each: connections.ts (the read-only connection and per-connection settings),
 * lease-holder.ts, write-path.ts, reads.ts, modes/ (trusted vs lockless), statement.ts with its
 * private adapter statement-host.ts, sql-text.ts (what a SQL string does).
 */
import { MountSummary, mountSummary } from '../storage/identity';
import { lockVerdictFor } from '../storage/mounts';
import type Database from 'better-sqlite3';
import { Coordinator, isGated } from '../coordinator/types';
import { UnsafeStorageError } from '../errors';
import type { ResolvedOptions } from '../options';
import { StandbyStatus, StandbyWriter } from '../standby/writer';
import { assertAllowed, guardedExec } from '../storage/sql-guard';
import { Connections } from './connections';
import { LeaseHolder } from './lease-holder';
import { LeaseStatus } from './lease-status';
import { LocklessMode } from './modes/lockless';
import type { Consistency, LocksInUse, StorageMode } from './modes/mode';
import { TrustedMode } from './modes/trusted';
import { Reads } from './reads';
import { IN_EXEC, READ_ONLY } from './sql-policy';
import { pragmaKind, splitTransactionScript } from './sql-text';
import { HAStatement, Statement } from './statement';
import { HandleStatementHost } from './statement-host';
import { WritePath } from './write-path';

export type { Consistency, LocksInUse } from './modes/mode';

function gated(c: Coordinator) {
  if (!isGated(c)) {
    throw new UnsafeStorageError(
      `the lockless mode (locks: 'none') needs the etcd coordinator, not ${c.kind}: ` +
        "give coordinator: { kind: 'etcd', ... }, or locks: 'trusted' on a filesystem whose locks reach every host",
    );
  }
  return c;
}

/** The sqlite-ha handle: better-sqlite3's Database API plus write(), read(), acquire() and the lease. */
export class HADatabase {
  /** Live view of this node's write lease. */
  readonly lease: LeaseStatus;
  /** Whether SQLite's file locks are trusted across hosts on this mount. */
  readonly locks: LocksInUse;

  private readonly mode: StorageMode;
  private readonly conns: Connections;
  private readonly holder: LeaseHolder;
  private readonly reads: Reads;
  private readonly writes: WritePath;
  private readonly host: HandleStatementHost;
  private closing: Promise<void> | null = null;
  /** The standby copy's writer (null without the `standby` option); it observes every commit. */
  private readonly standbyWriter: StandbyWriter | null;
  private standbyReport: Promise<void> | undefined;

  /** @internal use open() */
  constructor(
    private readonly opts: ResolvedOptions, private readonly coordinator: Coordinator, locks: LocksInUse,
    mount: MountSummary = mountSummary(lockVerdictFor(opts.path).mount),
  ) {
    this.locks = locks;
    this.lease = new LeaseStatus(opts.nodeId);
    this.conns = new Connections(opts, locks === 'none');
    this.mode = locks === 'trusted' ? new TrustedMode(coordinator) : new LocklessMode(opts, gated(coordinator), this.conns);
    this.standbyWriter = opts.standby ? new StandbyWriter(opts.path, opts.name, opts.standby) : null;
    this.standbyWriter?.on('report', (r) => (this.standbyReport = coordinator.reportStandby?.(r)));
    this.holder = new LeaseHolder(opts, this.mode, this.conns, this.lease, mount, this.standbyWriter);
    this.reads = new Reads(opts, this.mode, this.conns, this.holder);
    this.writes = new WritePath(opts, this.mode, this.conns, this.holder, this.reads);
    this.host = new HandleStatementHost(this.mode, this.conns, this.holder, this.reads, this.writes);
  }

  // ---- the lease ---------------------------------------------------------------------------

  /**
   * Takes the write lease and keeps it until release() or close(), even when idle or when others
   * wait; the better-sqlite3 surface writes only while it is held.
   */
  acquire(): Promise<void> {
    return this.holder.pin();
  }

  /** Releases the lease (revoking it, so a waiting node proceeds at once). */
  release(): Promise<void> {
    return this.holder.release();
  }

  // ---- writes and reads --------------------------------------------------------------------

  /**
   * Runs the synchronous fn(conn) in one fenced BEGIN IMMEDIATE transaction, commits, publishes
   * the commit record, and resolves with fn's result.
   */
  write<T>(fn: (conn: Database.Database) => T): Promise<T> {
    return this.writes.write(fn);
  }

  /**
   * Runs the synchronous fn(conn) in one read transaction. `linearizable` first makes the local
   * view include every commit published before the call (reopening a stale connection).
   */
  read<T>(fn: (conn: Database.Database) => T, options: { consistency?: Consistency } = {}): Promise<T> {
    return this.reads.read(fn, options);
  }

  // ---- the better-sqlite3 surface ----------------------------------------------------------

  prepare(sql: string): HAStatement {
    this.conns.assertOpen();
    return new Statement(this.host, sql, this);
  }

  exec(sql: string): this {
    this.conns.assertOpen();
    if (typeof sql !== 'string') throw new TypeError('Expected first argument to be a string');
    if (this.writes.control(sql)) return this;
    const h = this.holder.usable;
    const script = splitTransactionScript(sql);
    if (script && h && !h.rw.inTransaction) {
      // exec('BEGIN; ...; COMMIT') as better-sqlite3 code writes it: fenced BEGIN, body, checked COMMIT.
      // Like SQLite, an error in the body leaves the transaction open for the caller to roll back.
      this.writes.control(script.begin);
      if (script.body.trim()) guardedExec(h.rw, script.body, IN_EXEC);
      if (script.commits) this.writes.control('COMMIT');
      return this;
    }
    if (h) {
      this.writes.runSync('exec()', () => guardedExec(h.rw, sql, IN_EXEC));
      return this;
    }
    const ro = this.conns.ro;
    const wasInTransaction = ro.inTransaction;
    try {
      this.reads.run(() => guardedExec(ro, sql, READ_ONLY));
    } catch (err) {
      // A refused 'BEGIN; INSERT ...' must not leave a read transaction (and its lock) behind.
      if (!wasInTransaction && ro.inTransaction) ro.exec('ROLLBACK');
      throw err;
    }
    return this;
  }

  transaction<F extends (...args: any[]) => any>(fn: F): Database.Transaction<F> {
    if (typeof fn !== 'function') throw new TypeError('Expected first argument to be a function');
    const self = this;
    const make = (mode: 'DEFERRED' | 'IMMEDIATE' | 'EXCLUSIVE') =>
      function (this: unknown, ...args: unknown[]) {
        self.conns.assertOpen();
        if (self.holder.usable) {
          const h = self.writes.syncHolding('transaction()');
          // Nested: better-sqlite3's own savepoint logic on the fenced connection.
          if (h.rw.inTransaction) return (h.rw.transaction(fn) as any).apply(this, args);
          return self.writes.runSync('transaction()', () => fn.apply(this, args), mode === 'EXCLUSIVE' ? 'EXCLUSIVE' : 'IMMEDIATE');
        }
        const t = self.conns.ro.transaction(fn);
        const variant = mode === 'EXCLUSIVE' ? t.exclusive : mode === 'IMMEDIATE' ? t.immediate : t.deferred;
        return self.reads.run(() => (variant as any).apply(this, args));
      };
    const tx = make('DEFERRED') as unknown as Database.Transaction<F>;
    const props = {
      default: { value: tx },
      deferred: { value: make('DEFERRED') },
      immediate: { value: make('IMMEDIATE') },
      exclusive: { value: make('EXCLUSIVE') },
      database: { value: this },
    };
    Object.defineProperties(tx, props);
    for (const k of ['deferred', 'immediate', 'exclusive'] as const) Object.defineProperties(tx[k], props);
    return tx;
  }

  pragma(source: string, options?: Database.PragmaOptions): unknown {
    if (typeof source !== 'string') throw new TypeError('Expected first argument to be a string');
    this.conns.assertOpen();
    assertAllowed(`PRAGMA ${source}`, READ_ONLY);
    const kind = pragmaKind(source);
    const h = this.holder.usable;
    if (kind === 'writes-file' && h && !h.rw.inTransaction) {
      return this.writes.runSync('pragma()', () => h.rw.pragma(source, options));
    }
    if (kind === 'connection-setting') {
      // Per-connection settings must follow the handle onto every connection it opens.
      this.register((c) => c.pragma(source, options));
      return this.connection().pragma(source, options); // idempotent: returns what better-sqlite3 would
    }
    return this.reads.run(() => this.connection().pragma(source, options));
  }

  function(name: string, a: any, b?: any): this {
    return this.register((c) => (b === undefined ? c.function(name, a) : c.function(name, a, b)));
  }
  aggregate(name: string, options: Database.AggregateOptions): this {
    return this.register((c) => c.aggregate(name, options));
  }
  table(name: string, factory: any): this {
    return this.register((c) => c.table(name, factory));
  }
  // Arguments pass through as given: better-sqlite3 treats a missing one differently from undefined.
  loadExtension(...args: [string, string?]): this {
    return this.register((c) => (c.loadExtension as (...a: unknown[]) => unknown)(...args));
  }
  defaultSafeIntegers(...args: [boolean?]): this {
    return this.register((c) => (c.defaultSafeIntegers as (...a: unknown[]) => unknown)(...args));
  }
  unsafeMode(...args: [boolean?]): this {
    return this.register((c) => (c.unsafeMode as (...a: unknown[]) => unknown)(...args));
  }

  /** Applies a per-connection setting now and to every connection opened later. */
  private register(apply: (c: Database.Database) => unknown): this {
    this.conns.assertOpen();
    const h = this.holder.holding;
    this.conns.register((c) => void apply(c), h ? [this.conns.ro, h.rw] : [this.conns.ro]);
    return this;
  }

  /** Backs up from the read-only connection, which survives lease hand-overs mid-backup. */
  backup(destination: string, options?: Database.BackupOptions): Promise<Database.BackupMetadata> {
    this.conns.assertOpen();
    try {
      this.mode.assertBackup();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.conns.ro.backup(destination, options);
  }

  serialize(options?: Database.SerializeOptions): Buffer {
    this.conns.assertOpen();
    return this.reads.run(() => this.connection().serialize(options));
  }

  get inTransaction(): boolean {
    return this.conns.isOpen && (this.reads.inRead || this.connection().inTransaction);
  }
  get open(): boolean {
    return this.conns.isOpen;
  }
  get name(): string {
    return this.opts.path;
  }
  get memory(): boolean {
    return false;
  }
  /** True while this node cannot write (it does not hold the lease). */
  get readonly(): boolean {
    return !this.lease.held;
  }

  /** The standby copy as this node knows it (null without the `standby` option). */
  get standby(): StandbyStatus | null {
    return this.standbyWriter?.status() ?? null;
  }

  /**
   * Lease events ('acquired', 'released', 'lost') and, with the `standby` option, the standby's:
   * 'standby-error' (StandbyWriteError), 'standby-lagging' (lagMs), 'standby-caught-up'.
   */
  on(
    event: 'acquired' | 'released' | 'lost' | 'standby-error' | 'standby-lagging' | 'standby-caught-up',
    listener: (...args: any[]) => void,
  ): this {
    if (event.startsWith('standby-')) this.standbyWriter?.on(event.slice('standby-'.length), listener);
    else this.lease.on(event, listener);
    return this;
  }

  /**
   * Closes the connections now, as better-sqlite3 does: from here on `open` is false and every
   * method throws ClosedError (better-sqlite3's TypeError "The database connection is not open");
   * an open transaction rolls back. The promise resolves once pending publishes are out and the
   * lease is released (a waiting node proceeds at once). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const released = this.holder.close();
    this.conns.close();
    // The standby flushes behind the lease; its final position is reported before the client closes.
    const standby = released.finally(async () => {
      await this.standbyWriter?.close().catch(() => undefined);
      await this.standbyReport;
    });
    this.closing = standby.finally(() => this.coordinator.close());
    return this.closing;
  }

  /** The connection a better-sqlite3-style call runs on now. */
  private connection(): Database.Database {
    return this.host.currentConnection();
  }
}
