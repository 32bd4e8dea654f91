/**
 * db.pragma() and pragma SQL through the handle (src/handle/*.ts, src/handle/statement.ts): the storage
 * rules of docs/HAZARDS.md H1 stay pinned (rollback journal, synchronous=FULL, locking_mode=NORMAL) however
 * a pragma is spelt; pragmas that write go through the lease (H2); per-connection settings follow
 * the handle onto every connection it opens.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import { HADatabase, NotLeaseHolderError, UnsafeStorageError } from '../../src';
import { thrown } from '../helpers/errors';
import { openHA } from '../helpers/handle';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function unsafe(fn: () => unknown): UnsafeStorageError {
  const caught = thrown(fn);
  expect(caught).toBeInstanceOf(UnsafeStorageError);
  expect((caught as UnsafeStorageError).code).toBe('SQLITE_HA_UNSAFE_STORAGE');
  return caught as UnsafeStorageError;
}

/** The pinned settings as the handle's current connection reports them. */
function pinned(db: HADatabase): unknown[] {
  return ['journal_mode', 'synchronous', 'locking_mode'].map((p) => db.pragma(p, { simple: true }));
}

/** Bytes 18/19 of the header are 2 for a WAL-format file. */
function walHeader(): boolean {
  const h = fs.readFileSync(tmp.file()).subarray(0, 20);
  return h.length >= 20 && (h[18] === 2 || h[19] === 2);
}

const SET_PINNED = [
  'journal_mode = WAL',
  'journal_mode=wal',
  'JOURNAL_MODE = MEMORY',
  'main.journal_mode = OFF',
  'journal_mode(WAL)',
  'journal_mode = TRUNCATE', // even the pinned value: the option is the one place to choose
  'synchronous = OFF',
  'synchronous=0',
  'main.synchronous = NORMAL',
  'locking_mode = EXCLUSIVE',
  'locking_mode(EXCLUSIVE)',
];

describe('pinned pragmas (H1)', () => {
  test.each(SET_PINNED)("pragma('%s') → UnsafeStorageError, with and without the lease", async (source) => {
    const db = await openHA(tmp);
    const e = unsafe(() => db.pragma(source));
    expect(e.message).toMatch(/pinned/);
    await db.acquire();
    unsafe(() => db.pragma(source));
    expect(pinned(db)).toEqual(['truncate', 2, 'normal']);
  });

  test.each([
    'PRAGMA journal_mode = WAL',
    'pragma main.synchronous = 0',
    'PRAGMA locking_mode(EXCLUSIVE)',
  ])('%p through exec() and prepare() → UnsafeStorageError', async (sql) => {
    const db = await openHA(tmp);
    await db.acquire();
    unsafe(() => db.exec(sql));
    unsafe(() => db.exec(`CREATE TABLE t (x); ${sql}`));
    unsafe(() => db.prepare(sql));
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't'").pluck().get()).toBe(0);
    expect(pinned(db)).toEqual(['truncate', 2, 'normal']);
  });

  test('journal_mode reads: truncate on the read-write connection, the read-only connection’s own default without the lease', async () => {
    const db = await openHA(tmp);
    // Without the lease the read-only connection answers. journal_mode is per connection and the
    // read-only one is never set (it never writes a journal), so it reports SQLite's default.
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
    expect(db.pragma('journal_mode')).toEqual([{ journal_mode: 'delete' }]);
    await db.acquire();
    expect(db.pragma('journal_mode', { simple: true })).toBe('truncate');
    expect(db.prepare('PRAGMA journal_mode').pluck().get()).toBe('truncate');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.pragma('locking_mode', { simple: true })).toBe('normal');
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    await db.release();
    expect(walHeader()).toBe(false);
    expect(fs.existsSync(`${tmp.file()}-wal`)).toBe(false);
  });

  test("journalMode: 'PERSIST' is what the read-write connection uses", async () => {
    const db = await openHA(tmp, { journalMode: 'PERSIST' });
    await db.acquire();
    expect(db.pragma('journal_mode', { simple: true })).toBe('persist');
    db.exec('CREATE TABLE t (x)');
    expect(fs.statSync(`${tmp.file()}-journal`).size).toBeGreaterThan(0); // PERSIST keeps the header
  });

  // BUG (src/handle/*.ts pragma(), the name regex /^\s*(?:\w+\.)?(\w+)\s*(=|\()?/): a quoted name,
  // spaces around the schema dot, or a comment before '=' is not recognised as setting a pinned
  // pragma; the call then goes straight to the read-write connection (runRead), outside any
  // transaction, and really changes the setting: '"journal_mode" = WAL' turns the file into WAL.
  // src/storage/connection.ts assertSafeSql() has the same gaps (single quotes, comments) and
  // pragma() does not call it at all.
  test.each([
    '"journal_mode" = WAL',
    "'journal_mode' = DELETE",
    'main . synchronous = OFF',
    'synchronous /* off */ = 0',
    '[locking_mode] = EXCLUSIVE',
  ])("disguised pragma('%s') is refused and changes nothing", async (source) => {
    const db = await openHA(tmp);
    await db.acquire();
    db.exec('CREATE TABLE t (x)');
    const caught = thrown(() => db.pragma(source));
    const after = pinned(db);
    const wal = walHeader();
    expect({ after, wal, refused: caught instanceof UnsafeStorageError }).toEqual({
      after: ['truncate', 2, 'normal'], wal: false, refused: true,
    });
  });

  // BUG, the same gap through statements: SQLite reports a pragma assignment such as
  // synchronous=0 as a read-only statement, so HAStatement runs it outside the fenced path, on the
  // read-write connection; assertSafeSql() misses the single-quoted name.
  test.each([
    "PRAGMA 'synchronous' = 0",
    "PRAGMA 'locking_mode' = EXCLUSIVE",
  ])('disguised prepare(%p).run() is refused and changes nothing', async (sql) => {
    const db = await openHA(tmp);
    await db.acquire();
    const caught = thrown(() => db.prepare(sql).run());
    expect({ after: pinned(db), refused: caught instanceof UnsafeStorageError }).toEqual({
      after: ['truncate', 2, 'normal'], refused: true,
    });
  });
});

