/**
 * 6. Read scaling: 1, 2 and 4 reader processes doing local point reads (db.prepare().get() on
 * their read-only connections) while one writer process, holding the lease, runs a sequential
 * `await db.write()` loop of 1-row transactions. Runs interleave the reader counts; each figure is
 * the median over runs of total reads/s across the readers, with the writer's rate alongside.
 * A first figure has one reader while the writer holds the lease without writing. No target: on a
 * rollback journal every commit locks readers out (they sleep in SQLite's busy handler), and the
 * machine's core count caps the scaling.
 */
import { BenchContext, createDatabase, dbFile, now } from './env';
import { Figure, figure } from './report';
import { median, overRuns } from './stats';

const ROWS = 1000;

export async function benchScaling(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const file = dbFile(ctx, 'scaling');
  createDatabase(file, ROWS);
  const prefix = `${ctx.prefix}/scaling`;
  const maxReaders = Math.max(...s.readerCounts);
  const [writer, ...readers] = await ctx.pool.take(maxReaders + 1);
  const reads = new Map<number, number[]>(s.readerCounts.map((k) => [k, []]));
  const writes = new Map<number, number[]>(s.readerCounts.map((k) => [k, []]));
  const idle: number[] = [];
  try {
    const init = { db: file, endpoints: ctx.endpoints, prefix };
    await writer.call('init', { ...init, nodeId: 'scaling-writer' });
    await Promise.all(readers.map((r, i) => r.call('init', { ...init, nodeId: `scaling-reader${i + 1}` })));
    await writer.call('acquire');
    await writer.call('write', { rows: 1 });
    for (let t = 0; t < s.scalingTrials; t++) {
      // Baseline: one reader while the writer holds the lease but does not write.
      const r0 = await readers[0].call<{ ops: number; seconds: number }>('readLoop', { startAt: now() + 50, durationMs: s.scalingMs, maxId: ROWS });
      idle.push(r0.ops / r0.seconds);
      for (const k of s.readerCounts) {
        const startAt = now() + 100;
        const args = { startAt, durationMs: s.scalingMs };
        const [w, ...rs] = await Promise.all([
          writer.call<{ commits: number[] }>('writeLoop', { ...args, rows: 1 }),
          ...readers.slice(0, k).map((r) => r.call<{ ops: number; seconds: number }>('readLoop', { ...args, maxId: ROWS })),
        ]);
        const total = rs.reduce((a, r) => a + r.ops / r.seconds, 0);
        const wr = w.commits.filter((at) => at <= startAt + s.scalingMs).length / (s.scalingMs / 1000);
        reads.get(k)!.push(total);
        writes.get(k)!.push(wr);
        ctx.log(`  run ${t + 1}, ${k} reader(s): ${total.toFixed(0)} reads/s total, writer ${wr.toFixed(0)} txn/s`);
      }
    }
  } finally {
    await ctx.pool.give([writer, ...readers]);
  }
  const base = median(reads.get(s.readerCounts[0])!);
  return [
    figure({
      bench: 'scaling', id: 'scaling.idle_writer.reads', label: '1 reader process, writer not writing', unit: 'reads/s',
      ...overRuns(idle),
    }),
  ].concat(s.readerCounts.flatMap((k) => {
    const r = reads.get(k)!;
    const w = writes.get(k)!;
    return [
      figure({
        bench: 'scaling', id: `scaling.readers${k}.reads`, label: `${k} reader process${k > 1 ? 'es' : ''}: total reads/s`, unit: 'reads/s',
        ...overRuns(r),
        note: k === s.readerCounts[0] ? undefined : `${(median(r) / base).toFixed(2)}× the ${s.readerCounts[0]}-reader figure`,
      }),
      figure({
        bench: 'scaling', id: `scaling.readers${k}.writer`, label: '  writer meanwhile', unit: 'txn/s',
        ...overRuns(w),
      }),
    ];
  }));
}
