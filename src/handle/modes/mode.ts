/**
 * What differs between the two storage modes (docs/ARCHITECTURE.md "Storage modes"), as one
 * strategy the handle's parts call instead of branching on `locks`: `trusted` relies on SQLite's
 * file locks across hosts; `none` (the lockless mode) has etcd gate readers out of commit windows.
 */
import type Database from 'better-sqlite3';
import type { Coordinator, Lease } from '../../coordinator/types';
import type { FencedTransactions } from '../../txn/fenced';
import type { Holding } from '../lease-holder';

/** Whether SQLite's file locks are trusted across hosts on this mount. */
export type LocksInUse = 'trusted' | 'none';

/** How a read is made fresh: the local view, or one that includes every commit published before it. */
export type Consistency = 'local' | 'linearizable';

/** The handle's read path as a mode sees it. */
export interface LocalReads {
  /** A read on the read-only connection, fresh as `consistency` asks. */
  readLocal<T>(fn: (conn: Database.Database) => T, consistency: Consistency): Promise<T>;
  /** Brackets a callback running inside a read transaction (writes are refused there). */
  enter(): void;
  leave(): void;
}

export interface StorageMode<L extends Lease = Lease> {
  readonly locks: LocksInUse;
  readonly coordinator: Coordinator;
  /** Lockless: no page may reach the file before COMMIT, i.e. outside the gated window. */
  readonly noCacheSpill: boolean;

  /** Waits for the lease. */
  acquire(timeoutMs: number): Promise<L>;
  /** Before the new holder's fence-raising transaction; returns the file's new epoch, if it moved. */
  beforeFence(lease: L, deadline: number): Promise<number | undefined>;
  /** After the fence-raising transaction, before the first write. */
  afterFence(lease: L, fenced: FencedTransactions): Promise<void>;
  /** Undoes beforeFence() when taking over failed (best effort). */
  abortTakeover(lease: L): Promise<void>;

  /** Runs this handle's async writes (and the release between them) in the order the mode needs. */
  serialize<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * COMMITs h's open fenced transaction and publishes its record (the acknowledgement); calls
   * committed() once the transaction is durable. Throws synchronously when COMMIT fails in the
   * trusted mode, the only one whose synchronous surface commits.
   */
  commit(h: Holding<L>, committed: () => void): Promise<void>;

  /** The connection a better-sqlite3-style call runs on. */
  connectionFor(h: Holding<L> | null, ro: Database.Database): Database.Database;
  /** db.read(): through the local read path, or the mode's own. */
  read<T>(fn: (conn: Database.Database) => T, consistency: Consistency, local: LocalReads): Promise<T>;
  /** Refuses a call of the synchronous surface the mode cannot serve; `what` names it. */
  assertSyncSurface(kind: 'read' | 'write', what: string): void;
  /** Refuses db.backup() where it cannot be made safe. */
  assertBackup(): void;
}
