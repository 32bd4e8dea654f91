/**
 * The `sqlite-ha` CLI against a real etcd, with real lease holders: sqlite-ha nodes
 * (test/fixtures/cli-holder.js) and `etcdctl lock` processes in the same Mutex queue.
 * Run after `npm run build` (it spawns dist/cli/main.js).
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { EtcdCluster, freePort } from '../../tools/cluster/etcd-process';
import { META_TABLE, ensureMetaTable } from '../../src/storage/meta';
import { judgeMount, mountFor, parseMounts } from '../../src/storage/mounts';
import {
  CLI, Proc, killAll, runCli, startEtcdctlLock, startHolder, startProc, waitFor, waitLine, within,
} from './helpers';

jest.setTimeout(60000);

let cluster: EtcdCluster;
let eps: string[];
let dir: string;

beforeAll(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  eps = cluster.endpoints;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-cli-'));
});

afterAll(async () => {
  await killAll();
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Lock keys of a database in queue order, straight from etcd. */
function lockKeys(prefix: string, db: string): { key: string; createRevision: number; lease: string }[] {
  const out = JSON.parse(cluster.etcdctl(['get', '--prefix', `${prefix}/${db}/lock/`, '-w', 'json']));
  return (out.kvs ?? [])
    .map((kv: { key: string; create_revision: number; lease: number | string }) => ({
      key: Buffer.from(kv.key, 'base64').toString(),
      createRevision: Number(kv.create_revision),
      // etcdctl prints the lease as a JSON number that may exceed 2^53: take it from the key name.
      lease: Buffer.from(kv.key, 'base64').toString().split('/').pop()!,
    }))
    .sort((a: { createRevision: number }, b: { createRevision: number }) => a.createRevision - b.createRevision);
}

const cfg = (prefix: string, file: string, nodeId: string) => ({ db: path.join(dir, file), endpoints: eps, prefix, nodeId, ttlMs: 2000 });
const hasLine = (p: Proc) => () => p.lines.length > 0;

async function queueLength(prefix: string, db: string, n: number): Promise<void> {
  await waitFor(`${n} keys in the ${db} queue`, () => lockKeys(prefix, db).length === n, 10000, 100);
}

