/**
 * The lockless mode (locks: 'none', docs/HAZARDS.md H3, H5, H8): etcd gates readers out of every
 * commit window, writes of this handle run one at a time (the connection sits in an open
 * transaction across the gate's await), a new holder after an unclean hand-over moves the file to
 * a new inode, and the synchronous better-sqlite3 surface, which cannot wait for etcd, reads only
 * inside db.read() callbacks and never writes.
 */
import type Database from 'better-sqlite3';
import { monotonicNow } from '../../clock';
import type { GatedCoordinator, GatedLease } from '../../coordinator/types';
import { LeaseLostError, UnsafeStorageError } from '../../errors';
import type { ResolvedOptions } from '../../options';
import { commitGated } from '../../lockless/commit';
import { moveToNewInode } from '../../lockless/epoch';
import { LocklessReads } from '../../lockless/reads';
import type { FencedTransactions } from '../../txn/fenced';
import type { Connections } from '../connections';
import type { Holding } from '../lease-holder';
import type { Consistency, LocalReads, StorageMode } from './mode';

export class LocklessMode implements StorageMode<GatedLease> {
  readonly locks = 'none' as const;
  readonly noCacheSpill = true;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly reads: LocklessReads;

  constructor(private readonly opts: ResolvedOptions, readonly coordinator: GatedCoordinator, conns: Connections) {
    this.reads = new LocklessReads(coordinator, conns, opts.acquireTimeoutMs);
  }

  acquire(timeoutMs: number): Promise<GatedLease> {
    return this.coordinator.acquire({ timeoutMs });
  }

  /**
   * After an unclean hand-over, wait out the old lease plus the margin (a live but slow old writer
   * finishes), then, with readers gated out, move the file to a new inode so a still-paused old
   * writer writes into an orphan (H5, H8). Leaves the gate closed either way: the fence-raising
   * transaction that follows is a commit too.
   */
  async beforeFence(lease: GatedLease, deadline: number): Promise<number | undefined> {
    if (lease.cleanHandover) {
      await lease.closeGate(deadline);
      return undefined;
    }
    await sleep(Math.max(this.opts.leaseTtlMs, lease.previousTtlMs ?? 0) + this.opts.safetyMarginMs);
    await lease.closeGate(monotonicNow() + this.opts.acquireTimeoutMs);
    // Asynchronous (keep-alives flow however large the file), lease checked before the rename.
    const usable = () => lease.valid && monotonicNow() < lease.commitDeadline;
    await moveToNewInode(this.opts, lease.fence, { usable }, lease.previousFence);
    return lease.fence;
  }

  /** The fence-raising transaction was a commit: publish it (with the epoch) and let readers in. */
  async afterFence(lease: GatedLease, fenced: FencedTransactions): Promise<void> {
    const ok = await lease.publishCommit(
      { txid: fenced.lastTxid, fence: lease.fence, node: this.opts.nodeId, time: Date.now(), epoch: fenced.epoch },
      { openGate: true },
    );
    if (!ok) throw new LeaseLostError('the lease ended while taking over the file');
  }

  async abortTakeover(lease: GatedLease): Promise<void> {
    await lease.openGate();
  }

  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  async commit(h: Holding<GatedLease>, committed: () => void): Promise<void> {
    await commitGated(h.fenced, h.lease, this.opts.nodeId, this.opts.acquireTimeoutMs);
    committed();
  }

  // The read-write connection may sit in an open transaction awaiting the gate.
  connectionFor(_h: Holding<GatedLease> | null, ro: Database.Database): Database.Database {
    return ro;
  }

  read<T>(fn: (conn: Database.Database) => T, _consistency: Consistency, local: LocalReads): Promise<T> {
    return this.reads.read(fn, () => local.enter(), () => local.leave());
  }

  assertSyncSurface(kind: 'read' | 'write', what: string): void {
    throw new UnsafeStorageError(
      kind === 'write'
        ? `${what}: in the lockless mode (locks: 'none') writes go through db.write(fn) only`
        : `${what}: in the lockless mode (locks: 'none') reads run inside db.read(fn) only`,
    );
  }

  // A backup spans many event-loop turns: it cannot sit inside one registered lockless read.
  assertBackup(): void {
    throw new UnsafeStorageError(
      "backup(): not available in the lockless mode (locks: 'none'); use db.read((conn) => conn.serialize())",
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
