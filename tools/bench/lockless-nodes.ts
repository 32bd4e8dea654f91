/**
 * 10. Lockless reads by reading node (issue #11, item 5). One sshfs export, one mount per node
 * (each mount behaves as its own host). 1, 2 and 4 reader processes, each on its own mount, each
 * a loop of `await db.read(c => stmt.get(id))` point lookups, all at once:
 *   none      `locks: 'none'` (what `auto` picks on sshfs), no writer active
 *   trusted   `locks: 'trusted'` forced on a twin file (unsafe here: the reference)
 *   none+w    none, while a writer process on its own mount runs sequential 1-row db.write()
 * per run, the order of none and trusted alternating. etcd writes are etcd's revision rise over a
 * slice: per read with no writer (the target is 0: registrations are per node, made at warm-up),
 * and per write with k reader nodes (gate close + one acknowledgement per reader node + publish).
 */
import * as path from 'path';
import { SshfsExport } from '../cluster/sshfs';
import { BenchContext, createDatabase, now } from './env';
import { benchClient } from './etcd-rtt';
import { Figure, figure } from './report';
import { median, overRuns, pairRatios } from './stats';
import type { Worker } from './workers';

const ROWS = 1000;
const NODES = [1, 2, 4];

interface ReadResult { ops: number; seconds: number; errors: number }
interface WriteResult { commits: number[]; errors: number; firstError: string | null }

export async function benchLocklessNodes(ctx: BenchContext): Promise<Figure[]> {
  if (!SshfsExport.available()) {
    throw new Error('the lockless-nodes benchmark needs sshfs, /usr/sbin/sshd, ssh-keygen and /dev/fuse (and root)');
  }
  const sliceMs = ctx.settings.scalingMs;
  const runs = ctx.settings.scalingTrials;
  const exp = await SshfsExport.start({ mounts: 1 + Math.max(...NODES) });
  const prefix = `${ctx.prefix}/lockless-nodes`;
  const client = benchClient(ctx);
  const revision = async () => Number((await client.kv.range({ key: Buffer.from(prefix) })).header.revision);
  const workers: Worker[] = await ctx.pool.take(1 + Math.max(...NODES));
  const [writer, ...readers] = workers;
  const figures: Figure[] = [];
  try {
    for (const f of ['none.db', 'trusted.db']) createDatabase(path.join(exp.exportDir, f), ROWS);
    await writer.call('init', { db: path.join(exp.mounts[0], 'none.db'), endpoints: ctx.endpoints, prefix, nodeId: 'writer', options: { locks: 'none' } });
    await writer.call('acquire');
    const init = (ws: Worker[], file: string, locks: 'none' | 'trusted') =>
      Promise.all(ws.map((w, i) =>
        w.call('init', { db: path.join(exp.mounts[i + 1], file), endpoints: ctx.endpoints, prefix, nodeId: `reader${i + 1}`, options: { locks } })));
    const readAll = async (ws: Worker[]) => {
      const startAt = now() + 50;
      const rs = await Promise.all(ws.map((w) => w.call<ReadResult>('readLoopDb', { startAt, durationMs: sliceMs, maxId: ROWS }, sliceMs + 30000)));
      return { rate: rs.reduce((a, r) => a + r.ops / r.seconds, 0), ops: rs.reduce((a, r) => a + r.ops, 0), errors: rs.reduce((a, r) => a + r.errors, 0) };
    };
    for (const k of NODES) {
      const ws = readers.slice(0, k);
      const none: number[] = [];
      const trusted: number[] = [];
      const withWriter: number[] = [];
      let readEtcdWrites = 0;
      let reads = 0;
      let writeEtcdWrites = 0;
      let writes = 0;
      let errors = 0;
      for (let r = 0; r < runs; r++) {
        for (const side of r % 2 === 0 ? ['none', 'trusted'] : ['trusted', 'none']) {
          await init(ws, `${side}.db`, side as 'none' | 'trusted');
          await readAll(ws); // warm: connections opened, registrations made
          const rev0 = await revision();
          const res = await readAll(ws);
          const rev1 = await revision();
          errors += res.errors;
          if (side === 'none') {
            none.push(res.rate);
            readEtcdWrites += rev1 - rev0;
            reads += res.ops;
          } else trusted.push(res.rate);
        }
        // none again, with the writer writing.
        await init(ws, 'none.db', 'none');
        await readAll(ws);
        const rev0 = await revision();
        const startAt = now() + 50;
        const [w, rd] = await Promise.all([
          writer.call<WriteResult>('writeLoop', { startAt, durationMs: sliceMs, rows: 1 }, sliceMs + 30000),
          readAll(ws),
        ]);
        const rev1 = await revision();
        withWriter.push(rd.rate);
        writeEtcdWrites += rev1 - rev0;
        writes += w.commits.length;
        errors += rd.errors + w.errors;
      }
      const ratios = pairRatios(none, trusted);
      ctx.log(`  ${k} reader node(s): none ${median(none).toFixed(0)}/s, trusted ${median(trusted).toFixed(0)}/s, ` +
        `ratio ${median(ratios).toFixed(2)}, etcd writes/read ${(readEtcdWrites / reads).toFixed(4)}, per write ${(writeEtcdWrites / Math.max(1, writes)).toFixed(2)}`);
      figures.push(
        figure({
          bench: 'lockless-nodes', id: `lockless_nodes.${k}.ratio`, label: `${k} reader node(s): none ÷ trusted, db.read()`, unit: 'x',
          ...overRuns(ratios), target: { op: '>=', value: 0.5 },
          note: `none ${median(none).toFixed(0)}/s, trusted ${median(trusted).toFixed(0)}/s (all nodes together); ${errors} failed operations`,
        }),
        figure({
          bench: 'lockless-nodes', id: `lockless_nodes.${k}.etcd_writes_per_read`, label: '  none: etcd writes per read, no write in progress', unit: '',
          value: readEtcdWrites / reads, spread: null, n: reads, samples: [], target: { op: '<=', value: 0 },
        }),
        figure({
          bench: 'lockless-nodes', id: `lockless_nodes.${k}.etcd_writes_per_write`, label: `  none: etcd writes per write with ${k} reader node(s)`, unit: '',
          value: writeEtcdWrites / Math.max(1, writes), spread: null, n: writes, samples: [],
          note: `expected 2 + ${k}: gate close, one acknowledgement per reader node, the publish; ${writes} writes`,
        }),
        figure({
          bench: 'lockless-nodes', id: `lockless_nodes.${k}.reads_while_writing`, label: '  none: reads/s while a writer writes', unit: '/s',
          ...overRuns(withWriter),
        }),
      );
    }
  } finally {
    client.close();
    await ctx.pool.give(workers);
    await exp.stop();
  }
  return figures;
}
