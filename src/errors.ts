/**
 * Every error sqlite-ha throws on purpose, in one place. Each has a stable `code` that scripts and
 * other tools can match on, and an `outcome` that says whether a failed write may still have
 * committed; messages say what happened and what to do. SQL errors raised by the user's own
 * statements stay better-sqlite3's `SqliteError`s and are never wrapped.
 */
import { sqliteCode } from './storage/sqlite-errors';

/**
 * What a failed write left behind: 'not-committed' (it certainly did not commit; retrying is
 * safe) or 'unknown' (it may be on disk: read it back, e.g. a linearizable db.read, before retrying).
 */
export type CommitOutcome = 'not-committed' | 'unknown';

/** Base class: `code` is stable across releases, `message` is for humans. */
export class SqliteHaError extends Error {
  readonly code: string;
  /** Whether the write that failed with this error may have committed (only CommitOutcomeUnknownError says 'unknown'). */
  readonly outcome: CommitOutcome;
  constructor(code: string, message: string, options?: { cause?: unknown; outcome?: CommitOutcome }) {
    super(message, options);
    this.code = code;
    this.outcome = options?.outcome ?? 'not-committed';
    this.name = new.target.name;
  }

  /** ClosedError is a TypeError (as better-sqlite3 throws), yet still counts as a SqliteHaError. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value) || (this === SqliteHaError && value instanceof ClosedError);
  }
}

/**
 * The outcome of a write (db.write(), or a write through the better-sqlite3 surface) that threw
 * err: a sqlite-ha error says so itself (its `outcome`, or by its stable code when it crossed a
 * process or module boundary); a SQLite error means the transaction rolled back (COMMIT's storage
 * failures are reported as CommitOutcomeUnknownError); anything else is 'unknown'.
 */
export function commitOutcomeOf(err: unknown): CommitOutcome {
  const e = err as { outcome?: unknown; code?: unknown } | null | undefined;
  if (e?.outcome === 'not-committed' || e?.outcome === 'unknown') return e.outcome;
  const code = sqliteCode(err);
  if (code === 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN') return 'unknown';
  return code !== null ? 'not-committed' : 'unknown';
}

/** An option passed to open() (or a CLI flag) is missing, misspelt or out of range. */
export class InvalidOptionError extends SqliteHaError {
  readonly option: string;
  constructor(option: string, value: unknown, expected: string) {
    super(
      'SQLITE_HA_INVALID_OPTION',
      `invalid option ${option}: got ${describe(value)}; expected ${expected}`,
    );
    this.option = option;
  }
}

/** The database holds a higher fence token than this node's lease: a newer holder exists. */
export class FencedError extends SqliteHaError {
  readonly storedFence: number;
  readonly ownFence: number;
  constructor(ownFence: number, storedFence: number) {
    super(
      'SQLITE_HA_FENCED',
      `write refused: the database is fenced at token ${storedFence}, above this node's lease token ` +
        `${ownFence}; another node took over. Nothing was written; acquire the lease again to write.`,
    );
    this.ownFence = ownFence;
    this.storedFence = storedFence;
  }
}

/** The lease expired or was revoked before (or while) a write needed it. Nothing was committed. */
export class LeaseLostError extends SqliteHaError {
  constructor(detail: string) {
    super('SQLITE_HA_LEASE_LOST', `write lease lost: ${detail}. Nothing was committed by this call.`);
  }
}

/** A write was attempted through the better-sqlite3 surface without holding the lease. */
export class NotLeaseHolderError extends SqliteHaError {
  constructor(what: string) {
    super(
      'SQLITE_HA_NOT_LEASE_HOLDER',
      `${what} writes, but this node does not hold the write lease; ` +
        'use db.write(fn), or await db.acquire() first',
    );
  }
}

/** etcd (or the lock directory) could not be reached or answered in time. */
export class CoordinatorUnavailableError extends SqliteHaError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('SQLITE_HA_COORDINATOR_UNAVAILABLE', `coordinator unavailable: ${detail}`, options);
  }
}

