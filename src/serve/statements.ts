/**
 * Runs one Hrana statement on a connection (a better-sqlite3 Database inside db.read()/db.write(),
 * a read-only connection of a read stream, or the handle's own surface inside an interactive write
 * transaction) and turns the outcome into Hrana's result or error shape.
 */
import { ServeError, SqliteHaError } from '../errors';
import type { ProtoError, ProtoStmt, StmtResult } from './protocol';
import { assertAllowed, GuardPolicy } from '../storage/sql-guard';
import { refusedOverNetwork, rewriteNumbered } from './sql';
import { fromProto, SqlValue, toProto } from './values';

/** Pinned pragmas are refused here too (transaction control is judged by refusedOverNetwork). */
const SERVED: GuardPolicy = Object.freeze({ transactionControl: true, where: 'a served statement' });

/** The part of a better-sqlite3 (or HAStatement) statement the runner uses. */
export interface StmtLike {
  readonly reader: boolean;
  readonly readonly: boolean;
  safeIntegers(on?: boolean): unknown;
  raw(on?: boolean): unknown;
  columns(): { name: string; type: string | null }[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
  run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
}

/** Something statements can be prepared on. */
export interface Preparer {
  prepare(sql: string): StmtLike;
}

/** Binding arguments built from the statement's args and named_args. */
function bindings(stmt: ProtoStmt, sql: string): { sql: string; params: unknown[] } {
  const positional: SqlValue[] = stmt.args.map(fromProto);
  const named: Record<string, SqlValue> = {};
  for (const a of stmt.named_args) named[a.name.replace(/^[:@$]/, '')] = fromProto(a.value);
  const rewritten = rewriteNumbered(sql);
  if (rewritten) {
    for (const [name, index] of rewritten.names) {
      if (index >= positional.length) {
        throw new ServeError('SQLITE_RANGE', `parameter ?${index + 1} has no value (${positional.length} given)`);
      }
      named[name] = positional[index];
    }
    return { sql: rewritten.sql, params: [named] };
  }
  const params: unknown[] = [...positional];
  if (stmt.named_args.length > 0) params.push(named);
  return { sql, params };
}

/** Executes `stmt` (with its SQL already resolved) on `conn`; throws for SQL errors and limits. */
export function runStmt(conn: Preparer, sql: string, stmt: ProtoStmt, maxRows: number): StmtResult {
  assertAllowed(sql, SERVED);
  const b = bindings(stmt, sql);
  const s = conn.prepare(b.sql);
  const refused = refusedOverNetwork(sql, !s.readonly);
  if (refused) throw new ServeError('SQLITE_AUTH', refused);
  if (!s.reader) {
    const info = s.run(...b.params);
    return {
      cols: [], rows: [], affected_row_count: info.changes,
      last_insert_rowid: String(info.lastInsertRowid),
    };
  }
  s.safeIntegers(true);
  s.raw(true);
  const cols = s.columns().map((c) => ({ name: c.name, decltype: c.type }));
  const rows = [];
  for (const row of s.iterate(...b.params) as IterableIterator<unknown[]>) {
    if (rows.length >= maxRows) {
      throw new ServeError('SQLITE_HA_TOO_MANY_ROWS', `the statement returns more than ${maxRows} rows (the server's limit); add a LIMIT or page with a WHERE clause`);
    }
    if (stmt.want_rows) rows.push(row.map(toProto));
  }
  if (s.readonly) return { cols, rows, affected_row_count: 0, last_insert_rowid: null };
  // INSERT ... RETURNING and friends: changes() and last_insert_rowid() of this connection.
  const counts = conn.prepare('SELECT changes(), last_insert_rowid()');
  counts.safeIntegers(true);
  counts.raw(true);
  const [row] = [...counts.iterate()] as unknown[][];
  return { cols, rows, affected_row_count: Number(row[0]), last_insert_rowid: String(row[1]) };
}

/** Runs a `sequence` (statements separated by semicolons, rows ignored) with the same guards. */
export function runSequence(conn: { exec(sql: string): unknown }, sql: string): void {
  assertAllowed(sql, SERVED);
  const refused = refusedOverNetwork(sql, true);
  if (refused) throw new ServeError('SQLITE_AUTH', refused);
  conn.exec(sql);
}

/** Whether `sql` only reads, or null when it cannot be prepared here (then treat it as a write). */
export function isReadOnly(conn: Preparer, sql: string): boolean | null {
  try {
    return conn.prepare(rewriteNumbered(sql)?.sql ?? sql).readonly;
  } catch {
    return null;
  }
}

const PRIMARY = /^(SQLITE_[A-Z]+)(_[A-Z_]+)?$/;

/**
 * Error -> Hrana error. SQLite's errors keep their primary code as `code` (SQLITE_CONSTRAINT, as
 * libSQL servers send it) and name the extended code in the message; sqlite-ha errors keep their
 * stable SQLITE_HA_* code.
 */
export function toProtoError(err: unknown): ProtoError {
  if (err instanceof SqliteHaError) return { message: err.message, code: err.code };
  const e = err as { code?: unknown; message?: unknown; name?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.code === 'string') {
    const m = PRIMARY.exec(e.code);
    if (m) return { message: m[2] ? `${message} (${e.code})` : message, code: m[1] };
  }
  if (err instanceof RangeError) return { message, code: 'SQLITE_RANGE' };
  if (err instanceof TypeError) return { message, code: 'SQLITE_MISUSE' };
  return { message, code: 'SQLITE_HA_INTERNAL' };
}
