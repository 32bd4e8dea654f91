/**
 * The handle's better-sqlite3 surface (src/handle/*.ts, src/handle/statement.ts) with the lockfile
 * coordinator on real files, no network. Every check runs the same code on a plain better-sqlite3
 * Database (on its own file) and on the sqlite-ha handle and expects the same results and errors.
 * docs/HAZARDS.md H2: reads go to a read-only connection until the handle holds the lease.
 */
import Database from 'better-sqlite3';
import { HADatabase } from '../../src';
import { openHA } from '../helpers/handle';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function openRaw(name = 'raw.db'): Database.Database {
  const db = new Database(tmp.file(name));
  tmp.defer(() => db.close());
  return db;
}

type AnyDb = Database.Database | HADatabase;

/** Both handles, the sqlite-ha one holding the (pinned) lease. */
async function pair(): Promise<{ raw: Database.Database; ha: HADatabase; both: <T>(fn: (db: any) => T) => [T, T] }> {
  const raw = openRaw();
  const ha = await openHA(tmp, {}, 'ha.db');
  await ha.acquire();
  const both = <T>(fn: (db: any) => T): [T, T] => [fn(raw), fn(ha)];
  return { raw, ha, both };
}

/** Runs fn on both and expects equal results. */
function same<T>(both: <U>(fn: (db: any) => U) => [U, U], fn: (db: any) => T): T {
  const [a, b] = both(fn);
  expect(b).toEqual(a);
  return b;
}

