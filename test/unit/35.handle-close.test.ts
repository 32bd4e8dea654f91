/**
 * close() and statements against better-sqlite3 (src/handle/database.ts close(), src/handle/statement.ts):
 * close() closes the connections synchronously, as better-sqlite3's does, and resolves once the
 * lease is released; statements present themselves as better-sqlite3's.
 */
import Database from 'better-sqlite3';
import { ClosedError, commitOutcomeOf, SqliteHaError } from '../../src';
import { openHA } from '../helpers/handle';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('close() is synchronous like better-sqlite3', () => {
  test('right after close() (not awaited) the handle is closed and every method throws the same TypeError', async () => {
    const raw = new Database(tmp.file('raw.db'));
    const db = await openHA(tmp);
    await db.acquire();
    db.exec('CREATE TABLE t (x)');
    const rawStmt = raw.prepare('SELECT 1');
    const stmt = db.prepare('SELECT count(*) FROM t');
    raw.close();
    const closing = db.close();
    expect(db.open).toBe(raw.open);
    expect(db.open).toBe(false);
    const expected = thrown(() => rawStmt.get()) as TypeError;
    const calls: [string, () => unknown][] = [
      ['prepare', () => db.prepare('SELECT 1')],
      ['exec', () => db.exec('INSERT INTO t VALUES (1)')],
      ['exec BEGIN', () => db.exec('BEGIN')],
      ['pragma', () => db.pragma('user_version')],
      ['transaction', () => db.transaction(() => 1)()],
      ['function', () => db.function('f', () => 1)],
      ['serialize', () => db.serialize()],
      ['statement', () => stmt.get()],
    ];
    for (const [what, call] of calls) {
      const err = thrown(call);
      expect([what, err instanceof TypeError, (err as Error).message]).toEqual([what, true, expected.message]);
      expect(err).toBeInstanceOf(ClosedError);
    }
    expect(db.inTransaction).toBe(false);
    expect(db.lease.held).toBe(false);
    await expect(db.write(() => 1)).rejects.toBeInstanceOf(ClosedError);
    await closing;
  });

  test('the promise resolves once the lease is released: another handle writes at once', async () => {
    const a = await openHA(tmp);
    const b = await openHA(tmp, { acquireTimeoutMs: 500 });
    await a.write((c) => c.exec('CREATE TABLE t (x)'));
    const released: unknown[] = [];
    a.on('released', (e) => released.push(e));
    const fence = a.lease.fence;
    const closing = a.close();
    expect(released).toEqual([]); // the lease goes asynchronously
    await closing;
    expect(released).toEqual([{ fence }]);
    await b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
    expect(b.lease.fence).toBeGreaterThan(fence!);
  });

  test('an open transaction rolls back on close(), as SQLite does when a connection closes', async () => {
    const db = await openHA(tmp);
    await db.write((c) => c.exec('CREATE TABLE t (x)'));
    await db.acquire();
    db.exec('BEGIN');
    db.prepare('INSERT INTO t VALUES (1)').run();
    await db.close();
    const check = new Database(tmp.file(), { readonly: true });
    expect(check.prepare('SELECT count(*) FROM t').pluck().get()).toBe(0);
    check.close();
  });

  test('a write waiting for the lease when close() is called fails as not committed, and no lease leaks', async () => {
    const a = await openHA(tmp);
    const b = await openHA(tmp, { acquireTimeoutMs: 2000 });
    await a.write((c) => c.exec('CREATE TABLE t (x)'));
    await a.acquire();
    const pending = b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
    const closing = b.close();
    await a.release();
    const err = await pending.catch((e) => e);
    expect(err).toBeInstanceOf(ClosedError);
    expect(commitOutcomeOf(err)).toBe('not-committed');
    await closing;
    await a.write((c) => c.prepare('INSERT INTO t VALUES (2)').run()); // the lease is free again
    expect(await a.read((c) => c.prepare('SELECT x FROM t').pluck().all())).toEqual([2]);
  });

  test('close() is idempotent and returns the same promise', async () => {
    const db = await openHA(tmp);
    const first = db.close();
    expect(db.close()).toBe(first);
    await expect(first).resolves.toBeUndefined();
  });

  test('ClosedError is a TypeError and a SqliteHaError with a stable code', () => {
    const err = new ClosedError();
    expect(err).toBeInstanceOf(TypeError);
    expect(err).toBeInstanceOf(SqliteHaError);
    expect(new TypeError('x')).not.toBeInstanceOf(SqliteHaError);
    expect([err.code, err.name, err.outcome]).toEqual(['SQLITE_HA_CLOSED', 'ClosedError', 'not-committed']);
  });
});

describe('statements present themselves as better-sqlite3 statements', () => {
  test('constructor name, own properties, source and database match', async () => {
    const raw = new Database(tmp.file('raw.db'));
    tmp.defer(() => raw.close());
    const db = await openHA(tmp);
    const a = raw.prepare('SELECT 1 AS one');
    const b = db.prepare('SELECT 1 AS one');
    expect(b.constructor.name).toBe(a.constructor.name);
    expect(Object.keys(b)).toEqual(Object.keys(a));
    expect(Object.getOwnPropertyNames(Object.getPrototypeOf(b)).sort()).toEqual(
      Object.getOwnPropertyNames(Object.getPrototypeOf(a)).sort(),
    );
    expect([b.source, b.reader, b.readonly, b.busy]).toEqual([a.source, a.reader, a.readonly, a.busy]);
    expect(b.database).toBe(db);
  });
});
