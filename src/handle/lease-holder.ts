/**
 * The handle's write lease, from acquisition to release: coordinator → lease → read-write
 * connection → fence-raising transaction (docs/HAZARDS.md H4, H5), the sticky lease (kept while
 * writing, let go when idle or as soon as another node waits), and the one path by which a lease
 * that is lost, fenced or of unknown commit outcome stops being used.
 */
import type Database from 'better-sqlite3';
import type { Lease, LeaseEventKind } from '../coordinator/types';
import {
  AcquireTimeoutError, CommitOutcomeUnknownError, DatabaseIdentityError, FencedError, LeaseLostError, StaleViewError, StorageFaultError,
} from '../errors';
import type { ResolvedOptions } from '../options';
import { isBusy, isStorageFailure } from '../storage/sqlite-errors';
import { CommitPublisher } from '../txn/commit-publisher';
import { CommitObserver, FenceExpectations, FencedTransactions } from '../txn/fenced';
import { monotonicNow } from '../clock';
import { checkMode, decideIdentity, MountSummary } from '../storage/identity';
import { readStoredMeta } from '../storage/meta';
import type { Connections } from './connections';
import type { LeaseStatus } from './lease-status';
import type { StorageMode } from './modes/mode';

/**
 * How long, and how many times, a new holder reopens a stale or torn view before it lets a waiting
 * node have the lease (both: one reopen can itself take longer than the time on a slow host).
 */
const TAKEOVER_YIELD_MS = 1000;
const TAKEOVER_YIELD_ATTEMPTS = 3;

/** What this node holds while it holds the lease. */
export interface Holding<L extends Lease = Lease> {
  readonly lease: L;
  readonly rw: Database.Database;
  readonly fenced: FencedTransactions;
  readonly publisher: CommitPublisher;
  /** True between a user's BEGIN and COMMIT issued through exec()/statements. */
  manualTxn: boolean;
}

type LossKind = LeaseEventKind;

export class LeaseHolder {
  private current: Holding | null = null;
  private acquiring: Promise<void> | null = null;
  private releasing: Promise<void> | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Set by an explicit acquire(): no idle or hand-over release until release(). */
  private pinned = false;

  constructor(
    private readonly opts: ResolvedOptions,
    private readonly mode: StorageMode,
    private readonly conns: Connections,
    private readonly status: LeaseStatus,
    /** The mount the file lives on, recorded with the database's identity. */
    private readonly mount: MountSummary,
    /** Watches every commit (the standby capture) and is flushed before the lease is let go. */
    private readonly observer: (CommitObserver & { flush(): Promise<void> }) | null = null,
  ) {}

  /** The lease this node holds, or null. */
  get holding(): Holding | null {
    return this.current;
  }

  /** The holding, if its lease is still valid. */
  get usable(): Holding | null {
    return this.current?.lease.valid ? this.current : null;
  }

  /** Takes the lease and keeps it until release(), even when idle or when others wait. */
  async pin(): Promise<void> {
    await this.take();
    this.pinned = true;
  }

  /** Waits for the lease (deduplicated); it is let go again when idle. */
  take(): Promise<void> {
    this.conns.assertOpen();
    if (this.usable) return Promise.resolve();
    this.acquiring ??= this.acquire().finally(() => (this.acquiring = null));
    return this.acquiring;
  }

