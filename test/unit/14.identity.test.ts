/**
 * Database identity and storage-mode decisions (issue 10, defects 5 and 6): which files a new
 * holder may write, what it must record, and the errors that name both sides.
 */
import { DatabaseIdentityError, MixedModesError } from '../../src/errors';
import { checkMode, decideIdentity, RecordedIdentity } from '../../src/storage/identity';

const recorded: RecordedIdentity = {
  id: 'db-A', locks: 'none', path: '/mnt/nfs/app.db', node: 'n1',
  mount: { fsType: 'nfs4', mountPoint: '/mnt/nfs', options: ['rw', 'vers=4.2', 'local_lock=all'] },
};
const base = { path: '/srv/app.db', name: 'app.db', newId: () => 'db-new' };

test('the first holder of a new database creates the id in etcd and in the file', () => {
  expect(decideIdentity({ ...base, file: { hasMeta: false, dbid: null, txid: 0 }, recorded: null, publishedTxid: 0 }))
    .toEqual({ id: 'db-new', writeFile: true, writeRecord: true });
});

test('a file whose id matches the record is written as it is', () => {
  expect(decideIdentity({ ...base, file: { hasMeta: true, dbid: 'db-A', txid: 7 }, recorded, publishedTxid: 7 }))
    .toEqual({ id: 'db-A', writeFile: false, writeRecord: false });
});

test('a file with another id is refused, naming both ids and paths', () => {
  let err: unknown;
  try {
    decideIdentity({ ...base, file: { hasMeta: true, dbid: 'db-B', txid: 7 }, recorded, publishedTxid: 7 });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DatabaseIdentityError);
  const e = err as DatabaseIdentityError;
  expect(e.code).toBe('SQLITE_HA_DATABASE_IDENTITY');
  expect(e.message).toContain('/srv/app.db is database db-B');
  expect(e.message).toContain('etcd records database db-A');
  expect(e.message).toContain('/mnt/nfs/app.db');
  expect([e.fileId, e.recordedId]).toEqual(['db-B', 'db-A']);
});

test('an empty file where etcd records commits is refused (a mount missing at boot), with or without a recorded id', () => {
  for (const rec of [recorded, null]) {
    expect(() => decideIdentity({ ...base, file: { hasMeta: false, dbid: null, txid: 0 }, recorded: rec, publishedTxid: 500 }))
      .toThrow(/no sqlite-ha meta row .* etcd records 500 commits .*refusing to create a new database/);
  }
});

test('an id recorded before the file got it is adopted; a pre-identity database gets one', () => {
  expect(decideIdentity({ ...base, file: { hasMeta: false, dbid: null, txid: 0 }, recorded, publishedTxid: 0 }))
    .toEqual({ id: 'db-A', writeFile: true, writeRecord: false });
  expect(decideIdentity({ ...base, file: { hasMeta: true, dbid: null, txid: 40 }, recorded: null, publishedTxid: 40 }))
    .toEqual({ id: 'db-new', writeFile: true, writeRecord: true });
  // A restored file that carries its id, on a fresh prefix: the record takes the file's id.
  expect(decideIdentity({ ...base, file: { hasMeta: true, dbid: 'db-C', txid: 3 }, recorded: null, publishedTxid: 0 }))
    .toEqual({ id: 'db-C', writeFile: false, writeRecord: true });
});

test('a node whose storage mode differs is refused, naming the mount options that differ', () => {
  const mount = { fsType: 'nfs4', mountPoint: '/mnt/nfs', options: ['rw', 'vers=4.2', 'local_lock=none'] };
  let err: unknown;
  try {
    checkMode({ recorded, locks: 'trusted', mount, path: '/mnt/nfs/app.db', name: 'app.db', node: 'n2' });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MixedModesError);
  const msg = (err as Error).message;
  expect((err as MixedModesError).code).toBe('SQLITE_HA_MIXED_MODES');
  expect(msg).toContain("locks: 'trusted'");
  expect(msg).toContain("etcd records locks: 'none'");
  expect(msg).toContain('only here: local_lock=none');
  expect(msg).toContain('only there: local_lock=all');
  expect(() => checkMode({ recorded, locks: 'none', mount, path: '/x', name: 'app.db', node: 'n2' })).not.toThrow();
  expect(() => checkMode({ recorded: null, locks: 'trusted', mount, path: '/x', name: 'app.db', node: 'n2' })).not.toThrow();
});
