/**
 * open() options (src/options.ts): one validation pass, every failure an InvalidOptionError with a
 * stable code and the name of the offending option; defaults filled in. docs/HAZARDS.md H1 (journal modes),
 * H6 (TTL floor and safety margin).
 */
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError, SqliteHaError } from '../../src/errors';
import { DEFAULTS, resolveOptions } from '../../src/options';
import { etcdClientOptions } from '../../src/coordinator/etcd/client';

const ETCD = { kind: 'etcd', endpoints: ['http://127.0.0.1:2379'] };
const LOCKFILE = { kind: 'lockfile' };

function invalid(file: unknown, options: unknown): InvalidOptionError {
  let caught: unknown = null;
  try {
    resolveOptions(file, options);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidOptionError);
  expect(caught).toBeInstanceOf(SqliteHaError);
  const e = caught as InvalidOptionError;
  expect(e.code).toBe('SQLITE_HA_INVALID_OPTION');
  expect(e.name).toBe('InvalidOptionError');
  return e;
}

describe('defaults', () => {
  test('lockfile coordinator: every default is filled and the result is frozen', () => {
    const r = resolveOptions('rel/dir/data.db', { coordinator: LOCKFILE });
    expect(r).toEqual({
      path: path.resolve('rel/dir/data.db'),
      coordinator: { kind: 'lockfile', staleMs: 10000 },
      name: 'data.db',
      nodeId: `${os.hostname()}:${process.pid}`,
      leaseTtlMs: 5000,
      safetyMarginMs: 1000,
      idleReleaseMs: 1000,
      acquireTimeoutMs: 10000,
      rpcTimeoutMs: 2000,
      busyTimeoutMs: 5000,
      journalMode: 'TRUNCATE',
      locks: 'auto',
      standby: null,
    });
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.coordinator)).toBe(true);
    expect(DEFAULTS.journalMode).toBe('TRUNCATE');
  });

  test('etcd coordinator: default prefix, trailing slash stripped from endpoints', () => {
    const r = resolveOptions('/tmp/a.db', {
      coordinator: { kind: 'etcd', endpoints: ['http://10.0.0.1:2379/', 'https://etcd.example:2379'] },
    });
    expect(r.coordinator).toEqual({
      kind: 'etcd',
      endpoints: ['http://10.0.0.1:2379', 'https://etcd.example:2379'],
      prefix: '/sqlite-ha',
      // Resolved options have no optional fields: no TLS and no auth read as null.
      tls: null,
      auth: null,
    });
  });

  test('the default safety margin is a quarter of a short TTL, and PERSIST/trusted are accepted', () => {
    const r = resolveOptions('/tmp/a.db', { coordinator: ETCD, leaseTtlMs: 2000, journalMode: 'PERSIST', locks: 'trusted' });
    expect(r.leaseTtlMs).toBe(2000);
    expect(r.safetyMarginMs).toBe(500);
    expect(r.journalMode).toBe('PERSIST');
    expect(r.locks).toBe('trusted');
  });

  test('explicit values are kept (and rounded to whole ms)', () => {
    const r = resolveOptions('/tmp/a.db', {
      coordinator: { kind: 'lockfile', staleMs: 3000 },
      name: 'orders',
      nodeId: 'n1',
      leaseTtlMs: 8000.4,
      safetyMarginMs: 1500,
      idleReleaseMs: 0,
      acquireTimeoutMs: 50,
      rpcTimeoutMs: 100,
      busyTimeoutMs: 0,
    });
    expect(r).toMatchObject({
      coordinator: { kind: 'lockfile', staleMs: 3000 },
      name: 'orders', nodeId: 'n1', leaseTtlMs: 8000, safetyMarginMs: 1500, idleReleaseMs: 0,
      acquireTimeoutMs: 50, rpcTimeoutMs: 100, busyTimeoutMs: 0,
    });
  });
});

describe('path and options object', () => {
  test.each([[''], [':memory:'], [42], [undefined]])('path %p is refused', (file) => {
    expect(invalid(file, { coordinator: LOCKFILE }).option).toBe('path');
  });

  test.each([[undefined], [null], ['lockfile'], [[{ coordinator: LOCKFILE }]]])('options %p is refused', (o) => {
    expect(invalid('/tmp/a.db', o).option).toBe('options');
  });
});