describe('status', () => {
  test('--json: holders, fences, TTL left, waiters in queue order, last commit and storage mode', async () => {
    const prefix = '/t-status';
    // shared.db: an etcdctl holder, then an etcdctl waiter, then an sqlite-ha waiter behind them.
    const e1 = startEtcdctlLock(eps, `${prefix}/shared.db/lock`, 10);
    await waitFor('etcdctl lock to hold', hasLine(e1));
    const e2 = startEtcdctlLock(eps, `${prefix}/shared.db/lock`, 10);
    await queueLength(prefix, 'shared.db', 2);
    const c = startHolder(cfg(prefix, 'shared.db', 'node-c'));
    await queueLength(prefix, 'shared.db', 3);
    // app.db: sqlite-ha node-a holds (and committed once), node-b waits.
    const a = startHolder(cfg(prefix, 'app.db', 'node-a'));
    const aWrote = await waitLine<{ ev: string; fence: number }>(a, (o) => o.ev === 'wrote', 'node-a to write');
    const b = startHolder(cfg(prefix, 'app.db', 'node-b'));
    await queueLength(prefix, 'app.db', 2);

    const r = await runCli(['status', '--json', '--endpoints', eps.join(','), '--prefix', prefix]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.prefix).toBe(prefix);
    expect(j.databases.map((d: { name: string }) => d.name)).toEqual(['app.db', 'shared.db']);

    const shared = j.databases[1];
    const keys = lockKeys(prefix, 'shared.db');
    expect(shared.holder).toMatchObject({ node: '(foreign)', foreign: true, pid: null, key: keys[0].key, leaseId: keys[0].lease, leaseTtlMs: 10000 });
    expect(shared.fence).toBe(keys[0].createRevision);
    expect(shared.ttlLeftMs).toBeGreaterThan(0);
    expect(shared.ttlLeftMs).toBeLessThanOrEqual(10000);
    expect(shared.waiters.map((w: { node: string }) => w.node)).toEqual(['(foreign)', 'node-c']);
    expect(shared.waiters.map((w: { createRevision: number }) => w.createRevision)).toEqual([keys[1].createRevision, keys[2].createRevision]);
    expect(shared.waiters[1].pid).toBe(c.child.pid);
    expect(shared.lastCommit).toBeNull();

    const app = j.databases[0];
    const appKeys = lockKeys(prefix, 'app.db');
    expect(app.holder).toMatchObject({ node: 'node-a', foreign: false, pid: a.child.pid, key: appKeys[0].key, leaseTtlMs: 2000 });
    expect(app.fence).toBe(aWrote.fence);
    expect(app.fence).toBe(appKeys[0].createRevision);
    expect(app.ttlLeftMs).toBeGreaterThanOrEqual(0);
    expect(app.ttlLeftMs).toBeLessThanOrEqual(2000);
    expect(app.waiters.map((w: { node: string; pid: number }) => [w.node, w.pid])).toEqual([['node-b', b.child.pid]]);
    expect(app.lastCommit).toMatchObject({ txid: 1, node: 'node-a', fence: aWrote.fence });
    expect(app.lastCommit.ageMs).toBeGreaterThanOrEqual(0);
    expect(app.storageMode).toBe('trusted');
    expect(app.info).toMatchObject({ locks: 'trusted', journalMode: 'TRUNCATE', leaseTtlMs: 2000, node: 'node-a' });
    expect(app.lastHandover).toMatchObject({ cause: 'first', node: 'node-a', fence: aWrote.fence });

    // The table for people carries the same facts.
    const t = await runCli(['status', '--endpoints', eps.join(','), '--prefix', prefix]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^DATABASE\s+HOLDER\s+FENCE\s+TTL LEFT\s+WAITERS\s+LAST COMMIT\s+LOCKS/m);
    expect(t.stdout).toMatch(new RegExp(`app\\.db\\s+node-a \\(pid ${a.child.pid}\\)\\s+${aWrote.fence}\\s.*1\\.node-b\\s+txid 1 by node-a`));
    expect(t.stdout).toMatch(new RegExp(`shared\\.db\\s+\\(foreign\\)\\s+${keys[0].createRevision}\\s.*1\\.\\(foreign\\) 2\\.node-c`));

    // A clean hand-over: node-a closes (releases), node-b proceeds; history says how it went.
    a.child.kill('SIGTERM');
    const bHolds = await waitLine<{ ev: string; fence: number }>(b, (o) => o.ev === 'wrote', 'node-b to write after node-a closed');
    const h = await waitFor('the hand-over record', async () => {
      const res = await runCli(['history', '--json', '--db', 'app.db', '--endpoints', eps.join(','), '--prefix', prefix]);
      const rows = JSON.parse(res.stdout) as { fence: number }[];
      return rows.find((x) => x.fence === bHolds.fence) ? rows : undefined;
    }, 10000, 200);
    expect(h[0]).toMatchObject({ db: 'app.db', fence: bHolds.fence, node: 'node-b', previousNode: 'node-a', cause: 'released' });
    expect(typeof (h[0] as unknown as { handoverMs: number }).handoverMs).toBe('number');
    expect(h[1]).toMatchObject({ db: 'app.db', fence: aWrote.fence, node: 'node-a', cause: 'first' });
    const ht = await runCli(['history', '--endpoints', eps.join(','), '--prefix', prefix]);
    expect(ht.code).toBe(0);
    expect(ht.stdout).toMatch(new RegExp(`app\\.db\\s+${bHolds.fence}\\s+node-b\\s+node-a\\s+released\\s+\\S+`));
    e2.child.kill('SIGKILL');
  });
});

