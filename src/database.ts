/**
 * HADatabase: the handle open() returns. Reads like better-sqlite3 on a local connection; writes
 * only through the lease: open → coordinator → lease → fenced transaction → commit record.
 *
 * Connections: `ro` (read-only) always; `rw` only while this node holds the lease (HAZARDS H2).
 * `generation` bumps whenever the current connection changes, so statements re-prepare.
 */
import type Database from 'better-sqlite3';
import type { Coordinator, Lease } from './coordinator/types';
import {
  AcquireTimeoutError, ClosedError, CommitOutcomeUnknownError, FencedError, LeaseLostError, NotLeaseHolderError,
  StaleViewError, UnsafeStorageError,
} from './errors';
import type { ResolvedOptions } from './options';
import { LeaseStatus } from './lease-status';
import { HAStatement, StatementHost } from './statement';
import { assertSafeSql, openReadOnly, openReadWrite } from './storage/connection';
import { readMeta } from './storage/meta';
import { commitGated } from './lockless/commit';
import { moveToNewInode } from './lockless/epoch';
import { LocklessReads } from './lockless/reads';
import { CommitPublisher } from './txn/commit-publisher';
import { BeginMode, FencedTransactions } from './txn/fenced';

export type Consistency = 'local' | 'linearizable';
export type LocksInUse = 'trusted' | 'none';

interface Registration {
  apply(conn: Database.Database): void;
}

interface Holding {
  lease: Lease;
  rw: Database.Database;
  fenced: FencedTransactions;
  publisher: CommitPublisher;
  /** True between a user's BEGIN and COMMIT issued through exec()/statements. */
  manualTxn: boolean;
}

export class HADatabase implements StatementHost {
  readonly lease: LeaseStatus;
  /** Whether SQLite's file locks are trusted across hosts on this mount. */
  readonly locks: LocksInUse;
  generation = 0;

  private ro: Database.Database;
  private holding: Holding | null = null;
  private acquiring: Promise<void> | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private releasing: Promise<void> | null = null;
  private closed = false;
  /** Set by an explicit acquire(): no idle or hand-over release until release(). */
  private pinned = false;
  /** Lockless mode only: registered reads, serialized gated writes, depth of read() callbacks. */
  private readonly lockless: LocklessReads | null = null;
  private writeChain: Promise<unknown> = Promise.resolve();
  private readDepth = 0;
  private readonly registrations: Registration[] = [];

  /** @internal use open() */
  constructor(
    private readonly opts: ResolvedOptions,
    private readonly coordinator: Coordinator,
    locks: LocksInUse,
  ) {
    this.locks = locks;
    this.lease = new LeaseStatus(opts.nodeId);
    this.ro = openReadOnly(opts);
    if (locks === 'none') {
      const self = this;
      this.lockless = new LocklessReads(
        coordinator,
        { get ro() { return self.ro; }, reopenReadOnly: () => self.reopenReadOnly() },
        opts.acquireTimeoutMs,
      );
    }
  }

  // ---- the lease ---------------------------------------------------------------------------

  /**
   * Takes the write lease and keeps it until release() or close(), even when idle or when others
   * wait; the better-sqlite3 surface writes only while it is held.
   */
  async acquire(): Promise<void> {
    await this.takeLease();
    this.pinned = true;
  }

  /** Waits for the lease (deduplicated); write() uses this and lets the lease go when idle. */
  private takeLease(): Promise<void> {
    this.assertOpen();
    if (this.holding?.lease.valid) return Promise.resolve();
    this.acquiring ??= this.doAcquire().finally(() => (this.acquiring = null));
    return this.acquiring;
  }