describe('unknown and misspelt keys', () => {
  test.each([['leaseTTLms'], ['leaseTtl'], ['journal_mode'], ['idleReleaseMS']])('top-level %s', (key) => {
    const e = invalid('/tmp/a.db', { coordinator: LOCKFILE, [key]: 5000 });
    expect(e.option).toBe(`options.${key}`);
    expect(e.message).toContain(key);
    expect(e.message).toContain('leaseTtlMs'); // the list of known options helps fix the typo
  });

  test('misspelt key inside an etcd coordinator', () => {
    const e = invalid('/tmp/a.db', { coordinator: { ...ETCD, endpoint: ['http://127.0.0.1:2379'] } });
    expect(e.option).toBe('coordinator.endpoint');
  });

  test('etcd-only key inside a lockfile coordinator', () => {
    const e = invalid('/tmp/a.db', { coordinator: { kind: 'lockfile', endpoints: ['http://127.0.0.1:2379'] } });
    expect(e.option).toBe('coordinator.endpoints');
  });
});

describe('coordinator', () => {
  test.each([[undefined], [null], ['etcd'], [[ETCD]]])('coordinator %p is refused', (c) => {
    expect(invalid('/tmp/a.db', { coordinator: c }).option).toBe('coordinator');
  });

  test.each([['consul'], [undefined], ['ETCD']])('kind %p is refused', (kind) => {
    expect(invalid('/tmp/a.db', { coordinator: { kind, endpoints: ['http://127.0.0.1:2379'] } }).option).toBe(
      'coordinator.kind',
    );
  });

  test.each([
    [undefined], [[]], ['http://127.0.0.1:2379'], [['127.0.0.1:2379']], [['grpc://127.0.0.1:2379']],
    [['http://127.0.0.1:2379/v3/kv']], [['http://127.0.0.1 :2379']], [[2379]],
  ])('endpoints %p are refused', (endpoints) => {
    expect(invalid('/tmp/a.db', { coordinator: { kind: 'etcd', endpoints } }).option).toBe('coordinator.endpoints');
  });

  test('one bad endpoint among good ones is named', () => {
    const e = invalid('/tmp/a.db', { coordinator: { kind: 'etcd', endpoints: ['http://a:2379', 'b:2379'] } });
    expect(e.option).toBe('coordinator.endpoints');
    expect(e.message).toContain('"b:2379"');
  });

  test.each([['sqlite-ha'], ['/'], ['/sqlite-ha/'], ['/a b'], [''], [7]])('prefix %p is refused', (prefix) => {
    expect(invalid('/tmp/a.db', { coordinator: { ...ETCD, prefix } }).option).toBe('coordinator.prefix');
  });

  test.each([['/x'], ['/team-a/sqlite-ha']])('prefix %p is accepted', (prefix) => {
    expect((resolveOptions('/tmp/a.db', { coordinator: { ...ETCD, prefix } }).coordinator as { prefix: string }).prefix).toBe(
      prefix,
    );
  });

  test.each([
    [{ username: 'root' }],
    [{ username: 'root', password: 12345678 }],
    [{ user: 'root', password: 'hunter2-s3cret' }],
    ['root:hunter2-s3cret'],
  ])('auth %p without a usable password is refused without echoing the password', (auth) => {
    const e = invalid('/tmp/a.db', { coordinator: { ...ETCD, auth } });
    expect(e.option).toBe('coordinator.auth');
    expect(e.message).not.toContain('hunter2');
    expect(e.message).not.toContain('12345678');
    expect(e.message).toContain('redacted');
  });

  // BUG (src/options.ts rejectUnknown): a misspelt key's whole value is echoed, so credentials
  // under a misspelt `auth` end up in the error message (and in logs).
  test('a misspelt auth key never echoes the password either', () => {
    const e = invalid('/tmp/a.db', { coordinator: { ...ETCD, Auth: { username: 'root', password: 'hunter2-s3cret' } } });
    expect(e.option).toBe('coordinator.Auth');
    expect(e.message).not.toContain('hunter2-s3cret');
  });

  test('tls must be an object', () => {
    expect(invalid('/tmp/a.db', { coordinator: { ...ETCD, tls: true } }).option).toBe('coordinator.tls');
  });

  test.each([[1999], [0], ['5000'], [Number.NaN]])('lockfile staleMs %p is refused', (staleMs) => {
    expect(invalid('/tmp/a.db', { coordinator: { kind: 'lockfile', staleMs } }).option).toBe('coordinator.staleMs');
  });
});

