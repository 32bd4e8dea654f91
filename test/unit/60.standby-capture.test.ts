/**
 * Journal capture reproduces each transaction exactly: a copy patched only with the captured
 * pages is byte-identical to the database after every transaction of a randomized workload
 * (inserts, updates, deletes that free pages, free-page reuse, index changes, cache spills).
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import { afterCommit, beforeCommit } from '../../src/standby/capture';
import { parseJournal, readJournal } from '../../src/standby/journal';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir('sqlite-ha-capture-');

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** One random transaction: the mix frees pages (big deletes) and reuses them (big inserts). */
function randomWork(db: Database.Database, rnd: () => number): void {
  db.exec('UPDATE c SET n = n + 1'); // like the meta row's txid bump: every transaction writes
  const ops = 1 + Math.floor(rnd() * 30);
  for (let i = 0; i < ops; i++) {
    const r = rnd();
    const blob = 'x'.repeat(Math.floor(rnd() * 3000));
    if (r < 0.45) db.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(Math.floor(rnd() * 1e6), blob);
    else if (r < 0.65) db.prepare('UPDATE t SET v = ?, k = k + 1 WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3)').run(blob);
    else if (r < 0.85) db.prepare('DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT ?)').run(1 + Math.floor(rnd() * 20));
    else if (r < 0.9) db.exec('CREATE INDEX IF NOT EXISTS t_v ON t (v)');
    else if (r < 0.95) db.exec('DROP INDEX IF EXISTS t_v');
    else db.prepare('INSERT INTO u (w) VALUES (?)').run(blob + blob);
  }
}

function patch(copy: Buffer, pageSize: number, dbPages: number, pages: Map<number, Buffer>): Buffer {
  const out = Buffer.alloc(dbPages * pageSize);
  copy.copy(out, 0, 0, Math.min(copy.length, out.length));
  for (const [pgno, data] of pages) data.copy(out, (pgno - 1) * pageSize);
  return out;
}

describe.each([
  ['TRUNCATE', 2000],
  ['TRUNCATE', 1],
  ['PERSIST', 2000],
  ['PERSIST', 1],
])('journal_mode=%s cache_size=%d', (mode, cacheSize) => {
  test('the copy is byte-identical after each of 120 random transactions', () => {
    const file = tmp.file();
    const db = new Database(file);
    db.pragma(`journal_mode = ${mode}`);
    db.pragma('synchronous = FULL');
    db.pragma(`cache_size = ${cacheSize}`);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT); CREATE INDEX t_k ON t (k); CREATE TABLE u (w BLOB); CREATE TABLE c (n); INSERT INTO c VALUES (0)');
    let copy: Buffer = fs.readFileSync(file);
    const rnd = prng(cacheSize * 7 + mode.length);
    let spilled = 0;
    for (let i = 0; i < 120; i++) {
      db.exec('BEGIN IMMEDIATE');
      randomWork(db, rnd);
      const pre = beforeCommit(file);
      expect(pre).not.toBeNull();
      if (pre!.segments > 1) spilled++;
      db.exec('COMMIT');
      const cap = afterCommit(file, pre!)!;
      copy = patch(copy, cap.pageSize, cap.dbPages, cap.pages);
      const actual = fs.readFileSync(file);
      expect(copy.length).toBe(actual.length);
      expect(copy.equals(actual)).toBe(true);
    }
    // The workload exercised what the method needs: reused free pages and, with cache_size 1, spills.
    if (cacheSize === 1) expect(spilled).toBeGreaterThan(0);
    db.close();
  });
});

test('a committed PERSIST journal and a missing journal read as no transaction', () => {
  const file = tmp.file();
  const db = new Database(file);
  db.pragma('journal_mode = PERSIST');
  db.exec('CREATE TABLE t (x)');
  expect(fs.existsSync(`${file}-journal`)).toBe(true);
  expect(readJournal(file)).toBeNull();
  db.close();
  expect(readJournal(tmp.file('none.db'))).toBeNull();
  expect(parseJournal(Buffer.alloc(10))).toBeNull();
});

test('a journal with a spill has several segments, each record checksum-validated', () => {
  const file = tmp.file();
  const db = new Database(file);
  db.pragma('journal_mode = TRUNCATE');
  db.pragma('cache_size = 1');
  db.exec('CREATE TABLE t (v)');
  for (let i = 0; i < 200; i++) db.prepare('INSERT INTO t VALUES (?)').run('y'.repeat(900));
  db.exec('BEGIN IMMEDIATE');
  db.prepare('UPDATE t SET v = ?').run('z'.repeat(800));
  const scan = readJournal(file)!;
  expect(scan.pageSize).toBe(4096);
  expect(scan.segments).toBeGreaterThan(1);
  expect(scan.originals.size).toBeGreaterThan(40);
  // Corrupting one record's checksum stops the walk there: fewer pages, never garbage.
  const raw = fs.readFileSync(`${file}-journal`);
  raw.writeUInt32BE((raw.readUInt32BE(scan.sectorSize + 4 + 4096) + 1) >>> 0, scan.sectorSize + 4 + 4096);
  expect(parseJournal(raw)!.originals.size).toBe(0);
  db.exec('ROLLBACK');
  db.close();
});
