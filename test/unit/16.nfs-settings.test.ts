/**
 * NFS settings as doctor judges them, on text captured in the NFS lab (a Debian 6.1 guest mounting
 * nfs-ganesha with `-o vers=4.1,hard`) and on variants of it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseMounts } from '../../src/storage/mounts';
import { judgeNfsSettings, parseMountStats } from '../../src/storage/nfs-settings';

const captured = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'nfs', 'mountstats-ganesha.txt'), 'utf8');
const mountLine = '10.0.2.2:/export /mnt/nfs nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,port=20490,timeo=600,retrans=2,sec=sys,clientaddr=10.0.2.15,local_lock=none,addr=10.0.2.2 0 0';

const verdicts = (r: ReturnType<typeof judgeNfsSettings>) => Object.fromEntries(r.map((s) => [s.setting, s.verdict]));

test('mountstats: only NFS mounts, with effective options, op counts and the lease time', () => {
  const m = parseMountStats(captured);
  expect(m).toHaveLength(1);
  expect(m[0].mountPoint).toBe('/mnt/nfs');
  expect(m[0].options).toMatchObject({ vers: '4.1', hard: true, acregmin: '3', acdirmax: '60', local_lock: 'none' });
  expect(m[0].ops).toMatchObject({ LOCK: 22, LOCKU: 13, DELEGRETURN: 0, GETATTR: 27 });
  expect(m[0].leaseTimeS).toBe(10);
});

test('the lab mount: hard, 4.1, locks cross hosts, no delegations; lookupcache default warns; nobody owner warns as root', () => {
  const mount = parseMounts(mountLine)[0];
  const r = judgeNfsSettings(mount, parseMountStats(captured)[0], 4294967294, 0);
  expect(r.map((s) => s.setting)).toEqual(['hard', 'vers', 'actimeo', 'lookupcache', 'locks', 'delegations', 'idmapping']);
  expect(verdicts(r)).toEqual({ hard: 'ok', vers: 'ok', actimeo: 'ok', lookupcache: 'warn', locks: 'ok', delegations: 'ok', idmapping: 'warn' });
  expect(r.find((s) => s.setting === 'actimeo')!.summary).toMatch(/3-60 s/);
});

test('bad settings each get their own verdict', () => {
  const mount = parseMounts('srv:/e /m nfs rw,vers=3,soft,nolock,lookupcache=positive 0 0')[0];
  const stats = parseMountStats(captured.replace('DELEGRETURN: 0', 'DELEGRETURN: 4'))[0];
  stats.options = {}; // the mounts line decides
  const r = verdicts(judgeNfsSettings(mount, stats, 1000, 1000));
  // NFSv3 has no delegations, whatever the counters say; on NFSv4 returned ones warn.
  expect(r).toEqual({ hard: 'fail', vers: 'warn', actimeo: 'ok', lookupcache: 'ok', locks: 'warn', delegations: 'ok', idmapping: 'ok' });
  expect(verdicts(judgeNfsSettings(parseMounts('srv:/e /m nfs4 rw,vers=4.1,hard 0 0')[0], stats, 1000, 1000)).delegations).toBe('warn');
  const ll = verdicts(judgeNfsSettings(parseMounts('srv:/e /m nfs4 rw,vers=4.2,hard,local_lock=all 0 0')[0], null, null, 0));
  expect(ll.locks).toBe('warn');
  expect(ll.vers).toBe('ok');
  expect(ll.delegations).toBe('ok');
});

// Captured in the lab on NFSv3 (`npm run lab -- --nfs-version 3 --scenario bank`): ganesha, the
// guest mounted with vers=3,hard,nolock,proto=tcp,port=…,mountport=…,mountproto=tcp.
const capturedV3 = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'nfs', 'mountstats-ganesha-v3.txt'), 'utf8');
const mountLineV3 = '10.0.2.2:/export /mnt/nfs nfs rw,relatime,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,nolock,proto=tcp,port=42255,timeo=600,retrans=2,sec=sys,mountaddr=10.0.2.2,mountvers=3,mountport=32775,mountproto=tcp,local_lock=all,addr=10.0.2.2 0 0';

test('an NFSv3 mount with nolock: v3 warns, locks stay local (lockless), no delegations in v3, no NFSv4 lease', () => {
  const m = parseMountStats(capturedV3);
  expect(m).toHaveLength(1);
  expect(m[0].options).toMatchObject({ vers: '3', hard: true, nolock: true, local_lock: 'all', acregmin: '3' });
  expect(m[0].leaseTimeS).toBeNull();
  expect(m[0].ops.DELEGRETURN).toBeUndefined();
  expect(m[0].ops.WRITE).toBeGreaterThan(0);
  const mount = parseMounts(mountLineV3)[0];
  const r = judgeNfsSettings(mount, m[0], 0, 0);
  expect(verdicts(r)).toEqual({ hard: 'ok', vers: 'warn', actimeo: 'ok', lookupcache: 'warn', locks: 'warn', delegations: 'ok', idmapping: 'ok' });
  const by = Object.fromEntries(r.map((s) => [s.setting, s.summary]));
  expect(by.vers).toMatch(/^NFS version 3: no sessions/);
  expect(by.vers).not.toMatch(/NLM/); // nolock: no lock service is involved
  expect(by.locks).toMatch(/lockless/);
  expect(by.delegations).toMatch(/no delegations/);
});

test('NFSv3 nocto with a long attribute cache warns on actimeo; a squashed owner on v3 names root squashing', () => {
  const stats = parseMountStats(capturedV3)[0];
  stats.options = { ...stats.options, nocto: true, acregmin: '600', acregmax: '600', acdirmin: '600', acdirmax: '600' };
  const mount = parseMounts('10.0.2.2:/export /mnt/nfs nfs rw,vers=3,hard,nocto,nolock,local_lock=all 0 0')[0];
  const r = judgeNfsSettings(mount, stats, 4294967294, 0);
  const ac = r.find((s) => s.setting === 'actimeo')!;
  expect(ac.verdict).toBe('warn');
  expect(ac.summary).toMatch(/'nocto'.*600 s/);
  const id = r.find((s) => s.setting === 'idmapping')!;
  expect(id.verdict).toBe('warn');
  expect(id.summary).toMatch(/squashes root/);
});