describe('timing (H6)', () => {
  test.each([[1999], [1000], [0], [-5000], ['5000'], [Number.POSITIVE_INFINITY], [3_600_001]])(
    'leaseTtlMs %p is refused',
    (leaseTtlMs) => {
      const e = invalid('/tmp/a.db', { coordinator: ETCD, leaseTtlMs });
      expect(e.option).toBe('leaseTtlMs');
    },
  );

  test('leaseTtlMs 2000 is the floor and is accepted', () => {
    expect(resolveOptions('/tmp/a.db', { coordinator: ETCD, leaseTtlMs: 2000 }).leaseTtlMs).toBe(2000);
  });

  test.each([
    [5000, 2500],
    [5000, 4999],
    [5000, 5000],
    [5000, 6000],
    [2000, 1000],
    [5000, -1],
  ])('ttl %d with safetyMarginMs %d is refused', (leaseTtlMs, safetyMarginMs) => {
    expect(invalid('/tmp/a.db', { coordinator: ETCD, leaseTtlMs, safetyMarginMs }).option).toBe('safetyMarginMs');
  });

  test('safetyMarginMs just under half the TTL is accepted', () => {
    expect(resolveOptions('/tmp/a.db', { coordinator: ETCD, leaseTtlMs: 5000, safetyMarginMs: 2499 }).safetyMarginMs).toBe(
      2499,
    );
  });

  test.each([
    ['idleReleaseMs', -1], ['acquireTimeoutMs', 0], ['rpcTimeoutMs', 49], ['busyTimeoutMs', -1], ['busyTimeoutMs', 'x'],
  ])('%s %p is refused', (key, value) => {
    expect(invalid('/tmp/a.db', { coordinator: ETCD, [key]: value }).option).toBe(key);
  });
});

describe('storage rules (H1)', () => {
  test.each([['WAL'], ['wal'], ['DELETE'], ['MEMORY'], ['OFF'], ['truncate'], [1]])('journalMode %p is refused', (journalMode) => {
    const e = invalid('/tmp/a.db', { coordinator: ETCD, journalMode });
    expect(e.option).toBe('journalMode');
    expect(e.message).toMatch(/TRUNCATE.*PERSIST/);
  });

  test.each([['untrusted'], ['NONE'], [true], [0]])('locks %p is refused', (locks) => {
    expect(invalid('/tmp/a.db', { coordinator: ETCD, locks }).option).toBe('locks');
  });

  test("locks 'none' (the lockless mode) needs etcd: refused with the lockfile coordinator", () => {
    const e = invalid('/tmp/a.db', { coordinator: LOCKFILE, locks: 'none' });
    expect(e.option).toBe('locks');
    expect(e.message).toContain('etcd');
    expect(resolveOptions('/tmp/a.db', { coordinator: ETCD, locks: 'none' }).locks).toBe('none');
  });
});

describe('identity', () => {
  test.each([['has space'], ['a/b'], [''], ['x'.repeat(129)], [5]])('name %p is refused', (name) => {
    expect(invalid('/tmp/a.db', { coordinator: ETCD, name }).option).toBe('name');
  });

  test.each([[''], ['n'.repeat(257)], [12]])('nodeId %p is refused', (nodeId) => {
    expect(invalid('/tmp/a.db', { coordinator: ETCD, nodeId }).option).toBe('nodeId');
  });
});

describe('etcd TLS options reach the one client factory intact', () => {
  // PEM parsing, cert/key matching and expiry are checked in resolveOptions (test/unit/14 and
  // test/integration/60.tls with real certificates); here only what the factory makes of them.
  const HTTPS = { kind: 'etcd', endpoints: ['https://127.0.0.1:2379'] };
  const resolvedWith = (tls: { ca: Buffer | null; cert: Buffer | null; key: Buffer | null }) =>
    ({ kind: 'etcd' as const, endpoints: HTTPS.endpoints, prefix: '/sqlite-ha', tls, auth: null });

  test('tls without a CA resolves ca to null and the client gets no root certificate (system roots)', () => {
    const r = resolveOptions('/tmp/a.db', { coordinator: { ...HTTPS, tls: {} } });
    expect(r.coordinator.kind === 'etcd' && r.coordinator.tls).toEqual({ ca: null, cert: null, key: null });
    const creds = etcdClientOptions(resolvedWith({ ca: null, cert: Buffer.from('CERT'), key: Buffer.from('KEY') }), 1000).credentials!;
    // An empty buffer here would make gRPC trust no root at all.
    expect(creds.rootCertificate).toBeUndefined();
    expect([creds.certChain, creds.privateKey]).toEqual([Buffer.from('CERT'), Buffer.from('KEY')]);
  });

  test('a CA reaches the client as its bytes; no tls means no credentials', () => {
    expect(etcdClientOptions(resolvedWith({ ca: Buffer.from('CA PEM'), cert: null, key: null }), 1000).credentials!.rootCertificate)
      .toEqual(Buffer.from('CA PEM'));
    const plain = resolveOptions('/tmp/a.db', { coordinator: ETCD });
    if (plain.coordinator.kind !== 'etcd') throw new Error('etcd expected');
    expect(etcdClientOptions(plain.coordinator, 1000).credentials).toBeUndefined();
  });

  test('a TLS part that is neither a string nor a Buffer is refused without echoing it', () => {
    const e = invalid('/tmp/a.db', { coordinator: { ...HTTPS, tls: { key: 12345 } } });
    expect(e.option).toBe('coordinator.tls.key');
    expect(e.message).not.toContain('12345');
  });
});