  private async doAcquire(): Promise<void> {
    if (this.releasing) await this.releasing.catch(() => undefined); // its failure is not this write's
    let lease: Lease;
    try {
      lease = await this.coordinator.acquire({ timeoutMs: this.opts.acquireTimeoutMs });
    } catch (err) {
      if (err instanceof AcquireTimeoutError) this.lease.lastHolder = err.holder;
      throw err;
    }
    let rw: Database.Database | null = null;
    try {
      if (this.closed) throw new ClosedError();
      const published = lease.commitAtAcquire?.txid ?? 0;
      const deadline = Date.now() + this.opts.acquireTimeoutMs;
      const gated = this.locks === 'none';
      let newEpoch: number | undefined;
      if (gated) newEpoch = await this.prepareLocklessTakeover(lease, deadline);
      let fenced: FencedTransactions;
      // H4: write only on top of a view that includes every published commit; reopen if stale.
      for (;;) {
        rw = await openWhenNotBusy(() => openReadWrite(this.opts, { noCacheSpill: gated }), lease, this.opts.busyTimeoutMs);
        for (const r of this.registrations) r.apply(rw);
        fenced = await FencedTransactions.create(
          rw, lease, { onLeaseGone: (err) => this.dropLease(err) }, this.opts.busyTimeoutMs, newEpoch,
        );
        if (fenced.lastTxid >= published) break;
        rw.close();
        rw = null;
        if (Date.now() > deadline) throw new StaleViewError(fenced.lastTxid, published, this.opts.acquireTimeoutMs);
        await sleep(50);
      }
      if (gated) {
        // The fence-raising transaction was a commit: publish it (with the epoch) and let readers in.
        const ok = await lease.publishCommit(
          { txid: fenced.lastTxid, fence: lease.fence, node: this.opts.nodeId, time: Date.now(), epoch: fenced.epoch },
          { openGate: true },
        );
        if (!ok) throw new LeaseLostError('the lease ended while taking over the file');
      }
      this.holding = {
        lease, rw, fenced, manualTxn: false,
        publisher: new CommitPublisher(lease, this.opts.nodeId, Math.max(published, fenced.lastTxid)),
      };
      this.generation++;
      this.lease.current = lease;
      this.lease.lastHolder = this.opts.nodeId;
      lease.once('lost', (reason: Error) => this.onLost(lease, reason));
      lease.on('waiter', () => this.maybeHandOver());
      this.lease.emit('acquired', { fence: lease.fence });
      this.scheduleIdleRelease();
    } catch (err) {
      rw?.close();
      if (this.locks === 'none') await lease.openGate();
      await lease.release().catch(() => undefined);
      if (err instanceof FencedError) lease.reportEvent('fenced-write-refused', err.message);
      throw err;
    }
  }

  /**
   * Lockless mode, before the first write of a new holder: after an unclean hand-over, wait out
   * the old lease plus the margin (a live but slow old writer finishes), then, with readers gated
   * out, move the file to a new inode so a still-paused old writer writes into an orphan (H5, H8).
   * Returns the new epoch, or undefined when the file stays. Leaves the gate closed either way:
   * the fence-raising transaction that follows is a commit too.
   */
  private async prepareLocklessTakeover(lease: Lease, deadline: number): Promise<number | undefined> {
    if (lease.cleanHandover) {
      await lease.closeGate(deadline);
      return undefined;
    }
    await sleep(Math.max(this.opts.leaseTtlMs, lease.previousTtlMs ?? 0) + this.opts.safetyMarginMs);
    await lease.closeGate(Date.now() + this.opts.acquireTimeoutMs);
    moveToNewInode(this.opts, lease.fence);
    return lease.fence;
  }

  /** Releases the lease (revoking it, so a waiting node proceeds at once). */
  async release(): Promise<void> {
    this.pinned = false;
    if (this.acquiring) await this.acquiring.catch(() => undefined);
    if (this.locks === 'none') {
      // Gated writes span awaits: let go only between them, after those already queued.
      const p = this.writeChain.then(() => this.releaseNow());
      this.writeChain = p.catch(() => undefined);
      return p;
    }
    return this.releaseNow();
  }

  private releaseNow(): Promise<void> {
    // An in-flight release has already detached: callers (close()) must wait for its revoke.
    if (this.releasing) return this.releasing;
    const h = this.holding;
    if (!h) return Promise.resolve();
    this.releasing = (async () => {
      // Detach first (no commit can start under h any more), then let pending publishes finish.
      if (this.holding === h) this.detach(h);
      await h.publisher.flush();
      await h.lease.release();
      this.lease.lastHolder = null; // no longer known
      this.lease.emit('released', { fence: h.lease.fence });
    })().finally(() => (this.releasing = null));
    return this.releasing;
  }

