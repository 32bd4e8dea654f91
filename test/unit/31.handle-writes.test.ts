/**
 * Writes and reads through the handle (src/handle/*.ts) with the lockfile coordinator on real
 * files: only the lease holder writes (docs/HAZARDS.md H2), every write is one fenced transaction (H5),
 * db.write/db.read keep their work synchronous, consistency levels are named and checked (H4).
 */
import Database from 'better-sqlite3';
import { ClosedError, HADatabase, NotLeaseHolderError, OpenOptions, SqliteHaError } from '../../src';
import { thrown } from '../helpers/errors';
import { openHA, storedMeta as metaOf } from '../helpers/handle';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

/** A handle on a file that already has a table with two rows, not holding the lease. */
async function seeded(extra: Partial<OpenOptions> = {}): Promise<HADatabase> {
  const db = await openHA(tmp, extra, 'ha.db');
  await db.acquire();
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b')");
  await db.release();
  expect(db.lease.held).toBe(false);
  return db;
}

const storedMeta = () => metaOf(tmp.file('ha.db'));

/** What another process would see: a plain read-only better-sqlite3 connection. */
function peek<T>(sql: string, ...params: unknown[]): T {
  const c = new Database(tmp.file('ha.db'), { readonly: true });
  try {
    return c.prepare(sql).pluck().get(...params) as T;
  } finally {
    c.close();
  }
}

function notHolder(fn: () => unknown): NotLeaseHolderError {
  const caught = thrown(fn);
  expect(caught).toBeInstanceOf(NotLeaseHolderError);
  expect(caught).toBeInstanceOf(SqliteHaError);
  expect((caught as NotLeaseHolderError).code).toBe('SQLITE_HA_NOT_LEASE_HOLDER');
  expect((caught as Error).message).toMatch(/db\.write\(fn\)|acquire\(\)/);
  return caught as NotLeaseHolderError;
}

let ddl = 0;
const WRITES: [string, (db: HADatabase) => unknown][] = [
  ['statement.run()', (db) => db.prepare("INSERT INTO t (v) VALUES ('x')").run()],
  ['statement.get() with RETURNING', (db) => db.prepare("INSERT INTO t (v) VALUES ('x') RETURNING id").get()],
  ['statement.all() with RETURNING', (db) => db.prepare("UPDATE t SET v = 'y' RETURNING id").all()],
  ['statement.iterate() with RETURNING', (db) => [...db.prepare("DELETE FROM t RETURNING id").iterate()]],
  ['exec()', (db) => db.exec("INSERT INTO t (v) VALUES ('x')")],
  ['exec() of DDL', (db) => db.exec(`CREATE TABLE u${++ddl} (x)`)],
  ['transaction()', (db) => db.transaction(() => db.prepare("INSERT INTO t (v) VALUES ('x')").run())()],
  ['transaction().immediate', (db) => db.transaction(() => db.prepare("INSERT INTO t (v) VALUES ('x')").run()).immediate()],
  ["pragma('user_version = 1')", (db) => db.pragma('user_version = 1')],
];