function errorOf(fn: () => unknown): any {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

/** Runs fn on both, expects both to throw the same kind of error; returns [raw, ha] errors. */
function sameError(both: <U>(fn: (db: any) => U) => [U, U], fn: (db: any) => unknown): [any, any] {
  const [a, b] = both((db) => errorOf(() => fn(db)));
  expect(b.constructor).toBe(a.constructor);
  expect(b.code).toBe(a.code);
  expect(b.message).toBe(a.message);
  return [a, b];
}

const SCHEMA = 'CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER, big INTEGER)';

function seed(db: AnyDb): void {
  db.exec(SCHEMA);
  const ins = db.prepare('INSERT INTO people (name, age, big) VALUES (@name, @age, @big)');
  for (const [name, age] of [['ann', 31], ['bob', 42], ['cy', 27]] as const) {
    ins.run({ name, age, big: 9007199254740993n });
  }
}

describe('statements', () => {
  test('prepare/run: the same RunResult (changes, lastInsertRowid)', async () => {
    const { both } = await pair();
    same(both, (db) => db.prepare(SCHEMA).run().changes);
    same(both, (db) => db.prepare('INSERT INTO people (name, age) VALUES (?, ?)').run('ann', 31));
    same(both, (db) => db.prepare('INSERT INTO people (name, age) VALUES (?, ?)').run(['bob', 42]));
    same(both, (db) => db.prepare('UPDATE people SET age = age + 1').run());
    same(both, (db) => db.prepare('DELETE FROM people WHERE name = :n').run({ n: 'bob' }));
    const r = same(both, (db) => db.prepare('INSERT INTO people (name) VALUES (?)').run('dee'));
    expect(r).toEqual({ changes: 1, lastInsertRowid: 2 }); // bob (2) was deleted: rowid max+1
  });

  // Minor divergence (src/txn/fenced.ts constructor via storage/meta.ts ensureMetaTable): the
  // fence-raising transaction's `INSERT OR IGNORE INTO _sqlite_ha_meta` sets the read-write
  // connection's last_insert_rowid to 1 on a fresh database, so the user's first statement that
  // inserts nothing reports lastInsertRowid 1 where better-sqlite3 reports 0.
  test('a statement that inserts nothing first reports lastInsertRowid 0, as better-sqlite3 does', async () => {
    const { both } = await pair();
    same(both, (db) => db.prepare(SCHEMA).run());
  });

  test('get/all/iterate with positional and named parameters', async () => {
    const { both } = await pair();
    both(seed);
    same(both, (db) => db.prepare('SELECT name, age FROM people WHERE age > ? ORDER BY id').all(30));
    same(both, (db) => db.prepare('SELECT * FROM people WHERE name = $n').get({ n: 'bob' }));
    same(both, (db) => db.prepare('SELECT * FROM people WHERE name = ?').get('nobody'));
    same(both, (db) => [...db.prepare('SELECT id, name FROM people ORDER BY id DESC').iterate()]);
    same(both, (db) => {
      const seen: string[] = [];
      for (const row of db.prepare('SELECT name FROM people ORDER BY id').iterate()) {
        seen.push(row.name);
        if (seen.length === 2) break; // an abandoned iterator frees the connection
      }
      return [seen, db.prepare('SELECT count(*) AS n FROM people').get()];
    });
  });

  test('pluck, raw, expand, columns', async () => {
    const { both } = await pair();
    both(seed);
    same(both, (db) => db.prepare('SELECT name FROM people ORDER BY id').pluck().all());
    same(both, (db) => db.prepare('SELECT name, age FROM people ORDER BY id').raw().all());
    same(both, (db) => db.prepare('SELECT name, age FROM people ORDER BY id').raw().raw(false).get());
    same(both, (db) => db.prepare('SELECT name, age FROM people ORDER BY id').pluck().raw().get()); // raw turns pluck off
    same(both, (db) => db.prepare('SELECT p.name, q.age FROM people p JOIN people q ON q.id = p.id').expand().all());
    same(both, (db) => db.prepare('SELECT id, name AS n, age + 1 FROM people').columns());
    same(both, (db) => {
      const s = db.prepare('SELECT 1 AS x');
      return [s.source, s.reader, s.readonly];
    });
    same(both, (db) => {
      const s = db.prepare('INSERT INTO people (name) VALUES (?)');
      return [s.source, s.reader, s.readonly];
    });
    sameError(both, (db) => db.prepare('INSERT INTO people (name) VALUES (?)').pluck());
  });

  test('bind: bound parameters stick; binding twice or passing more is refused the same way', async () => {
    const { both } = await pair();
    both(seed);
    same(both, (db) => db.prepare('SELECT name FROM people WHERE age > ?').pluck().bind(30).all());
    same(both, (db) => db.prepare('INSERT INTO people (name, age) VALUES (?, ?)').bind('eve', 5).run());
    sameError(both, (db) => db.prepare('SELECT ? AS x').bind(1).bind(2));
    sameError(both, (db) => db.prepare('SELECT ? AS x').bind(1).get(2));
    sameError(both, (db) => db.prepare('SELECT ? AS x').get());
  });

  test('safeIntegers on a statement and as the database default', async () => {
    const { both } = await pair();
    both(seed);
    same(both, (db) => db.prepare('SELECT big FROM people').pluck().safeIntegers().get());
    same(both, (db) => db.prepare('SELECT big FROM people').pluck().safeIntegers().safeIntegers(false).get());
    same(both, (db) => {
      db.defaultSafeIntegers(true);
      const v = db.prepare('SELECT age FROM people WHERE name = ?').pluck().get('ann');
      db.defaultSafeIntegers(false);
      return [typeof v, v];
    });
    const [, ha] = both((db) => db.prepare('SELECT big FROM people').pluck().safeIntegers().get());
    expect(ha).toBe(9007199254740993n);
  });

  test('RETURNING through get(), all() and iterate()', async () => {
    const { both } = await pair();
    both(seed);
    same(both, (db) => db.prepare('INSERT INTO people (name, age) VALUES (?, ?) RETURNING id, name, age').get('fay', 60));
    same(both, (db) => db.prepare('UPDATE people SET age = age * 2 WHERE age > ? RETURNING name, age').all(40));
    same(both, (db) => [...db.prepare('DELETE FROM people WHERE age < ? RETURNING name').pluck().iterate(30)]);
    same(both, (db) => db.prepare('SELECT name, age FROM people ORDER BY id').all());
  });

  test('SQL errors are the same SqliteError with the same code', async () => {
    const { both } = await pair();
    both(seed);
    const [raw, ha] = sameError(both, (db) => db.prepare('SELEC 1'));
    // (not toBeInstanceOf: better-sqlite3's native addon keeps the SqliteError class of the first
    // module registry that loaded it, and jest gives each test file its own registry)
    expect(ha.constructor.name).toBe('SqliteError');
    expect(raw.code).toBe('SQLITE_ERROR');
    sameError(both, (db) => db.prepare('SELECT * FROM missing'));
    const [u] = sameError(both, (db) => db.prepare('INSERT INTO people (name) VALUES (?)').run('ann'));
    expect(u.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
    sameError(both, (db) => db.prepare('INSERT INTO people (name) VALUES (NULL)').run());
    sameError(both, (db) => db.exec('CREATE TABLE people (x)'));
    sameError(both, (db) => db.prepare('SELECT 1; SELECT 2'));
    sameError(both, (db) => db.prepare(''));
    same(both, (db) => db.prepare('SELECT count(*) AS n FROM people').get()); // nothing changed
  });
});

describe('exec', () => {
  test('runs several statements, including comments, and returns the handle', async () => {
    const { both, ha } = await pair();
    const [r, h] = both((db) =>
      db.exec(`${SCHEMA}; -- a comment
        INSERT INTO people (name, age) VALUES ('a', 1), ('b', 2);
        /* block */ UPDATE people SET age = age + 10;
        DELETE FROM people WHERE name = 'a';`),
    );
    expect(h).toBe(ha);
    expect(r).not.toBe(ha);
    same(both, (db) => db.prepare('SELECT name, age FROM people').all());
  });

  // A documented difference: better-sqlite3 autocommits each statement of exec() outside a
  // transaction, so an error midway keeps the earlier ones; the handle runs the whole exec() in one
  // fenced transaction, so an error midway keeps nothing. The error itself is the same.
  test('an error midway: the same error; the handle keeps none of the earlier statements', async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    sameError(both, (db) => db.exec("INSERT INTO people (name) VALUES ('x'); INSERT INTO nope VALUES (1)"));
    const [raw, ha] = both((db) => db.prepare('SELECT name FROM people').pluck().all());
    expect(raw).toEqual(['x']);
    expect(ha).toEqual([]);
  });

  // BUG (src/handle/*.ts exec()): a multi-statement exec() that contains its own transaction is
  // sent whole into a fenced BEGIN IMMEDIATE (transactionControl() only recognises a lone
  // BEGIN/COMMIT), so its BEGIN fails with "cannot start a transaction within a transaction".
  // This is the most common way better-sqlite3 code batches writes.
  test("exec('BEGIN; ...; COMMIT') works as in better-sqlite3", async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    same(both, (db) => {
      db.exec("BEGIN; INSERT INTO people (name) VALUES ('a'); INSERT INTO people (name) VALUES ('b'); COMMIT;");
      return [db.inTransaction, db.prepare('SELECT name FROM people ORDER BY id').pluck().all()];
    });
  });
});

