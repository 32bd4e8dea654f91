/**
 * A symlink on a local filesystem pointing into a mount without cross-host locks (issue #10,
 * defect 10): `local/app.db -> /mnt/sshfs/app.db` must be judged on the sshfs mount, where the
 * locks cannot be trusted, not on the local one. With the lockfile coordinator that is a refusal;
 * with locks 'auto' and etcd it is the lockless mode, on the target's real path.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { open, UnsafeStorageError } from '../../src';
import { useEtcd } from '../helpers/etcd';
import { useSshfs } from '../helpers/sshfs';

const etcd = useEtcd();
const sshfs = useSshfs(1);
let local: string;

beforeAll(() => {
  local = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-link-'));
});
afterAll(() => {
  if (local) fs.rmSync(local, { recursive: true, force: true });
});

test('lockfile coordinator: a symlink into sshfs is refused as the sshfs file it is', async () => {
  const target = path.join(sshfs().mounts[0], 'refused.db');
  fs.symlinkSync(target, path.join(local, 'refused.db'));
  const err = await open(path.join(local, 'refused.db'), { coordinator: { kind: 'lockfile' } }).then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(UnsafeStorageError);
  expect(err!.message).toContain(target);
  expect(err!.message).toMatch(/FUSE filesystem/);
});

test("etcd coordinator, locks 'auto': the lockless mode on the target; the symlink stays a symlink", async () => {
  const target = path.join(sshfs().mounts[0], 'app.db');
  const link = path.join(local, 'app.db');
  fs.symlinkSync(target, link);
  const db = await open(link, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: `/t-link-${path.basename(local)}` },
    acquireTimeoutMs: 10000,
  });
  try {
    expect(db.locks).toBe('none');
    expect(db.name).toBe(target);
    await db.write((c) => c.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)'));
    expect(await db.read((c) => (c.prepare('SELECT count(*) n FROM t').get() as { n: number }).n)).toBe(1);
  } finally {
    await db.close();
  }
  expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
  expect(fs.readlinkSync(link)).toBe(target);
});
