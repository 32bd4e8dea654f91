/**
 * Runs once inside the first client VM, before the workers: the chaos schema and accounts,
 * written through the library like every other write; prints {"locks": ...} on stdout.
 *
 *   node build/tools/lab/guest-setup.js '{"db":..., "endpoints":[...], "prefix":..., "bank":{...}, ...timing}'
 */
import { open } from '../../src/index';
import { setupTransaction } from '../chaos/schema';

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]);
  const db = await open(cfg.db, {
    coordinator: { kind: 'etcd', endpoints: cfg.endpoints, prefix: cfg.prefix },
    nodeId: 'setup',
    leaseTtlMs: cfg.leaseTtlMs, safetyMarginMs: cfg.safetyMarginMs, rpcTimeoutMs: cfg.rpcTimeoutMs,
    acquireTimeoutMs: cfg.acquireTimeoutMs, busyTimeoutMs: cfg.busyTimeoutMs, idleReleaseMs: cfg.idleReleaseMs,
    ...(cfg.locks ? { locks: cfg.locks } : {}),
  });
  // Under TCG load the first write can miss its commit deadline: LeaseLostError says nothing was
  // committed, so trying again is exact (bounded).
  for (let attempt = 1; ; attempt++) {
    try {
      await db.write((c) => setupTransaction(c, cfg.bank));
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_HA_LEASE_LOST' || attempt >= 3) throw err;
    }
  }
  const locks = db.locks;
  await db.close();
  process.stdout.write(JSON.stringify({ locks }) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`guest-setup: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  },
);
