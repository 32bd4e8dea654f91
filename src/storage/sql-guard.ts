/**
 * The SQL guard (docs/HAZARDS.md H1, issue #10 defect 8): pinned pragmas and transaction control are
 * refused before they run, without trusting a regex over a whole script. exec() text is split into
 * statements here and each piece is handed to SQLite's own prepare(), which accepts exactly one
 * complete statement: a wrong split can only make prepare() fail, never run SQL the check did not
 * see. Each single statement is then classified by its first keyword (only whitespace and comments
 * can precede it, so no string literal can disguise it), and a PRAGMA by its exact grammar.
 */
import Database from 'better-sqlite3';
import { UnsafeStorageError } from '../errors';
import { PINNED_PRAGMAS } from './connection';

/** What one statement is, as far as the guard cares. */
export type StatementKind =
  | { kind: 'transaction-control'; verb: 'BEGIN' | 'COMMIT' | 'END' | 'ROLLBACK' }
  | { kind: 'pinned-pragma-set'; name: string }
  | { kind: 'other' };

const LEADING = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$))+/;

/** The statement without its leading whitespace and comments. */
function afterLeading(sql: string): string {
  return sql.replace(LEADING, '');
}

/** Classifies ONE statement (as prepare() takes it). */
export function classifyStatement(sql: string): StatementKind {
  const s = afterLeading(sql);
  const word = /^[A-Za-z]+/.exec(s)?.[0].toUpperCase();
  if (word === 'BEGIN' || word === 'COMMIT' || word === 'END') return { kind: 'transaction-control', verb: word };
  if (word === 'ROLLBACK') {
    // ROLLBACK [TRANSACTION] TO [SAVEPOINT] x undoes part of the transaction and keeps it open.
    return /^ROLLBACK(?:\s+TRANSACTION)?\s+TO\b/i.test(collapse(s)) ? { kind: 'other' } : { kind: 'transaction-control', verb: 'ROLLBACK' };
  }
  if (word === 'PRAGMA') {
    const name = pragmaAssignment(s.slice('PRAGMA'.length));
    if (name && (PINNED_PRAGMAS as readonly string[]).includes(name)) return { kind: 'pinned-pragma-set', name };
  }
  return { kind: 'other' };
}

/** Comments to single spaces (for the short keyword tests above; literals cannot occur there). */
function collapse(s: string): string {
  return s.replace(/--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$)/g, ' ').replace(/\s+/g, ' ');
}

/** `[schema.]name = v` or `[schema.]name(v)`: the lower-cased name; a plain read gives null. */
function pragmaAssignment(rest: string): string | null {
  let s = afterLeading(rest);
  let ident = identifier(s);
  if (!ident) return null;
  s = afterLeading(s.slice(ident.length));
  if (s.startsWith('.')) {
    s = afterLeading(s.slice(1));
    ident = identifier(s);
    if (!ident) return null;
    s = afterLeading(s.slice(ident.length));
  }
  if (!s.startsWith('=') && !s.startsWith('(')) return null;
  return unquote(ident).toLowerCase();
}

