/**
 * The embedded coordinator for one host (docs/HAZARDS.md H7): proper-lockfile's mkdir lock beside the
 * database, and a fence counter file under that lock so tokens strictly increase even when a
 * holder never wrote. Safety rests on SQLite's own file locks plus the in-database fence; the lock
 * directory only serializes well-behaved writers. No commit record: on one host the file lock is
 * the cache coherency point, so a local read transaction is already fresh.
 */
import { monotonicNow } from '../../clock';
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as lockfile from 'proper-lockfile';
import { AcquireTimeoutError, CoordinatorUnavailableError, LeaseLostError } from '../../errors';
import type { AcquireOptions, CommitRecord, Coordinator, Lease } from '../types';
import type { RecordedIdentity } from '../../storage/identity';

const POLL_MS = 25;

export class LockfileCoordinator implements Coordinator {
  readonly kind = 'lockfile' as const;
  readonly lockPath: string;
  readonly fencePath: string;
  /** Beside the lock directory, not in it: proper-lockfile removes the directory with rmdir. */
  readonly holderPath: string;

  /** storedFence reads the fence in the database, so a lost counter file cannot reissue tokens. */
  constructor(
    private readonly dbPath: string,
    private readonly staleMs: number,
    private readonly nodeId: string,
    private readonly storedFence: () => number,
  ) {
    this.lockPath = `${dbPath}.sqlite-ha.lock`;
    this.fencePath = `${dbPath}.sqlite-ha.fence`;
    this.holderPath = `${dbPath}.sqlite-ha.holder`;
  }

  async acquire(opts: AcquireOptions): Promise<Lease> {
    const deadline = monotonicNow() + opts.timeoutMs; // a wall-clock step must not stretch or cut the wait
    for (;;) {
      let lease: LockfileLease | null = null;
      try {
        const unlock = await lockfile.lock(this.dbPath, {
          stale: this.staleMs,
          realpath: false,
          lockfilePath: this.lockPath,
          onCompromised: (err) => lease?.compromised(err),
        });
        let fence: number;
        try {
          fence = this.nextFence();
        } catch (err) {
          await unlock().catch(() => undefined); // never keep the lock directory on failure
          throw err;
        }
        try {
          fs.writeFileSync(this.holderPath, this.nodeId);
        } catch (err) {
          // Same rule: an unwritable holder file (EACCES, ENOSPC) must not leave the lock held.
          await unlock().catch(() => undefined);
          throw new CoordinatorUnavailableError(
            `cannot write the holder file ${this.holderPath} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ` +
              'the lock was let go. Check the permissions and free space of that directory.',
            { cause: err },
          );
        }
        lease = new LockfileLease(fence, unlock, this.staleMs);
        return lease;
      } catch (err) {
        if (err instanceof CoordinatorUnavailableError) throw err;
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') {
          throw new CoordinatorUnavailableError(`lock directory ${this.lockPath}: ${(err as Error).message}`, { cause: err });
        }
      }
      if (monotonicNow() + POLL_MS > deadline) throw new AcquireTimeoutError(opts.timeoutMs, await this.currentHolder());
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Reads, increments and durably writes the fence counter; only called under the lock. */
  private nextFence(): number {
    let last = 0;
    try {
      last = Number(fs.readFileSync(this.fencePath, 'utf8').trim()) || 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const next = Math.max(last, this.storedFence()) + 1;
    const tmp = `${this.fencePath}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, `${next}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.fencePath);
    return next;
  }

  async readCommit(): Promise<CommitRecord | null> {
    return null;
  }

  async readIdentity(): Promise<RecordedIdentity | null> {
    return null;
  }

  async currentHolder(): Promise<string | null> {
    try {
      if (!(await lockfile.check(this.dbPath, { stale: this.staleMs, realpath: false, lockfilePath: this.lockPath }))) {
        return null;
      }
      return fs.readFileSync(this.holderPath, 'utf8');
    } catch {
      return null;
    }
  }

  async close(): Promise<void> {
    /* nothing held outside leases */
  }
}

class LockfileLease extends EventEmitter implements Lease {
  readonly commitAtAcquire = null;
  readonly hasWaiters = false;
  // One host: the file is the only copy of its identity, and there is no other mode to agree with.
  readonly identity = null;
  async recordIdentity(identity: RecordedIdentity): Promise<RecordedIdentity> {
    return identity;
  }
  private ended = false;

  constructor(readonly fence: number, private readonly unlock: () => Promise<void>, private readonly staleMs: number) {
    super();
  }

  // proper-lockfile refreshes the lock itself and reports loss through onCompromised; the file
  // locks and the fence carry safety, so there is no clock-based commit deadline here.
  get commitDeadline(): number {
    return this.ended ? 0 : Number.MAX_SAFE_INTEGER;
  }
  get expiresAt(): number {
    return this.ended ? 0 : monotonicNow() + this.staleMs;
  }
  get valid(): boolean {
    return !this.ended;
  }

  async publishCommit(): Promise<boolean> {
    return !this.ended;
  }

  reportEvent(): void {
    /* no shared event channel without etcd */
  }

  compromised(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('lost', new LeaseLostError(`lock directory compromised: ${err.message}`));
  }

  async release(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.unlock().catch(() => undefined);
    this.emit('released');
  }

  async abandon(reason: Error): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.emit('lost', reason);
    await this.unlock().catch(() => undefined);
  }
}
