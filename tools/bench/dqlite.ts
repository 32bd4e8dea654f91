/**
 * sqlite-ha's sequential writes against dqlite's (issue #11: "≥ 2× dqlite's sequential writes in
 * the same run"). dqlite is Debian's go-dqlite `dqlite-demo`: a 3-node cluster on loopback, data
 * on the same disk as the databases, each write one HTTP PUT (one replicated INSERT OR REPLACE of a
 * 100-byte value) awaited before the next over one kept-alive connection. sqlite-ha: sequential
 * 1-row `await db.write()` under a held lease, as the writes benchmark's sequential figure. Both
 * sides run the same slices (writeRuns × writePairs × writeSliceMs) in alternating pairs; the
 * ratio is taken per run. Without dqlite-demo on PATH the figure says so and carries no number.
 */
import type Database from 'better-sqlite3';
import type { HADatabase } from '../../src';
import { DQLITE_DEMO, DqliteCluster, onPath } from '../cluster/dqlite-process';
import { BenchContext, createDatabase, dbFile, INSERT, openHa, paired, PAYLOAD, timedAsync } from './env';
import { Figure, runsFigure, skippedFigure } from './report';
import { median } from './stats';

const RATIO_ID = 'dqlite.seq.ratio';
const RATIO_LABEL = 'sequential writes, 1 row: sqlite-ha ÷ dqlite (3 nodes, HTTP demo)';
const TARGET = { op: '>=', value: 2 } as const;

export async function benchDqlite(ctx: BenchContext): Promise<Figure[]> {
  if (!onPath(DQLITE_DEMO) || !onPath('dqlite')) {
    ctx.log(`  skipped: ${DQLITE_DEMO} not installed (apt-get install go-dqlite)`);
    return [skippedFigure('dqlite', RATIO_ID, RATIO_LABEL, 'x', TARGET, `skipped: ${DQLITE_DEMO} not installed`)];
  }
  const s = ctx.settings;
  const file = dbFile(ctx, 'dqlite-vs');
  createDatabase(file);
  const dq = await DqliteCluster.start({ parentDir: ctx.dir });
  let ha: HADatabase | null = null;
  try {
    ha = await openHa(ctx, file, `${ctx.prefix}/dqlite`, 'bench-dqlite');
    const db = ha;
    await db.acquire();
    const cache = new WeakMap<Database.Database, Database.Statement>();
    const insert = (c: Database.Database) => {
      let st = cache.get(c);
      if (!st) cache.set(c, (st = c.prepare(INSERT)));
      st.run(0, PAYLOAD);
    };
    await db.write(insert); // warm: fence raised, statement prepared
    let key = 0;
    const dqRun = () => timedAsync(s.writeSliceMs, async () => {
      await dq.put(`k${key++}`, PAYLOAD);
      return 1;
    });
    const haRun = () => timedAsync(s.writeSliceMs, async () => {
      await db.write(insert);
      return 1;
    });
    const { ratios, rawRates, haRates } = await paired(s.writeRuns, s.writePairs, dqRun, haRun);
    ctx.log(`  sqlite-ha ÷ dqlite: ${median(ratios).toFixed(2)} (dqlite ${median(rawRates).toFixed(0)}/s, sqlite-ha ${median(haRates).toFixed(0)}/s)`);
    return [
      runsFigure('dqlite', RATIO_ID, RATIO_LABEL, 'x', ratios, {
        target: TARGET,
        note: `${s.writeRuns} runs × ${s.writePairs} pairs × ${s.writeSliceMs} ms a side; dqlite: PUT over HTTP/1.1 keep-alive`,
      }),
      runsFigure('dqlite', 'dqlite.seq.dqlite', '  dqlite-demo, sequential PUT', 'txn/s', rawRates),
      runsFigure('dqlite', 'dqlite.seq.ha', '  sqlite-ha, sequential await db.write()', 'txn/s', haRates),
    ];
  } finally {
    await ha?.close();
    await dq.stop();
  }
}