function identifier(s: string): string | null {
  const m = /^(?:"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_$]*)/.exec(s);
  return m ? m[0] : null;
}

function unquote(ident: string): string {
  const q = ident[0];
  if (q === '"' || q === '`' || q === "'") return ident.slice(1, -1).split(q + q).join(q);
  if (q === '[') return ident.slice(1, -1);
  return ident;
}

/**
 * Proposes statement boundaries: top-level semicolons outside literals, quoted identifiers and
 * comments, and inside CREATE TRIGGER only the one after `; END`. Pieces holding only comments
 * or whitespace are dropped.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const words: string[] = []; // significant tokens of the current statement, upper-cased
  const push = (end: number) => {
    const piece = sql.slice(start, end);
    if (afterLeading(piece).replace(/;\s*$/, '').trim() !== '') out.push(piece);
    start = end;
    words.length = 0;
  };
  const inTrigger = () => {
    const c = words.indexOf('CREATE');
    return c === 0 && (words[1] === 'TRIGGER' || ((words[1] === 'TEMP' || words[1] === 'TEMPORARY') && words[2] === 'TRIGGER'));
  };
  while (i < sql.length) {
    const ch = sql[i];
    if (ch === "'" || ch === '"' || ch === '`') {
      const close = sql.indexOf(ch, i + 1);
      let j = close;
      while (j !== -1 && sql[j + 1] === ch) j = sql.indexOf(ch, j + 2);
      i = j === -1 ? sql.length : j + 1;
      words.push('LITERAL');
    } else if (ch === '[') {
      const j = sql.indexOf(']', i + 1);
      i = j === -1 ? sql.length : j + 1;
      words.push('IDENT');
    } else if (ch === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      i = j === -1 ? sql.length : j + 1;
    } else if (ch === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      i = j === -1 ? sql.length : j + 2;
    } else if (ch === ';') {
      i++;
      const n = words.length;
      if (!inTrigger() || (n >= 2 && words[n - 1] === 'END' && words[n - 2] === ';')) push(i);
      else words.push(';');
    } else if (/[A-Za-z_]/.test(ch)) {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(sql.slice(i, i + 64))!;
      words.push(m[0].toUpperCase());
      i += m[0].length;
    } else {
      if (!/\s/.test(ch)) words.push(ch);
      i++;
    }
  }
  if (start < sql.length) push(sql.length);
  return out;
}

/** What a guarded connection allows besides ordinary statements. */
export interface GuardPolicy {
  /** BEGIN/COMMIT/END/ROLLBACK: refused inside db.write(fn) (the handle owns that transaction). */
  transactionControl: boolean;
  /** Named in the error: where the statement was refused. */
  where: string;
}

/** Throws before a refused statement runs. */
export function assertAllowed(sql: string, policy: GuardPolicy): void {
  const k = classifyStatement(sql);
  if (k.kind === 'pinned-pragma-set') {
    throw new UnsafeStorageError(
      `PRAGMA ${k.name} is pinned by sqlite-ha (rollback journal, synchronous=FULL, locking_mode=NORMAL; ` +
        'docs/HAZARDS.md H1); set journalMode in open() options instead. Nothing was run.',
    );
  }
  if (k.kind === 'transaction-control' && !policy.transactionControl) {
    throw new UnsafeStorageError(
      `${k.verb} refused in ${policy.where}: the handle owns this transaction and commits it itself, after the lease ` +
        'deadline check (and, in the lockless mode, the reader gate). Return from the function to commit, throw to ' +
        'roll back; use savepoints (SAVEPOINT / RELEASE / ROLLBACK TO) for partial rollbacks. Nothing was run.',
    );
  }
}

/**
 * exec() one statement at a time; every statement is checked before the first one runs (and each
 * is prepared, i.e. proven to be one statement, before it runs). Results are discarded as exec() does.
 */
export function guardedExec(conn: Database.Database, sql: string, policy: GuardPolicy): void {
  // Only text that names one of these keywords can hold a refused statement: the rest runs as is
  // (better-sqlite3's own exec, past the guard runGuarded() puts on the connection).
  if (typeof sql !== 'string' || !KEYWORDS.test(sql)) {
    rawExec.call(conn, sql);
    return;
  }
  const pieces = splitStatements(sql);
  for (const piece of pieces) assertAllowed(piece, policy);
  for (const piece of pieces) {
    const stmt = conn.prepare(piece);
    if (stmt.reader) for (const _row of stmt.iterate()) void _row;
    else stmt.run();
  }
}

const rawExec = Database.prototype.exec;
const KEYWORDS = /\b(?:pragma|begin|commit|end|rollback)\b/i;

const pinnedReads = new WeakMap<Database.Database, Database.Statement[]>();

/** The pinned pragmas as a connection has them now: three reads, prepared once per connection. */
export function pinnedState(conn: Database.Database): string {
  let reads = pinnedReads.get(conn);
  if (!reads) {
    reads = PINNED_PRAGMAS.map((p) => conn.prepare(`PRAGMA ${p}`).pluck());
    pinnedReads.set(conn, reads);
  }
  return reads.map((r) => String(r.get()).toLowerCase()).join(',');
}

interface Guard {
  policy: GuardPolicy | null;
}
const guards = new WeakMap<Database.Database, Guard>();

/**
 * Runs fn with conn's exec/prepare/pragma/close checking every statement against `policy` before
 * it runs. The checks sit on the connection object itself (own properties, installed once), not
 * on a wrapper, so a statement's `database` or a transaction function's `database` (the raw
 * connection, which better-sqlite3 freezes onto them) is guarded too. Outside fn the methods are
 * better-sqlite3's, unchanged: the handle's own BEGIN and COMMIT pass.
 */
export function runGuarded<T>(conn: Database.Database, policy: GuardPolicy, fn: () => T): T {
  let g = guards.get(conn);
  if (!g) {
    g = install(conn);
    guards.set(conn, g);
  }
  const previous = g.policy;
  g.policy = policy;
  try {
    return fn();
  } finally {
    g.policy = previous;
  }
}

function install(conn: Database.Database): Guard {
  const g: Guard = { policy: null };
  const exec = conn.exec.bind(conn);
  const prepare = conn.prepare.bind(conn);
  const pragma = conn.pragma.bind(conn);
  const close = conn.close.bind(conn);
  const own = (value: unknown) => ({ value, configurable: true, writable: true });
  Object.defineProperties(conn, {
    exec: own((sql: string) => {
      if (!g.policy) return exec(sql);
      guardedExec(conn, sql, g.policy);
      return conn;
    }),
    prepare: own((sql: string) => {
      if (g.policy && typeof sql === 'string') assertAllowed(sql, g.policy);
      return prepare(sql);
    }),
    pragma: own((source: string, options?: Database.PragmaOptions) => {
      if (g.policy && typeof source === 'string') assertAllowed(`PRAGMA ${source}`, g.policy);
      return pragma(source, options as Database.PragmaOptions);
    }),
    close: own(() => {
      if (g.policy) throw new UnsafeStorageError(`close() refused in ${g.policy.where}: the handle owns this connection (use db.close())`);
      return close();
    }),
  });
  return g;
}