  private async acquire(): Promise<void> {
    if (this.releasing) await this.releasing.catch(() => undefined); // its failure is not this write's
    let lease: Lease;
    try {
      lease = await this.mode.acquire(this.opts.acquireTimeoutMs);
    } catch (err) {
      if (err instanceof AcquireTimeoutError) this.status.lastHolder = err.holder;
      throw err;
    }
    let rw: Database.Database | null = null;
    try {
      this.conns.assertOpen();
      const published = lease.commitAtAcquire?.txid ?? 0;
      const startedAt = monotonicNow();
      const deadline = startedAt + this.opts.acquireTimeoutMs;
      const newEpoch = await this.mode.beforeFence(lease, deadline);
      let fenced: FencedTransactions;
      // H4: write only on top of a view that includes every published commit, of this database;
      // both are checked before anything is written (a stale view is reopened until the deadline).
      // A view that is behind, or that the NFS client served torn (a storage error while opening
      // or in the fence-raising transaction: nothing was written, and raising our own fence again
      // is harmless), is closed and the file opened again (close-to-open revalidation).
      let lastFault: unknown = null;
      let attempts = 0;
      for (;;) {
        let seen = 0;
        try {
          rw = await openWhenNotBusy(() => this.conns.openReadWrite(), lease, this.opts.busyTimeoutMs);
          const conn = rw;
          const onLeaseGone = (err: FencedError | CommitOutcomeUnknownError | LeaseLostError | StorageFaultError) => {
            const c = this.current;
            if (c?.rw === conn) this.lose(c, err, lossKind(err), true);
          };
          const expect = await this.checkIdentity(lease, rw, published);
          try {
            fenced = await FencedTransactions.create(
              rw, lease, { onLeaseGone }, this.opts.busyTimeoutMs, newEpoch, expect, this.observer ?? undefined,
            );
            break;
          } catch (err) {
            if (!(err instanceof StaleViewError)) throw err;
          }
          seen = readStoredMeta(rw).txid;
        } catch (err) {
          if (!isStorageFailure(err)) throw err;
          lastFault = err;
        }
        rw?.close();
        rw = null;
        if (!lease.valid) throw new LeaseLostError('the lease ended while taking over the file');
        // A client cache can stay stale for minutes (seen on knfsd in the NFS lab, docs/NFS.md):
        // reopening up to the deadline would keep every other node from writing meanwhile, so
        // when another node waits, the lease goes to it after a short grace.
        const now = monotonicNow();
        attempts++;
        const yieldToWaiter = lease.hasWaiters && attempts >= TAKEOVER_YIELD_ATTEMPTS && now - startedAt > TAKEOVER_YIELD_MS;
        if (now > deadline || yieldToWaiter) {
          throw lastFault ? new StorageFaultError('taking over the file (open, fence-raising transaction)', lastFault)
            : new StaleViewError(seen, published, Math.round(now - startedAt));
        }
        await sleep(50);
      }
      await this.mode.afterFence(lease, fenced);
      this.conns.assertOpen();
      this.current = {
        lease, rw, fenced, manualTxn: false,
        publisher: new CommitPublisher(lease, this.opts.nodeId, Math.max(published, fenced.lastTxid)),
      };
      this.conns.bump();
      this.status.current = lease;
      this.status.lastHolder = this.opts.nodeId;
      lease.once('lost', (reason: Error) => {
        if (this.current?.lease === lease) this.lose(this.current, reason, 'lease-lost', false);
      });
      lease.on('waiter', () => this.maybeHandOver());
      this.status.emit('acquired', { fence: lease.fence });
      this.scheduleIdleRelease();
    } catch (err) {
      rw?.close();
      await this.mode.abortTakeover(lease);
      await lease.release().catch(() => undefined);
      if (err instanceof FencedError) lease.reportEvent('fenced-write-refused', err.message);
      throw err;
    }
  }

  /**
   * Before a new holder writes anything: is the file the database etcd records under this name
   * (its id), in the mode recorded for it? Records the identity if this is its first holder.
   * Reads through the read-write connection, which also recovers a hot journal (we hold the lease).
   */
  private async checkIdentity(lease: Lease, rw: Database.Database, published: number): Promise<FenceExpectations> {
    const stored = readStoredMeta(rw);
    const where = { path: this.opts.path, name: this.opts.name, node: this.opts.nodeId };
    const locks = this.mode.locks;
    checkMode({ recorded: lease.identity, locks, mount: this.mount, ...where });
    const decision = decideIdentity({ file: stored, recorded: lease.identity, publishedTxid: published, ...where });
    if (decision.writeRecord) {
      const onRecord = await lease.recordIdentity({ id: decision.id, locks, path: this.opts.path, node: this.opts.nodeId, mount: this.mount });
      checkMode({ recorded: onRecord, locks, mount: this.mount, ...where });
      if (onRecord.id !== decision.id) {
        throw new DatabaseIdentityError(
          `${this.opts.path} would become database ${decision.id}, but another node recorded database ${onRecord.id} ` +
            `(${onRecord.path}, by ${onRecord.node}) under the name '${this.opts.name}' first`,
          { fileId: stored.dbid, recordedId: onRecord.id },
        );
      }
    }
    return { publishedTxid: published, dbid: decision.id, writeDbid: decision.writeFile };
  }

