/**
 * Typed test doubles of the coordinator interfaces (src/coordinator/types.ts): a Lease and a
 * Coordinator the test scripts (fences, commit record, validity, deadline) and whose calls it
 * inspects. They implement the real interfaces, so the compiler checks them against the library.
 */
import { monotonicNow } from '../../src/clock';
import type { RecordedIdentity } from '../../src/storage/identity';
import { EventEmitter } from 'events';
import type { CommitRecord, Coordinator, Lease, LeaseEventKind } from '../../src/coordinator/types';

export class ScriptedLease extends EventEmitter implements Lease {
  commitDeadline = Number.MAX_SAFE_INTEGER;
  expiresAt = monotonicNow() + 60_000;
  readonly identity = null;
  valid = true;
  hasWaiters = false;
  /** Every record publishCommit() was given. */
  readonly published: CommitRecord[] = [];
  readonly events: [LeaseEventKind, string][] = [];
  readonly abandoned: Error[] = [];

  constructor(readonly fence: number, readonly commitAtAcquire: CommitRecord | null = null) {
    super();
  }

  async recordIdentity(identity: RecordedIdentity): Promise<RecordedIdentity> {
    return identity;
  }
  async publishCommit(record: CommitRecord): Promise<boolean> {
    this.published.push(record);
    return this.valid;
  }
  reportEvent(kind: LeaseEventKind, detail: string): void {
    this.events.push([kind, detail]);
  }
  async release(): Promise<void> {
    this.valid = false;
  }
  async abandon(reason: Error): Promise<void> {
    this.abandoned.push(reason);
    this.valid = false;
  }
}

/** Hands out ScriptedLeases with increasing fences, and answers readCommit() with `commit`. */
export class ScriptedCoordinator implements Coordinator {
  readonly kind = 'lockfile' as const;
  readonly leases: ScriptedLease[] = [];
  nextFence = 1;
  commit: CommitRecord | null = null;
  /** Leases handed out from now on report another node waiting (hasWaiters). */
  waitersOnNext = false;

  async acquire(): Promise<ScriptedLease> {
    const lease = new ScriptedLease(this.nextFence++, this.commit);
    lease.hasWaiters = this.waitersOnNext;
    this.leases.push(lease);
    return lease;
  }
  async readCommit(): Promise<CommitRecord | null> {
    return this.commit;
  }
  async readIdentity(): Promise<RecordedIdentity | null> {
    return null;
  }
  async currentHolder(): Promise<string | null> {
    return null;
  }
  async close(): Promise<void> {}

  /** The lease handed out last. */
  get last(): ScriptedLease {
    const l = this.leases[this.leases.length - 1];
    if (!l) throw new Error('no lease handed out yet');
    return l;
  }
}
