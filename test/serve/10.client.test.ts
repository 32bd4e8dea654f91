/**
 * @libsql/client, unchanged, against serve() on a real etcd: execute, batches with conditions,
 * interactive write transactions, read transactions the server keeps read-only, blobs, 64-bit
 * integers, SQLite error codes, numbered parameters with gaps.
 */
import { createClient, LibsqlError } from '@libsql/client';
import Database from 'better-sqlite3';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir } from '../helpers/tmp';
import { exec, pipeline, startServed, Served } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-serve-');
let n = 0;

async function setup(): Promise<{ s: Served; c: ReturnType<typeof createClient> }> {
  const s = await startServed(tmp.file(), etcd.cluster().endpoints, `/client-${++n}`);
  const c = createClient({ url: s.server.url });
  tmp.defer(() => s.close());
  tmp.defer(() => c.close());
  await c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE, b BLOB, i INTEGER, f REAL)');
  return { s, c };
}

/** What the file holds, read with plain better-sqlite3 (not through the server). */
function fileRows(file: string, sql: string): unknown[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

test('execute: positional and named arguments, rows, columns, rowsAffected, lastInsertRowid', async () => {
  const { c } = await setup();
  const ins = await c.execute({ sql: 'INSERT INTO t (v, i, f) VALUES (?, ?, ?)', args: ['a', 7, 1.5] });
  expect(ins.rowsAffected).toBe(1);
  expect(ins.lastInsertRowid).toBe(1n);
  await c.execute({ sql: 'INSERT INTO t (v, i) VALUES (:v, $i)', args: { v: 'b', i: 8 } });
  const rs = await c.execute('SELECT id, v, i, f FROM t ORDER BY id');
  expect(rs.columns).toEqual(['id', 'v', 'i', 'f']);
  expect(rs.columnTypes).toEqual(['INTEGER', 'TEXT', 'INTEGER', 'REAL']);
  expect(rs.rows.map((r) => [r.id, r.v, r.i, r.f])).toEqual([[1, 'a', 7, 1.5], [2, 'b', 8, null]]);
  const upd = await c.execute("UPDATE t SET i = i + 1 WHERE v IN ('a', 'b')");
  expect(upd.rowsAffected).toBe(2);
  const ret = await c.execute("INSERT INTO t (v) VALUES ('r') RETURNING id, v");
  expect(ret.rows[0].v).toBe('r');
  expect(ret.rowsAffected).toBe(1);
});

test('numbered parameters with gaps (?1, ?3) bind by number', async () => {
  const { c } = await setup();
  const rs = await c.execute({ sql: 'SELECT ?3 AS c, ?1 AS a, ? AS d', args: ['one', 'two', 'three', 'four'] });
  expect(rs.rows[0]).toMatchObject({ c: 'three', a: 'one', d: 'four' });
  await c.execute({ sql: "INSERT INTO t (v, i) VALUES (?2, ?1) -- ?9 in a comment, '?7' in text", args: [5, 'x'] });
  expect((await c.execute("SELECT i FROM t WHERE v = 'x'")).rows[0].i).toBe(5);
});

test('batch: all-or-nothing under client.batch(), and every Hrana condition on a raw pipeline', async () => {
  const { s, c } = await setup();
  const ok = await c.batch([
    { sql: 'INSERT INTO t (v) VALUES (?)', args: ['b1'] },
    { sql: 'INSERT INTO t (v) VALUES (?)', args: ['b2'] },
    'SELECT count(*) AS n FROM t',
  ], 'write');
  expect(ok[2].rows[0].n).toBe(2);
  // A failing step rolls the whole batch back.
  const err = await c.batch([
    { sql: 'INSERT INTO t (v) VALUES (?)', args: ['b3'] },
    { sql: 'INSERT INTO t (v) VALUES (?)', args: ['b1'] }, // UNIQUE
  ], 'write').catch((e) => e);
  expect(err).toBeInstanceOf(LibsqlError);
  expect(err.code).toBe('SQLITE_CONSTRAINT');
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v = 'b3'")).toEqual([]);
  // Raw pipeline: ok / error / not / and / or conditions, steps skipped report neither.
  const r = await pipeline(s.server.url, {
    baton: null,
    requests: [{
      type: 'batch', batch: {
        steps: [
          { stmt: { sql: "INSERT INTO t (v) VALUES ('c0')" } },
          { stmt: { sql: "INSERT INTO t (v) VALUES ('c0')" } }, // fails
          { condition: { type: 'error', step: 1 }, stmt: { sql: "INSERT INTO t (v) VALUES ('c2')" } },
          { condition: { type: 'ok', step: 1 }, stmt: { sql: "INSERT INTO t (v) VALUES ('skipped')" } },
          { condition: { type: 'and', conds: [{ type: 'ok', step: 0 }, { type: 'not', cond: { type: 'ok', step: 1 } }] }, stmt: { sql: 'SELECT 4' } },
          { condition: { type: 'or', conds: [{ type: 'ok', step: 3 }, { type: 'error', step: 3 }] }, stmt: { sql: 'SELECT 5' } },
        ],
      },
    }, { type: 'close' }],
  });
  expect(r.status).toBe(200);
  const res = r.json.results[0].response.result;
  expect(res.step_results.map((x: unknown) => x !== null)).toEqual([true, false, true, false, true, false]);
  expect(res.step_errors.map((x: { code: string } | null) => x?.code ?? null)).toEqual([null, 'SQLITE_CONSTRAINT', null, null, null, null]);
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v LIKE 'c%' OR v = 'skipped' ORDER BY v")).toEqual([{ v: 'c0' }, { v: 'c2' }]);
});

test('interactive write transaction: sees its own writes, commit makes them durable, rollback discards', async () => {
  const { c, s } = await setup();
  const tx = await c.transaction('write');
  await tx.execute("INSERT INTO t (v) VALUES ('in-tx')");
  expect((await tx.execute("SELECT count(*) AS n FROM t WHERE v = 'in-tx'")).rows[0].n).toBe(1);
  // Not visible outside before COMMIT.
  expect((await c.execute("SELECT count(*) AS n FROM t WHERE v = 'in-tx'")).rows[0].n).toBe(0);
  await tx.commit();
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v = 'in-tx'")).toEqual([{ v: 'in-tx' }]);
  const rb = await c.transaction('write');
  await rb.execute("INSERT INTO t (v) VALUES ('rolled')");
  await rb.rollback();
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v = 'rolled'")).toEqual([]);
  // A deferred transaction that writes takes the lease too, and a second one waits its turn.
  const d1 = await c.transaction('deferred');
  await d1.execute("INSERT INTO t (v) VALUES ('d1')");
  const d2 = c.transaction('write').then(async (t2) => {
    await t2.execute("INSERT INTO t (v) VALUES ('d2')");
    await t2.commit();
  });
  await d1.commit();
  await d2;
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v IN ('d1', 'd2') ORDER BY v")).toEqual([{ v: 'd1' }, { v: 'd2' }]);
  expect(s.db.lease.held).toBe(true);
});

test('read transactions refuse writes: BEGIN TRANSACTION READONLY is enforced by the server', async () => {
  const { c } = await setup();
  await c.execute("INSERT INTO t (v) VALUES ('seed')");
  const tx = await c.transaction('read');
  expect((await tx.execute('SELECT count(*) AS n FROM t')).rows[0].n).toBe(1);
  const err = await tx.execute("INSERT INTO t (v) VALUES ('sneaky')").catch((e) => e);
  expect(err).toBeInstanceOf(LibsqlError);
  expect(err.code).toBe('SQLITE_READONLY');
  await tx.commit();
  // The one-request form (client.batch(..., 'read')) too.
  const berr = await c.batch(['SELECT 1', "INSERT INTO t (v) VALUES ('sneaky2')"], 'read').catch((e) => e);
  expect(berr.code).toBe('SQLITE_READONLY');
  expect(fileRows(tmp.file(), "SELECT v FROM t WHERE v LIKE 'sneaky%'")).toEqual([]);
  // A read batch runs without taking the lease.
  const rs = await c.batch(['SELECT count(*) AS n FROM t'], 'read');
  expect(rs[0].rows[0].n).toBe(1);
});

test('blobs and 64-bit integers round-trip exactly', async () => {
  const { s } = await setup();
  const c = createClient({ url: s.server.url, intMode: 'bigint' });
  tmp.defer(() => c.close());
  const blob = new Uint8Array([0, 1, 2, 250, 255, 0, 7]);
  const big = 9223372036854775807n;
  const small = -9223372036854775808n;
  await c.execute({ sql: "INSERT INTO t (v, b, i) VALUES ('big', ?, ?)", args: [blob, big] });
  await c.execute({ sql: "INSERT INTO t (v, i) VALUES ('small', ?)", args: [small] });
  const rs = await c.execute("SELECT b, i FROM t WHERE v = 'big'");
  expect(new Uint8Array(rs.rows[0].b as ArrayBuffer)).toEqual(blob);
  expect(rs.rows[0].i).toBe(big);
  expect((await c.execute("SELECT i FROM t WHERE v = 'small'")).rows[0].i).toBe(small);
  expect((await c.execute({ sql: 'SELECT ? + 1 AS x', args: [9007199254740993n] })).rows[0].x).toBe(9007199254740994n);
});

test('errors carry SQLite codes; sqlite-ha refusals carry their own', async () => {
  const { c } = await setup();
  await expect(c.execute('SELEC 1')).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
  await expect(c.execute('SELECT * FROM missing')).rejects.toMatchObject({ code: 'SQLITE_ERROR', message: expect.stringMatching(/no such table/) });
  await c.execute("INSERT INTO t (id, v) VALUES (1, 'x')");
  const e = await c.execute("INSERT INTO t (id, v) VALUES (1, 'y')").catch((x) => x);
  expect(e.code).toBe('SQLITE_CONSTRAINT');
  expect(e.message).toMatch(/SQLITE_CONSTRAINT_PRIMARYKEY/);
  await expect(c.execute('PRAGMA journal_mode = WAL')).rejects.toMatchObject({ code: 'SQLITE_HA_UNSAFE_STORAGE' });
  await expect(c.execute("ATTACH '/tmp/other.db' AS o")).rejects.toMatchObject({ code: 'SQLITE_AUTH' });
  await expect(c.execute('UPDATE _sqlite_ha_meta SET fence = 999999')).rejects.toMatchObject({ code: 'SQLITE_AUTH' });
  await expect(c.execute('COMMIT')).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
});

test('executeMultiple: statements in order, an error stops the rest; BEGIN … COMMIT inside is one transaction', async () => {
  const { c } = await setup();
  await c.executeMultiple("CREATE TABLE m (x); INSERT INTO m VALUES (1); INSERT INTO m VALUES (2);");
  expect((await c.execute('SELECT sum(x) AS s FROM m')).rows[0].s).toBe(3);
  await expect(c.executeMultiple('INSERT INTO m VALUES (4); INSERT INTO nope VALUES (1); INSERT INTO m VALUES (8);')).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
  expect((await c.execute('SELECT sum(x) AS s FROM m')).rows[0].s).toBe(7); // 4 stayed, 8 never ran
  await expect(c.executeMultiple('INSERT INTO m VALUES (16); BEGIN; INSERT INTO m VALUES (32); INSERT INTO nope VALUES (1); COMMIT;')).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
  expect((await c.execute('SELECT sum(x) AS s FROM m')).rows[0].s).toBe(23); // the open transaction was rolled back
  await c.executeMultiple("CREATE TRIGGER tr AFTER INSERT ON m BEGIN INSERT INTO t (v) VALUES ('trig;' || new.x); END; INSERT INTO m VALUES (64);");
  expect((await c.execute('SELECT v FROM t')).rows.map((r) => r.v)).toEqual(['trig;64']);
});

test('a raw stream: baton single use, stored SQL, describe, get_autocommit', async () => {
  const { s } = await setup();
  const first = await pipeline(s.server.url, {
    baton: null,
    requests: [
      { type: 'store_sql', sql_id: 1, sql: 'SELECT :a AS a, ?2 AS b' },
      { type: 'execute', stmt: { sql_id: 1, named_args: [{ name: ':a', value: { type: 'integer', value: '1' } }], args: [{ type: 'null' }, { type: 'text', value: 'two' }] } },
      { type: 'describe', sql_id: 1 },
      { type: 'get_autocommit' },
    ],
  });
  expect(first.status).toBe(200);
  expect(first.json.baton).toEqual(expect.any(String));
  expect(first.json.baton.length).toBeGreaterThanOrEqual(32);
  expect(first.json.base_url).toBe(s.server.url);
  expect(first.json.results[1].response.result.rows).toEqual([[{ type: 'integer', value: '1' }, { type: 'text', value: 'two' }]]);
  expect(first.json.results[2].response.result).toMatchObject({ params: [{ name: ':a' }, { name: '?2' }], is_readonly: true, is_explain: false });
  expect(first.json.results[3].response.is_autocommit).toBe(true);
  const baton = first.json.baton;
  const second = await pipeline(s.server.url, { baton, requests: [exec('SELECT 1')] });
  expect(second.json.baton).not.toBe(baton);
  // The used baton is refused; the stream goes on with the new one.
  const reused = await pipeline(s.server.url, { baton, requests: [exec('SELECT 1')] });
  expect(reused.status).toBe(400);
  expect(reused.json.code).toBe('STREAM_EXPIRED');
  const closed = await pipeline(s.server.url, { baton: second.json.baton, requests: [{ type: 'close' }] });
  expect(closed.json.baton).toBeNull();
});

test("lockless mode (locks: 'none'): statements and one-request transactions work; interactive ones are refused clearly", async () => {
  const s = await startServed(tmp.file(), etcd.cluster().endpoints, `/client-${++n}`, {}, { locks: 'none' });
  const c = createClient({ url: s.server.url });
  tmp.defer(() => s.close());
  tmp.defer(() => c.close());
  expect(s.db.locks).toBe('none');
  await c.execute('CREATE TABLE t (v TEXT)');
  await c.execute("INSERT INTO t VALUES ('a')");
  await c.batch(["INSERT INTO t VALUES ('b')", "INSERT INTO t VALUES ('c')"], 'write');
  expect((await c.batch(['SELECT count(*) AS n FROM t'], 'read'))[0].rows[0].n).toBe(3);
  const tx = await c.transaction('write');
  await expect(tx.execute("INSERT INTO t VALUES ('d')")).rejects.toMatchObject({ code: 'SQLITE_HA_UNSUPPORTED' });
  tx.close();
  expect(fileRows(tmp.file(), 'SELECT v FROM t ORDER BY v')).toEqual([{ v: 'a' }, { v: 'b' }, { v: 'c' }]);
});
