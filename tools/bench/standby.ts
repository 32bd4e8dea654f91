/**
 * 8. The standby (src/standby): sequential 1-row `await db.write()` with a standby in async and in
 * sync mode, against sqlite-ha without a standby and raw better-sqlite3, in rotated rounds of one
 * run (env.ts rotated()); the standby directory is on the same disk here (say so when reading the
 * numbers: on a second volume the sync mode pays that volume's fsync). Then the async lag under a
 * sustained write load: for each commit, the time from its acknowledgement to its segment being
 * durable (p50, p99). Then promotion of a large database (1 GB; 100 MB with --quick): the standby's
 * snapshot of it, and `promote` (record, revoke, TTL wait, verified build) end to end.
 */
import * as fs from 'fs';
import * as path from 'path';
import { runPromote } from '../../src/cli/promote';
import { resolveConnection } from '../../src/cli/settings';
import { BenchContext, createDatabase, dbFile, INSERT, openHa, openRaw, PAYLOAD, rotated, sleep, timedAsync, timedSync } from './env';
import { Figure, figure } from './report';
import { median, overRuns, quantile } from './stats';

export async function benchStandby(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const quick = s.writeRuns <= 3;
  const figures: Figure[] = [];
  const dirFor = (n: string) => {
    const d = path.join(ctx.dir, `standby-${n}`);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  // ---- throughput ----------------------------------------------------------------------------
  const files = { raw: dbFile(ctx, 'sb-raw'), ha: dbFile(ctx, 'sb-ha'), async: dbFile(ctx, 'sb-async'), sync: dbFile(ctx, 'sb-sync') };
  for (const f of Object.values(files)) createDatabase(f);
  const raw = openRaw(files.raw);
  const rawIns = raw.prepare(INSERT);
  const ha = await openHa(ctx, files.ha, `${ctx.prefix}/sb-ha`, 'sb-ha');
  const asyncDb = await openHa(ctx, files.async, `${ctx.prefix}/sb-async`, 'sb-async', { standby: { dir: dirFor('async'), mode: 'async' } });
  const syncDb = await openHa(ctx, files.sync, `${ctx.prefix}/sb-sync`, 'sb-sync', { standby: { dir: dirFor('sync'), mode: 'sync' } });
  try {
    for (const d of [ha, asyncDb, syncDb]) {
      await d.acquire();
      await d.write((c) => void c.prepare(INSERT).run(0, PAYLOAD));
    }
    const seq = (d: typeof ha) => () => timedAsync(s.writeSliceMs, async () => {
      await d.write((c) => void c.prepare(INSERT).run(1, PAYLOAD));
      return 1;
    });
    const rates = await rotated(s.writeRuns, s.writePairs, {
      raw: () => timedSync(s.writeSliceMs, () => void rawIns.run(0, PAYLOAD)),
      ha: seq(ha),
      async: seq(asyncDb),
      sync: seq(syncDb),
    });
    const ratio = (a: number[], b: number[]) => a.map((v, i) => v / b[i]);
    for (const mode of ['async', 'sync'] as const) {
      figures.push(
        figure({
          bench: 'standby', id: `standby.${mode}.vs_ha`, label: `${mode} standby ÷ sqlite-ha without, sequential 1-row db.write`, unit: 'x',
          ...overRuns(ratio(rates[mode], rates.ha)), target: { op: '>=', value: mode === 'async' ? 0.8 : 0.5 },
        }),
        figure({
          bench: 'standby', id: `standby.${mode}.vs_raw`, label: `  ${mode} standby ÷ raw better-sqlite3`, unit: 'x',
          ...overRuns(ratio(rates[mode], rates.raw)),
        }),
        figure({ bench: 'standby', id: `standby.${mode}.rate`, label: `  ${mode} standby`, unit: 'txn/s', ...overRuns(rates[mode]) }),
      );
    }
    figures.push(
      figure({ bench: 'standby', id: 'standby.ha.rate', label: '  sqlite-ha without a standby', unit: 'txn/s', ...overRuns(rates.ha) }),
      figure({ bench: 'standby', id: 'standby.raw.rate', label: '  raw better-sqlite3', unit: 'txn/s', ...overRuns(rates.raw) }),
    );
    ctx.log(`  standby: async ${median(rates.async).toFixed(0)}/s, sync ${median(rates.sync).toFixed(0)}/s, none ${median(rates.ha).toFixed(0)}/s, raw ${median(rates.raw).toFixed(0)}/s`);

    // ---- lag under sustained load ---------------------------------------------------------------
    const ackedAt = new Map<number, number>();
    const lags: number[] = [];
    const onSegment = (pos: { txid: number }) => {
      const t = Date.now();
      for (const [txid, at] of ackedAt) {
        if (txid <= pos.txid) {
          lags.push(t - at);
          ackedAt.delete(txid);
        }
      }
    };
    (asyncDb.on as (e: string, l: (...a: any[]) => void) => unknown)('standby-segment', onSegment);
    const until = Date.now() + (quick ? 2000 : 8000);
    while (Date.now() < until) {
      await asyncDb.write((c) => void c.prepare(INSERT).run(2, PAYLOAD));
      ackedAt.set(asyncDb.standby!.capturedTxid!, Date.now());
    }
    for (let i = 0; i < 200 && ackedAt.size > 0; i++) await sleep(10);
    figures.push(
      figure({ bench: 'standby', id: 'standby.async.lag_p50', label: 'async lag under sustained writes, p50 (ack → segment durable)', unit: 'ms', value: quantile(lags, 0.5), spread: null, n: lags.length, samples: [], target: { op: '<=', value: 100 } }),
      figure({ bench: 'standby', id: 'standby.async.lag_p99', label: 'async lag, p99', unit: 'ms', value: quantile(lags, 0.99), spread: null, n: lags.length, samples: [], target: { op: '<=', value: 1000 }, note: 'maxLagMs default 1000' }),
    );
  } finally {
    raw.close();
    for (const d of [ha, asyncDb, syncDb]) await d.close();
  }

  // ---- promotion of a large database ---------------------------------------------------------
  const bytes = quick ? 100 << 20 : 1 << 30;
  const big = dbFile(ctx, 'sb-big');
  const bigStandby = dirFor('big');
  const prefix = `${ctx.prefix}/sb-big`;
  const db = await openHa(ctx, big, prefix, 'sb-big', { standby: { dir: bigStandby, mode: 'sync' }, leaseTtlMs: 2000, safetyMarginMs: 500 });
  let snapshotMs = 0;
  try {
    const rows = Math.ceil(bytes / (64 * 1024));
    // The data goes in before the standby's first tenure (a plain connection), as for an existing database.
    const pre = openRaw(big);
    pre.exec('CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY, b BLOB)');
    const ins = pre.prepare('INSERT INTO blob (b) VALUES (randomblob(65536))');
    for (let done = 0; done < rows;) {
      pre.transaction(() => {
        for (let i = 0; i < 256 && done < rows; i++, done++) ins.run();
      }).immediate();
      await sleep(0);
    }
    pre.close();
    const t0 = Date.now();
    await db.write((c) => void c.prepare('INSERT INTO blob (b) VALUES (randomblob(10))').run());
    snapshotMs = Date.now() - t0;
  } finally {
    await db.close();
  }
  const size = fs.statSync(big).size;
  const to = path.join(ctx.dir, 'sb-promoted.db');
  const sink = { write: () => true } as unknown as NodeJS.WritableStream;
  const settings = resolveConnection({ endpoints: ctx.endpoints.join(','), prefix }, {});
  const t1 = Date.now();
  await runPromote(settings, 'sb-big.db', { from: bigStandby, to, json: true }, sink);
  const promoteMs = Date.now() - t1;
  figures.push(
    figure({ bench: 'standby', id: 'standby.promote.ms', label: `promotion of a ${(size / 2 ** 20).toFixed(0)} MiB database, end to end`, unit: 'ms', value: promoteMs, spread: null, n: 1, samples: [promoteMs], target: { op: '<=', value: quick ? 15000 : 60000 }, note: 'includes waiting out the 2 s lease TTL + 0.5 s' }),
    figure({ bench: 'standby', id: 'standby.snapshot.ms', label: `  first tenure's snapshot of it (one-off)`, unit: 'ms', value: snapshotMs, spread: null, n: 1, samples: [snapshotMs] }),
  );
  for (const f of [big, to]) fs.rmSync(f, { force: true });
  fs.rmSync(bigStandby, { recursive: true, force: true });
  return figures;
}