/** The lease was not granted within acquireTimeoutMs because another node holds it. */
export class AcquireTimeoutError extends SqliteHaError {
  readonly holder: string | null;
  constructor(timeoutMs: number, holder: string | null) {
    super(
      'SQLITE_HA_ACQUIRE_TIMEOUT',
      `write lease not acquired within ${timeoutMs} ms` +
        (holder ? `; held by ${holder}` : '') +
        '. Raise acquireTimeoutMs or check the holder with `sqlite-ha status`.',
    );
    this.holder = holder;
  }
}

/** The file, mount or a pragma would break the storage rules (docs/HAZARDS.md H1, H2). */
export class UnsafeStorageError extends SqliteHaError {
  constructor(detail: string) {
    super('SQLITE_HA_UNSAFE_STORAGE', detail);
  }
}

/** COMMIT failed in a way that leaves its outcome unknown (an I/O error). The lease was dropped. */
export class CommitOutcomeUnknownError extends SqliteHaError {
  constructor(options: { cause?: unknown }) {
    super(
      'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN',
      `COMMIT failed with an I/O error (${String((options.cause as { code?: unknown } | undefined)?.code ?? 'no code')}): ` +
        'the transaction may or may not be on disk. The write lease ' +
        'was dropped; read the data back (db.read with consistency "linearizable") before retrying.',
      { ...options, outcome: 'unknown' },
    );
  }
}

/**
 * Reading the file failed with a storage error (the NFS client, the server or the disk) before
 * anything was written: SQLITE_CORRUPT or SQLITE_IOERR_* at BEGIN, while reading the meta row, or
 * while taking over the file (after reopening it until acquireTimeoutMs). Nothing was committed by
 * this call; a writer let the lease go and reopens the file on its next write; `cause` is the
 * original SqliteError, `sqliteCode` its code.
 */
export class StorageFaultError extends SqliteHaError {
  readonly sqliteCode: string;
  constructor(during: string, cause: unknown) {
    const code = String((cause as { code?: unknown })?.code ?? 'unknown');
    super(
      'SQLITE_HA_STORAGE_FAULT',
      `${during} failed with ${code} (${(cause as Error)?.message ?? cause}). Nothing was committed by this call; ` +
        'the file is reopened before the next attempt. If it persists, run sqlite-ha doctor on the mount.',
      { cause, outcome: 'not-committed' },
    );
    this.sqliteCode = code;
  }
}

/**
 * This node's view of the file stayed older than (or, in the lockless mode, different from) the
 * last published commit past the deadline. `epochs`: the file generation seen and published, named
 * in the message when they differ (the txids alone can match then).
 */
export class StaleViewError extends SqliteHaError {
  constructor(localTxid: number, publishedTxid: number, waitedMs: number, epochs?: { local: number; published: number }) {
    const moved = epochs !== undefined && epochs.local !== epochs.published;
    super(
      'SQLITE_HA_STALE_VIEW',
      (moved
        ? `local view is at txid ${localTxid} in file epoch ${epochs.local} but txid ${publishedTxid} in epoch ` +
          `${epochs.published} was published (the file this node sees is not the one the holder moved to)`
        : `local view is at txid ${localTxid} but txid ${publishedTxid} was published`) +
        `; still stale after reopening for ${waitedMs} ms. Check that every node mounts the same file (sqlite-ha doctor).`,
    );
  }
}

/**
 * The file is not the database etcd records under this name: another database's file (a restore,
 * two files with one basename under one prefix), or no sqlite-ha database at all where etcd
 * already records commits (an empty file, e.g. under an NFS mount point that was not mounted).
 * Nothing was written to the file.
 */
export class DatabaseIdentityError extends SqliteHaError {
  readonly fileId: string | null;
  readonly recordedId: string | null;
  constructor(detail: string, ids: { fileId: string | null; recordedId: string | null }) {
    super(
      'SQLITE_HA_DATABASE_IDENTITY',
      `${detail}. Nothing was written. Check that the shared filesystem is mounted and that every node ` +
        'opens the same file under the same name and prefix (sqlite-ha doctor); a different database needs its own name or prefix.',
    );
    this.fileId = ids.fileId;
    this.recordedId = ids.recordedId;
  }
}

