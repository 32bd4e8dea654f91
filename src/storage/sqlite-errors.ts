/**
 * The one classifier of SQLite's error codes (better-sqlite3 reports extended codes, e.g.
 * SQLITE_IOERR_SHORT_READ), so every caller agrees on what a code means.
 *
 * "Busy" is lock contention that waiting can clear: SQLITE_BUSY and its RECOVERY and TIMEOUT
 * variants. Not busy, although the names suggest it:
 * - SQLITE_BUSY_SNAPSHOT: a WAL read snapshot that went stale inside a transaction; retrying the
 *   statement fails forever (the transaction must restart), and sqlite-ha refuses WAL anyway (H1).
 * - SQLITE_LOCKED: a conflict inside this very connection (or a shared cache), e.g. DROP TABLE
 *   while one of its own statements reads; no other process can release it, so waiting only
 *   burns busyTimeoutMs before the same error.
 * Both are reported at once; like every SQLite error before COMMIT, their transaction rolls back.
 */

/** The SQLite error code of err, or null. */
export function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

/** Lock contention that waiting can clear (see above for what is excluded and why). */
export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_RECOVERY' || code === 'SQLITE_BUSY_TIMEOUT';
}

/** The connection may not write: read-only, or (READONLY_ROLLBACK) a hot journal it may not roll back. */
export function isReadonly(err: unknown): boolean {
  return sqliteCode(err)?.startsWith('SQLITE_READONLY') ?? false;
}

/** A hot journal (a writer died mid-commit) met by a read-only connection, which may not roll it back (H8). */
export function isHotJournalReadOnly(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_READONLY_ROLLBACK';
}

/** The statement named a table the file does not have (SQLite reports it as a plain SQLITE_ERROR). */
export function isNoSuchTable(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_ERROR' && /no such table/.test((err as Error).message);
}

/** A failure of the storage under COMMIT: the transaction may or may not be on disk. */
export function isStorageFailure(err: unknown): boolean {
  const code = sqliteCode(err);
  if (code === null) return false;
  return code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_CANTOPEN') ||
    code === 'SQLITE_FULL' || code === 'SQLITE_PROTOCOL';
}

/**
 * Errors that mean "this view of the file is not to be trusted", not "your SQL is wrong": a read
 * that hit one is discarded and retried on a fresh connection (the lockless mode, H3/H4).
 * READONLY_ROLLBACK is a hot journal seen read-only (a writer died mid-commit); plain READONLY is
 * the caller writing inside a read, an error to report at once.
 */
export function isUntrustedView(err: unknown): boolean {
  const code = sqliteCode(err);
  if (code === null) return false;
  return isBusy(err) || code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_IOERR') ||
    code === 'SQLITE_READONLY_ROLLBACK' || code === 'SQLITE_NOTADB' || code === 'SQLITE_PROTOCOL' || code === 'SQLITE_SCHEMA';
}
