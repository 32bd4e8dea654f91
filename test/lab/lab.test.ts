/**
 * The NFS lab: (a) its pure parts on captured or hand-made input (the contract and counter checks,
 * the module closure of the initramfs, the clock-offset choice, the ganesha config); (b) one short
 * real run (`npm run build:tools` first): 2 client VMs on nfs-ganesha, the counter with hand-overs
 * and one SIGKILL of the holder's process, every history checked. Generous timeouts: the VMs are
 * TCG-emulated on a shared machine (booting and loading the library take minutes under load).
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { FinalDb } from '../../tools/chaos/checker';
import type { Op } from '../../tools/chaos/history';
import { contractViolations, counterCheck, countHandovers, firstAckAfter, freshViolations, handoverTimes, storageFaults } from '../../tools/lab/checks';
import { clockOffset } from '../../tools/lab/control';
import { ganeshaConfig } from '../../tools/lab/ganesha';
import { moduleClosure } from '../../tools/lab/initramfs';
import type { LabReport } from '../../tools/lab/main';

const root = path.resolve(__dirname, '..', '..');

function op(id: string, fields: Partial<Op>): Op {
  const [node, inc, seq] = id.split('.');
  return { id, node, inc: Number(inc), seq: Number(seq), op: 'append', value: id, call: 0, ret: 1, outcome: 'ok', crashed: false, txid: null, fence: null, ...fields } as Op;
}

const emptyDb = (values: string[]): FinalDb => ({
  integrity: 'ok', meta: { fence: 1, txid: values.length }, accounts: [], transfers: [], commits: [],
  appends: values.map((v, i) => ({ rowid: i + 1, value: v, node: v.split('.')[0], txid: i + 1, fence: 1 })),
});

describe('lab checks (pure)', () => {
  test('a raw SQLite error from a write or a read is a contract violation; typed errors and BUSY are not', () => {
    const ops = [
      op('n1.1.1', { outcome: 'unknown', error: { code: 'SQLITE_CORRUPT', message: 'database disk image is malformed' } }),
      op('n1.1.2', { op: 'read', outcome: 'fail', error: { code: 'SQLITE_READONLY_ROLLBACK', message: 'x' } }),
      op('n2.1.1', { outcome: 'unknown', error: { code: 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN', message: 'x' } }),
      op('n2.1.2', { outcome: 'fail', error: { code: 'SQLITE_BUSY', message: 'x' } }),
      op('n2.1.3', { outcome: 'unknown', crashed: true }),
    ];
    const r = contractViolations(ops);
    expect(r.rawByCode).toEqual({ SQLITE_CORRUPT: 1, SQLITE_READONLY_ROLLBACK: 1 });
    expect(r.violations).toHaveLength(2);
    expect(contractViolations(ops.slice(2)).violations).toEqual([]);
  });

  test('fresh: a write failing on a storage error is a violation unless the run injected NFS faults', () => {
    const ops = [
      op('n1.1.1', { outcome: 'fail', error: { code: 'SQLITE_HA_STORAGE_FAULT', message: 'reading the meta row failed with SQLITE_CORRUPT (database disk image is malformed)' } }),
      op('n1.1.2', { outcome: 'unknown', error: { code: 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN', message: 'commit outcome unknown: SQLITE_IOERR_FSYNC' } }),
      op('n2.1.1', { outcome: 'fail', error: { code: 'SQLITE_HA_LEASE_LOST', message: 'x' } }),
      op('n2.1.2', { outcome: 'unknown', crashed: true, error: { code: 'SQLITE_HA_STORAGE_FAULT', message: 'SQLITE_IOERR' } }),
    ];
    expect(storageFaults(ops).byCode).toEqual({ 'SQLITE_HA_STORAGE_FAULT(SQLITE_CORRUPT)': 1, 'SQLITE_HA_COMMIT_OUTCOME_UNKNOWN(SQLITE_IOERR_FSYNC)': 1 });
    expect(freshViolations(ops, false)).toHaveLength(1);
    expect(freshViolations(ops, false)[0].message).toMatch(/^2 write\(s\) failed/);
    expect(freshViolations(ops, true)).toEqual([]);
    expect(freshViolations(ops.slice(2), false)).toEqual([]);
  });

  test('the counter is exact: acked plus unknown-committed; a lost or extra row is a violation', () => {
    const ops = [op('n1.1.1', {}), op('n1.1.2', {}), op('n2.1.1', { outcome: 'unknown' }), op('n2.1.2', { outcome: 'unknown' })];
    expect(counterCheck(ops, emptyDb(['n1.1.1', 'n1.1.2', 'n2.1.1'])).violations).toEqual([]);
    expect(counterCheck(ops, emptyDb(['n1.1.1', 'n1.1.2', 'n2.1.1'])).stats).toEqual({ rows: 3, acked: 2, unknownCommitted: 1, expected: 3 });
    expect(counterCheck(ops, emptyDb(['n1.1.1', 'n2.1.1'])).violations).toHaveLength(1);
    expect(counterCheck(ops, emptyDb(['n1.1.1', 'n1.1.2', 'n2.1.1', 'n3.1.1'])).violations).toHaveLength(1);
  });

  test('hand-overs count moves between different nodes; the first ack after a fault skips the victim', () => {
    expect(countHandovers([{ at: 1, node: 'n1' }, { at: 3, node: 'n1' }, { at: 2, node: 'n2' }, { at: 4, node: 'n2' }])).toBe(3);
    const ops = [op('n1.1.1', { call: 90, ret: 110 }), op('n2.1.1', { call: 95, ret: 130 }), op('n2.1.2', { call: 131, ret: 150 })];
    expect(firstAckAfter(ops, 100, 'n1')?.id).toBe('n2.1.1');
    expect(firstAckAfter(ops, 100, null)?.id).toBe('n1.1.1');
  });

  test('hand-over time: from the release to the next holder\'s first ack; same-node re-acquisitions are not hand-overs', () => {
    const releases = [{ at: 100, node: 'n1' }, { at: 300, node: 'n2' }, { at: 500, node: 'n2' }];
    const acquisitions = [{ at: 50, node: 'n1' }, { at: 150, node: 'n2' }, { at: 400, node: 'n2' }, { at: 600, node: 'n1' }];
    const acks = [{ at: 90, node: 'n1' }, { at: 180, node: 'n2' }, { at: 420, node: 'n2' }, { at: 650, node: 'n1' }];
    expect(handoverTimes(releases, acquisitions, acks)).toEqual([80, 150]);
  });

  test('initramfs modules load dependencies first, built-ins are skipped', () => {
    const dep = [
      'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko',
      'kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko',
      'kernel/fs/netfs/netfs.ko:',
      'kernel/net/9p/9pnet.ko:',
      'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
      'kernel/drivers/virtio/virtio_ring.ko:',
      'kernel/drivers/virtio/virtio.ko:',
    ].join('\n');
    const order = moduleClosure(dep, ['9pnet_virtio', '9p', 'virtio_pci_builtin']).map((m) => path.basename(m));
    expect(new Set(order).size).toBe(order.length);
    expect(order.indexOf('9pnet.ko')).toBeLessThan(order.indexOf('9pnet_virtio.ko'));
    expect(order.indexOf('virtio_ring.ko')).toBeLessThan(order.indexOf('9pnet_virtio.ko'));
    expect(order.indexOf('netfs.ko')).toBeLessThan(order.indexOf('fscache.ko'));
    expect(order.indexOf('fscache.ko')).toBeLessThan(order.indexOf('9p.ko'));
    expect(order).toHaveLength(7);
  });

  test('the clock offset comes from the lowest-round-trip sample near the time asked for', () => {
    const samples: [number, number, number][] = [[1000, 50, 300], [2000, 10, 20], [9000, -400, 5]];
    expect(clockOffset(samples, 1500)).toBe(-400); // five nearest include all three; the fastest wins
    expect(clockOffset([], 5)).toBe(0);
  });

  test('ganesha config: NFSv4 only on the loopback, the port and lease asked for, root not squashed', () => {
    const c = ganeshaConfig({ exportDir: '/x/export', port: 40123, leaseSeconds: 20, recoveryDir: '/x/rec' });
    expect(c).toMatch(/Protocols = 4;/);
    expect(c).toMatch(/Bind_addr = 127\.0\.0\.1;/);
    expect(c).toMatch(/NFS_Port = 40123;/);
    expect(c).toMatch(/Lease_Lifetime = 20;/);
    expect(c).toMatch(/Squash = No_Root_Squash;/);
    expect(c).toMatch(/Path = \/x\/export;/);
  });

  test('ganesha config with NFSv3: v3 and v4 on the loopback, MOUNT on the port asked for over TCP, no NLM, v3 mounts by the pseudo path', () => {
    const c = ganeshaConfig({ exportDir: '/x/export', port: 40123, leaseSeconds: 20, recoveryDir: '/x/rec', nfsv3: true, mntPort: 40124 });
    expect(c.match(/Protocols = 3, 4;/g)).toHaveLength(2); // server and export
    expect(c).toMatch(/MNT_Port = 40124;/);
    expect(c).toMatch(/Enable_UDP = false;/);
    expect(c).toMatch(/Enable_NLM = false;/);
    expect(c).toMatch(/Mount_Path_Pseudo = true;/);
    expect(c).toMatch(/Bind_addr = 127\.0\.0\.1;/);
    expect(ganeshaConfig({ exportDir: '/x/export', port: 40123, leaseSeconds: 20, recoveryDir: '/x/rec' })).not.toMatch(/MNT_Port|Protocols = 3/);
  });
});

describe('lab run (real VMs)', () => {
  test('2 VMs on ganesha: locks cross hosts, counter with hand-overs and a SIGKILL failover passes every check, doctor on the mount', async () => {
    const reportFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-labtest-')), 'report.json');
    const child = spawn(process.execPath, [
      path.join(root, 'build/tools/lab/main.js'), '--nodes', '2', '--server', 'ganesha', '--scenario', 'counter',
      '--duration', '45', '--failover', '--seed', '14', '--lock-probe', '--doctor', '--report', reportFile, '--quiet',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    if (code !== 0) console.log(out + '\n' + err); // eslint-disable-line no-console
    expect(code).toBe(0);
    expect(out.trim().split('\n').pop()).toMatch(/^PASS: /);
    const report = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as LabReport;
    fs.rmSync(path.dirname(reportFile), { recursive: true, force: true });
    expect(report.ok).toBe(true);
    expect(report.lab.handovers).toBeGreaterThanOrEqual(1);
    expect(report.lab.failoverMs.map((f) => f.kind)).toEqual(['process SIGKILL']);
    expect(report.lab.rawErrors).toEqual({});
    expect(report.lab.counter.rows).toBe(report.lab.counter.expected);
    expect(report.lab.counter.acked).toBeGreaterThan(0);
    expect(report.locks.nodeStarts).toEqual({ trusted: expect.any(Number) });
    expect(report.lab.storageFaults).toEqual({});
    // BEGIN EXCLUSIVE held on one VM makes the other's attempt SQLITE_BUSY; after the release it succeeds.
    expect(report.lab.lockProbe).toMatchObject({ whileHeld: 'SQLITE_BUSY', afterRelease: 'acquired' });
    // sqlite-ha doctor inside a VM on the real nfs4 mount: one verdict per NFS setting, locks trusted.
    const verdicts = Object.fromEntries(report.lab.doctor!.findings.filter((f) => f.check === 'nfs').map((f) => [f.summary.split(':')[0], f.verdict]));
    expect(Object.keys(verdicts).sort()).toEqual(['actimeo', 'delegations', 'hard', 'idmapping', 'locks', 'lookupcache', 'vers']);
    expect(verdicts).toMatchObject({ hard: 'ok', vers: 'ok', locks: 'ok', delegations: 'ok' }); // ganesha runs with Delegations = false
    expect(report.lab.doctor!.findings.find((f) => f.check === 'locks')?.verdict).toBe('ok');
    // Nothing of the run is left: no run dir, no process.
    expect(fs.existsSync(report.dir)).toBe(false);
  }, 15 * 60 * 1000);
});
