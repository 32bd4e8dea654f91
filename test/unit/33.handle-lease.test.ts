/**
 * The handle's lease life cycle with the lockfile coordinator (src/handle/*.ts,
 * src/coordinator/lockfile/coordinator.ts): events, fence tokens that only grow across handles
 * (docs/HAZARDS.md H5, H7), idle release, close() handing over, and use after close.
 */
import * as fs from 'fs';
import { AcquireTimeoutError, ClosedError } from '../../src';
import { thrown } from '../helpers/errors';
import { openHA, storedMeta as metaOf } from '../helpers/handle';
import { useTmpDir, waitUntil } from '../helpers/tmp';

const tmp = useTmpDir();

const storedMeta = () => metaOf(tmp.file());

function closedError(fn: () => unknown): void {
  const caught = thrown(fn);
  expect(caught).toBeInstanceOf(ClosedError);
  expect((caught as ClosedError).code).toBe('SQLITE_HA_CLOSED');
}

describe('lease events and status', () => {
  test('acquired and released fire with the fence; lease status follows', async () => {
    const db = await openHA(tmp, { nodeId: 'node-x' });
    const events: [string, unknown][] = [];
    db.on('acquired', (e) => events.push(['acquired', e]));
    db.on('released', (e) => events.push(['released', e]));
    expect(db.lease.toJSON()).toEqual({ held: false, fence: null, expiresInMs: null, holder: null });

    await db.acquire();
    const fence = db.lease.fence!;
    expect(fence).toBeGreaterThan(0);
    expect(db.lease.held).toBe(true);
    expect(db.lease.holder).toBe('node-x');
    expect(db.lease.expiresInMs).toBeGreaterThan(0);
    expect(events).toEqual([['acquired', { fence }]]);

    await db.release();
    expect(events).toEqual([['acquired', { fence }], ['released', { fence }]]);
    // After letting go, this node no longer knows who holds the lease.
    expect(db.lease.toJSON()).toEqual({ held: false, fence: null, expiresInMs: null, holder: null });
    // released for real: another handle takes it without waiting
    const other = await openHA(tmp, { acquireTimeoutMs: 100 });
    await other.acquire();
    expect(other.lease.fence).toBeGreaterThan(fence);
  });

  test('fence tokens strictly increase across acquisitions and handles, and are stored in the file', async () => {
    const a = await openHA(tmp);
    const b = await openHA(tmp);
    const fences: number[] = [];
    const seen: number[] = [];
    a.on('acquired', (e) => seen.push(e.fence));
    b.on('acquired', (e) => seen.push(e.fence));
    for (let i = 0; i < 3; i++) {
      for (const db of [a, b, b]) {
        await db.acquire();
        fences.push(db.lease.fence!);
        expect(storedMeta().fence).toBe(db.lease.fence); // raised on acquisition, before any write
        await db.release();
      }
    }
    expect(seen).toEqual(fences);
    for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThan(fences[i - 1]);
    expect(Number(fs.readFileSync(`${tmp.file()}.sqlite-ha.fence`, 'utf8'))).toBe(fences[fences.length - 1]);
  });

  test('the fence counter survives handles closing: a new handle continues above it', async () => {
    const a = await openHA(tmp);
    await a.acquire();
    const first = a.lease.fence!;
    await a.close();
    const b = await openHA(tmp);
    await b.acquire();
    expect(b.lease.fence).toBeGreaterThan(first);
  });

  test('a second handle cannot take a held lease: AcquireTimeoutError naming the holder', async () => {
    const a = await openHA(tmp, { nodeId: 'holder-a' });
    const b = await openHA(tmp, { nodeId: 'b', acquireTimeoutMs: 150 });
    await a.acquire();
    const started = Date.now();
    const err = await b.acquire().catch((e) => e);
    expect(err).toBeInstanceOf(AcquireTimeoutError);
    expect(err.code).toBe('SQLITE_HA_ACQUIRE_TIMEOUT');
    expect(err.holder).toBe('holder-a');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(b.lease.held).toBe(false);
    expect(a.lease.held).toBe(true);
  });
});

