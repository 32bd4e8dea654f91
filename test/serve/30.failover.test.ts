/**
 * Failover as a client sees it: three `sqlite-ha serve` processes on one file and a real etcd,
 * @libsql/client writers spread over them (autocommit inserts and interactive transactions), the
 * lease holder SIGKILLed mid-stream. Every acknowledged write is in the file exactly once, every
 * write reported as failed is absent, writes resume on the survivors, and outcomes the client
 * cannot know are reported as unknown (never as failed when they committed).
 */
import { createClient, LibsqlError } from '@libsql/client';
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { useEtcd } from '../helpers/etcd';
import { healthOf, killAll, ServeNode, startServeNode } from './nodes';

const etcd = useEtcd();
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-serve-failover-'));
});
afterAll(async () => {
  await killAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

type Outcome = 'acked' | 'failed' | 'unknown';

/** Network failures and outcome-unknown errors leave the write's fate open; everything else is a refusal. */
function classify(err: unknown): Outcome {
  if (!(err instanceof LibsqlError)) return 'unknown';
  return ['SQLITE_HA_COMMIT_OUTCOME_UNKNOWN', 'SERVER_ERROR', 'HRANA_PROTO_ERROR', 'UNKNOWN'].includes(err.code) ? 'unknown' : 'failed';
}

async function runFailover(writes: 'local' | 'forward'): Promise<void> {
  const db = path.join(dir, `${writes}.db`);
  const prefix = `/failover-${writes}`;
  const nodes: ServeNode[] = [];
    // A lease wait shorter than the TTL: writes during the failover window are refused
  // (AcquireTimeoutError, nothing written), so the check that refused writes are absent has work.
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.push(await startServeNode(db, etcd.cluster().endpoints, prefix, id, ['--writes', writes, '--acquire-timeout-ms', '1000']));
  }
  const setup = createClient({ url: nodes[0].url });
  await setup.execute('CREATE TABLE log (seq INTEGER, writer INTEGER, kind TEXT)'); // no UNIQUE: doubles would show
  setup.close();

  const outcomes = new Map<number, Outcome>();
  const dead = new Set<string>();
  let seq = 0;
  let killedAt = 0;
  let ackedAfterKill = 0;
  const stopAt = Date.now() + 40000;
  const writer = async (w: number) => {
    let target = w % nodes.length;
    let client = createClient({ url: nodes[target].url });
    for (let i = 0; i < 400 && Date.now() < stopAt; i++) {
      if (killedAt && ackedAfterKill >= 30) break;
      if (dead.has(nodes[target].url)) {
        client.close();
        target = (target + 1) % nodes.length;
        client = createClient({ url: nodes[target].url });
        continue;
      }
      const s = ++seq;
      try {
        if (i % 3 === 2) {
          // An interactive transaction: two statements, then COMMIT.
          const tx = await client.transaction('write');
          try {
            await tx.execute({ sql: "INSERT INTO log VALUES (?, ?, 'tx')", args: [s, w] });
            await tx.execute('SELECT count(*) FROM log');
          } catch (err) {
            tx.close();
            outcomes.set(s, 'failed'); // COMMIT was never sent: nothing can have committed
            throw Object.assign(err as object, { counted: true });
          }
          await tx.commit();
        } else {
          await client.execute({ sql: "INSERT INTO log VALUES (?, ?, 'auto')", args: [s, w] });
        }
        outcomes.set(s, 'acked');
        if (killedAt) ackedAfterKill++;
      } catch (err) {
        if (!(err as { counted?: boolean }).counted) outcomes.set(s, classify(err));
        if (!(err instanceof LibsqlError) && !dead.has(nodes[target].url)) {
          // The node may be gone: try the next one.
          client.close();
          target = (target + 1) % nodes.length;
          client = createClient({ url: nodes[target].url });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    client.close();
  };
  const writers = [0, 1, 2, 3, 4, 5].map(writer);
  // Let writes flow, then SIGKILL whichever node holds the lease at that moment.
  await new Promise((r) => setTimeout(r, 2500));
  // The lease moves between nodes all the time: freeze the node that says it holds the lease, and
  // kill it only once another node confirms from etcd that the frozen one still holds it (so the
  // kill really leaves a failover window, instead of landing just after a hand-over).
  let victim: ServeNode | undefined;
  for (let i = 0; i < 200 && !victim; i++) {
    for (const n of nodes) {
      if (victim || !(await healthOf(n.url))?.body.holding) continue;
      n.proc.child.kill('SIGSTOP');
      const other = nodes.find((o) => o !== n)!;
      const seen = (await healthOf(other.url))?.body.holder;
      if (seen === n.node) victim = n;
      else n.proc.child.kill('SIGCONT');
    }
    if (!victim) await new Promise((r) => setTimeout(r, 20));
  }
  expect(victim).toBeDefined();
  victim!.proc.child.kill('SIGKILL');
  dead.add(victim!.url);
  killedAt = Date.now();
  await Promise.all(writers);

  const file = new Database(db, { readonly: true });
  const rows = file.prepare('SELECT seq, count(*) AS n FROM log GROUP BY seq').all() as { seq: number; n: number }[];
  const integrity = file.pragma('integrity_check', { simple: true });
  file.close();
  const count = new Map(rows.map((r) => [r.seq, r.n]));
  const acked = [...outcomes].filter(([, o]) => o === 'acked').map(([s]) => s);
  const failed = [...outcomes].filter(([, o]) => o === 'failed').map(([s]) => s);
  const unknown = [...outcomes].filter(([, o]) => o === 'unknown').map(([s]) => s);
  if (process.env.SERVE_TEST_DEBUG) console.log({ writes, acked: acked.length, failed: failed.length, unknown: unknown.length, ackedAfterKill, victim: victim!.node });
  expect(integrity).toBe("ok");
  expect(acked.filter((s) => count.get(s) !== 1)).toEqual([]); // every acknowledged write, exactly once
  expect(failed.filter((s) => count.has(s))).toEqual([]); // nothing reported failed is in the file
  expect(unknown.filter((s) => (count.get(s) ?? 0) > 1)).toEqual([]); // unknown ones at most once
  expect([...count.keys()].filter((s) => !outcomes.has(s))).toEqual([]); // nothing appeared from nowhere
  expect(ackedAfterKill).toBeGreaterThanOrEqual(30); // writes resumed on the survivors
  expect(failed.length).toBeGreaterThan(0); // and some were refused meanwhile
  // The survivors report a new holder among them.
  const h = await healthOf(nodes.find((n) => n !== victim)!.url);
  expect(h?.status).toBe(200);
  expect(h?.body.holder).not.toBe(victim!.node);
}

test('local writes: the holder is SIGKILLed while six clients write through three nodes', async () => {
  await runFailover('local');
}, 120000);

test('forwarded writes: the holder is SIGKILLed while clients write through three nodes', async () => {
  await runFailover('forward');
}, 120000);