describe('release --force', () => {
  test('revokes an sqlite-ha holder and the waiting writer proceeds', async () => {
    const prefix = '/t-release';
    const a = startHolder(cfg(prefix, 'rel.db', 'node-a'));
    const aWrote = await waitLine<{ fence: number; ev: string }>(a, (o) => o.ev === 'wrote', 'node-a to write');
    const b = startHolder(cfg(prefix, 'rel.db', 'node-b'));
    await queueLength(prefix, 'rel.db', 2);
    const holderKey = lockKeys(prefix, 'rel.db')[0];
    const conn = ['--endpoints', eps.join(','), '--prefix', prefix];

    const noForce = await runCli(['release', 'rel.db', ...conn]);
    expect(noForce.code).toBe(2);
    expect(noForce.stderr).toMatch(/--force/);

    const declined = await runCli(['release', '--force', 'rel.db', ...conn], { input: 'n\n' });
    expect(declined.code).toBe(1);
    expect(declined.stdout).toMatch(new RegExp(`rel\\.db is held by node-a \\(pid ${a.child.pid}\\), fence ${aWrote.fence}, lease ${holderKey.lease}`));
    expect(declined.stdout).toMatch(/Revoke lease [0-9a-f]+\? \[y\/N\]/);
    expect(declined.stdout).toMatch(/nothing was changed/);
    expect(lockKeys(prefix, 'rel.db')[0].key).toBe(holderKey.key);

    const missing = await runCli(['release', '--force', '--yes', 'nope.db', ...conn]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no database named "nope.db".*known: rel\.db/);

    const r = await runCli(['release', '--force', '--yes', 'rel.db', ...conn]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Revoked lease ${holderKey.lease} of node-a: etcd deleted its lock key ${holderKey.key} (fence ${aWrote.fence})`);
    expect(r.stdout).toMatch(/rel\.db is now held by node-b \(fence \d+\)/);
    const bWrote = await waitLine<{ fence: number; ev: string }>(b, (o) => o.ev === 'wrote', 'node-b to write after the release', 8000);
    expect(bWrote.fence).toBeGreaterThan(aWrote.fence);
    expect(r.stdout).toContain(`now held by node-b (fence ${bWrote.fence})`);
  });

  test('revokes a foreign (etcdctl lock) holder and the waiting etcdctl lock proceeds', async () => {
    const prefix = '/t-release-foreign';
    const e1 = startEtcdctlLock(eps, `${prefix}/f.db/lock`, 30);
    await waitFor('first etcdctl lock to hold', hasLine(e1));
    const e2 = startEtcdctlLock(eps, `${prefix}/f.db/lock`, 30);
    await queueLength(prefix, 'f.db', 2);
    const [first, second] = lockKeys(prefix, 'f.db');
    expect(e2.lines).toEqual([]);
    const r = await runCli(['release', '--force', '-y', 'f.db', '--endpoints', eps.join(','), '--prefix', prefix]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Revoked lease ${first.lease} of (foreign)`);
    expect(r.stdout).toMatch(/not an sqlite-ha node/);
    await waitFor('the waiting etcdctl lock to acquire', () => e2.lines.includes(second.key), 5000);
  });
});