describe('idle release', () => {
  test('after a write and idleReleaseMs of quiet the lease is released', async () => {
    const db = await openHA(tmp, { idleReleaseMs: 150 });
    const released: unknown[] = [];
    db.on('released', (e) => released.push(e));
    await db.write((c) => c.exec('CREATE TABLE t (x)'));
    const fence = db.lease.fence;
    expect(db.lease.held).toBe(true);
    // writes keep it: each one restarts the idle timer
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 30));
      await db.write((c) => c.prepare('INSERT INTO t VALUES (?)').run(i));
      expect(db.lease.held).toBe(true);
    }
    const quietFrom = Date.now();
    await waitUntil(() => released.length > 0, 3000);
    expect(Date.now() - quietFrom).toBeGreaterThanOrEqual(140);
    expect(released).toEqual([{ fence }]);
    expect(db.lease.held).toBe(false);
    expect(() => db.prepare('INSERT INTO t VALUES (9)').run()).toThrow(/does not hold the write lease/);
    // the next write takes a new lease with a higher fence
    await db.write((c) => c.prepare('INSERT INTO t VALUES (9)').run());
    expect(db.lease.fence).toBeGreaterThan(fence!);
  });

  test('a writer waiting in another handle gets the lease once the holder goes idle', async () => {
    const a = await openHA(tmp, { idleReleaseMs: 100 });
    const b = await openHA(tmp, { idleReleaseMs: 100 });
    await a.write((c) => c.exec('CREATE TABLE t (who)'));
    const started = Date.now();
    await b.write((c) => c.prepare("INSERT INTO t VALUES ('b')").run());
    expect(Date.now() - started).toBeLessThan(2500);
    expect(storedMeta().fence).toBe(b.lease.fence);
    expect(a.lease.held).toBe(false);
    expect(b.prepare('SELECT who FROM t').pluck().all()).toEqual(['b']);
  });
});

describe('close()', () => {
  test('releases the lease and a second handle can then write at once', async () => {
    const a = await openHA(tmp);
    const b = await openHA(tmp, { acquireTimeoutMs: 500 });
    await a.write((c) => c.exec('CREATE TABLE t (x)'));
    const fenceA = a.lease.fence!;
    const released: unknown[] = [];
    a.on('released', (e) => released.push(e));
    await a.close();
    expect(released).toEqual([{ fence: fenceA }]);
    expect(a.open).toBe(false);
    expect(a.lease.held).toBe(false);
    await b.write((c) => c.prepare('INSERT INTO t VALUES (1)').run());
    expect(b.lease.fence).toBeGreaterThan(fenceA);
    expect(storedMeta().fence).toBe(b.lease.fence);
  });

  test('is idempotent', async () => {
    const db = await openHA(tmp);
    await db.close();
    await expect(db.close()).resolves.toBeUndefined();
  });

  test('use after close → ClosedError', async () => {
    const db = await openHA(tmp);
    await db.acquire();
    db.exec('CREATE TABLE t (x)');
    await db.release();
    const stmt = db.prepare('SELECT count(*) FROM t');
    await db.close();
    closedError(() => db.prepare('SELECT 1'));
    closedError(() => db.exec('SELECT 1'));
    closedError(() => db.pragma('user_version'));
    closedError(() => db.transaction(() => 1)());
    closedError(() => db.function('f', () => 1));
    closedError(() => stmt.get());
    await expect(db.write(() => 1)).rejects.toBeInstanceOf(ClosedError);
    await expect(db.read(() => 1)).rejects.toBeInstanceOf(ClosedError);
    await expect(db.acquire()).rejects.toBeInstanceOf(ClosedError);
    expect(db.inTransaction).toBe(false);
  });

  // BUG (src/handle/*.ts currentConnection(), reached from src/handle/statement.ts real()): closing while
  // holding the lease bumps `generation`, so a statement prepared earlier re-prepares on the closed
  // read-only connection and better-sqlite3's TypeError "The database connection is not open"
  // escapes instead of ClosedError. Fix: assertOpen() at the top of currentConnection().
  test('use after close of a statement prepared while holding the lease → ClosedError', async () => {
    const db = await openHA(tmp);
    await db.acquire();
    db.exec('CREATE TABLE t (x)');
    const read = db.prepare('SELECT count(*) FROM t');
    const write = db.prepare('INSERT INTO t VALUES (1)');
    await db.close();
    closedError(() => read.get());
    closedError(() => write.run());
  });
});