describe('without the lease (H2)', () => {
  test.each(WRITES)('%s → NotLeaseHolderError, nothing written', async (_what, write) => {
    const db = await seeded();
    const before = [peek('SELECT count(*) FROM t'), peek("SELECT count(*) FROM t WHERE v = 'y'"), peek('PRAGMA user_version')];
    notHolder(() => write(db));
    expect([peek('SELECT count(*) FROM t'), peek("SELECT count(*) FROM t WHERE v = 'y'"), peek('PRAGMA user_version')]).toEqual(
      before,
    );
    expect(peek("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'u%'")).toBe(0);
    expect(db.inTransaction).toBe(false); // a failed transaction() left nothing open
    expect(db.lease.held).toBe(false);
  });

  test('reads work: statements, exec of a SELECT, transactions that only read, pragma reads', async () => {
    const db = await seeded();
    expect(db.prepare('SELECT v FROM t ORDER BY id').pluck().all()).toEqual(['a', 'b']);
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 2 });
    expect([...db.prepare('SELECT id FROM t').pluck().iterate()]).toEqual([1, 2]);
    expect(() => db.exec('SELECT 1')).not.toThrow();
    expect(db.transaction(() => db.prepare('SELECT count(*) FROM t').pluck().get())()).toBe(2);
    expect(db.pragma('user_version', { simple: true })).toBe(0);
    expect(db.pragma('table_info(t)')).toHaveLength(2);
    expect(db.lease.held).toBe(false); // reading never takes the lease
  });

  test('a write statement can be prepared without the lease and run once it is held', async () => {
    const db = await seeded();
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    expect(ins.readonly).toBe(false);
    notHolder(() => ins.run('x'));
    await db.acquire();
    expect(ins.run('x')).toEqual({ changes: 1, lastInsertRowid: 3 });
    await db.release();
    notHolder(() => ins.run('y'));
    expect(peek('SELECT group_concat(v) FROM t')).toBe('a,b,x');
  });
});

describe('acquire() and release()', () => {
  test.each(WRITES)('%s works after acquire() and throws again after release()', async (_what, write) => {
    const db = await seeded();
    await db.acquire();
    expect(db.lease.held).toBe(true);
    const txid = storedMeta().txid;
    expect(() => write(db)).not.toThrow();
    // committed and fenced: another connection sees the txid bumped
    expect(storedMeta().txid).toBe(txid + 1);
    expect(storedMeta().fence).toBe(db.lease.fence);
    await db.release();
    expect(db.lease.held).toBe(false);
    notHolder(() => write(db));
  });

  test('an explicitly acquired lease is kept past idleReleaseMs until release()', async () => {
    const db = await seeded({ idleReleaseMs: 50 });
    await db.acquire();
    await new Promise((r) => setTimeout(r, 200));
    expect(db.lease.held).toBe(true);
    db.prepare("INSERT INTO t (v) VALUES ('c')").run();
    await new Promise((r) => setTimeout(r, 200));
    expect(db.lease.held).toBe(true);
    await db.release();
    expect(db.lease.held).toBe(false);
  });

  test('acquire() twice is a no-op; release() without the lease is a no-op', async () => {
    const db = await seeded();
    await db.release();
    await db.acquire();
    const fence = db.lease.fence;
    await db.acquire();
    expect(db.lease.fence).toBe(fence);
    await Promise.all([db.release(), db.release()]);
    expect(db.lease.held).toBe(false);
  });

  test('BEGIN / COMMIT / ROLLBACK as SQL, through exec() and statements, while holding', async () => {
    const db = await seeded();
    await db.acquire();
    db.exec('BEGIN');
    expect(db.inTransaction).toBe(true);
    db.prepare("INSERT INTO t (v) VALUES ('c')").run();
    db.exec("INSERT INTO t (v) VALUES ('d')");
    expect(peek('SELECT count(*) FROM t')).toBe(2); // not visible outside yet
    db.exec('COMMIT');
    expect(db.inTransaction).toBe(false);
    expect(peek('SELECT group_concat(v) FROM t')).toBe('a,b,c,d');

    db.prepare('BEGIN IMMEDIATE').run();
    db.prepare("DELETE FROM t WHERE v = 'a'").run();
    db.prepare('ROLLBACK').run();
    expect(peek('SELECT count(*) FROM t')).toBe(4);
    expect(db.inTransaction).toBe(false);
  });
});

