/** sqlite-ha: one SQLite file on shared storage, fenced etcd write leases, better-sqlite3 reads. */
export { open } from './open';
export { HADatabase } from './database';
export { LeaseStatus } from './lease-status';
export type { Consistency, LocksInUse } from './database';
export type { HAStatement } from './statement';
export type {
  OpenOptions, CoordinatorOptions, EtcdCoordinatorOptions, LockfileCoordinatorOptions, JournalMode, LocksMode,
} from './options';
export {
  SqliteHaError, InvalidOptionError, FencedError, LeaseLostError, NotLeaseHolderError,
  CoordinatorUnavailableError, AcquireTimeoutError, UnsafeStorageError, CommitOutcomeUnknownError,
  StaleViewError, ClosedError,
} from './errors';
export type { CommitRecord, LockRecord, HandoverRecord, DatabaseInfo, EventRecord } from './coordinator/etcd/keys';
export { serve } from './serve';
export type { ServeHandle } from './serve';
export type { ServeOptions, WritesMode } from './options';
export { ServeError } from './errors';
