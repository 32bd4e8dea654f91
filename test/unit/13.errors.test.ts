/**
 * The one SQLite error classifier (src/storage/sqlite-errors.ts) and the documented write outcome
 * of every error (src/errors.ts: err.outcome, commitOutcomeOf).
 */
import Database from 'better-sqlite3';
import {
  AcquireTimeoutError, ClosedError, commitOutcomeOf, CommitOutcomeUnknownError, CoordinatorUnavailableError,
  FencedError, InvalidOptionError, LeaseLostError, NotLeaseHolderError, StaleViewError, UnsafeStorageError,
} from '../../src';
import { isBusy, isReadonly, isStorageFailure, isUntrustedView, sqliteCode } from '../../src/storage/sqlite-errors';

const err = (code: string) => Object.assign(new Error(code), { code });

describe('SQLite error classifier', () => {
  test('busy is lock contention that waiting can clear; BUSY_SNAPSHOT and LOCKED are not', () => {
    expect(['SQLITE_BUSY', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_TIMEOUT'].map((c) => isBusy(err(c)))).toEqual([true, true, true]);
    expect(['SQLITE_BUSY_SNAPSHOT', 'SQLITE_LOCKED', 'SQLITE_LOCKED_SHAREDCACHE', 'SQLITE_IOERR'].map((c) => isBusy(err(c))))
      .toEqual([false, false, false, false]);
  });

  test('storage failures under COMMIT include the extended I/O and corruption codes', () => {
    for (const c of ['SQLITE_IOERR', 'SQLITE_IOERR_SHORT_READ', 'SQLITE_CORRUPT', 'SQLITE_CORRUPT_VTAB', 'SQLITE_FULL',
      'SQLITE_CANTOPEN', 'SQLITE_PROTOCOL']) {
      expect(isStorageFailure(err(c))).toBe(true);
    }
    for (const c of ['SQLITE_BUSY', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_READONLY']) expect(isStorageFailure(err(c))).toBe(false);
  });

  test('a hot journal seen read-only is an untrusted view; a write inside a read is not', () => {
    expect(isUntrustedView(err('SQLITE_READONLY_ROLLBACK'))).toBe(true);
    expect(isUntrustedView(err('SQLITE_READONLY'))).toBe(false);
    expect(isReadonly(err('SQLITE_READONLY'))).toBe(true);
    expect(isReadonly(err('SQLITE_READONLY_ROLLBACK'))).toBe(true);
  });

  test('reads the code of a real better-sqlite3 error; non-SQLite values have none', () => {
    const db = new Database(':memory:', { readonly: false });
    db.exec('CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1)');
    let caught: unknown;
    try {
      db.exec('INSERT INTO t VALUES (1)');
    } catch (e) {
      caught = e;
    }
    db.close();
    expect(sqliteCode(caught)).toBe('SQLITE_CONSTRAINT_UNIQUE');
    expect([sqliteCode(new Error('x')), sqliteCode(null), sqliteCode({ code: 42 })]).toEqual([null, null, null]);
  });
});

describe('write outcome of an error', () => {
  test('only CommitOutcomeUnknownError says unknown among sqlite-ha errors', () => {
    const notCommitted = [
      new InvalidOptionError('x', 1, 'y'), new FencedError(1, 2), new LeaseLostError('gone'), new NotLeaseHolderError('run()'),
      new CoordinatorUnavailableError('down'), new AcquireTimeoutError(10, null), new UnsafeStorageError('nfs'),
      new StaleViewError(1, 2, 3), new ClosedError(),
    ];
    expect(notCommitted.map((e) => e.outcome)).toEqual(notCommitted.map(() => 'not-committed'));
    expect(new CommitOutcomeUnknownError({ cause: err('SQLITE_IOERR') }).outcome).toBe('unknown');
  });

  test('commitOutcomeOf: SQLite errors rolled back, codes across process boundaries, anything else unknown', () => {
    expect(commitOutcomeOf(new CommitOutcomeUnknownError({}))).toBe('unknown');
    expect(commitOutcomeOf(new FencedError(1, 2))).toBe('not-committed');
    expect(commitOutcomeOf(err('SQLITE_BUSY'))).toBe('not-committed');
    expect(commitOutcomeOf({ code: 'SQLITE_HA_LEASE_LOST' })).toBe('not-committed');
    expect(commitOutcomeOf({ code: 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN' })).toBe('unknown');
    expect(commitOutcomeOf(new TypeError('boom'))).toBe('unknown');
    expect(commitOutcomeOf(undefined)).toBe('unknown');
  });
});