describe('db.write(fn)', () => {
  test('takes the lease, commits fenced, and resolves with fn’s result', async () => {
    const db = await seeded();
    const before = storedMeta();
    const result = await db.write((c) => {
      expect(c.inTransaction).toBe(true);
      return c.prepare("INSERT INTO t (v) VALUES ('c')").run();
    });
    expect(result).toEqual({ changes: 1, lastInsertRowid: 3 });
    expect(db.lease.held).toBe(true);
    expect(peek('SELECT v FROM t WHERE id = 3')).toBe('c');
    const after = storedMeta();
    expect(after.txid).toBe(before.txid + 1);
    expect(after.fence).toBe(db.lease.fence);
    expect(after.fence).toBeGreaterThan(before.fence);
    expect(await db.write(() => 'plain value')).toBe('plain value');
  });

  test('fn throwing a SqliteError: the same error, rolled back, the lease still held', async () => {
    const db = await seeded();
    await db.write(() => undefined); // holding now
    const fence = db.lease.fence;
    const txid = peek<number>('SELECT txid FROM _sqlite_ha_meta');
    let thrown: unknown;
    const err = await db
      .write((c) => {
        c.prepare("INSERT INTO t (v) VALUES ('c')").run();
        try {
          c.prepare('INSERT INTO t (id, v) VALUES (1, ?)').run('dup');
        } catch (e) {
          thrown = e;
          throw e;
        }
      })
      .catch((e) => e);
    expect(err).toBe(thrown);
    expect(err.constructor.name).toBe('SqliteError'); // see 30.handle-surface: not instanceof under jest
    expect(err.code).toBe('SQLITE_CONSTRAINT_PRIMARYKEY');
    expect(peek('SELECT count(*) FROM t')).toBe(2);
    expect(peek('SELECT txid FROM _sqlite_ha_meta')).toBe(txid);
    expect(db.lease.held).toBe(true);
    expect(db.lease.fence).toBe(fence);
    expect(db.inTransaction).toBe(false);
    await db.write((c) => c.prepare("INSERT INTO t (v) VALUES ('d')").run());
    expect(peek('SELECT count(*) FROM t')).toBe(3);
  });

  test('fn returning a promise: TypeError, nothing committed', async () => {
    const db = await seeded();
    const err = await db
      .write(async (c) => {
        c.prepare("INSERT INTO t (v) VALUES ('c')").run(); // runs before the first await
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/promise/);
    expect(peek('SELECT count(*) FROM t')).toBe(2);
    expect(db.inTransaction).toBe(false);
  });

  test('a non-function is a TypeError', async () => {
    const db = await seeded();
    await expect(db.write(42 as any)).rejects.toThrow(TypeError);
  });

  test('surface writes inside db.write join its transaction', async () => {
    const db = await seeded();
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    await db
      .write(() => {
        ins.run('c');
        db.exec("INSERT INTO t (v) VALUES ('d')");
        throw new Error('undo both');
      })
      .catch(() => undefined);
    expect(peek('SELECT count(*) FROM t')).toBe(2);
    const txid = peek<number>('SELECT txid FROM _sqlite_ha_meta');
    await db.write(() => {
      ins.run('c');
      db.exec("INSERT INTO t (v) VALUES ('d')");
    });
    expect(peek('SELECT count(*) FROM t')).toBe(4);
    expect(peek('SELECT txid FROM _sqlite_ha_meta')).toBe(txid + 1); // one transaction
  });
});

describe('db.read(fn, { consistency })', () => {
  test.each([[undefined], ['local'], ['linearizable']] as const)(
    'consistency %p: runs fn in one read transaction and resolves with its result',
    async (consistency) => {
      const db = await seeded();
      const r = await db.read(
        (c) => [c.inTransaction, c.prepare('SELECT v FROM t ORDER BY id').pluck().all()],
        consistency ? { consistency } : undefined,
      );
      expect(r).toEqual([true, ['a', 'b']]);
      expect(db.inTransaction).toBe(false);
    },
  );

  test('sees this handle’s acknowledged writes, with or without the lease', async () => {
    const db = await seeded();
    await db.write((c) => c.prepare("INSERT INTO t (v) VALUES ('c')").run());
    expect(await db.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get(), { consistency: 'linearizable' })).toBe(3);
    await db.release();
    expect(await db.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get(), { consistency: 'linearizable' })).toBe(3);
    expect(await db.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get())).toBe(3);
  });

  test('sees another handle’s acknowledged writes (freshness, H4)', async () => {
    const a = await seeded();
    const b = await openHA(tmp, {}, 'ha.db');
    expect(await b.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get())).toBe(2);
    await a.write((c) => c.prepare("INSERT INTO t (v) VALUES ('c')").run());
    expect(await b.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get(), { consistency: 'linearizable' })).toBe(3);
    expect(await b.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get(), { consistency: 'local' })).toBe(3);
  });

  test.each([['strong'], ['LOCAL'], [''], [0]])('consistency %p is a TypeError', async (consistency) => {
    const db = await seeded();
    const err = await db.read(() => 1, { consistency: consistency as any }).catch((e) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/local.*linearizable/);
  });

  test('fn not a function, or returning a promise: TypeError', async () => {
    const db = await seeded();
    await expect(db.read('SELECT 1' as any)).rejects.toThrow(TypeError);
    await expect(db.read(async () => 1)).rejects.toThrow(TypeError);
    expect(db.inTransaction).toBe(false);
  });

  test('every failure is a rejection, never a synchronous throw, and leaves no transaction open', async () => {
    const db = await seeded();
    const calls: Array<() => Promise<unknown>> = [
      () => db.read('SELECT 1' as any),
      () => db.read(() => 1, { consistency: 'strong' as any }),
      () => db.read(() => {
        throw new Error('boom');
      }),
      () => db.read((c) => c.prepare('SELECT nope FROM t').get()),
    ];
    for (const call of calls) {
      let p: Promise<unknown> | undefined;
      expect(() => (p = call())).not.toThrow();
      // Not rejects.toThrow(): better-sqlite3's addon keeps the SqliteError class of the first
      // test file that loaded it, so in a full jest run its errors fail jest's instanceof Error.
      const reason = await p!.then(() => null, (e: unknown) => e);
      expect(reason).not.toBeNull();
      expect(typeof (reason as { message?: unknown }).message).toBe('string');
      expect(db.inTransaction).toBe(false);
    }
    expect(await db.read((c) => c.prepare('SELECT count(*) FROM t').pluck().get())).toBe(2);
    await db.close();
    let closed: Promise<unknown> | undefined;
    expect(() => (closed = db.read(() => 1))).not.toThrow();
    await expect(closed).rejects.toBeInstanceOf(ClosedError);
  });

  test('a read inside a read joins its transaction and leaves it open for the outer callback', async () => {
    const db = await seeded();
    const seen = await db.read((c) => {
      const inner = db.read((c2) => [c2 === c, c2.inTransaction]);
      return { inner, stillOpen: c.inTransaction };
    });
    expect(await seen.inner).toEqual([true, true]);
    expect(seen.stillOpen).toBe(true);
    expect(db.inTransaction).toBe(false);
  });

  test('without the lease, a write inside read() is refused', async () => {
    const db = await seeded();
    const err = await db.read((c) => c.prepare("INSERT INTO t (v) VALUES ('c')").run()).catch((e) => e);
    expect(err).toBeInstanceOf(NotLeaseHolderError);
    expect(peek('SELECT count(*) FROM t')).toBe(2);
  });

  // BUG (src/handle/*.ts readOnce()): while this node holds the lease, read() runs fn on the
  // read-write connection in a plain BEGIN, so a write inside it commits without the fence check
  // and without bumping txid (breaking H4's "txid counts every commit" and H5's fencing).
  test('while holding the lease, a write inside read() is refused too', async () => {
    const db = await seeded();
    await db.acquire();
    const txid = peek<number>('SELECT txid FROM _sqlite_ha_meta');
    await db.read((c) => c.prepare("INSERT INTO t (v) VALUES ('c')").run()).catch(() => undefined);
    expect({ rows: peek('SELECT count(*) FROM t'), txid: peek('SELECT txid FROM _sqlite_ha_meta') }).toEqual({ rows: 2, txid });
  });
});
