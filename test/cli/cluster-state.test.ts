/** deriveView without a network: the same key-values etcd would return, in any order. */
import type { IKeyValue } from 'etcd3';
import { classify, deriveView, ttlLeftAt, viewToJson } from '../../src/cli/cluster-state';

function kv(key: string, value: unknown, createRevision: number, lease = '0'): IKeyValue {
  return {
    key: Buffer.from(key),
    value: Buffer.from(value === '' ? '' : JSON.stringify(value)),
    create_revision: String(createRevision),
    mod_revision: String(createRevision),
    version: '1',
    lease,
  };
}

const P = '/p';

test('queue order is by create revision, whatever order the keys come in; foreign keys are marked', () => {
  const now = 1_000_000;
  const kvs = [
    kv(`${P}/a.db/lock/${(300n).toString(16)}`, { node: 'n3', pid: 3, ttlMs: 5000, queuedAt: now - 100 }, 30, '300'),
    kv(`${P}/a.db/lock/${(100n).toString(16)}`, '', 10, '100'),
    kv(`${P}/a.db/lock/${(200n).toString(16)}`, { node: 'n2', pid: 2, ttlMs: 5000, queuedAt: now - 500 }, 20, '200'),
    kv(`${P}/a.db/commit`, { txid: 9, fence: 10, node: 'n1', time: now - 2000 }, 5),
    kv(`${P}/a.db/info`, { path: '/x/a.db', locks: 'none', journalMode: 'TRUNCATE', leaseTtlMs: 5000, node: 'n1' }, 4),
    kv(`${P}/a.db/history/0000000000000010`, { fence: 10, node: 'n1', previousNode: null, cause: 'first', waitedMs: 3, handoverMs: null, time: now - 9000 }, 11),
    kv(`${P}/a.db/history/0000000000000008`, { fence: 8, node: 'n0', previousNode: null, cause: 'first', waitedMs: 3, handoverMs: null, time: now - 19000 }, 9),
    kv(`${P}/a.db/readers/r1`, { node: 'n2' }, 40),
    kv(`${P}/a.db/readers/r2`, { node: 'n3' }, 41),
    kv(`${P}/a.db/gate`, { fence: 10 }, 42),
    kv(`${P}/b.db/commit`, { txid: 1, fence: 3, node: 'n9', time: now }, 3),
    kv('/other/c.db/commit', { txid: 1 }, 2),
  ];
  const leases = new Map([
    ['100', { ttlLeftMs: 4000, grantedMs: 10000, measuredAt: now - 1000 }],
    ['200', { ttlLeftMs: 5000, grantedMs: 5000, measuredAt: now }],
  ]);
  const view = deriveView(P, kvs, leases, 77, now);
  expect(view.databases.map((d) => d.name)).toEqual(['a.db', 'b.db']);
  const a = view.databases[0];
  expect(a.holder).toMatchObject({ node: '(foreign)', foreign: true, createRevision: 10, leaseId: '64', lease: '100', ttlLeftMs: 3000, leaseTtlMs: 10000 });
  expect(a.fence).toBe(10);
  expect(a.ttlLeftMs).toBe(3000);
  expect(a.waiters.map((w) => [w.node, w.createRevision, w.pid])).toEqual([['n2', 20, 2], ['n3', 30, 3]]);
  expect(a.waiters[1]).toMatchObject({ ttlLeftMs: null, leaseTtlMs: 5000 }); // unknown lease: TTL from its record
  expect(a.lastCommit).toEqual({ txid: 9, fence: 10, node: 'n1', time: now - 2000, ageMs: 2000 });
  expect(a.storageMode).toBe('none');
  expect(a.lastHandover?.fence).toBe(10);
  expect(a.readers).toBe(2);
  expect(a.committing).toBe(true);
  expect(view.databases[1]).toMatchObject({ holder: null, fence: null, waiters: [], readers: 0, committing: false });
  const j = viewToJson(view) as { databases: { holder: Record<string, unknown> }[] };
  expect(Object.keys(j.databases[0].holder)).not.toContain('lease'); // decimal id stays internal
});

test('classify and the local TTL countdown', () => {
  expect(classify(P, `${P}/a.db/lock/abc`)).toEqual({ db: 'a.db', kind: 'lock' });
  expect(classify(P, `${P}/a.db/lock/`)).toEqual({ db: 'a.db', kind: 'other' });
  expect(classify(P, `${P}/a.db/released`)).toEqual({ db: 'a.db', kind: 'other' });
  expect(classify(P, `${P}x/a.db/commit`)).toBeNull();
  expect(ttlLeftAt({ ttlLeftMs: 2000, grantedMs: 2000, measuredAt: 0 }, 1500)).toBe(500);
  expect(ttlLeftAt({ ttlLeftMs: 2000, grantedMs: 2000, measuredAt: 0 }, 2500)).toBe(0);
  expect(ttlLeftAt({ ttlLeftMs: null, grantedMs: null, measuredAt: 0 }, 1)).toBeNull();
});
