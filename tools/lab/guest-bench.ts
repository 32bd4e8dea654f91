/**
 * The lab benchmark's measuring side, run inside one client VM on the NFS mount: sqlite-ha
 * throughput against raw better-sqlite3 on the same mount, in the same process, in alternating
 * trials (tools/bench/env.ts: paired(), the same pinned pragmas, the same one-row transaction).
 * Under TCG absolute rates mean little; the ratios are the result. Prints one JSON line.
 *
 *   node build/tools/lab/guest-bench.js '{"dir":"/mnt/nfs","endpoints":[...],"prefix":...,"trialMs":8000,"pairs":2,...timing}'
 */
import * as path from 'path';
import { open } from '../../src/index';
import { createDatabase, INSERT, openRaw, paired, PAYLOAD, SELECT, timedAsync, timedSync } from '../bench/env';

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]);
  const rawFile = path.join(cfg.dir, 'bench-raw.db');
  const haFile = path.join(cfg.dir, 'bench-ha.db');
  createDatabase(rawFile, 100);
  createDatabase(haFile, 100);
  const raw = openRaw(rawFile);
  const rawIns = raw.prepare(INSERT);
  const rawRead = openRaw(rawFile, { readonly: true });
  const rawSel = rawRead.prepare(SELECT);
  const ha = await open(haFile, {
    coordinator: { kind: 'etcd', endpoints: cfg.endpoints, prefix: cfg.prefix }, nodeId: 'bench',
    leaseTtlMs: cfg.leaseTtlMs, safetyMarginMs: cfg.safetyMarginMs, rpcTimeoutMs: cfg.rpcTimeoutMs,
    acquireTimeoutMs: cfg.acquireTimeoutMs, busyTimeoutMs: cfg.busyTimeoutMs,
  });
  try {
    await ha.write((c) => c.prepare(INSERT).run(0, PAYLOAD)); // take the lease once: steady-state writes
    const trialMs = cfg.trialMs as number;
    const writes = await paired(1, cfg.pairs, () => timedSync(trialMs, () => void rawIns.run(0, PAYLOAD)), () =>
      timedAsync(trialMs, async () => {
        await ha.write((c) => c.prepare(INSERT).run(0, PAYLOAD));
        return 1;
      }));
    let id = 0;
    const reads = await paired(1, cfg.pairs, () => timedSync(trialMs, () => void rawSel.get((id++ % 100) + 1)), () =>
      timedAsync(trialMs, async () => {
        await ha.read((c) => c.prepare(SELECT).get((id++ % 100) + 1));
        return 1;
      }));
    const out = {
      writes: { ratio: writes.ratios[0], rawPerS: writes.rawRates[0], haPerS: writes.haRates[0] },
      reads: { ratio: reads.ratios[0], rawPerS: reads.rawRates[0], haPerS: reads.haRates[0] },
      locks: ha.locks,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await ha.close();
    raw.close();
    rawRead.close();
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error)?.stack ?? err}\n`);
  process.exit(1);
});
