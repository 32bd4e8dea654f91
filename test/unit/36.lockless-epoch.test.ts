/**
 * The lockless move's local guards (issue 10, defect 2; docs/HAZARDS.md H5, H8), on a real file with a
 * scripted lease: the move stops without touching the file when the lease ran out during the copy,
 * a stale mover's temp name is neutralized by the next mover (a tombstone directory), and a read
 * that keeps finding another file generation than the published one says so (epochs, not only
 * txids, in the StaleViewError).
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import type { GatedCoordinator, ReaderTicket } from '../../src/coordinator/types';
import { LeaseLostError, StaleViewError } from '../../src/errors';
import { moveTempPath, moveToNewInode } from '../../src/lockless/epoch';
import { LocklessReads } from '../../src/lockless/reads';
import { openReadOnly, prepareFile } from '../../src/storage/connection';
import { ensureMetaTable } from '../../src/storage/meta';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

function settings(path: string) {
  return { path, journalMode: 'TRUNCATE' as const, busyTimeoutMs: 2000, safetyMarginMs: 500 };
}

function seed(path: string, meta: { txid: number; epoch: number }): void {
  prepareFile(path);
  const db = new Database(path);
  try {
    db.exec('BEGIN IMMEDIATE');
    ensureMetaTable(db);
    db.prepare('UPDATE _sqlite_ha_meta SET fence = 3, txid = ?, epoch = ? WHERE id = 1').run(meta.txid, meta.epoch);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1); COMMIT');
  } finally {
    db.close();
  }
}

test('a read that keeps seeing another file generation names both epochs', async () => {
  const file = tmp.file();
  seed(file, { txid: 2, epoch: 5 });
  let ro = openReadOnly(settings(file));
  tmp.defer(() => ro.close());
  const ticket: ReaderTicket = { commit: { txid: 2, fence: 9, node: 'b', time: Date.now(), epoch: 9 }, finish: async () => true };
  const coordinator = { registerReader: async () => ticket } as unknown as GatedCoordinator;
  const reads = new LocklessReads(coordinator, {
    get ro() { return ro; },
    reopenReadOnly: () => { ro.close(); ro = openReadOnly(settings(file)); },
  }, 300);
  const err = await reads.read((c) => c.prepare('SELECT x FROM t').pluck().get(), () => undefined, () => undefined).catch((e: Error) => e);
  expect(err).toBeInstanceOf(StaleViewError);
  expect((err as Error).message).toMatch(/txid 2 in file epoch 5 but txid 2 in epoch 9 was published/);
});

test('a move whose lease ran out during the copy leaves the file where it was', async () => {
  const file = tmp.file();
  seed(file, { txid: 2, epoch: 0 });
  const inode = fs.statSync(file).ino;
  let checks = 0;
  const lease = { usable: () => ++checks === 1 }; // valid at the start, gone after the copy
  const err = await moveToNewInode(settings(file), 7, lease, 4).catch((e) => e);
  expect(err).toBeInstanceOf(LeaseLostError);
  expect(fs.statSync(file).ino).toBe(inode);
  expect(fs.existsSync(moveTempPath(file, 7))).toBe(false);
});

test("the next mover turns the previous holder's temp file into a tombstone its rename cannot use", async () => {
  const file = tmp.file();
  seed(file, { txid: 2, epoch: 0 });
  // The previous holder (fence 4) copied, then stalled before its rename.
  fs.copyFileSync(file, moveTempPath(file, 4));
  await moveToNewInode(settings(file), 7, { usable: () => true }, 4);
  const moved = fs.statSync(file).ino;
  expect(fs.statSync(moveTempPath(file, 4)).isDirectory()).toBe(true);
  // The stale mover resumes: neither its rename nor a fresh exclusive copy can replace the file.
  expect(() => fs.renameSync(moveTempPath(file, 4), file)).toThrow(/EISDIR|ENOTDIR|EEXIST|ENOTEMPTY/);
  expect(() => fs.copyFileSync(file, moveTempPath(file, 4), fs.constants.COPYFILE_EXCL)).toThrow(/EEXIST/);
  expect(fs.statSync(file).ino).toBe(moved);
  expect(fs.existsSync(moveTempPath(file, 7))).toBe(false);
});
