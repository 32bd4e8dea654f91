/**
 * The trusted mode: SQLite's file locks reach every host, so a read transaction is fresh once it
 * holds its lock and the holder reads and writes the better-sqlite3 surface synchronously.
 */
import type Database from 'better-sqlite3';
import type { Coordinator, Lease } from '../../coordinator/types';
import type { Holding } from '../lease-holder';
import type { Consistency, LocalReads, StorageMode } from './mode';

export class TrustedMode implements StorageMode {
  readonly locks = 'trusted' as const;
  readonly noCacheSpill = false;

  constructor(readonly coordinator: Coordinator) {}

  acquire(timeoutMs: number): Promise<Lease> {
    return this.coordinator.acquire({ timeoutMs });
  }
  async beforeFence(): Promise<undefined> {
    return undefined;
  }
  async afterFence(): Promise<void> {}
  async abortTakeover(): Promise<void> {}

  serialize<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }

  // Not async: a failed COMMIT throws to the synchronous caller.
  commit(h: Holding, committed: () => void): Promise<void> {
    const txid = h.fenced.commit();
    committed();
    return h.publisher.publish(txid);
  }

  connectionFor(h: Holding | null, ro: Database.Database): Database.Database {
    return h?.lease.valid ? h.rw : ro;
  }
  read<T>(fn: (conn: Database.Database) => T, consistency: Consistency, local: LocalReads): Promise<T> {
    return local.readLocal(fn, consistency);
  }
  assertSyncSurface(): void {}
  assertBackup(): void {}
}