describe('monitor without a terminal', () => {
  test('writes JSON lines for a hand-over and serves Prometheus metrics', async () => {
    const prefix = '/t-monitor';
    const a = startHolder(cfg(prefix, 'mon.db', 'node-a'));
    const aWrote = await waitLine<{ fence: number; ev: string }>(a, (o) => o.ev === 'wrote', 'node-a to write');
    const mon = startProc(process.execPath, [CLI, 'monitor', '--endpoints', eps.join(','), '--prefix', prefix, '--metrics-port', '0', '--metrics-host', '127.0.0.1']);
    const snap = await waitLine<{ type: string; databases: { name: string; holder: { node: string } }[] }>(mon, (o) => o.type === 'snapshot', 'the snapshot line');
    expect(snap.databases[0]).toMatchObject({ name: 'mon.db', holder: { node: 'node-a' } });
    const url = await waitFor('the metrics URL', () => /(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(mon.stderr)?.[1]);

    const b = startHolder(cfg(prefix, 'mon.db', 'node-b'));
    await waitLine(mon, (o) => o.type === 'queued' && o.node === 'node-b' && o.position === 1, 'queued node-b').catch((e) => {
      throw new Error(`${e.message}\nnode-b: ${b.lines.join('\n')} ${b.stderr}\nkeys: ${JSON.stringify(lockKeys(prefix, 'mon.db'))}`);
    });
    a.child.kill('SIGTERM');
    const bWrote = await waitLine<{ fence: number; ev: string }>(b, (o) => o.ev === 'wrote', 'node-b to write');
    await waitLine(mon, (o) => o.type === 'released' && o.node === 'node-a' && o.fence === aWrote.fence, 'released node-a');
    await waitLine(mon, (o) => o.type === 'acquired' && o.node === 'node-b' && o.fence === bWrote.fence && o.previousNode === 'node-a', 'acquired node-b');
    const ho = await waitLine<{ type: string; node: string; cause: string; handoverMs: number; waitedMs: number }>(mon, (o) => o.type === 'handover' && o.node === 'node-b', 'handover line');
    expect(ho.cause).toBe('released');

    // A refusal reported by a node (as lease.reportEvent writes it) arrives through the watch.
    const refusal = { kind: 'fenced-write-refused', node: 'node-a', fence: aWrote.fence, detail: 'stored fence is higher', time: Date.now() };
    cluster.etcdctl(['put', `${prefix}/mon.db/events/fenced-write-refused`, JSON.stringify(refusal)]);
    await waitLine(mon, (o) => o.type === 'fenced-write-refused' && o.node === 'node-a', 'the refusal event');

    const metrics = await waitFor('keep-alive samples in the metrics', async () => {
      const text = await httpGet(url);
      return /^sqlite_ha_keepalive_rtt_seconds_count [1-9]/m.test(text) && /sqlite_ha_commit_txid\{db="mon.db"\} 2$/m.test(text) ? text : undefined;
    }, 8000, 250);
    expect(metrics).toMatch(/^sqlite_ha_lease_held\{db="mon.db"\} 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_lease_holder_info\{db="mon.db",node="node-b"\} 1$/m);
    expect(metrics).toMatch(new RegExp(`^sqlite_ha_lease_fence\\{db="mon.db"\\} ${bWrote.fence}$`, 'm'));
    expect(metrics).toMatch(/^sqlite_ha_handovers_total\{db="mon.db",cause="released"\} 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_acquire_latency_seconds_count\{db="mon.db"\} 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_handover_latency_seconds_count\{db="mon.db"\} 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_fenced_writes_refused_total\{db="mon.db"\} 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_etcd_up 1$/m);
    expect(metrics).toMatch(/^sqlite_ha_lease_ttl_seconds\{db="mon.db"\} [0-9.]+$/m);

    mon.child.kill('SIGINT');
    expect(await within(mon.exited, 4000, 'still running')).toBe(0);
  });
});

describe('usage and connection errors', () => {
  test('bad flags and arguments exit 2 with usage', async () => {
    const cases: [string[], RegExp][] = [
      [['status', '--bogus'], /unknown option '--bogus'[\s\S]*Usage: sqlite-ha status/],
      [['frobnicate'], /unknown command 'frobnicate'[\s\S]*Usage: sqlite-ha/],
      [['monitor', '--metrics-port', 'abc'], /--metrics-port must be an integer[\s\S]*Usage: sqlite-ha monitor/],
      [['release'], /missing required argument 'db'[\s\S]*Usage: sqlite-ha release/],
      [['doctor'], /missing required argument 'path'[\s\S]*Usage: sqlite-ha doctor/],
      [['history', '--limit', '0'], /--limit must be an integer[\s\S]*Usage: sqlite-ha history/],
      [['status', '--timeout', 'soon'], /invalid --timeout "soon"[\s\S]*sqlite-ha --help/],
      [['status', '--endpoints', 'ftp://x:1'], /invalid endpoint "ftp:\/\/x:1"/],
      [[], /Usage: sqlite-ha/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((r, i) => {
      expect({ args: cases[i][0], code: r.code }).toEqual({ args: cases[i][0], code: 2 });
      expect(r.stderr).toMatch(cases[i][1]);
    });
    const pw = await runCli(['status'], { env: { SQLITE_HA_ETCD_PASSWORD: 'pw-without-user' } });
    expect(pw.code).toBe(2);
    expect(pw.stderr).toMatch(/no user/);
    expect(pw.stderr + pw.stdout).not.toContain('pw-without-user');
  });

  test('--help on every command exits 0', async () => {
    const cmds = ['status', 'monitor', 'history', 'release', 'doctor'];
    const results = await Promise.all([runCli(['--help']), ...cmds.map((c) => runCli([c, '--help']))]);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(results[0].stdout).toMatch(/Exit codes: 0 ok, 1 finding or failure.*2 usage error/);
    cmds.forEach((c, i) => expect(results[i + 1].stdout).toContain(`Usage: sqlite-ha ${c}`));
    expect(results[2].stdout).toContain('--metrics-port <[host:]port>');
    expect(results[4].stdout).toContain('--yes');
  });

  test('etcd unreachable: a clear message and exit 1 within a few seconds, for every command', async () => {
    const port = await freePort(); // nothing listens there
    const closed = `http://127.0.0.1:${port}`;
    const env = { SQLITE_HA_ETCD_ENDPOINTS: closed, SQLITE_HA_ETCD_USER: 'root', SQLITE_HA_ETCD_PASSWORD: 'hunter2-secret' };
    // One at a time, so each command's own deadline is what ends it.
    const runs = [];
    for (const args of [['status'], ['status', '--json'], ['history'], ['monitor'], ['release', '--force', '--yes', 'x.db']]) {
      runs.push(await runCli(args, { env }));
    }
    // A CLI that ignored its deadline would be killed by runCli's 15 s timer (code null), so
    // exit code 1 is the proof that it gave up by itself; how fast is not a test's business.
    for (const r of runs) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^sqlite-ha: cannot reach etcd at ${closed.replace(/[.:/]/g, '\\$&')} \\(.*\\): .*(ECONNREFUSED|UNAVAILABLE)`));
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stderr + r.stdout).not.toContain('hunter2-secret');
      expect(r.stdout).toBe('');
    }
  });

  test('etcd that accepts connections but never answers: exit 1 at the deadline', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await runCli(['status', '--endpoints', `127.0.0.1:${port}`, '--timeout', '1000']);
      expect(r.code).toBe(1); // not null: it exited at its own deadline, before runCli's kill timer
      expect(r.stderr).toMatch(/^sqlite-ha: cannot reach etcd at http:\/\/127\.0\.0\.1:\d+ \(reading \/sqlite-ha\): /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      sockets.forEach((s) => s.destroy());
      server.close();
    }
  });
});

describe('doctor', () => {
  interface Report { ok: boolean; findings: { check: string; verdict: string; summary: string; advice: string | null; data?: Record<string, unknown> }[] }
  const finding = (rep: Report, check: string) => rep.findings.find((f) => f.check === check)!;

  test('a local directory: filesystem, trusted locks, a new file, fsync, lease defaults; no etcd given', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'doc-'));
    const r = await runCli(['doctor', '--json', path.join(sub, 'fresh.db')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Report;
    const mount = mountFor(fs.realpathSync(sub) + '/fresh.db', parseMounts(fs.readFileSync('/proc/mounts', 'utf8')));
    expect(judgeMount(mount).trusted).toBe(true); // the test's own premise: tmpdir is local
    expect(finding(rep, 'directory').verdict).toBe('ok');
    expect(finding(rep, 'filesystem')).toMatchObject({ verdict: 'ok', data: { fsType: mount.fsType, mountPoint: mount.mountPoint } });
    expect(finding(rep, 'locks')).toMatchObject({ verdict: 'ok', data: { trusted: true } });
    expect(finding(rep, 'database')).toMatchObject({ verdict: 'ok' });
    expect(finding(rep, 'database').summary).toMatch(/does not exist yet/);
    expect(finding(rep, 'fsync').data).toMatchObject({ samples: 20 });
    expect(['ok', 'warn']).toContain(finding(rep, 'fsync').verdict);
    expect(finding(rep, 'clock')).toMatchObject({ verdict: 'skip' });
    expect(finding(rep, 'clock').summary).toMatch(/no etcd endpoints given/);
    expect(finding(rep, 'lease')).toMatchObject({ data: { leaseTtlMs: 5000, safetyMarginMs: 1000 } });
    expect(fs.readdirSync(sub)).toEqual([]); // the fsync scratch file is gone

    const text = await runCli(['doctor', path.join(sub, 'fresh.db')]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ {2}ok {4}locks {7}cross-host locks can be trusted/m);
    expect(text.stdout).toMatch(/0 failed/);
  });

  test('an existing sqlite-ha file, a WAL file, a bad lease setting, and clock and etcd checks', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'doc-'));
    const good = path.join(sub, 'good.db');
    const g = new Database(good);
    g.pragma('journal_mode = TRUNCATE');
    g.transaction(() => {
      ensureMetaTable(g); // the library's own schema
      g.prepare(`UPDATE ${META_TABLE} SET fence = 7, txid = 3 WHERE id = 1`).run();
    })();
    g.close();
    const r = await runCli(['doctor', '--json', good, '--endpoints', eps.join(',')]);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.findings.filter((f) => f.verdict === 'fail')).toEqual([]);
    expect(r.code).toBe(0);
    expect(finding(rep, 'database')).toMatchObject({ verdict: 'ok', data: { fence: 7, txid: 3, format: 'rollback journal' } });
    expect(finding(rep, 'etcd')).toMatchObject({ verdict: 'ok', data: { version: expect.stringMatching(/^3\./) } });
    const clock = finding(rep, 'clock');
    expect(clock.verdict).toBe('ok'); // etcd runs on this host: same clock
    expect(Math.abs(clock.data!.offsetMs as number)).toBeLessThan(250);

    const wal = path.join(sub, 'wal.db');
    const w = new Database(wal);
    w.pragma('journal_mode = WAL');
    w.exec('CREATE TABLE t (x)');
    w.close();
    const rw = await runCli(['doctor', '--json', wal]);
    expect(rw.code).toBe(1);
    const wrep = JSON.parse(rw.stdout) as Report;
    expect(wrep.ok).toBe(false);
    expect(finding(wrep, 'database')).toMatchObject({ verdict: 'fail', summary: 'the file is in WAL format' });
    expect(finding(wrep, 'database').advice).toMatch(/journal_mode=TRUNCATE/);

    const ttl = await runCli(['doctor', '--json', good, '--lease-ttl-ms', '1500']);
    expect(ttl.code).toBe(1);
    expect(finding(JSON.parse(ttl.stdout) as Report, 'lease')).toMatchObject({ verdict: 'fail' });

    const nodir = await runCli(['doctor', path.join(sub, 'missing', 'x.db')]);
    expect(nodir.code).toBe(1);
    expect(nodir.stdout).toMatch(/fail {2}directory .*does not exist/);
  });

  test('a FUSE (sshfs) mount, given as the mount table: locks not trusted, lockless mode; a holder in another mode fails', async () => {
    const sub = fs.realpathSync(fs.mkdtempSync(path.join(dir, 'doc-')));
    const mounts = path.join(dir, `mounts-${Date.now()}`);
    fs.writeFileSync(mounts, `/dev/vda1 / ext4 rw,relatime 0 0\nuser@fileserver:/export ${sub} fuse.sshfs rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0\n`);
    const env = { SQLITE_HA_MOUNTS_FILE: mounts };
    const r = await runCli(['doctor', path.join(sub, 'app.db')], { env });
    expect(r.stdout).toMatch(/ok {4}filesystem {2}fuse\.sshfs from user@fileserver:\/export/);
    expect(r.stdout).toMatch(/warn {2}locks {7}cross-host locks cannot be trusted: .*FUSE filesystem.*lockless mode \(locks: 'none'\)/);
    expect(r.stdout).toMatch(/-> for the faster trusted mode and the full better-sqlite3 surface: use NFS with locking/);
    expect(r.stdout).not.toMatch(/when it is available/);
    expect(r.stdout).toMatch(/0 failed, 1 warnings/);
    expect(r.code).toBe(0);

    // The last holder of this database ran it with trusted locks: mixing modes is a failure.
    const prefix = '/t-doctor';
    cluster.etcdctl(['put', `${prefix}/shared.db/info`, JSON.stringify({ path: '/srv/nfs/shared.db', locks: 'trusted', journalMode: 'TRUNCATE', leaseTtlMs: 4000, node: 'web-9' })]);
    const m = await runCli(['doctor', '--json', '--name', 'shared.db', path.join(sub, 'app.db'), '--endpoints', eps.join(','), '--prefix', prefix], { env });
    expect(m.code).toBe(1);
    const rep = JSON.parse(m.stdout) as Report;
    expect(finding(rep, 'locks')).toMatchObject({ verdict: 'fail', data: { trusted: false, mode: 'none', holderMode: 'trusted' } });
    expect(finding(rep, 'locks').summary).toMatch(/web-9, the last holder, runs it with locks 'trusted'/);
    expect(finding(rep, 'lease')).toMatchObject({ data: { leaseTtlMs: 4000, safetyMarginMs: 1000 } });
    expect(finding(rep, 'lease').summary).toMatch(/from the info record written by web-9/);
  });
});

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('metrics request timed out')));
    req.on('error', reject);
  });
}