  /** Closes the read-write connection before anything else can hold the lease. */
  private detach(h: Holding): void {
    this.pinned = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.holding = null;
    this.lease.current = null;
    h.fenced.rollback();
    h.rw.close();
    this.generation++;
  }

  private onLost(lease: Lease, reason: Error): void {
    const h = this.holding;
    if (!h || h.lease !== lease) return;
    this.detach(h);
    lease.reportEvent('lease-lost', reason.message);
    this.lease.emit('lost', reason);
  }

  private dropLease(reason: FencedError | CommitOutcomeUnknownError | LeaseLostError): void {
    const h = this.holding;
    if (!h) return;
    h.lease.reportEvent(
      reason instanceof FencedError ? 'fenced-write-refused'
        : reason instanceof CommitOutcomeUnknownError ? 'commit-outcome-unknown' : 'lease-lost',
      reason.message,
    );
    // Stop using the lease now; close the connection after the current call unwinds (it still
    // owns the connection for its rollback).
    this.holding = null;
    this.lease.current = null;
    this.generation++;
    setImmediate(() => {
      this.pinned = false;
      h.fenced.rollback();
      h.rw.close();
      void h.lease.abandon(reason);
      this.lease.emit('lost', reason);
    });
  }

  /** Sticky lease: keep it while writing; let go when idle or as soon as another node waits. */
  private scheduleIdleRelease(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.pinned) return;
      const h = this.holding;
      if (h && (h.manualTxn || h.rw.inTransaction)) this.scheduleIdleRelease(); // not mid-transaction
      else void this.release().catch(() => undefined);
    }, this.opts.idleReleaseMs);
    this.idleTimer.unref();
  }

  private maybeHandOver(): void {
    // Writes already resumed in this tick run first (setImmediate comes after microtasks).
    setImmediate(() => {
      const h = this.holding;
      if (h && !this.pinned && h.lease.hasWaiters && !h.manualTxn && !h.rw.inTransaction) void this.release().catch(() => undefined);
    });
  }

  // ---- writes ------------------------------------------------------------------------------

  /**
   * Runs the synchronous fn(conn) in one fenced BEGIN IMMEDIATE transaction, commits, publishes
   * the commit record, and resolves with fn's result.
   */
  async write<T>(fn: (conn: Database.Database) => T): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('db.write(fn) expects a synchronous function');
    this.assertOpen();
    this.assertNotInRead('db.write()');
    if (this.locks === 'trusted') return this.writeOnce(fn);
    // Lockless: the connection sits in an open transaction across the gate's await, so this
    // handle's writes run one at a time.
    const p = this.writeChain.then(() => this.writeOnce(fn));
    this.writeChain = p.catch(() => undefined);
    return p;
  }

  private async writeOnce<T>(fn: (conn: Database.Database) => T): Promise<T> {
    const busyDeadline = Date.now() + this.opts.busyTimeoutMs;
    for (;;) {
      if (!this.holding?.lease.valid) await this.takeLease();
      const h = this.holding;
      if (!h) throw new LeaseLostError('the lease was lost right after it was acquired');
      // BEGIN is retried here, not inside SQLite, so keep-alives flow while the file is busy;
      // past the deadline one last blocking attempt throws SQLITE_BUSY.
      if (!h.fenced.tryBegin('IMMEDIATE', Date.now() >= busyDeadline)) {
        await sleep(10);
        continue;
      }
      const result = h.fenced.work(() => fn(h.rw));
      if (this.locks === 'none') {
        await commitGated(h.fenced, h.lease, this.opts.nodeId, this.opts.acquireTimeoutMs);
        this.afterCommit(h);
      } else {
        const txid = h.fenced.commit();
        this.afterCommit(h);
        await h.publisher.publish(txid);
      }
      return result;
    }
  }

  private afterCommit(h: Holding): void {
    this.scheduleIdleRelease();
    if (h.lease.hasWaiters) this.maybeHandOver();
  }

  /** StatementHost: the synchronous write path of the better-sqlite3 surface. */
  runWrite<T>(what: string, fn: () => T): T {
    this.assertOpen();
    this.assertSyncSurface('write', what);
    this.assertNotInRead(what);
    const h = this.holding;
    if (!h?.lease.valid) throw new NotLeaseHolderError(what);
    if (h.rw.inTransaction) return fn(); // inside a fenced transaction already
    const { result, txid } = h.fenced.run(fn);
    this.afterCommit(h);
    void h.publisher.publish(txid);
    return result;
  }

  /** StatementHost: reads; a hidden write on the read-only connection means "not the holder". */
  runRead<T>(fn: () => T): T {
    this.assertOpen();
    if (this.readDepth === 0) this.assertSyncSurface('read', 'this statement');
    try {
      return fn();
    } catch (err) {
      if (!this.holding && isReadonlyError(err)) throw new NotLeaseHolderError('this statement');
      throw err;
    }
  }

  /** BEGIN/COMMIT/ROLLBACK issued as SQL by code written for plain better-sqlite3. */
  transactionControl(sql: string): Database.RunResult | null {
    const m = /^\s*(BEGIN|COMMIT|END|ROLLBACK)(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;?\s*$/i.exec(sql);
    if (!m) return null;
    this.assertSyncSurface('write', sql.trim());
    const h = this.holding;
    if (!h) {
      this.ro.exec(sql); // read transactions work without the lease
      return { changes: 0, lastInsertRowid: 0 };
    }
    const verb = m[1].toUpperCase();
    this.assertNotInRead(sql.trim());
    if (verb === 'BEGIN') {
      h.fenced.begin(m[3]?.toUpperCase() === 'EXCLUSIVE' ? 'EXCLUSIVE' : 'IMMEDIATE');
      h.manualTxn = true;
    } else if (verb === 'ROLLBACK') {
      h.manualTxn = false;
      h.fenced.rollback();
    } else {
      h.manualTxn = false;
      const txid = h.fenced.commit();
      this.afterCommit(h);
      void h.publisher.publish(txid);
    }
    return { changes: 0, lastInsertRowid: 0 };
  }

  // ---- reads -------------------------------------------------------------------------------

  /**
   * Runs the synchronous fn(conn) in one read transaction. `linearizable` first makes the local
   * view include every commit published before the call (reopening a stale connection).
   */
  async read<T>(fn: (conn: Database.Database) => T, options: { consistency?: Consistency } = {}): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('db.read(fn) expects a synchronous function');
    const consistency = options.consistency ?? 'local';
    if (consistency !== 'local' && consistency !== 'linearizable') {
      throw new TypeError(`db.read: consistency must be 'local' or 'linearizable', got ${JSON.stringify(consistency)}`);
    }
    this.assertOpen();
    if (this.lockless) {
      return this.lockless.read(fn, () => this.readDepth++, () => this.readDepth--);
    }
    if (consistency === 'local') return this.readOnce(fn, 0).result;
    const record = await this.coordinator.readCommit();
    const want = record?.txid ?? 0;
    const deadline = Date.now() + this.opts.acquireTimeoutMs;
    for (;;) {
      this.assertOpen();
      const r = this.readOnce(fn, want);
      if (r.fresh) return r.result as T;
      if (Date.now() > deadline) throw new StaleViewError(r.txid, want, this.opts.acquireTimeoutMs);
      this.reopenReadOnly();
      await sleep(20);
    }
  }

  /** One read transaction; fn runs only if the view's txid reaches `want`. */
  private readOnce<T>(fn: (conn: Database.Database) => T, want: number): { fresh: boolean; txid: number; result: T } {
    // Always the read-only connection, also on the holder: a write slipped into a read callback
    // must fail, never commit unfenced. The file lock makes it see every commit (H4).
    this.assertOpen();
    const conn = this.ro;
    const own = conn.inTransaction;
    const tx = readTransaction(conn);
    if (!own) tx.begin.run();
    try {
      const txid = want > 0 ? readMeta(conn).txid : 0;
      if (txid < want) return { fresh: false, txid, result: undefined as T };
      this.readDepth++;
      let result: T;
      try {
        result = this.runRead(() => fn(conn));
      } finally {
        this.readDepth--;
      }
      if (result && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('the read function returned a promise: it must be synchronous');
      }
      return { fresh: true, txid, result };
    } finally {
      if (!own && conn.inTransaction) tx.commit.run();
    }
  }

  /** Close-to-open revalidation (H4): a new connection sees what the file holds now. */
  private reopenReadOnly(): void {
    const fresh = openReadOnly(this.opts);
    for (const r of this.registrations) r.apply(fresh);
    this.ro.close();
    this.ro = fresh;
    this.generation++;
  }

  currentConnection(): Database.Database {
    this.assertOpen();
    const h = this.holding;
    // Lockless mode: the read-write connection may sit in an open transaction awaiting the gate.
    return h && h.lease.valid && this.locks !== 'none' ? h.rw : this.ro;
  }

  // ---- the better-sqlite3 surface ----------------------------------------------------------

  prepare(sql: string): HAStatement {
    this.assertOpen();
    return new HAStatement(this, sql, this);
  }

  exec(sql: string): this {
    this.assertOpen();
    assertSafeSql(sql);
    if (this.transactionControl(sql)) return this;
    const h = this.holding;
    const begin = /^\s*BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;/i.exec(sql);
    if (begin && h?.lease.valid && !h.rw.inTransaction) {
      // exec('BEGIN; ...; COMMIT') as better-sqlite3 code writes it: fenced BEGIN, body, checked COMMIT.
      // Like SQLite, an error in the body leaves the transaction open for the caller to roll back.
      this.transactionControl(begin[0]);
      const rest = sql.slice(begin[0].length);
      const end = /;?\s*(COMMIT|END)(\s+TRANSACTION)?\s*;?\s*$/i.exec(rest);
      const body = end ? rest.slice(0, end.index) : rest;
      if (body.trim()) h.rw.exec(body);
      if (end) this.transactionControl('COMMIT');
      return this;
    }
    if (h?.lease.valid) {
      this.runWrite('exec()', () => h.rw.exec(sql));
      return this;
    }
    const wasInTransaction = this.ro.inTransaction;
    try {
      this.runRead(() => this.ro.exec(sql));
    } catch (err) {
      // A refused 'BEGIN; INSERT ...' must not leave a read transaction (and its lock) behind.
      if (!wasInTransaction && this.ro.inTransaction) this.ro.exec('ROLLBACK');
      throw err;
    }
    return this;
  }

  transaction<F extends (...args: any[]) => any>(fn: F): Database.Transaction<F> {
    if (typeof fn !== 'function') throw new TypeError('Expected first argument to be a function');
    const self = this;
    const make = (mode: BeginMode | 'DEFERRED') =>
      function (this: unknown, ...args: unknown[]) {
        self.assertOpen();
        const h = self.holding;
        if (h?.lease.valid) {
          self.assertSyncSurface('write', 'transaction()');
          self.assertNotInRead('transaction()');
          // Nested: better-sqlite3's own savepoint logic on the fenced connection.
          if (h.rw.inTransaction) return (h.rw.transaction(fn) as any).apply(this, args);
          const { result, txid } = h.fenced.run(() => fn.apply(this, args), mode === 'EXCLUSIVE' ? 'EXCLUSIVE' : 'IMMEDIATE');
          self.afterCommit(h);
          void h.publisher.publish(txid);
          return result;
        }
        const t = self.ro.transaction(fn);
        const variant = mode === 'EXCLUSIVE' ? t.exclusive : mode === 'IMMEDIATE' ? t.immediate : t.deferred;
        return self.runRead(() => (variant as any).apply(this, args));
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
    this.assertOpen();
    assertSafeSql(`PRAGMA ${source}`);
    const m = /^\s*(?:\w+\.)?(\w+)\s*(=|\()?/.exec(source);
    const name = m?.[1].toLowerCase() ?? '';
    // `name = v` and `name(v)` set a value, except for the pragmas whose argument is a table or
    // index to read about; anything unparseable is treated as a write (fenced).
    const assigns = !m || /=/.test(source) || (m[2] === '(' && !READ_ARG_PRAGMAS.has(name));
    const h = this.holding;
    if (assigns && h?.lease.valid && !h.rw.inTransaction && !CONNECTION_PRAGMAS.has(name)) {
      return this.runWrite('pragma()', () => h.rw.pragma(source, options));
    }
    if (CONNECTION_PRAGMAS.has(name) && assigns) {
      // Per-connection settings must follow the handle onto every connection it opens.
      this.register((c) => c.pragma(source, options));
      return this.currentConnection().pragma(source, options); // idempotent: returns what better-sqlite3 would

    }
    return this.runRead(() => this.currentConnection().pragma(source, options));
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
    this.assertOpen();
    apply(this.ro);
    if (this.holding) apply(this.holding.rw);
    this.registrations.push({ apply: (c) => void apply(c) });
    return this;
  }

  /** Backs up from the read-only connection, which survives lease hand-overs mid-backup. */
  backup(destination: string, options?: Database.BackupOptions): Promise<Database.BackupMetadata> {
    this.assertOpen();
    // A backup spans many event-loop turns: it cannot sit inside one registered lockless read.
    if (this.locks === 'none') {
      return Promise.reject(new UnsafeStorageError(
        "backup(): not available in the lockless mode (locks: 'none'); use db.read((conn) => conn.serialize())",
      ));
    }
    return this.ro.backup(destination, options);
  }

  serialize(options?: Database.SerializeOptions): Buffer {
    this.assertOpen();
    return this.runRead(() => this.currentConnection().serialize(options));
  }

  get inTransaction(): boolean {
    return !this.closed && (this.readDepth > 0 || this.currentConnection().inTransaction);
  }
  get open(): boolean {
    return !this.closed;
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

  on(event: 'acquired' | 'released' | 'lost', listener: (...args: any[]) => void): this {
    this.lease.on(event, listener);
    return this;
  }

  /** Finishes pending publishes, releases the lease (waiters proceed at once), closes connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.release();
    } finally {
      this.closed = true;
      if (this.idleTimer) clearTimeout(this.idleTimer);
      if (this.holding) this.detach(this.holding);
      this.ro.close();
      await this.coordinator.close();
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /** A write inside a read callback would wait for its own read lock until busyTimeoutMs. */
  private assertNotInRead(what: string): void {
    if (this.readDepth > 0) {
      throw new TypeError(`${what} inside a db.read() callback: reads cannot write; use db.write() after the read`);
    }
  }

  /**
   * Lockless mode: the synchronous better-sqlite3 surface cannot wait for etcd, so it reads only
   * inside db.read() callbacks and never writes (db.write() does).
   */
  private assertSyncSurface(kind: 'read' | 'write', what: string): void {
    if (this.locks !== 'none') return;
    throw new UnsafeStorageError(
      kind === 'write'
        ? `${what}: in the lockless mode (locks: 'none') writes go through db.write(fn) only`
        : `${what}: in the lockless mode (locks: 'none') reads run inside db.read(fn) only`,
    );
  }
}

/** Pragmas whose parenthesised argument names something to read about, not a value to set. */
const READ_ARG_PRAGMAS = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_info', 'index_xinfo', 'index_list', 'foreign_key_list',
  'foreign_key_check', 'integrity_check', 'quick_check',
]);

