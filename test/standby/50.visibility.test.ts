/**
 * Where operators see the standby: `sqlite-ha status --json` and the Prometheus metrics (both from
 * the holder's report in etcd), and `doctor --standby` on the device question. The standby is a
 * 4 MiB tmpfs this test mounts, so it is on another device than the primary; filling it shows the
 * error in status. Needs root (mount) and `npm run build`.
 */
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { open } from '../../src';
import { readClusterState } from '../../src/cli/cluster-state';
import { createClient } from '../../src/cli/connection';
import { ClusterMetrics } from '../../src/cli/metrics';
import { resolveConnection } from '../../src/cli/settings';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir, waitUntil } from '../helpers/tmp';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-sbvis-');
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

/** Runs the CLI without blocking the event loop (this process holds a lease meanwhile). */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60000 }, (err, out, errText) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out, err: errText }));
  });
}

test('status and metrics show the standby txid, lag and last error; doctor judges the standby device', async () => {
  const mnt = path.join(tmp.dir(), 'standby');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  tmp.defer(() => execFileSync('umount', ['-l', mnt]));
  const primary = path.join(tmp.dir(), 'primary');
  fs.mkdirSync(primary);
  const file = path.join(primary, 'app.db');
  const prefix = `/vis-${path.basename(tmp.dir())}`;
  const endpoints = etcd.cluster().endpoints;
  const db = await open(file, { coordinator: { kind: 'etcd', endpoints, prefix }, standby: { dir: mnt, mode: 'async', maxLagMs: 100 }, idleReleaseMs: 60000 });
  tmp.defer(() => db.close());
  const write = () => db.write((c) => {
    c.exec('CREATE TABLE IF NOT EXISTS t (v BLOB)');
    c.prepare('INSERT INTO t VALUES (randomblob(3000))').run();
  });
  for (let i = 0; i < 5; i++) await write();
  const settings = resolveConnection({ endpoints: endpoints.join(','), prefix }, {});
  const client = createClient(settings);
  tmp.defer(() => client.close());
  const standbyOf = async () => (await readClusterState(client, settings)).databases.find((d) => d.name === 'app.db')?.standby ?? null;
  await waitUntil(() => db.standby!.txid === 5, 10000);
  let sb = await standbyOf();
  for (let i = 0; i < 50 && sb?.txid !== 5; i++) {
    await new Promise((r) => setTimeout(r, 100));
    sb = await standbyOf();
  }
  expect(sb).toMatchObject({ txid: 5, behindTxids: 0, lastError: null, mode: 'async', dir: mnt });
  const status = await cli(['--endpoints', endpoints.join(','), '--prefix', prefix, 'status', '--json']);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.out).databases[0].standby).toMatchObject({ txid: 5, lastError: null });
  expect((await cli(['--endpoints', endpoints.join(','), '--prefix', prefix, 'status'])).out).toMatch(/STANDBY[\s\S]*txid 5 \(0 behind\)/);

  // A full standby: the error reaches etcd, status and the metrics.
  const filler = path.join(mnt, 'filler');
  const fd = fs.openSync(filler, 'w');
  try {
    for (let i = 0; i < 100; i++) fs.writeSync(fd, Buffer.alloc(64 * 1024));
  } catch {
    /* ENOSPC: full */
  } finally {
    fs.closeSync(fd);
  }
  for (let i = 0; i < 3; i++) await write();
  for (let i = 0; i < 100 && !sb?.lastError; i++) {
    await new Promise((r) => setTimeout(r, 100));
    sb = await standbyOf();
  }
  expect(sb!.lastError?.code).toBe('SQLITE_HA_STANDBY_WRITE_FAILED');
  expect(sb!.behindTxids).toBeGreaterThan(0);
  const view = await readClusterState(client, settings);
  const metrics = new ClusterMetrics(() => view);
  metrics.refresh();
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/sqlite_ha_standby_error\{db="app.db"\} 1/);
  expect(text).toMatch(/sqlite_ha_standby_txid\{db="app.db"\} 5/);
  expect(text).toMatch(/sqlite_ha_standby_behind_txids\{db="app.db"\} [1-9]/);
  fs.rmSync(filler);

  // doctor: the tmpfs is another device; a directory beside the database is not.
  const ok = JSON.parse((await cli(['doctor', file, '--standby', mnt, '--json', '--fsync-samples', '1'])).out);
  expect(ok.findings.find((f: { check: string }) => f.check === 'standby')).toMatchObject({ verdict: 'ok' });
  const beside = path.join(tmp.dir(), 'beside');
  fs.mkdirSync(beside);
  const warn = JSON.parse((await cli(['doctor', file, '--standby', beside, '--json', '--fsync-samples', '1'])).out);
  expect(warn.findings.find((f: { check: string }) => f.check === 'standby')).toMatchObject({ verdict: 'warn', data: { sameDevice: true } });
}, 120000);
