/**
 * The SQL guard (src/storage/sql-guard.ts, issue #10 defect 8): pinned pragmas and transaction
 * control are refused before they run, however the script hides them (string literals that look
 * like comments, comments that look like literals), on the read-write and the read-only
 * connection; inside db.write(fn) a COMMIT never runs, so a retrying caller cannot write twice.
 */
import Database from 'better-sqlite3';
import { UnsafeStorageError } from '../../src';
import { classifyStatement, splitStatements } from '../../src/storage/sql-guard';
import { thrown } from '../helpers/errors';
import { openHA } from '../helpers/handle';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function refused(fn: () => unknown): UnsafeStorageError {
  const caught = thrown(fn);
  expect(caught).toBeInstanceOf(UnsafeStorageError);
  return caught as UnsafeStorageError;
}

/** locking_mode and synchronous of a raw connection, and whether another connection can read. */
function state(conn: Database.Database): unknown[] {
  return [conn.pragma('locking_mode', { simple: true }), conn.pragma('synchronous', { simple: true })];
}

function otherReaderCanRead(file: string): boolean {
  const other = new Database(file, { readonly: true, timeout: 0 });
  try {
    other.prepare('SELECT count(*) FROM sqlite_schema').get();
    return true;
  } catch {
    return false;
  } finally {
    other.close();
  }
}

const DISGUISED = [
  "SELECT '/*'; PRAGMA locking_mode=EXCLUSIVE; SELECT '*/'",
  "SELECT '--'; PRAGMA synchronous=OFF; SELECT 1",
  "SELECT \"/*\"; PRAGMA main.locking_mode = 'EXCLUSIVE'; SELECT '*/'",
  'SELECT 1 /* ; */; PRAGMA /* x */ "synchronous" = 0',
];

describe('exec() on the holder (read-write connection)', () => {
  test.each(DISGUISED)('%p is refused and nothing changes', async (sql) => {
    const db = await openHA(tmp, { locks: 'trusted' });
    await db.acquire();
    db.exec('CREATE TABLE t (x)');
    refused(() => db.exec(sql));
    await db.write((c) => {
      expect(state(c)).toEqual(['normal', 2]);
    });
    await db.release();
    expect(otherReaderCanRead(tmp.file())).toBe(true);
  });
});

describe('exec() without the lease (read-only connection)', () => {
  test.each(DISGUISED)('%p is refused; the read-only connection stays in normal locking', async (sql) => {
    const db = await openHA(tmp, { locks: 'trusted' });
    await db.write((c) => c.exec('CREATE TABLE t (x)'));
    await db.release();
    refused(() => db.exec(sql));
    expect(db.pragma('locking_mode', { simple: true })).toBe('normal');
    db.exec('SELECT count(*) FROM t'); // a read takes the lock and lets it go
    expect(otherReaderCanRead(tmp.file())).toBe(true);
  });
});

describe('transaction control inside db.write(fn) is refused before it runs', () => {
  test.each([
    ['exec COMMIT', (c: Database.Database) => c.exec('COMMIT')],
    ['exec INSERT; COMMIT', (c: Database.Database) => c.exec("INSERT INTO t VALUES ('x'); COMMIT")],
    ['exec with a literal first', (c: Database.Database) => c.exec("SELECT '/*'; COMMIT; SELECT '*/'")],
    ['prepare COMMIT', (c: Database.Database) => c.prepare('/* hi */ END TRANSACTION').run()],
    ['ROLLBACK', (c: Database.Database) => c.exec('ROLLBACK')],
    ['the raw connection through a statement', (c: Database.Database) => (c.prepare('SELECT 1').database as Database.Database).exec('COMMIT')],
    ['close()', (c: Database.Database) => c.close()],
    ['a pinned pragma', (c: Database.Database) => c.pragma('locking_mode = EXCLUSIVE')],
  ])('%s: the write rejects and nothing of it is committed, also on retry', async (_label, act) => {
    const db = await openHA(tmp, { locks: 'trusted' });
    await db.write((c) => c.exec('CREATE TABLE t (x)'));
    const txid = () => db.prepare('SELECT txid FROM _sqlite_ha_meta').pluck().get() as number;
    const before = txid();
    for (let attempt = 0; attempt < 2; attempt++) {
      const err = await db.write((c) => {
        c.prepare('INSERT INTO t VALUES (?)').run(`attempt ${attempt}`);
        act(c);
      }).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(UnsafeStorageError);
    }
    expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(0);
    expect(txid()).toBe(before);
    await db.write((c) => c.prepare('INSERT INTO t VALUES (?)').run('fine'));
    expect(db.prepare('SELECT count(*) FROM t').pluck().get()).toBe(1);
  });

  test('savepoints, nested transaction(), triggers and literals holding ; and COMMIT still work', async () => {
    const db = await openHA(tmp, { locks: 'trusted' });
    await db.write((c) => {
      c.exec(`CREATE TABLE t (x); CREATE TABLE log (y);
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.x); SELECT CASE WHEN 1 THEN 1 END; END;
        INSERT INTO t VALUES ('a; COMMIT; b'); -- a comment; COMMIT
        SAVEPOINT s; INSERT INTO t VALUES ('gone'); ROLLBACK TO s; RELEASE s;`);
      c.transaction(() => c.prepare('INSERT INTO t VALUES (?)').run('nested'))();
    });
    expect(db.prepare('SELECT x FROM t ORDER BY rowid').pluck().all()).toEqual(['a; COMMIT; b', 'nested']);
    expect(db.prepare('SELECT count(*) FROM log').pluck().get()).toBe(2);
  });
});

describe('splitStatements / classifyStatement', () => {
  test('boundaries respect literals, quoted names, comments and trigger bodies', () => {
    expect(splitStatements("SELECT ';'; SELECT \"a;b\"; SELECT [c;d]; -- x;\nSELECT 1 /* ; */;").map((s) => s.trim())).toEqual([
      "SELECT ';';", 'SELECT "a;b";', 'SELECT [c;d];', '-- x;\nSELECT 1 /* ; */;',
    ]);
    expect(splitStatements('CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; SELECT 3').length).toBe(2);
    expect(splitStatements(' ; -- only a comment\n')).toEqual([]);
  });

  test('the first keyword after comments decides; pragma reads are fine', () => {
    expect(classifyStatement('/* c */ -- d\n commit')).toEqual({ kind: 'transaction-control', verb: 'COMMIT' });
    expect(classifyStatement('ROLLBACK TRANSACTION TO SAVEPOINT s')).toEqual({ kind: 'other' });
    expect(classifyStatement("PRAGMA 'locking_mode' = EXCLUSIVE")).toEqual({ kind: 'pinned-pragma-set', name: 'locking_mode' });
    expect(classifyStatement('PRAGMA main . journal_mode (WAL)')).toEqual({ kind: 'pinned-pragma-set', name: 'journal_mode' });
    expect(classifyStatement('PRAGMA locking_mode')).toEqual({ kind: 'other' });
    expect(classifyStatement("SELECT 'PRAGMA journal_mode=WAL'")).toEqual({ kind: 'other' });
  });
});
