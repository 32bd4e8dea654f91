/**
 * The in-database fence (docs/HAZARDS.md H5): one meta row holding the highest fence token that
 * ever wrote and a transaction counter `txid` that every fenced write bumps. Nodes compare `txid`
 * with the commit record in etcd to prove their view is fresh (H4). The only file that writes SQL
 * against the meta table: the library, the CLI and the tools all go through these functions.
 */
import type Database from 'better-sqlite3';
import { isNoSuchTable } from './sqlite-errors';

export const META_TABLE = '_sqlite_ha_meta';

const SELECT_META = `SELECT fence, txid, epoch FROM ${META_TABLE} WHERE id = 1`;
const NO_META: Meta = Object.freeze({ fence: 0, txid: 0, epoch: 0 });

export interface Meta {
  fence: number;
  txid: number;
  /** Lockless mode: fence of the hand-over that last moved the file to a new inode. */
  epoch: number;
}

/** Prepared statements for one read-write connection, reused on every write (the hot path). */
export class MetaStatements {
  private readonly select: Database.Statement<[], Meta>;
  private readonly bump: Database.Statement<[number]>;

  /** The table must exist: ensureMetaTable() runs inside the holder's first (fence-raising) transaction. */
  constructor(readonly conn: Database.Database) {
    this.select = conn.prepare(SELECT_META);
    this.bump = conn.prepare(`UPDATE ${META_TABLE} SET fence = ?, txid = txid + 1 WHERE id = 1`);
  }

  read(): Meta {
    return this.select.get() ?? { ...NO_META };
  }

  /** Sets the fence to `fence` (raising it on the holder's first write) and bumps txid. */
  advance(fence: number): void {
    this.bump.run(fence);
  }
}

/** Creates the meta table and row if missing; call only inside a write transaction. */
export function ensureMetaTable(conn: Database.Database): void {
  conn.exec(
    `CREATE TABLE IF NOT EXISTS ${META_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), ` +
      // WITHOUT ROWID: creating the row must not change the connection's last_insert_rowid.
      'fence INTEGER NOT NULL, txid INTEGER NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, dbid TEXT) WITHOUT ROWID;' +
      `INSERT OR IGNORE INTO ${META_TABLE} (id, fence, txid, epoch) VALUES (1, 0, 0, 0)`,
  );
  // Meta tables written before database identities have no dbid column yet.
  if (!hasDbidColumn(conn)) conn.exec(`ALTER TABLE ${META_TABLE} ADD COLUMN dbid TEXT`);
}

function hasDbidColumn(conn: Database.Database): boolean {
  return (conn.prepare(`SELECT name FROM pragma_table_info('${META_TABLE}')`).pluck().all() as string[]).includes('dbid');
}

/** The meta row as a new holder sees it before writing: whether it exists, and the database id. */
export interface StoredMeta extends Meta {
  hasMeta: boolean;
  dbid: string | null;
}

/** Reads the meta row with its database id, writing nothing (a missing table or column reads as absent). */
export function readStoredMeta(conn: Database.Database): StoredMeta {
  const has = conn.prepare(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '${META_TABLE}'`).pluck().get();
  if (!has) return { hasMeta: false, dbid: null, fence: 0, txid: 0, epoch: 0 };
  const cols = hasDbidColumn(conn) ? 'fence, txid, epoch, dbid' : 'fence, txid, epoch, NULL AS dbid';
  const row = conn.prepare(`SELECT ${cols} FROM ${META_TABLE} WHERE id = 1`).get() as Omit<StoredMeta, 'hasMeta'> | undefined;
  return row ? { hasMeta: true, ...row } : { hasMeta: false, dbid: null, fence: 0, txid: 0, epoch: 0 };
}

/** The new holder's first transaction (H5): raise the stored fence to ours, set the file's epoch and, if given, the database id. */
export function claimFence(conn: Database.Database, fence: number, epoch: number, dbid: string | null): void {
  ensureMetaTable(conn);
  if (dbid === null) conn.prepare(`UPDATE ${META_TABLE} SET fence = ?, epoch = ? WHERE id = 1`).run(fence, epoch);
  else conn.prepare(`UPDATE ${META_TABLE} SET fence = ?, epoch = ?, dbid = ? WHERE id = 1`).run(fence, epoch, dbid);
}

/** A promoted copy's fence and epoch raised to `epoch`, so no holder of the old primary can write on it (H5). */
export function raiseFenceAndEpoch(conn: Database.Database, epoch: number): void {
  conn.prepare(`UPDATE ${META_TABLE} SET fence = max(fence, ?), epoch = ? WHERE id = 1`).run(epoch, epoch);
}

const selectByConn = new WeakMap<Database.Database, Database.Statement<[], Meta>>();

/** Reads the meta row on any connection; a database nobody wrote through sqlite-ha reads 0/0. */
export function readMeta(conn: Database.Database): Meta {
  try {
    let select = selectByConn.get(conn);
    if (!select) {
      select = conn.prepare(SELECT_META);
      selectByConn.set(conn, select);
    }
    return select.get() ?? { ...NO_META };
  } catch (err) {
    if (isNoSuchTable(err)) return { ...NO_META };
    throw err;
  }
}

/** Whether the file has the meta table (a database nobody wrote through sqlite-ha has none). */
export function hasMetaTable(conn: Database.Database): boolean {
  return conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(META_TABLE) !== undefined;
}

/** readMeta() for a file of any sqlite-ha version: an older meta table without `epoch` reads it undefined. */
export function readMetaAnyVersion(conn: Database.Database): { fence: number; txid: number; epoch?: number } {
  try {
    return readMeta(conn);
  } catch {
    const row = conn.prepare(`SELECT fence, txid FROM ${META_TABLE} WHERE id = 1`).get() as { fence: number; txid: number } | undefined;
    return row ?? { fence: 0, txid: 0 };
  }
}
