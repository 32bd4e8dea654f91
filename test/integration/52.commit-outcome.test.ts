/**
 * H2's last rule: a COMMIT that fails with an I/O error has an unknown outcome. The filesystem
 * really fails: the sshfs process behind the mount is killed while the transaction is open, so
 * COMMIT's first write gets EIO/ENOTCONN. The writer must report CommitOutcomeUnknownError, drop
 * its lease at once (a waiting node proceeds) and not retry.
 */
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import { CommitOutcomeUnknownError, HADatabase, open } from '../../src';
import { useEtcd } from '../helpers/etcd';
import { useSshfs } from '../helpers/sshfs';

const etcd = useEtcd();
let db: HADatabase | null = null;
afterAll(async () => {
  await db?.close().catch(() => undefined);
});
const sshfs = useSshfs(1);

function spin(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    /* keep the transaction open while the mount dies */
  }
}

test('COMMIT failing with an I/O error: CommitOutcomeUnknownError, lease dropped, no retry', async () => {
  const prefix = '/outcome';
  db = await open(path.join(sshfs().mounts[0], 'o.db'), {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix },
    locks: 'trusted', // one writer only: this test is about the COMMIT, not about readers
    leaseTtlMs: 5000,
    idleReleaseMs: 60000,
  });
  await db.write((c) => c.exec('CREATE TABLE t (x BLOB)'));
  const lost: Error[] = [];
  db.lease.on('lost', (e: Error) => lost.push(e));
  const sshfsPid = spawnSync('pgrep', ['-f', `sshfs.*${sshfs().mounts[0]}`], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  expect(Number(sshfsPid)).toBeGreaterThan(0);
  let calls = 0;
  const err = await db
    .write((c) => {
      calls++;
      c.prepare('INSERT INTO t VALUES (randomblob(100000))').run();
      // The kill lands while this transaction is open; its pages reach the file only at COMMIT.
      spawn('kill', ['-9', sshfsPid], { stdio: 'ignore' });
      spin(500);
    })
    .catch((e) => e);
  expect(err).toBeInstanceOf(CommitOutcomeUnknownError);
  expect(err.code).toBe('SQLITE_HA_COMMIT_OUTCOME_UNKNOWN');
  expect((err.cause as { code?: string }).code).toMatch(/^SQLITE_(IOERR|CANTOPEN)/);
  expect(calls).toBe(1); // never retried blindly
  await new Promise((r) => setTimeout(r, 200));
  expect(db.lease.held).toBe(false);
  expect(lost.map((e) => e.constructor.name)).toContain('CommitOutcomeUnknownError');
  // The lease is gone from etcd too: nobody is queued as holder.
  const keys = etcd.cluster().etcdctl(['get', '--prefix', '--keys-only', `${prefix}/o.db/lock/`]);
  expect(keys.trim()).toBe('');
}, 60000);