/** Pragmas that set per-connection state rather than write to the file. */
const CONNECTION_PRAGMAS = new Set([
  'busy_timeout', 'cache_size', 'foreign_keys', 'recursive_triggers', 'case_sensitive_like',
  'cell_size_check', 'defer_foreign_keys', 'ignore_check_constraints', 'query_only', 'reverse_unordered_selects',
  'temp_store', 'trusted_schema', 'mmap_size', 'analysis_limit', 'automatic_index', 'cache_spill', 'threads',
]);

function isReadonlyError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_READONLY');
}

const readTxByConn = new WeakMap<Database.Database, { begin: Database.Statement; commit: Database.Statement }>();

/** BEGIN/COMMIT prepared once per read-only connection: read() is a hot path. */
function readTransaction(conn: Database.Database): { begin: Database.Statement; commit: Database.Statement } {
  let tx = readTxByConn.get(conn);
  if (!tx) {
    tx = { begin: conn.prepare('BEGIN'), commit: conn.prepare('COMMIT') };
    readTxByConn.set(conn, tx);
  }
  return tx;
}

/** Opening read-write sets pragmas that may need the file lock: retry between event-loop turns. */
async function openWhenNotBusy(
  openFn: () => Database.Database, lease: Lease, busyTimeoutMs: number,
): Promise<Database.Database> {
  const deadline = Date.now() + busyTimeoutMs;
  for (;;) {
    try {
      return openFn();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'SQLITE_BUSY' || Date.now() >= deadline || !lease.valid) throw err;
      await sleep(20);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
