/**
 * Paths (issue #10, defect 10): open() resolves the real path once, so a symlink is judged, locked
 * and moved as the file it points to (the sshfs case is in test/integration/53.symlink-mount); a
 * file that is not an SQLite database is refused by name before anything touches it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError, open, UnsafeStorageError } from '../../src';
import { realPath } from '../../src/storage/paths';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir();

test('a file that is not an SQLite database: UnsafeStorageError naming it, the file untouched', async () => {
  const file = tmp.file('notes.db');
  fs.writeFileSync(file, 'these are my notes, not a database\n'.repeat(20));
  const before = fs.readFileSync(file);
  const err = await open(file, { coordinator: { kind: 'lockfile' }, locks: 'trusted' }).then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(UnsafeStorageError);
  expect(err!.message).toContain(file);
  expect(err!.message).toMatch(/is not an SQLite database/);
  expect(fs.readFileSync(file).equals(before)).toBe(true);
  expect(fs.existsSync(`${file}.sqlite-ha.lock`)).toBe(false);
});

test('a short non-empty file is not a database either; an empty one is', async () => {
  const short = tmp.file('short.db');
  fs.writeFileSync(short, 'x');
  const err = await open(short, { coordinator: { kind: 'lockfile' }, locks: 'trusted' }).then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(UnsafeStorageError);
  const empty = tmp.file('empty.db');
  fs.writeFileSync(empty, '');
  const db = await open(empty, { coordinator: { kind: 'lockfile' }, locks: 'trusted' });
  await db.close();
});

test('a symlinked database: db.name, the lock and fence files and the writes are the target', async () => {
  const real = path.join(tmp.dir(), 'real');
  const links = path.join(tmp.dir(), 'links');
  fs.mkdirSync(real);
  fs.mkdirSync(links);
  const target = path.join(fs.realpathSync(real), 'app.db');
  fs.symlinkSync(target, path.join(links, 'app.db')); // dangling: open() creates the target
  const db = await open(path.join(links, 'app.db'), { coordinator: { kind: 'lockfile' }, locks: 'trusted' });
  tmp.defer(() => db.close());
  expect(db.name).toBe(target);
  await db.write((c) => c.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)'));
  expect(fs.existsSync(`${target}.sqlite-ha.fence`)).toBe(true);
  expect(fs.existsSync(path.join(links, 'app.db.sqlite-ha.fence'))).toBe(false);
  expect(fs.lstatSync(path.join(links, 'app.db')).isSymbolicLink()).toBe(true);
  expect(fs.statSync(target).size).toBeGreaterThan(0);
});

test('realPath follows chains of links, relative ones too, and refuses a loop', () => {
  const d = fs.realpathSync(tmp.dir());
  fs.symlinkSync('b.db', path.join(d, 'a.db'));
  fs.symlinkSync('c.db', path.join(d, 'b.db'));
  expect(realPath(path.join(d, 'a.db'))).toBe(path.join(d, 'c.db'));
  fs.symlinkSync('y.db', path.join(d, 'x.db'));
  fs.symlinkSync('x.db', path.join(d, 'y.db'));
  expect(() => realPath(path.join(d, 'x.db'))).toThrow(InvalidOptionError);
});
