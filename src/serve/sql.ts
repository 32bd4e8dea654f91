/**
 * What the server needs to know about SQL text before running it: transaction control (BEGIN,
 * COMMIT, ROLLBACK — SQLite reports these as read-only, so they are recognised here), and the
 * rewrite of `?NNN` parameters into names, because better-sqlite3 refuses numbered parameters with
 * gaps while SQLite and Hrana clients use them.
 */

export type TxnControl =
  | { verb: 'begin'; mode: 'deferred' | 'immediate' | 'exclusive' | 'readonly' }
  | { verb: 'commit' }
  | { verb: 'rollback' };

const CONTROL = /^\s*(BEGIN|COMMIT|END|ROLLBACK)(?:\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(?:\s+TRANSACTION)?(?:\s+(READONLY))?\s*;?\s*$/i;

/**
 * BEGIN [DEFERRED|IMMEDIATE|EXCLUSIVE] [TRANSACTION], `BEGIN TRANSACTION READONLY` (libSQL's
 * read transaction: stock SQLite would parse READONLY as a transaction name and write under it),
 * COMMIT/END, and a plain ROLLBACK (not ROLLBACK TO, which stays inside the transaction).
 */
export function txnControl(sql: string): TxnControl | null {
  const m = CONTROL.exec(sql);
  if (!m) return null;
  const verb = m[1].toUpperCase();
  if (verb === 'BEGIN') {
    if (m[3]) return m[2] ? null : { verb: 'begin', mode: 'readonly' };
    const mode = (m[2]?.toLowerCase() ?? 'deferred') as 'deferred' | 'immediate' | 'exclusive';
    return { verb: 'begin', mode };
  }
  if (m[2] || m[3]) return null;
  return verb === 'ROLLBACK' ? { verb: 'rollback' } : { verb: 'commit' };
}

/** A leading BEGIN and trailing COMMIT of a `sequence` (db.write() already is the transaction). */
export function stripOuterTransaction(sql: string): { body: string; wrapped: boolean } {
  const begin = /^\s*BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;/i.exec(sql);
  if (!begin) return { body: sql, wrapped: false };
  const rest = sql.slice(begin[0].length);
  const end = /;?\s*(COMMIT|END)(\s+TRANSACTION)?\s*;?\s*$/i.exec(rest);
  if (!end) return { body: sql, wrapped: false };
  return { body: rest.slice(0, end.index), wrapped: true };
}

/** One piece of SQL text: code, a literal/quoted identifier/comment, or a parameter. */
interface Piece {
  kind: 'code' | 'quoted' | 'param';
  text: string;
}

/** Splits SQL into code, quoted text and comments (never looked into), and parameters. */
function scan(sql: string): Piece[] {
  const out: Piece[] = [];
  let i = 0;
  let code = '';
  const flush = () => {
    if (code) out.push({ kind: 'code', text: code });
    code = '';
  };
  while (i < sql.length) {
    const c = sql[i];
    let end = -1;
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === close) {
          if (close !== ']' && sql[j + 1] === close) { j += 2; continue; }
          break;
        }
        j++;
      }
      end = Math.min(j + 1, sql.length);
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      end = j < 0 ? sql.length : j;
    } else if (c === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      end = j < 0 ? sql.length : j + 2;
    }
    if (end >= 0) {
      flush();
      out.push({ kind: 'quoted', text: sql.slice(i, end) });
      i = end;
      continue;
    }
    if (c === '?' || ((c === ':' || c === '@' || c === '$') && /[A-Za-z_]/.test(sql[i + 1] ?? ''))) {
      let j = i + 1;
      const word = c === '?' ? /[0-9]/ : /[A-Za-z0-9_]/;
      while (j < sql.length && word.test(sql[j])) j++;
      flush();
      out.push({ kind: 'param', text: sql.slice(i, j) });
      i = j;
      continue;
    }
    code += c;
    i++;
  }
  flush();
  return out;
}

