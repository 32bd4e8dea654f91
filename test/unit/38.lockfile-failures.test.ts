/**
 * The lockfile coordinator's failure paths (issue #10, defect 9): when the holder file cannot be
 * written (EACCES, ENOSPC; here: its path is a directory, which fails for root too), the lock
 * directory must be let go at once, with a typed error naming the file, so other nodes can write.
 */
import * as fs from 'fs';
import { CoordinatorUnavailableError } from '../../src/errors';
import { HADatabase, open } from '../../src';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

async function node(file: string, nodeId: string): Promise<HADatabase> {
  const db = await open(file, { coordinator: { kind: 'lockfile' }, nodeId, acquireTimeoutMs: 3000, locks: 'trusted' });
  tmp.defer(() => db.close());
  return db;
}

test('a holder file that cannot be written: typed error, lock directory released, another node writes', async () => {
  const file = tmp.file('app.db');
  const holder = `${file}.sqlite-ha.holder`;
  const lockDir = `${file}.sqlite-ha.lock`;
  fs.mkdirSync(holder); // writeFileSync(holder) now fails with EISDIR, even for root

  const a = await node(file, 'a');
  const err = await a.write((c) => c.exec('CREATE TABLE t (x)')).then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(CoordinatorUnavailableError);
  expect(err!.message).toContain(holder);
  expect(a.lease.held).toBe(false);
  expect(fs.existsSync(lockDir)).toBe(false);

  fs.rmdirSync(holder);
  const b = await node(file, 'b');
  await b.write((c) => c.exec('CREATE TABLE t (x)'));
  expect(fs.readFileSync(holder, 'utf8')).toBe('b');
  await b.release();
  expect(fs.existsSync(lockDir)).toBe(false);

  // And `a` itself recovers once the file can be written.
  await a.write((c) => c.exec('INSERT INTO t VALUES (1)'));
  expect(fs.readFileSync(holder, 'utf8')).toBe('a');
});