describe('transaction()', () => {
  test('commits, returns the function result, passes arguments and this', async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    same(both, (db) => {
      const insertMany = db.transaction(function (this: unknown, names: string[], age: number) {
        for (const n of names) db.prepare('INSERT INTO people (name, age) VALUES (?, ?)').run(n, age);
        return [names.length, this === undefined, db.inTransaction];
      });
      return insertMany(['a', 'b', 'c'], 9);
    });
    same(both, (db) => db.prepare('SELECT name, age FROM people').all());
  });

  test('a throwing transaction rolls back everything and rethrows the same error', async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    const [a, b] = both((db) => {
      const boom = new Error('boom');
      const t = db.transaction(() => {
        db.prepare("INSERT INTO people (name) VALUES ('x')").run();
        throw boom;
      });
      return [boom, errorOf(() => t())];
    });
    expect(a[1]).toBe(a[0]);
    expect(b[1]).toBe(b[0]);
    same(both, (db) => [db.prepare('SELECT count(*) AS n FROM people').get(), db.inTransaction]);
    const [, ha] = sameError(both, (db) => db.transaction(() => db.prepare("INSERT INTO people (name) VALUES (NULL)").run())());
    expect(ha.code).toBe('SQLITE_CONSTRAINT_NOTNULL');
  });

  test('nested transactions are savepoints: a caught inner failure keeps the outer work', async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    same(both, (db) => {
      const ins = db.prepare('INSERT INTO people (name) VALUES (?)');
      const inner = db.transaction((name: string) => {
        ins.run(name);
        if (name === 'bad') throw new Error('inner');
      });
      const outer = db.transaction(() => {
        ins.run('outer-1');
        inner('inner-ok');
        try {
          inner('bad');
        } catch {
          /* the savepoint rolled back */
        }
        inner.immediate('inner-immediate'); // a variant inside a transaction is a savepoint too
        ins.run('outer-2');
      });
      outer();
      return db.prepare('SELECT name FROM people ORDER BY id').pluck().all();
    });
  });

  test('.deferred, .immediate, .exclusive and .default all commit; the properties match', async () => {
    const { both } = await pair();
    both((db) => db.exec(SCHEMA));
    same(both, (db) => {
      const t = db.transaction((n: string) => db.prepare('INSERT INTO people (name) VALUES (?)').run(n).changes);
      return [
        t.deferred('d'), t.immediate('i'), t.exclusive('e'), t.default('x'),
        typeof t.deferred.immediate, t.database === db, t.exclusive.database === db,
        db.prepare('SELECT name FROM people ORDER BY id').pluck().all(),
      ];
    });
  });

  test('a transaction function is refused for non-functions the same way', async () => {
    const { both } = await pair();
    sameError(both, (db) => db.transaction(42));
  });
});

