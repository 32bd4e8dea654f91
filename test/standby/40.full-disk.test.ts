/**
 * A full standby disk: a 4 MiB tmpfs this test mounts (and unmounts) as the standby directory,
 * filled to the last byte. async: every write keeps succeeding on the primary, the standby reports
 * a typed error and an event, and once space is freed the chain continues (no new snapshot) to a
 * byte-identical copy. sync: a write whose segment cannot be written rejects with the typed error.
 * Needs root (mount).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { open, StandbyWriteError } from '../../src';
import { materialise } from '../../src/standby/apply';
import { Chain } from '../../src/standby/chain';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir, waitUntil } from '../helpers/tmp';
import { sameBytes } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-sbfull-');

function mountSmallTmpfs(): string {
  const mnt = path.join(tmp.dir(), 'standby');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  tmp.defer(() => execFileSync('umount', ['-l', mnt]));
  return mnt;
}

/** Fills the filesystem under dir to the last byte; returns the filler's path. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (let i = 0; i < 1000; i++) fs.writeSync(fd, chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  } finally {
    fs.closeSync(fd);
  }
  for (let size = 4096; size >= 1; size = Math.floor(size / 2)) {
    try {
      fs.appendFileSync(filler, Buffer.alloc(size));
    } catch {
      /* the last bytes */
    }
  }
  return filler;
}

async function openOn(standby: string, mode: 'async' | 'sync') {
  const primary = path.join(tmp.dir(), 'primary');
  fs.mkdirSync(primary);
  const file = path.join(primary, 'app.db');
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: `/fd-${path.basename(tmp.dir())}` },
    standby: { dir: standby, mode, maxLagMs: 100 },
    idleReleaseMs: 60000,
  });
  tmp.defer(() => db.close());
  const write = (i: number) => db.write((c) => {
    c.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)');
    c.prepare('INSERT INTO t (v) VALUES (randomblob(3000))').run();
    return i;
  });
  return { db, file, write };
}

test('async: a full standby disk gives a typed error and an event; the primary keeps working; the chain resumes when space is freed', async () => {
  const mnt = mountSmallTmpfs();
  const { db, file, write } = await openOn(mnt, 'async');
  const errors: StandbyWriteError[] = [];
  db.on('standby-error', (e: StandbyWriteError) => errors.push(e));
  for (let i = 0; i < 5; i++) await write(i);
  await waitUntil(() => db.standby!.txid === 5, 10000);
  const filler = fill(mnt);
  for (let i = 5; i < 40; i++) expect(await write(i)).toBe(i); // primary unaffected
  await waitUntil(() => errors.length > 0, 10000);
  expect(errors[0]).toBeInstanceOf(StandbyWriteError);
  expect(errors[0].code).toBe('SQLITE_HA_STANDBY_WRITE_FAILED');
  expect(errors[0].message).toMatch(/ENOSPC|no space/i);
  await waitUntil(() => db.standby!.lagging, 10000);
  const s = db.standby!;
  expect(s.lastError?.code).toBe('SQLITE_HA_STANDBY_WRITE_FAILED');
  expect(s.txid).toBeLessThan(40);
  expect(s.capturedTxid).toBe(40);
  // No half-written file is left in the chain. The writer keeps retrying while the disk is full,
  // so one attempt's temp file may exist for a moment; a leaked one never goes away.
  const tmpFiles = () => fs.readdirSync(new Chain(mnt, 'app.db').genDir(s.generation!)).filter((n) => n.includes('.tmp-'));
  await waitUntil(() => tmpFiles().length === 0, 10000);
  expect(tmpFiles()).toEqual([]);
  fs.rmSync(filler);
  await waitUntil(() => db.standby!.txid === 40 && db.standby!.lastError === null, 15000);
  expect(db.standby!.snapshotsWritten).toBe(1);
  materialise(new Chain(mnt, 'app.db'), { verifyChecksum: true });
  expect(sameBytes(path.join(mnt, 'app.db'), file)).toBe(true);
}, 120000);

test('sync: a write whose segment cannot reach the full standby rejects with StandbyWriteError (committed, not acknowledged)', async () => {
  const mnt = mountSmallTmpfs();
  const { db, write } = await openOn(mnt, 'sync');
  for (let i = 0; i < 3; i++) await write(i);
  const filler = fill(mnt);
  const err = await write(3).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(StandbyWriteError);
  expect((err as StandbyWriteError).committedTxid).toBe(4);
  expect((err as StandbyWriteError).message).toMatch(/NOT in the standby/);
  fs.rmSync(filler);
  // Space again: the next write re-snapshots (a new generation) and is acknowledged.
  expect(await write(4)).toBe(4);
  expect(db.standby!.txid).toBe(5);
  expect(db.standby!.lastError).toBeNull();
}, 120000);
