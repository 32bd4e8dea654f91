/**
 * The chaos database: the tables every node writes through db.write(), and the setup transaction.
 * No UNIQUE or CHECK constraints on purpose: a duplicate or a negative balance must land in the
 * file where the checker can see it, not turn into an error that hides it.
 *
 *   accounts(id, balance)                 the bank
 *   transfers(txid, src, dst, amount, opid) one row per applied transfer, for replaying the bank
 *   appends(value, node, txid, fence)     the append workload, rowid = insertion order
 *   commits(txid, fence, node, op, opid)  one row per workload transaction, written inside it with
 *                                         the meta row's fence and txid (the Fence check)
 *   bulk(id, pad)                         the large transaction's payload (replaced each time)
 */
import type Database from 'better-sqlite3';
import { META_TABLE, readMeta } from '../../src/storage/meta';

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (txid INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL, opid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appends (value TEXT NOT NULL, node TEXT NOT NULL, txid INTEGER NOT NULL, fence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commits (txid INTEGER NOT NULL, fence INTEGER NOT NULL, node TEXT NOT NULL, op TEXT NOT NULL, opid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bulk (id INTEGER PRIMARY KEY, pad BLOB);
`;

export interface BankConfig {
  accounts: number;
  initialBalance: number;
}

export interface MetaRow {
  fence: number;
  txid: number;
}

/** Inside db.write the meta row already holds this transaction's fence and txid. */
export function readMetaRow(conn: Database.Database): MetaRow {
  const { fence, txid } = readMeta(conn);
  if (txid === 0) throw new Error(`${META_TABLE} has no row inside a fenced write`);
  return { fence, txid };
}

/** Records this transaction in `commits`; returns the meta row it ran under. */
export function recordCommit(conn: Database.Database, node: string, op: string, opid: string): MetaRow {
  const m = readMetaRow(conn);
  conn.prepare('INSERT INTO commits (txid, fence, node, op, opid) VALUES (?, ?, ?, ?, ?)').run(m.txid, m.fence, node, op, opid);
  return m;
}

/** The setup transaction: schema plus the accounts (idempotent: INSERT OR IGNORE). */
export function setupTransaction(conn: Database.Database, bank: BankConfig): MetaRow {
  conn.exec(SCHEMA_SQL);
  const ins = conn.prepare('INSERT OR IGNORE INTO accounts (id, balance) VALUES (?, ?)');
  for (let i = 1; i <= bank.accounts; i++) ins.run(i, bank.initialBalance);
  return recordCommit(conn, 'setup', 'setup', 'setup');
}
