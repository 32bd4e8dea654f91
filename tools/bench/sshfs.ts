/**
 * 7. The lockless mode on sshfs, where SQLite's file locks do not cross hosts (issue 3). One
 * export served by a private sshd on loopback, mounted twice with sshfs (src/cluster/sshfs.ts):
 * two mounts behave as two hosts. In one run, trials alternating round by round (the order
 * rotated, see rotated() in env.ts), each side on its own file in the export, all through the
 * same mount:
 *
 *   writes, mount 0: raw better-sqlite3 `stmt.run()` (autocommit: one transaction each, pragmas
 *     as sqlite-ha pins them) vs sequential `await db.write(fn)` 1-row transactions of sqlite-ha
 *     with `locks: 'trusted'` (forced; unsafe on this mount) and with `locks: 'none'` (what
 *     `auto` picks on sshfs; asserted), each writer holding its lease (`acquire()`);
 *   reads, mount 1, no writer active: `await db.read(c => stmt.get(id))` point lookups over
 *     1,000 rows, trusted and none, vs raw `stmt.get(id)` on a connection kept open and raw
 *     reopening the connection before each read (what freshness needs on sshfs: a kept-open
 *     handle can stay stale indefinitely).
 *
 * For none, the etcd round trips per read and per write are counted (EtcdCallCounter: every
 * unary etcd call and watch this process makes during the slices), with etcd writes (revision
 * before and after) and the time spent in those calls. Each rotation also has a side of plain
 * one-put etcd transactions, so the latency none adds over trusted is given in etcd round trips
 * measured under the same load. No targets: the issue asks for the ratios, not a bound.
 */
import type Database from 'better-sqlite3';
import * as path from 'path';
import { SshfsExport } from '../cluster/sshfs';
import type { HADatabase } from '../../src/handle/database';
import {
  BenchContext, createDatabase, INSERT, openHa, openRaw, PAYLOAD, rotated, SELECT, Timed, timedAsync, timedSync,
} from './env';
import { benchClient, EtcdCallCounter } from './etcd-rtt';
import { Figure, figure } from './report';
import { iqr, median, pairRatios, quantile, overRuns } from './stats';

const fmt2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : String(x));

const ROWS = 1000;
const BENCH = 'sshfs';

/** Per-connection prepared statements, as a careful db.read / db.write user keeps them. */
function stmtCache(sql: string): (c: Database.Database) => Database.Statement {
  const cache = new WeakMap<Database.Database, Database.Statement>();
  return (c) => {
    let st = cache.get(c);
    if (!st) cache.set(c, (st = c.prepare(sql)));
    return st;
  };
}

/** What the etcd counter saw during one side's slices. */
interface EtcdUse {
  calls: number;
  /** etcd writes: the revision's rise over the slices. */
  writes: number;
  ops: number;
  /** Per slice: ms spent in etcd calls per operation, and as a share of the slice's wall time. */
  msPerOp: number[];
  share: number[];
}

const newUse = (): EtcdUse => ({ calls: 0, writes: 0, ops: 0, msPerOp: [], share: [] });

