/**
 * Opens better-sqlite3 connections the way the storage rules demand (docs/HAZARDS.md H1, H2): rollback
 * journal, synchronous=FULL, locking_mode=NORMAL on every connection; read-only unless this node
 * holds the write lease; a file already in WAL format is refused.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import { InvalidOptionError, UnsafeStorageError } from '../errors';
import type { JournalMode } from '../options';

export interface ConnectionSettings {
  path: string;
  journalMode: JournalMode;
  busyTimeoutMs: number;
  safetyMarginMs: number;
}

/**
 * The read-write connection's busy_timeout: a slice short enough that keep-alives keep flowing
 * while SQLite waits synchronously for a lock; callers retry slice by slice up to busyTimeoutMs.
 */
function busySliceMs(s: ConnectionSettings): number {
  return Math.min(s.busyTimeoutMs, Math.max(10, Math.floor(s.safetyMarginMs / 4)));
}

/** Pragmas that would break the storage rules if a user changed them. */
export const PINNED_PRAGMAS = ['journal_mode', 'locking_mode', 'synchronous'] as const;

const SQLITE_MAGIC = 'SQLite format 3\0';

/** Creates the file if missing (a zero-byte file is a valid empty database) and checks its format. */
export function prepareFile(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT);
  } catch (err) {
    throw new InvalidOptionError('path', file, `a database file that can be opened read-write (${(err as Error).message})`);
  }
  try {
    const header = Buffer.alloc(100);
    const n = fs.readSync(fd, header, 0, 100, 0);
    if (n > 0 && (n < 16 || header.toString('latin1', 0, 16) !== SQLITE_MAGIC)) {
      throw new UnsafeStorageError(
        `${file} is not an SQLite database (its first bytes are not the SQLite header); sqlite-ha ` +
          'refuses to open it so nothing overwrites it. Check the path (and that the right volume is mounted).',
      );
    }
    if (n >= 20 && (header[18] === 2 || header[19] === 2)) {
      throw new UnsafeStorageError(
        `${file} is in WAL format, which cannot work across hosts (docs/HAZARDS.md H1). Convert it first on ` +
          "one host with no other users: sqlite3 <file> 'PRAGMA journal_mode=TRUNCATE'",
      );
    }
  } finally {
    fs.closeSync(fd);
  }
}

export function openReadOnly(s: ConnectionSettings): Database.Database {
  const db = new Database(s.path, { readonly: true, fileMustExist: true });
  db.pragma(`busy_timeout = ${s.busyTimeoutMs}`);
  // A read-only handle never rolls a journal back (it gets SQLITE_READONLY_ROLLBACK instead), H2.
  db.pragma('locking_mode = NORMAL');
  return db;
}

/** Only the lease holder calls this; opening read-write is what lets SQLite recover a hot journal (H8). */
export function openReadWrite(s: ConnectionSettings, opts: { noCacheSpill?: boolean } = {}): Database.Database {
  const db = new Database(s.path, { fileMustExist: true });
  try {
    // Lockless mode: no page may reach the file before COMMIT, i.e. outside the gated window.
    if (opts.noCacheSpill) db.pragma('cache_spill = OFF');
    db.pragma(`busy_timeout = ${busySliceMs(s)}`);
    db.pragma('locking_mode = NORMAL');
    db.pragma('synchronous = FULL');
    const mode = String(db.pragma(`journal_mode = ${s.journalMode}`, { simple: true })).toUpperCase();
    if (mode !== s.journalMode) {
      throw new UnsafeStorageError(
        `could not set journal_mode=${s.journalMode} (the journalMode option) on ${s.path}: SQLite kept ${mode}. ` +
          'A WAL database leaves WAL only while no other connection has it open: close the other processes using ' +
          'the file and open it again (docs/HAZARDS.md H1).',
      );
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Canonical form for spotting pragma assignments however they are spelt: comments become spaces,
 * identifier quotes ("x", 'x', `x`, [x]) go, spaces around dots go, case is folded.
 */
function canonicalSql(sql: string): string {
  return sql
    .replace(/\/\*[\s\S]*?(\*\/|$)/g, ' ')
    .replace(/--[^\n]*/g, ' ')
    .replace(/["'`\[\]]/g, '')
    .replace(/\s*\.\s*/g, '.')
    .toLowerCase();
}

const PINNED_RE = new RegExp(String.raw`\bpragma\s+(?:\w+\.)?(${PINNED_PRAGMAS.join('|')})\s*(=|\()`);

/** The pinned pragma that SQL would set, or null (reading them is fine). */
function pinnedPragmaSet(sql: string): string | null {
  return PINNED_RE.exec(canonicalSql(sql))?.[1] ?? null;
}

/** Throws UnsafeStorageError if SQL would set a pinned pragma. */
export function assertSafeSql(sql: string): void {
  const name = pinnedPragmaSet(sql);
  if (name) {
    throw new UnsafeStorageError(
      `PRAGMA ${name} is pinned by sqlite-ha (rollback journal, synchronous=FULL, ` +
        'locking_mode=NORMAL; docs/HAZARDS.md H1); set journalMode in open() options instead',
    );
  }
}
