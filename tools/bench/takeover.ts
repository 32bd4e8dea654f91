/**
 * 8. Lockless unclean takeover by database size (issue 10 defect 2, issue 11 item 6). On a private
 * sshfs export (two mounts = two hosts without shared locks), per size: a database of that size
 * (zero-filled blob pages, written on the server's disk), a holder on mount 0 that acquires and
 * commits, a standby on mount 1 queued behind it; the holder gets SIGKILL. Takeover time = the
 * kill → the standby's first commit acknowledged: etcd expires the dead lease (≤ TTL), the standby
 * waits out that TTL plus the margin, moves the file to a new inode (a copy through the mount:
 * no reflink on sshfs), raises the fence and publishes. Target: ≤ 2 × TTL + 5 s.
 *
 * Baseline in the same run: a raw copy of the same file through the same mount (fs.copyFile), the
 * part of the takeover that grows with the size; reported as takeover − 2 × TTL ÷ raw copy.
 */
import * as fs from 'fs';
import * as path from 'path';
import { SshfsExport } from '../cluster/sshfs';
import { DEFAULTS } from '../../src/options';
import { BenchContext, createDatabase, now, openRaw } from './env';
import { Figure, figure } from './report';

const MB = 1024 * 1024;
const BENCH = 'takeover';

/** Grows a bench database to about `mb` MB with zero-filled blob pages (fast: on the server's disk). */
function growTo(file: string, mb: number): void {
  createDatabase(file);
  const db = openRaw(file);
  try {
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE IF NOT EXISTS ballast (id INTEGER PRIMARY KEY, b BLOB)');
    const ins = db.prepare('INSERT INTO ballast (b) VALUES (zeroblob(?))');
    for (let left = mb; left > 0; left -= 50) ins.run(Math.min(50, left) * MB);
  } finally {
    db.close();
  }
}

export async function benchTakeover(ctx: BenchContext): Promise<Figure[]> {
  if (!SshfsExport.available()) {
    throw new Error('the takeover benchmark needs sshfs, /usr/sbin/sshd, ssh-keygen and /dev/fuse (and root for sshd and FUSE)');
  }
  const ttl = DEFAULTS.leaseTtlMs;
  const margin = DEFAULTS.safetyMarginMs;
  const exp = await SshfsExport.start({ mounts: 2 });
  const figures: Figure[] = [];
  try {
    for (const mb of ctx.settings.takeoverSizesMb) {
      const name = `takeover-${mb}mb.db`;
      growTo(path.join(exp.exportDir, name), mb);
      const sizeMb = fs.statSync(path.join(exp.exportDir, name)).size / MB;
      // Raw baseline: the same file copied through the same mount, then removed.
      const copyStart = now();
      await fs.promises.copyFile(path.join(exp.mounts[1], name), path.join(exp.mounts[1], `${name}.rawcopy`));
      const rawCopyMs = now() - copyStart;
      fs.rmSync(path.join(exp.exportDir, `${name}.rawcopy`), { force: true });
      const takeoverMs = await oneTrial(ctx, exp, name);
      ctx.log(`  ${sizeMb.toFixed(0)} MB: takeover ${takeoverMs.toFixed(0)} ms, raw copy ${rawCopyMs.toFixed(0)} ms`);
      const id = `takeover.${mb}mb`;
      figures.push(
        figure({
          bench: BENCH, id, label: `lockless unclean takeover, ${sizeMb.toFixed(0)} MB on sshfs: SIGKILL → first commit (TTL ${ttl} ms)`,
          unit: 'ms', value: takeoverMs, spread: null, n: 1, samples: [takeoverMs], target: { op: '<=', value: 2 * ttl + 5000 },
          note: `includes etcd expiring the dead lease (≤ TTL), the standby's wait of ${ttl + margin} ms (TTL + margin) and the move`,
        }),
        figure({
          bench: BENCH, id: `${id}.move_vs_raw_copy`, label: '  (takeover − 2 × TTL) ÷ raw copy through the mount', unit: 'x',
          value: (takeoverMs - 2 * ttl) / rawCopyMs, spread: null, n: 1, samples: [],
          note: `raw fs.copyFile of the same file through mount 1: ${rawCopyMs.toFixed(0)} ms`,
        }),
      );
    }
  } finally {
    await exp.stop();
  }
  return figures;
}

async function oneTrial(ctx: BenchContext, exp: SshfsExport, name: string): Promise<number> {
  const prefix = `${ctx.prefix}/takeover/${name}`;
  const [holder, standby] = await ctx.pool.take(2);
  try {
    const options = { acquireTimeoutMs: 600000 };
    await holder.call('init', { db: path.join(exp.mounts[0], name), endpoints: ctx.endpoints, prefix, nodeId: 'holder', options });
    await holder.call('acquire', {}, 120000);
    await holder.call('write', { rows: 1 }, 120000);
    await standby.call('init', { db: path.join(exp.mounts[1], name), endpoints: ctx.endpoints, prefix, nodeId: 'standby', options });
    const write = standby.call<{ at: number }>('write', { rows: 1 }, 600000);
    write.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500)); // queued behind the holder
    const killedAt = now();
    await holder.kill('SIGKILL');
    const { at } = await write;
    return at - killedAt;
  } finally {
    await holder.kill();
    await ctx.pool.give([holder, standby]);
  }
}
