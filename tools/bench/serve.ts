/**
 * 8. `sqlite-ha serve` through @libsql/client over loopback, in the same run as raw better-sqlite3
 * on a file in the same directory (same schema, same pragmas):
 *   reads     point lookups by primary key: client.execute() ÷ raw stmt.get()
 *   writes    single-row autocommit INSERTs: client.execute() ÷ raw stmt.run() (synchronous=FULL)
 *   added     latency a request adds over the in-process handle: per run, the client's median
 *             point-read latency minus await db.read(fn)'s, in µs, and the same as a multiple of
 *             the raw read's latency
 *   forward   single-row INSERTs sent to a node that forwards them to the holder ÷ the same sent
 *             to the holder itself (two in-process nodes on one file)
 */
import { createClient } from '@libsql/client';
import type Database from 'better-sqlite3';
import { serve } from '../../src/serve';
import { BenchContext, createDatabase, dbFile, INSERT, openHa, openRaw, paired, PAYLOAD, SELECT, timedAsync, timedSync } from './env';
import { Figure, figure } from './report';
import { median, overRuns } from './stats';

const ROWS = 1000;

export async function benchServe(ctx: BenchContext): Promise<Figure[]> {
  const s = ctx.settings;
  const rawFile = dbFile(ctx, 'serve-raw');
  const haFile = dbFile(ctx, 'serve-ha');
  createDatabase(rawFile, ROWS);
  createDatabase(haFile, ROWS);
  const prefix = `${ctx.prefix}/serve`;
  const cluster = { coordinator: { kind: 'etcd' as const, endpoints: ctx.endpoints, prefix }, name: 'serve-ha.db' };
  const raw = openRaw(rawFile);
  const a = await openHa(ctx, haFile, prefix, 'bench-serve-a', { idleReleaseMs: 3_600_000 });
  const b = await openHa(ctx, haFile, prefix, 'bench-serve-b', { idleReleaseMs: 3_600_000 });
  const sa = await serve(a, { port: 0, nodeId: 'bench-serve-a', cluster, writes: 'forward' });
  const sb = await serve(b, { port: 0, nodeId: 'bench-serve-b', cluster, writes: 'forward' });
  const ca = createClient({ url: sa.url });
  const cb = createClient({ url: sb.url });
  const figures: Figure[] = [];
  try {
    await a.acquire(); // a is the holder for the whole benchmark; b forwards its writes to a
    let id = 0;
    const nextId = () => (id = (id * 7919 + 13) % ROWS) + 1;
    const rawSel = raw.prepare(SELECT);
    const rawIns = raw.prepare(INSERT);
    const rawRead = () => timedSync(s.readSliceMs, () => void rawSel.get(nextId()));
    const clientRead = () => timedAsync(s.readSliceMs * 4, async () => {
      await ca.execute({ sql: SELECT, args: [nextId()] });
      return 1;
    });
    const cache = new WeakMap<Database.Database, Database.Statement>();
    const selOn = (c: Database.Database) => {
      let st = cache.get(c);
      if (!st) cache.set(c, (st = c.prepare(SELECT)));
      return st;
    };
    const handleRead = () => timedAsync(s.readSliceMs, async () => {
      await a.read((c) => selOn(c).get(nextId()));
      return 1;
    });
    const reads = await paired(s.readRuns, Math.max(2, s.readPairs / 4), rawRead, clientRead);
    const viaHandle = await paired(s.readRuns, Math.max(2, s.readPairs / 4), handleRead, clientRead);
    ctx.log(`  client point reads: ${median(reads.haRates).toFixed(0)}/s vs raw ${median(reads.rawRates).toFixed(0)}/s`);
    const added = viaHandle.rawRates.map((handleRate, i) => 1e6 / viaHandle.haRates[i] - 1e6 / handleRate);
    const addedInRaw = added.map((us, i) => us / (1e6 / reads.rawRates[Math.min(i, reads.rawRates.length - 1)]));
    figures.push(
      figure({ bench: 'serve', id: 'serve.reads.ratio', label: 'point reads through @libsql/client: serve ÷ raw', unit: 'x', ...overRuns(reads.ratios), target: { op: '>=', value: 0.005 } }),
      figure({ bench: 'serve', id: 'serve.reads.raw', label: '  raw better-sqlite3 stmt.get()', unit: 'reads/s', ...overRuns(reads.rawRates) }),
      figure({ bench: 'serve', id: 'serve.reads.client', label: '  @libsql/client execute() over loopback', unit: 'reads/s', ...overRuns(reads.haRates) }),
      figure({ bench: 'serve', id: 'serve.added.us', label: 'latency added per request over await db.read(fn)', unit: 'µs', ...overRuns(added), target: { op: '<=', value: 1500 } }),
      figure({ bench: 'serve', id: 'serve.added.raw_reads', label: '  the same in raw point reads', unit: 'x', ...overRuns(addedInRaw), note: 'how many raw reads one request costs' }),
    );
    const rawWrite = () => timedSync(s.writeSliceMs, () => void rawIns.run(1, PAYLOAD));
    const clientWrite = (c: typeof ca) => () => timedAsync(s.writeSliceMs, async () => {
      await c.execute({ sql: INSERT, args: [1, PAYLOAD] });
      return 1;
    });
    const writes = await paired(s.writeRuns, 2, rawWrite, clientWrite(ca));
    const forward = await paired(s.writeRuns, 2, clientWrite(ca), clientWrite(cb));
    if (b.lease.held) throw new Error('bench: the forwarding node took the lease; the forward figure would be a local one');
    ctx.log(`  client single-row writes: ${median(writes.haRates).toFixed(0)}/s vs raw ${median(writes.rawRates).toFixed(0)}/s; forwarded ${median(forward.haRates).toFixed(0)}/s`);
    figures.push(
      figure({ bench: 'serve', id: 'serve.writes.ratio', label: 'single-row writes through @libsql/client: serve ÷ raw', unit: 'x', ...overRuns(writes.ratios), target: { op: '>=', value: 0.3 } }),
      figure({ bench: 'serve', id: 'serve.writes.raw', label: '  raw better-sqlite3 stmt.run()', unit: 'writes/s', ...overRuns(writes.rawRates) }),
      figure({ bench: 'serve', id: 'serve.writes.client', label: '  @libsql/client execute() to the holder', unit: 'writes/s', ...overRuns(writes.haRates) }),
      figure({ bench: 'serve', id: 'serve.forward.ratio', label: 'forwarded ÷ local writes (--writes forward)', unit: 'x', ...overRuns(forward.ratios), target: { op: '>=', value: 0.5 } }),
      figure({ bench: 'serve', id: 'serve.forward.client', label: '  @libsql/client execute() to a forwarding node', unit: 'writes/s', ...overRuns(forward.haRates) }),
    );
  } finally {
    ca.close();
    cb.close();
    await sa.close();
    await sb.close();
    await b.close();
    await a.close();
    raw.close();
  }
  return figures;
}