export interface Rewritten {
  sql: string;
  /** Positional index (0-based) of each generated name, e.g. `_p3` -> 2. */
  names: Map<string, number>;
}

/**
 * Rewrites `?NNN` (and bare `?` mixed with them) into names, numbering as SQLite does: left to
 * right, a named parameter takes the next free number, `?NNN` names a number, and a `?NNN` whose
 * number a named parameter already took is that parameter (`:b, ?1` are one slot). Returns null
 * when the text has no numbered parameter.
 */
export function rewriteNumbered(sql: string): Rewritten | null {
  if (!/\?\d/.test(sql)) return null;
  const pieces = scan(sql);
  if (!pieces.some((p) => p.kind === 'param' && /^\?\d/.test(p.text))) return null;
  let max = 0;
  const named = new Map<string, number>();
  const slotName = new Map<number, string>();
  const names = new Map<string, number>();
  const text = pieces.map((p) => {
    if (p.kind !== 'param') return p.text;
    if (p.text[0] !== '?') {
      if (!named.has(p.text)) {
        named.set(p.text, ++max);
        slotName.set(max, p.text);
      }
      return p.text;
    }
    const n = p.text.length > 1 ? Number(p.text.slice(1)) : max + 1;
    max = Math.max(max, n);
    const alias = slotName.get(n);
    if (alias) return alias;
    names.set(`_p${n}`, n - 1);
    return `@_p${n}`;
  });
  return { sql: text.join(''), names };
}

/**
 * Splits a `sequence` into statements at semicolons outside quotes and comments, keeping the
 * body of CREATE TRIGGER … BEGIN … END together.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let current = '';
  let inTrigger = false;
  for (const p of scan(sql)) {
    if (p.kind !== 'code') {
      current += p.text;
      continue;
    }
    let rest = p.text;
    for (;;) {
      const i = rest.indexOf(';');
      if (i < 0) {
        current += rest;
        break;
      }
      current += rest.slice(0, i + 1);
      rest = rest.slice(i + 1);
      const code = current.replace(/\s+/g, ' ');
      if (!inTrigger && /^\s*CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b/i.test(code)) inTrigger = true;
      if (inTrigger && !/\bEND\s*;\s*$/i.test(code)) continue;
      inTrigger = false;
      if (current.replace(/;/g, '').trim()) out.push(current.trim());
      current = '';
    }
  }
  if (current.trim() && scan(current).some((p) => p.kind !== 'quoted' && p.text.trim())) out.push(current.trim());
  return out;
}

/** Parameter names as Hrana's describe reports them: index i is parameter i + 1, `?` is null. */
export function parameterNames(sql: string): (string | null)[] {
  const names: (string | null)[] = [];
  const seen = new Map<string, number>();
  for (const p of scan(sql)) {
    if (p.kind !== 'param') continue;
    if (p.text === '?') {
      names.push(null);
    } else if (p.text[0] === '?') {
      const n = Number(p.text.slice(1));
      while (names.length < n) names.push(null);
      names[n - 1] = p.text;
    } else if (!seen.has(p.text)) {
      seen.set(p.text, names.length);
      names.push(p.text);
    }
  }
  return names;
}

/**
 * What a network client may not run even with a valid token: ATTACH/DETACH and VACUUM INTO reach
 * other files of the server's filesystem, and sqlite-ha's own meta table holds the fence (a write
 * to it could fence out every future holder). Returns the reason, or null.
 */
export function refusedOverNetwork(sql: string, writes: boolean): string | null {
  const code = scan(sql).filter((p) => p.kind === 'code').map((p) => p.text).join(' ');
  if (/\b(ATTACH|DETACH)\b/i.test(code)) return 'ATTACH and DETACH are not allowed over the network';
  if (/\bVACUUM\b[\s\S]*\bINTO\b/i.test(code)) return 'VACUUM INTO is not allowed over the network';
  if (writes && /_sqlite_ha_/i.test(sql)) return "sqlite-ha's own tables (_sqlite_ha_*) cannot be written over the network";
  return null;
}