/** This node would run the database in another storage mode than the one etcd records for it. */
export class MixedModesError extends SqliteHaError {
  constructor(detail: string) {
    super(
      'SQLITE_HA_MIXED_MODES',
      `${detail}. Every node must use the same mode: mount the filesystem with the same options everywhere ` +
        "(or set the same `locks` option on every node); trusted nodes never take the lockless mode's commit gate.",
    );
  }
}

/**
 * A writer crashed mid-commit and left a hot journal (docs/HAZARDS.md H8) that only the next lease holder
 * may roll back; this node started that recovery (db.read() waits for it) but it had not finished.
 */
export class RecoveryPendingError extends SqliteHaError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super('SQLITE_HA_RECOVERY_PENDING', `the database has a hot journal left by a crashed writer: ${detail}`, options);
  }
}

/**
 * The handle was closed. Like better-sqlite3's own error for a closed connection, it is a
 * TypeError with the message "The database connection is not open"; it also carries the
 * SqliteHaError fields (`code`, `outcome`) and passes `instanceof SqliteHaError`.
 */
export class ClosedError extends TypeError {
  readonly code = 'SQLITE_HA_CLOSED';
  readonly outcome: CommitOutcome = 'not-committed';
  constructor() {
    super('The database connection is not open');
    this.name = 'ClosedError';
  }
}

/**
 * `sqlite-ha serve`: a request the server refuses or cannot complete, sent to the client as a Hrana
 * error whose `code` is this one (HRANA_PROTO_ERROR, STREAM_EXPIRED, ...; docs/SERVE.md lists them).
 * `httpStatus` is set when the whole pipeline fails (the stream is then no longer valid).
 */
export class ServeError extends SqliteHaError {
  readonly httpStatus: number | null;
  constructor(code: string, message: string, options?: { httpStatus?: number; cause?: unknown }) {
    super(code, message, options);
    this.httpStatus = options?.httpStatus ?? null;
  }
}

/**
 * The standby directory could not be written (full disk, read-only or lost volume). In the async
 * mode the primary keeps working and this is reported through `db.standby` and an event; in the
 * sync mode a write whose segment did not reach the standby rejects with it (`committedTxid`: the
 * transaction is in the primary file but was not acknowledged).
 */
export class StandbyWriteError extends SqliteHaError {
  readonly dir: string;
  readonly committedTxid: number | null;
  constructor(dir: string, cause: unknown, committedTxid: number | null = null) {
    super(
      'SQLITE_HA_STANDBY_WRITE_FAILED',
      `could not write the standby chain in ${dir}: ${(cause as Error)?.message ?? String(cause)}` +
        (committedTxid !== null
          ? `. Transaction ${committedTxid} is committed in the primary but NOT in the standby, so it was not acknowledged`
          : '') +
        '. Free space on (or remount) the standby volume; the next write starts a fresh snapshot.',
      { cause },
    );
    this.dir = dir;
    this.committedTxid = committedTxid;
  }
}

/** A standby chain file failed its checks (bad magic, version, size or SHA-256), or the chain is broken. */
export class StandbyCorruptError extends SqliteHaError {
  readonly file: string;
  constructor(file: string, detail: string) {
    super('SQLITE_HA_STANDBY_CORRUPT', `standby chain file ${file}: ${detail}. Run sqlite-ha standby verify on the directory.`);
    this.file = file;
  }
}

/** The requested point (txid or time) is not in the standby chain. */
export class StandbyTargetError extends SqliteHaError {
  constructor(detail: string) {
    super('SQLITE_HA_STANDBY_TARGET', detail);
  }
}

/**
 * The database was promoted (sqlite-ha promote) to another file: this node's path is no longer
 * the primary and writing it would fork the data.
 */
export class DatabaseMovedError extends SqliteHaError {
  readonly path: string;
  readonly newPath: string;
  readonly epoch: number;
  constructor(path: string, newPath: string, epoch: number) {
    super(
      'SQLITE_HA_DATABASE_MOVED',
      `write refused: the database was promoted from ${path} to ${newPath} (epoch ${epoch}); ` +
        `nothing was written. Reopen it with open('${newPath}', ...) on storage every node mounts.`,
    );
    this.path = path;
    this.newPath = newPath;
    this.epoch = epoch;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
