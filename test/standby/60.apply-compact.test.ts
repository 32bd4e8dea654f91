/**
 * Applying is crash-safe, and retention folds old segments into a snapshot. A child process
 * applying a long stretch of the chain is SIGKILLed at varying moments; after recovery the copy
 * is byte-identical to the primary at the txid its state names (never torn) and passes
 * integrity_check. Needs `npm run build` (the child runs dist/).
 */
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { open, StandbyTargetError } from '../../src';
import { materialise, readApplied, recoverUndo } from '../../src/standby/apply';
import { Chain } from '../../src/standby/chain';
import { compact } from '../../src/standby/compact';
import { buildFromChain } from '../../src/standby/promote';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir, sleep } from '../helpers/tmp';
import { integrity } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-sbapply-');
const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

async function chainOf(writes: number, rows: number, retainSegments?: number) {
  const primary = path.join(tmp.dir(), 'primary');
  const standby = path.join(tmp.dir(), 'standby');
  fs.mkdirSync(primary);
  fs.mkdirSync(standby);
  const file = path.join(primary, 'app.db');
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: `/ap-${path.basename(tmp.dir())}` },
    standby: { dir: standby, mode: 'sync', ...(retainSegments ? { retainSegments } : {}) },
    idleReleaseMs: 60000,
  });
  const hashes = new Map<number, string>();
  for (let i = 1; i <= writes; i++) {
    await db.write((c) => {
      c.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)');
      if (i === 1) for (let r = 0; r < rows; r++) c.prepare('INSERT INTO t (v) VALUES (randomblob(1000))').run();
      c.prepare('UPDATE t SET v = randomblob(1000) WHERE id % 2 = ?').run(i % 2);
    });
    hashes.set(i, sha(file));
  }
  return { db, file, standby, chain: new Chain(standby, 'app.db'), hashes };
}

test('a copy killed mid-apply recovers to an applied txid, byte-identical, never torn', async () => {
  const { db, file, standby, chain, hashes } = await chainOf(40, 3000);
  tmp.defer(() => db.close());
  await (db as unknown as { standbyWriter: { close(): Promise<void> } }).standbyWriter.close(); // no background apply
  const copy = path.join(tmp.dir(), 'copy.db');
  materialise(chain, { out: copy, target: { txid: 1 } });
  const base = fs.readFileSync(copy);
  const baseState = fs.readFileSync(`${copy}.applied.json`);
  const script = `const {materialise}=require(${JSON.stringify(path.resolve('dist/standby/apply'))});` +
    `const {Chain}=require(${JSON.stringify(path.resolve('dist/standby/chain'))});` +
    `materialise(new Chain(${JSON.stringify(standby)},'app.db'),{out:${JSON.stringify(copy)}});`;
  const outcomes: string[] = [];
  // Each kill lands a little after the undo log appears: inside the window where pages are written.
  for (const delayMs of [0, 1, 2, 5, 10, 20, 40, 80]) {
    fs.writeFileSync(copy, base);
    fs.writeFileSync(`${copy}.applied.json`, baseState);
    fs.rmSync(`${copy}.undo`, { force: true });
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', r));
    const deadline = Date.now() + 20000;
    while (!fs.existsSync(`${copy}.undo`) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    await sleep(delayMs);
    child.kill('SIGKILL');
    await exited;
    outcomes.push(recoverUndo(copy));
    const state = readApplied(copy)!;
    expect(sha(copy)).toBe(hashes.get(state.txid));
    expect(integrity(copy)).toBe('ok');
  }
  // Some kills landed inside the apply window (the undo log was there to roll back).
  expect(outcomes).toContain('rolled-back');
  const end = materialise(chain, { out: copy, verifyChecksum: true });
  expect(end.txid).toBe(40);
  expect(sha(copy)).toBe(sha(file));
}, 240000);

test('compaction folds old segments into a snapshot; restore still reaches every kept txid', async () => {
  const { db, chain, hashes, standby } = await chainOf(30, 50);
  tmp.defer(() => db.close());
  await (db as unknown as { standbyWriter: { close(): Promise<void> } }).standbyWriter.close();
  const removed = compact(chain, { retainSegments: 10, retainMs: 3_600_000 });
  expect(removed).toBeGreaterThan(15);
  const gen = chain.current()!;
  const entries = chain.entries(gen);
  expect(entries.filter((e) => e.kind === 'snap')).toHaveLength(1);
  expect(entries.filter((e) => e.kind === 'seg').length).toBeLessThanOrEqual(11);
  for (const txid of [21, 25, 30]) {
    const out = path.join(tmp.dir(), `r${txid}.db`);
    expect(buildFromChain(standby, out, { txid }).txid).toBe(txid);
    expect(sha(out)).toBe(hashes.get(txid));
  }
  expect(() => buildFromChain(standby, path.join(tmp.dir(), 'old.db'), { txid: 5 })).toThrow(StandbyTargetError);
  // Age: everything older than now folds, the newest state stays restorable.
  compact(chain, { retainSegments: 1000, retainMs: 1000 }, Date.now() + 10_000);
  const last = path.join(tmp.dir(), 'last.db');
  expect(buildFromChain(standby, last).txid).toBe(30);
  expect(sha(last)).toBe(hashes.get(30));
}, 120000);
