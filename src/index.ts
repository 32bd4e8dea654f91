/** sqlite-ha: one SQLite file on shared storage, fenced etcd write leases, better-sqlite3 reads. */
export { open } from './open';
export { HADatabase } from './handle/database';
export { LeaseStatus } from './handle/lease-status';
export type { Consistency, LocksInUse } from './handle/database';
export type { HAStatement, Statement } from './handle/statement';
export type {
  OpenOptions, CoordinatorOptions, EtcdCoordinatorOptions, LockfileCoordinatorOptions, JournalMode, LocksMode,
  StandbyOptions, StandbyMode,
} from './options';
export type { CommitOutcome } from './errors';
export {
  commitOutcomeOf, SqliteHaError, InvalidOptionError, FencedError, LeaseLostError, NotLeaseHolderError,
  CoordinatorUnavailableError, AcquireTimeoutError, UnsafeStorageError, CommitOutcomeUnknownError,
  StaleViewError, StorageFaultError, ClosedError, StandbyWriteError, StandbyCorruptError, StandbyTargetError, DatabaseMovedError,
} from './errors';
export type { CommitRecord } from './coordinator/types';
export type { LockRecord, HandoverRecord, DatabaseInfo, EventRecord } from './coordinator/etcd/keys';
export { serve } from './serve';
export type { ServeHandle } from './serve';
export type { ServeOptions, WritesMode } from './options';
export { ServeError } from './errors';
export type { PromotionRecord, StandbyRecord } from './coordinator/etcd/keys';
export type { StandbyStatus } from './standby/writer';