describe('user functions and aggregates survive connection switches', () => {
  test('registered before acquire: work on the read-only, read-write, and reopened read-only connections', async () => {
    const raw = openRaw();
    const ha = await openHA(tmp, {}, 'ha.db');
    const register = (db: any) => {
      db.function('twice', (x: number) => x * 2);
      db.function('plus', { deterministic: true }, (a: number, b: number) => a + b);
      db.aggregate('product', { start: 1, step: (acc: number, x: number) => acc * x });
    };
    register(raw);
    register(ha);
    const q = (db: any) => db.prepare('SELECT twice(3) AS t, plus(1, 2) AS a').get();
    expect(q(ha)).toEqual(q(raw)); // read-only connection, no lease
    const stmt = ha.prepare("SELECT product(x) AS p FROM (SELECT 2 AS x UNION ALL SELECT 3 UNION ALL SELECT 7)");
    expect(stmt.get()).toEqual({ p: 42 });

    await ha.acquire(); // the read-write connection is new
    expect(ha.lease.held).toBe(true);
    expect(q(ha)).toEqual(q(raw));
    expect(stmt.get()).toEqual({ p: 42 }); // re-prepared on the new connection
    ha.exec('CREATE TABLE t (v); INSERT INTO t VALUES (twice(21))');
    expect(ha.prepare('SELECT v FROM t').pluck().get()).toBe(42);

    ha.function('late', () => 'late'); // registered while holding: both connections
    await ha.release();
    expect(ha.lease.held).toBe(false);
    expect(q(ha)).toEqual(q(raw));
    expect(stmt.get()).toEqual({ p: 42 });
    expect(ha.prepare('SELECT late() AS l').get()).toEqual({ l: 'late' });
    await ha.acquire();
    expect(ha.prepare('SELECT late() AS l, twice(1) AS t').get()).toEqual({ l: 'late', t: 2 });
  });

  test('function() argument errors are the same', async () => {
    const { both } = await pair();
    sameError(both, (db) => db.function('f'));
    sameError(both, (db) => db.aggregate('g', {}));
  });
});

describe('statements prepared before a connection switch', () => {
  test('keep their modifiers and bound parameters across acquire and release', async () => {
    const ha = await openHA(tmp, {}, 'ha.db');
    await ha.acquire();
    seed(ha);
    await ha.release();
    const s = ha.prepare('SELECT name, age FROM people WHERE age > ? ORDER BY id').raw().bind(30);
    const p = ha.prepare('SELECT big FROM people WHERE name = ?').pluck().safeIntegers();
    const before = [s.all(), p.get('ann')];
    expect(before).toEqual([[['ann', 31], ['bob', 42]], 9007199254740993n]);
    await ha.acquire();
    expect([s.all(), p.get('ann')]).toEqual(before);
    await ha.release();
    expect([s.all(), p.get('ann')]).toEqual(before);
  });
});

describe('properties', () => {
  test('open, name, memory, readonly, inTransaction', async () => {
    const ha = await openHA(tmp, {}, 'ha.db');
    expect(ha.open).toBe(true);
    expect(ha.name).toBe(tmp.file('ha.db'));
    expect(ha.memory).toBe(false);
    expect(ha.readonly).toBe(true); // not the holder
    expect(ha.inTransaction).toBe(false);
    await ha.acquire();
    expect(ha.readonly).toBe(false);
    ha.exec('CREATE TABLE t (x)');
    ha.transaction(() => expect(ha.inTransaction).toBe(true))();
    expect(ha.inTransaction).toBe(false);
    await ha.close();
    expect(ha.open).toBe(false);
  });
});