describe('pragmas that write the file (H2)', () => {
  test('user_version: NotLeaseHolderError without the lease; fenced write with it', async () => {
    const db = await openHA(tmp);
    expect(() => db.pragma('user_version = 1')).toThrow(NotLeaseHolderError);
    expect(() => db.prepare('PRAGMA user_version = 1').run()).toThrow(NotLeaseHolderError);
    await db.acquire();
    const txid = () => db.prepare('SELECT txid FROM _sqlite_ha_meta').pluck().get() as number;
    const before = txid();
    db.pragma('user_version = 3');
    expect(txid()).toBe(before + 1); // it went through a fenced transaction
    db.prepare('PRAGMA user_version = 4').run();
    expect(txid()).toBe(before + 2);
    await db.release();
    expect(db.pragma('user_version', { simple: true })).toBe(4);
    const raw = new Database(tmp.file(), { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(4);
    raw.close();
  });

  test('non-string source is a TypeError, as in better-sqlite3', async () => {
    const db = await openHA(tmp);
    expect(() => db.pragma(42 as any)).toThrow(TypeError);
  });
});

describe('per-connection pragmas follow the handle', () => {
  test('foreign_keys set without the lease applies to the read-write connection opened later', async () => {
    const db = await openHA(tmp);
    db.pragma('foreign_keys = ON');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    await db.acquire();
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    db.exec('CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p(id))');
    expect(() => db.prepare('INSERT INTO c VALUES (7)').run()).toThrow(
      expect.objectContaining({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' }),
    );
    await db.release();
    await db.acquire(); // another new read-write connection
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  test('cache_size set while holding stays on the read-only connection after release', async () => {
    const db = await openHA(tmp);
    await db.acquire();
    db.pragma('cache_size = -1234');
    expect(db.pragma('cache_size', { simple: true })).toBe(-1234);
    await db.release();
    expect(db.pragma('cache_size', { simple: true })).toBe(-1234);
  });
});
