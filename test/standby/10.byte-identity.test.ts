/**
 * The standby through the library, against a real etcd: after every fenced transaction of a
 * randomized workload (small cache_size, so transactions spill), the copy materialised from the
 * chain is byte-identical to the primary and passes integrity_check.
 */
import * as fs from 'fs';
import * as path from 'path';
import { open } from '../../src';
import { Chain } from '../../src/standby/chain';
import { materialise } from '../../src/standby/apply';
import { useEtcd } from '../helpers/etcd';
import { useTmpDir } from '../helpers/tmp';
import { integrity, prng, randomWork, sameBytes } from './helpers';

const etcd = useEtcd();
const tmp = useTmpDir('sqlite-ha-standby-');

async function openWith(mode: 'sync' | 'async', cacheSize: number) {
  const primaryDir = path.join(tmp.dir(), 'primary');
  const standbyDir = path.join(tmp.dir(), 'standby');
  fs.mkdirSync(primaryDir);
  fs.mkdirSync(standbyDir);
  const file = path.join(primaryDir, 'app.db');
  const db = await open(file, {
    coordinator: { kind: 'etcd', endpoints: etcd.cluster().endpoints, prefix: `/bi-${path.basename(tmp.dir())}` },
    standby: { dir: standbyDir, mode, maxLagMs: 1000 },
    idleReleaseMs: 60000,
  });
  tmp.defer(() => db.close());
  db.pragma(`cache_size = ${cacheSize}`);
  return { db, file, chain: new Chain(standbyDir, 'app.db'), copy: path.join(standbyDir, 'app.db') };
}

test.each([
  ['sync', 1],
  ['sync', 2000],
  ['async', 1],
] as const)('mode %s, cache_size %d: byte-identical after each of 60 random transactions', async (mode, cacheSize) => {
  const { db, file, chain, copy } = await openWith(mode, cacheSize);
  const rnd = prng(cacheSize + mode.length);
  for (let i = 0; i < 60; i++) {
    await db.write((c) => randomWork(c, rnd));
    if (mode === 'async') await (db as unknown as { standbyWriter: { flush(): Promise<void> } }).standbyWriter.flush();
    const state = materialise(chain, { verifyChecksum: true });
    expect(state.txid).toBe(i + 1);
    expect(sameBytes(copy, file)).toBe(true);
    if (i % 10 === 0) expect(integrity(copy)).toBe('ok');
  }
  const s = db.standby!;
  expect(s.txid).toBe(60);
  expect(s.lastError).toBeNull();
  expect(s.snapshotsWritten).toBe(1);
  expect(integrity(copy)).toBe('ok');
}, 180000);