/** Resolves when p settles or after ms, whichever is first: cleanup must reach export.stop(). */
async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export async function benchSshfs(ctx: BenchContext): Promise<Figure[]> {
  if (!SshfsExport.available()) {
    throw new Error('the sshfs benchmark needs sshfs, /usr/sbin/sshd, ssh-keygen and /dev/fuse (and root for sshd and FUSE)');
  }
  const s = ctx.settings;
  const t0 = Date.now();
  const exp = await SshfsExport.start({ mounts: 2 });
  ctx.log(`  sshfs export ${exp.exportDir} mounted at ${exp.mounts.join(', ')} (${Date.now() - t0} ms)`);
  const [m0, m1] = exp.mounts;
  const rawConns: Database.Database[] = [];
  const haHandles: HADatabase[] = [];
  const client = benchClient(ctx);
  let counter: EtcdCallCounter | null = null;
  const ha = async (mount: string, name: string, nodeId: string, locks: 'trusted' | 'auto'): Promise<HADatabase> => {
    const db = await openHa(ctx, path.join(mount, name), `${ctx.prefix}/sshfs`, nodeId, { locks });
    haHandles.push(db);
    const want = locks === 'auto' ? 'none' : locks;
    if (db.locks !== want) throw new Error(`${nodeId}: locks is '${db.locks}' on ${mount}, expected '${want}'`);
    return db;
  };
  const raw = (file: string, readonly = false): Database.Database => {
    const c = openRaw(file, { readonly });
    rawConns.push(c);
    return c;
  };
  const revision = async () => Number((await client.kv.range({ key: Buffer.from(`${ctx.prefix}/sshfs`) })).header.revision);
  /** Runs a slice with the etcd counter read before and after (the revision reads fall outside). */
  const instrumented = (use: EtcdUse, slice: () => Promise<Timed>) => async (): Promise<Timed> => {
    const rev = await revision();
    const c0 = counter!.count;
    const ms0 = counter!.ms;
    const t = await slice();
    const ms = counter!.ms - ms0;
    use.calls += counter!.count - c0;
    use.writes += (await revision()) - rev;
    use.ops += t.ops;
    use.msPerOp.push(ms / t.ops);
    use.share.push(ms / (t.seconds * 1000));
    return t;
  };
  // An extra side in both rotations: plain one-put etcd transactions from this process, the
  // same kind of round trip the lockless mode makes, so its cost converts to round trips measured
  // under the same conditions (the machine's load drifts; a separate measurement would not).
  const rttKey = Buffer.from(`${ctx.prefix}/sshfs-rtt`);
  const etcdPuts = () => timedAsync(s.sshfsReadSliceMs, async () => {
    await client.kv.txn({ compare: [], success: [{ request_put: { key: rttKey, value: rttKey } }], failure: [] });
    return 1;
  });
  /** Per run: the latency `slow` adds over `fast` (1/rate each), in etcd put round trips (1/putRate). */
  const addedRtt = (slow: number[], fast: number[], puts: number[]) => slow.map((x, i) => (1 / x - 1 / fast[i]) * puts[i]);
  const figures: Figure[] = [];
  const ratioFigure = (id: string, label: string, xs: number[], note?: string) =>
    figure({ bench: BENCH, id, label, unit: 'x', ...overRuns(xs), note });
  const rateFigure = (id: string, label: string, unit: string, xs: number[], note?: string) =>
    figure({ bench: BENCH, id, label, unit, ...overRuns(xs), note });
  const perOp = (u: EtcdUse, k: 'calls' | 'writes') => (u.ops ? u[k] / u.ops : NaN);
  /** The counted etcd use of none, with trusted's alongside in the note. */
  const etcdFigures = (phase: 'write' | 'read', op: string, none: EtcdUse, trusted: EtcdUse): Figure[] => [
    figure({
      bench: BENCH, id: `sshfs.${phase}.none.etcd_calls_per_${op}`, label: `  none: etcd round trips per ${op} (counted)`, unit: '',
      value: perOp(none, 'calls'), spread: null, n: none.ops, samples: [],
      note: `etcd writes per ${op}: ${fmt2(perOp(none, 'writes'))}; trusted: ${fmt2(perOp(trusted, 'calls'))} round trips, ` +
        `${fmt2(perOp(trusted, 'writes'))} writes per ${op}`,
    }),
    figure({
      bench: BENCH, id: `sshfs.${phase}.none.etcd_ms_per_${op}`, label: `  none: time in etcd calls per ${op} (median slice)`, unit: 'ms',
      value: median(none.msPerOp), spread: iqr(none.msPerOp), n: none.msPerOp.length, samples: none.msPerOp,
      note: `${(median(none.share) * 100).toFixed(0)}% of none's wall time (IQR ${(quantile(none.share, 0.25) * 100).toFixed(0)}–` +
        `${(quantile(none.share, 0.75) * 100).toFixed(0)}%); trusted: ${fmt2(median(trusted.msPerOp))} ms per ${op}`,
    }),
  ];

  try {
    // Every file is created through mount 0, as a host would.
    for (const f of ['write-raw', 'write-trusted', 'write-none']) createDatabase(path.join(m0, `${f}.db`));
    for (const f of ['read-raw', 'read-trusted', 'read-none']) createDatabase(path.join(m0, `${f}.db`), ROWS);
    counter = new EtcdCallCounter();

    // ---- writes, mount 0 ----------------------------------------------------------------------
    {
      const rawW = raw(path.join(m0, 'write-raw.db'));
      const trustedW = await ha(m0, 'write-trusted.db', 'sshfs-trusted-writer', 'trusted');
      const noneW = await ha(m0, 'write-none.db', 'sshfs-none-writer', 'auto');
      const rawIns = rawW.prepare(INSERT);
      const insOn = stmtCache(INSERT);
      const writeOne = (c: Database.Database) => void insOn(c).run(0, PAYLOAD);
      for (const db of [trustedW, noneW]) {
        await db.acquire();
        await db.write(writeOne); // warm: fence raised, statement prepared
      }
      const use = { trusted: newUse(), none: newUse() };
      const haWrites = (db: HADatabase) => () => timedAsync(s.sshfsWriteSliceMs, async () => {
        await db.write(writeOne);
        return 1;
      });
      const w = await rotated(s.sshfsRuns, s.sshfsRounds, {
        raw: () => timedSync(s.sshfsWriteSliceMs, () => void rawIns.run(0, PAYLOAD)),
        trusted: instrumented(use.trusted, haWrites(trustedW)),
        none: instrumented(use.none, haWrites(noneW)),
        etcd: etcdPuts,
      });
      const noneVsRaw = pairRatios(w.none, w.raw);
      const trustedVsRaw = pairRatios(w.trusted, w.raw);
      const noneVsTrusted = pairRatios(w.none, w.trusted);
      ctx.log(
        `  writes: raw ${median(w.raw).toFixed(0)}/s, trusted ${median(w.trusted).toFixed(0)}/s, none ${median(w.none).toFixed(0)}/s; ` +
          `none ÷ raw ${median(noneVsRaw).toFixed(3)}, trusted ÷ raw ${median(trustedVsRaw).toFixed(3)}, none ÷ trusted ${median(noneVsTrusted).toFixed(3)}; ` +
          `etcd round trips per txn: none ${fmt2(perOp(use.none, 'calls'))}, trusted ${fmt2(perOp(use.trusted, 'calls'))}`,
      );
      figures.push(
        ratioFigure('sshfs.write.none_vs_raw', 'writes, sequential await db.write(), 1-row txn: none ÷ raw', noneVsRaw),
        ratioFigure('sshfs.write.trusted_vs_raw', '  trusted ÷ raw', trustedVsRaw),
        ratioFigure('sshfs.write.none_vs_trusted', '  none ÷ trusted', noneVsTrusted),
        rateFigure('sshfs.write.raw', '  raw better-sqlite3 stmt.run()', 'txn/s', w.raw),
        rateFigure('sshfs.write.trusted', "  sqlite-ha, locks: 'trusted' (forced)", 'txn/s', w.trusted),
        rateFigure('sshfs.write.none', "  sqlite-ha, locks: 'none' (auto)", 'txn/s', w.none),
        ...etcdFigures('write', 'txn', use.none, use.trusted),
        rateFigure('sshfs.write.none.added_rtt', '  none: latency added over trusted, in etcd put round trips', 'RTT',
          addedRtt(w.none, w.trusted, w.etcd), `etcd one-put txn round trip, interleaved: ${fmt2(1000 / median(w.etcd))} ms (median run)`),
      );
      for (const db of [trustedW, noneW]) await db.release();
    }

    // ---- reads, mount 1, no writer active ----------------------------------------------------
    {
      // One write through mount 0 gives each sqlite-ha file its meta row and a commit record
      // (txid 1), as on a live database; then that writer goes and the readers open on mount 1.
      for (const side of ['trusted', 'none'] as const) {
        const setup = await ha(m0, `read-${side}.db`, `sshfs-${side}-setup`, side === 'none' ? 'auto' : 'trusted');
        await setup.write((c) => void c.prepare('UPDATE bench SET v = ? WHERE id = 1').run(PAYLOAD));
        await setup.close();
      }
      const rawFile = path.join(m1, 'read-raw.db');
      const rawKept = raw(rawFile, true);
      const trustedR = await ha(m1, 'read-trusted.db', 'sshfs-trusted-reader', 'trusted');
      const noneR = await ha(m1, 'read-none.db', 'sshfs-none-reader', 'auto');
      const rawSel = rawKept.prepare(SELECT);
      const selOn = stmtCache(SELECT);
      let id = 0;
      const nextId = () => (id = (id * 7919 + 13) % ROWS) + 1;
      const readOne = (c: Database.Database) => selOn(c).get(nextId());
      for (let i = 0; i < 20; i++) {
        await trustedR.read(readOne);
        await noneR.read(readOne); // warm: statements prepared, reader session granted
      }
      const use = { trusted: newUse(), none: newUse() };
      const haReads = (db: HADatabase) => () => timedAsync(s.sshfsReadSliceMs, async () => {
        await db.read(readOne);
        return 1;
      });
      const w = await rotated(s.sshfsRuns, s.sshfsRounds, {
        raw: () => timedSync(s.sshfsReadSliceMs, () => void rawSel.get(nextId())),
        rawReopen: () => timedSync(s.sshfsReadSliceMs, () => {
          const c = openRaw(rawFile, { readonly: true });
          try {
            c.prepare(SELECT).get(nextId());
          } finally {
            c.close();
          }
        }),
        trusted: instrumented(use.trusted, haReads(trustedR)),
        none: instrumented(use.none, haReads(noneR)),
        etcd: etcdPuts,
      });
      const ratios = {
        noneVsRaw: pairRatios(w.none, w.raw),
        noneVsReopen: pairRatios(w.none, w.rawReopen),
        trustedVsRaw: pairRatios(w.trusted, w.raw),
        noneVsTrusted: pairRatios(w.none, w.trusted),
        reopenVsRaw: pairRatios(w.rawReopen, w.raw),
      };
      ctx.log(
        `  reads: raw kept open ${median(w.raw).toFixed(0)}/s, raw reopened ${median(w.rawReopen).toFixed(0)}/s, ` +
          `trusted ${median(w.trusted).toFixed(0)}/s, none ${median(w.none).toFixed(0)}/s; ` +
          `none ÷ raw ${median(ratios.noneVsRaw).toFixed(4)}, none ÷ raw reopened ${median(ratios.noneVsReopen).toFixed(3)}, ` +
          `etcd round trips per read: none ${fmt2(perOp(use.none, 'calls'))}, trusted ${fmt2(perOp(use.trusted, 'calls'))}`,
      );
      figures.push(
        ratioFigure('sshfs.read.none_vs_raw', 'reads, await db.read(point query), idle: none ÷ raw kept open', ratios.noneVsRaw),
        ratioFigure('sshfs.read.none_vs_raw_reopen', '  none ÷ raw reopening before each read', ratios.noneVsReopen),
        ratioFigure('sshfs.read.trusted_vs_raw', '  trusted ÷ raw kept open', ratios.trustedVsRaw),
        ratioFigure('sshfs.read.none_vs_trusted', '  none ÷ trusted', ratios.noneVsTrusted),
        ratioFigure('sshfs.read.raw_reopen_vs_raw', '  raw reopening ÷ raw kept open', ratios.reopenVsRaw),
        rateFigure('sshfs.read.raw', '  raw stmt.get(), connection kept open', 'reads/s', w.raw,
          "not fresh on sshfs: a kept-open handle can miss other hosts' commits indefinitely (trusted alike)"),
        rateFigure('sshfs.read.raw_reopen', '  raw open + stmt.get() + close per read', 'reads/s', w.rawReopen),
        rateFigure('sshfs.read.trusted', "  sqlite-ha, locks: 'trusted' (forced)", 'reads/s', w.trusted),
        rateFigure('sshfs.read.none', "  sqlite-ha, locks: 'none' (auto)", 'reads/s', w.none),
        ...etcdFigures('read', 'read', use.none, use.trusted),
        rateFigure('sshfs.read.none.added_rtt', '  none: latency added over trusted, in etcd put round trips', 'RTT',
          addedRtt(w.none, w.trusted, w.etcd), `etcd one-put txn round trip, interleaved: ${fmt2(1000 / median(w.etcd))} ms (median run)`),
      );
    }
  } finally {
    counter?.restore();
    client.close();
    for (const c of rawConns) {
      try {
        c.close();
      } catch {
        /* already closed */
      }
    }
    // Handles first (their files live on the mounts), each bounded, then the export, always.
    await Promise.all(haHandles.map((db) => settleWithin(db.close(), 10000)));
    await exp.stop();
  }
  return figures;
}
