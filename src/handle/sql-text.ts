/**
 * What the handle needs to know about SQL text it is given as a string: transaction control
 * (BEGIN/COMMIT/ROLLBACK as better-sqlite3 code writes it) and whether a pragma call sets a value
 * on the file, sets per-connection state, or only reads.
 */
import type { BeginMode } from '../txn/fenced';

/** A lone BEGIN/COMMIT/END/ROLLBACK statement, or null. */
export function transactionVerb(sql: string): { verb: 'BEGIN' | 'COMMIT' | 'ROLLBACK'; mode: BeginMode } | null {
  const m = /^\s*(BEGIN|COMMIT|END|ROLLBACK)(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;?\s*$/i.exec(sql);
  if (!m) return null;
  const word = m[1].toUpperCase();
  return {
    verb: word === 'END' ? 'COMMIT' : (word as 'BEGIN' | 'COMMIT' | 'ROLLBACK'),
    mode: m[3]?.toUpperCase() === 'EXCLUSIVE' ? 'EXCLUSIVE' : 'IMMEDIATE',
  };
}

/** exec('BEGIN; ...; COMMIT') split into its BEGIN, body and whether it ends with COMMIT. */
export function splitTransactionScript(sql: string): { begin: string; body: string; commits: boolean } | null {
  const begin = /^\s*BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;/i.exec(sql);
  if (!begin) return null;
  const rest = sql.slice(begin[0].length);
  const end = /;?\s*(COMMIT|END)(\s+TRANSACTION)?\s*;?\s*$/i.exec(rest);
  return { begin: begin[0], body: end ? rest.slice(0, end.index) : rest, commits: end !== null };
}

/** How a pragma() call acts: on the file (fenced), on each connection, or only reads. */
export function pragmaKind(source: string): 'writes-file' | 'connection-setting' | 'reads' {
  const m = /^\s*(?:\w+\.)?(\w+)\s*(=|\()?/.exec(source);
  const name = m?.[1].toLowerCase() ?? '';
  // `name = v` and `name(v)` set a value, except for the pragmas whose argument is a table or
  // index to read about; anything unparseable is treated as a write (fenced).
  const assigns = !m || /=/.test(source) || (m[2] === '(' && !READ_ARG_PRAGMAS.has(name));
  if (!assigns) return 'reads';
  return CONNECTION_PRAGMAS.has(name) ? 'connection-setting' : 'writes-file';
}

/** Pragmas whose parenthesised argument names something to read about, not a value to set. */
const READ_ARG_PRAGMAS = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_info', 'index_xinfo', 'index_list', 'foreign_key_list',
  'foreign_key_check', 'integrity_check', 'quick_check',
]);

/** Pragmas that set per-connection state rather than write to the file. */
const CONNECTION_PRAGMAS = new Set([
  'busy_timeout', 'cache_size', 'foreign_keys', 'recursive_triggers', 'case_sensitive_like',
  'cell_size_check', 'defer_foreign_keys', 'ignore_check_constraints', 'query_only', 'reverse_unordered_selects',
  'temp_store', 'trusted_schema', 'mmap_size', 'analysis_limit', 'automatic_index', 'cache_spill', 'threads',
]);