  /** Releases the lease (revoking it, so a waiting node proceeds at once). */
  async release(): Promise<void> {
    this.pinned = false;
    if (this.acquiring) await this.acquiring.catch(() => undefined);
    // Lockless: gated writes span awaits; let go only between them, after those already queued.
    return this.mode.serialize(() => this.releaseNow());
  }

  private releaseNow(): Promise<void> {
    // An in-flight release has already detached: callers (close()) must wait for its revoke.
    if (this.releasing) return this.releasing;
    const h = this.current;
    if (!h) return Promise.resolve();
    this.releasing = (async () => {
      // Detach first (no commit can start under h any more), then let pending publishes finish.
      this.detach(h);
      await h.publisher.flush();
      await this.observer?.flush(); // the next holder continues the standby chain without a snapshot
      await h.lease.release();
      this.status.lastHolder = null; // no longer known
      this.status.emit('released', { fence: h.lease.fence });
    })().finally(() => (this.releasing = null));
    return this.releasing;
  }

  /**
   * The handle closes: the read-write connection closes now (an open transaction rolls back); the
   * returned promise resolves once pending publishes are out and the lease is released.
   */
  close(): Promise<void> {
    this.pinned = false;
    const h = this.current;
    if (h) this.detach(h);
    return (async () => {
      // An acquisition in flight sees the handle closed and gives its lease back itself.
      if (this.acquiring) await this.acquiring.catch(() => undefined);
      if (this.releasing) await this.releasing.catch(() => undefined);
      if (!h) return;
      await h.publisher.flush();
      await this.observer?.flush();
      await h.lease.release();
      this.status.lastHolder = null;
      this.status.emit('released', { fence: h.lease.fence });
    })();
  }

  /** Stops using h: no commit can start under it any more; its read-write connection closes. */
  private detach(h: Holding): void {
    this.stopUsing(h);
    h.fenced.rollback();
    h.rw.close();
  }

  private stopUsing(h: Holding): void {
    if (this.current !== h) return;
    this.pinned = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.current = null;
    this.status.current = null;
    this.conns.bump();
  }

  /**
   * The one lost-lease path: the lease was lost (its `lost` event), a newer holder fenced us, the
   * commit deadline passed, or a COMMIT's outcome is unknown. Stop using the lease now, record why,
   * give it up and tell listeners. From inside a fenced call (`unwinding`) the connection closes
   * only after that call unwinds: it still owns the connection for its rollback.
   */
  private lose(h: Holding, reason: Error, kind: LossKind, unwinding: boolean): void {
    if (this.current !== h) return;
    this.stopUsing(h);
    h.lease.reportEvent(kind, reason.message);
    const finish = () => {
      h.fenced.rollback();
      h.rw.close();
      void h.lease.abandon(reason);
      this.status.emit('lost', reason);
    };
    if (unwinding) setImmediate(finish);
    else finish();
  }

  /** After each commit: keep the lease while writing; hand it over at once if someone waits. */
  afterCommit(h: Holding): void {
    this.scheduleIdleRelease();
    if (h.lease.hasWaiters) this.maybeHandOver();
  }

  private scheduleIdleRelease(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.pinned) return;
      const h = this.current;
      if (h && (h.manualTxn || h.rw.inTransaction)) this.scheduleIdleRelease(); // not mid-transaction
      else void this.release().catch(() => undefined);
    }, this.opts.idleReleaseMs);
    this.idleTimer.unref();
  }

  private maybeHandOver(): void {
    // Writes already resumed in this tick run first (setImmediate comes after microtasks).
    setImmediate(() => {
      const h = this.current;
      if (h && !this.pinned && h.lease.hasWaiters && !h.manualTxn && !h.rw.inTransaction) void this.release().catch(() => undefined);
    });
  }
}

function lossKind(err: FencedError | CommitOutcomeUnknownError | LeaseLostError | StorageFaultError): LossKind {
  return err instanceof FencedError ? 'fenced-write-refused'
    : err instanceof CommitOutcomeUnknownError ? 'commit-outcome-unknown' : 'lease-lost';
}

/** Opening read-write sets pragmas that may need the file lock: retry between event-loop turns. */
async function openWhenNotBusy(
  openFn: () => Database.Database, lease: Lease, busyTimeoutMs: number,
): Promise<Database.Database> {
  const deadline = monotonicNow() + busyTimeoutMs;
  for (;;) {
    try {
      return openFn();
    } catch (err) {
      if (!isBusy(err) || monotonicNow() >= deadline || !lease.valid) throw err;
      await sleep(20);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
