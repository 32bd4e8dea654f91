/** Shared pieces of the standby tests: a randomized workload and byte comparisons. */
import Database from 'better-sqlite3';
import * as fs from 'fs';

/** A seeded PRNG (LCG): a failing run can be replayed. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export const SCHEMA =
  'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT); CREATE INDEX IF NOT EXISTS t_k ON t (k);' +
  'CREATE TABLE IF NOT EXISTS u (w BLOB)';

/** One random transaction body: inserts, updates, deletes (freeing pages), reuse, index changes. */
export function randomWork(c: Database.Database, rnd: () => number): void {
  c.exec(SCHEMA);
  const ops = 1 + Math.floor(rnd() * 25);
  for (let i = 0; i < ops; i++) {
    const r = rnd();
    const blob = 'x'.repeat(Math.floor(rnd() * 3000));
    if (r < 0.45) c.prepare('INSERT INTO t (k, v) VALUES (?, ?)').run(Math.floor(rnd() * 1e6), blob);
    else if (r < 0.65) c.prepare('UPDATE t SET v = ?, k = k + 1 WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3)').run(blob);
    else if (r < 0.85) c.prepare('DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT ?)').run(1 + Math.floor(rnd() * 20));
    else if (r < 0.9) c.exec('CREATE INDEX IF NOT EXISTS t_v ON t (v)');
    else if (r < 0.95) c.exec('DROP INDEX IF EXISTS t_v');
    else c.prepare('INSERT INTO u (w) VALUES (?)').run(blob + blob);
  }
}

/** True when two files have the same bytes. */
export function sameBytes(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

export function integrity(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('integrity_check', { simple: true }) as string;
  } finally {
    db.close();
  }
}

export function metaOf(file: string): { txid: number; fence: number } {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT txid, fence FROM _sqlite_ha_meta').get() as { txid: number; fence: number };
  } finally {
    db.close();
  }
}
