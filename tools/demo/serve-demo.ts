/**
 * `npm run demo -- --serve`: three `sqlite-ha serve` nodes (forwarded writes, unpinned streams)
 * behind one loopback address (balancer.ts), one @libsql/client writing through that address —
 * autocommit inserts and interactive transactions — while the lease holder is SIGKILLed. Then the
 * file itself is checked: every write the client saw acknowledged is there exactly once, nothing
 * reported failed is there, and writes went on after the kill.
 */
import { createClient, LibsqlError } from '@libsql/client';
import Database from 'better-sqlite3';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Balancer } from './balancer';
import { killAtExit } from './cleanup';
import type { DemoCoordinator } from './cluster';
import type { Reporter } from './view';

export interface ServeDemoSummary {
  ok: boolean;
  mode: 'serve';
  address: string;
  acked: number;
  failed: number;
  unknown: number;
  ackedAfterKill: number;
  missing: number[];
  doubled: number[];
  failedPresent: number[];
  killed: string | null;
  firstAckAfterKillMs: number | null;
  integrity: string;
  workDir: string;
  database: string;
}

interface Node {
  id: string;
  url: string;
  child: ReturnType<typeof spawn>;
}

async function startNode(cli: string, dbPath: string, coord: DemoCoordinator, id: string, logDir: string): Promise<Node> {
  const log = fs.openSync(path.join(logDir, `${id}.log`), 'a');
  const child = spawn(process.execPath, [
    cli, 'serve', dbPath, '--endpoints', coord.endpoints.join(','), '--prefix', coord.prefix, '--listen', '127.0.0.1:0',
    '--node-id', id, '--writes', 'forward', '--no-pin-streams', '--lease-ttl-ms', '2000', '--acquire-timeout-ms', '5000',
  ], { stdio: ['ignore', 'pipe', log] });
  killAtExit(id, child);
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`${id} did not start listening within 20 s`)), 20000);
    child.stdout!.on('data', (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.includes('"listening"'));
      if (line) {
        clearTimeout(t);
        resolve(JSON.parse(line).url);
      }
    });
    child.on('exit', (code) => reject(new Error(`${id} exited (${code}) before listening`)));
  });
  return { id, url, child };
}

export async function runServeDemo(
  opts: { cli: string; dbPath: string; workDir: string; logDir: string; durationMs: number; coord: DemoCoordinator },
  report: Reporter, signal: AbortSignal,
): Promise<ServeDemoSummary> {
  const nodes: Node[] = [];
  for (const id of ['serve1', 'serve2', 'serve3']) nodes.push(await startNode(opts.cli, opts.dbPath, opts.coord, id, opts.logDir));
  report.print(`serve nodes: ${nodes.map((n) => `${n.id} ${n.url}`).join(', ')} (--writes forward)`);
  const lb = new Balancer(nodes.map((n) => n.url));
  const address = await lb.start();
  report.print(`one address for the client: ${address} (round robin over nodes whose GET /health is 200)`);
  const client = createClient({ url: address });
  const outcomes = new Map<number, 'acked' | 'failed' | 'unknown'>();
  let killed: Node | null = null;
  let killedAt = 0;
  let firstAckAfterKillMs: number | null = null;
  let ackedAfterKill = 0;
  try {
    await client.execute('CREATE TABLE IF NOT EXISTS demo_log (seq INTEGER, kind TEXT, at INTEGER)');
    const end = Date.now() + opts.durationMs;
    const killAt = Date.now() + opts.durationMs / 2;
    for (let seq = 1; seq <= 100000 && Date.now() < end && !signal.aborted; seq++) {
      if (!killed && Date.now() >= killAt) {
        const holder = await opts.coord.currentHolder(path.basename(opts.dbPath));
        killed = nodes.find((n) => n.id === holder?.node) ?? nodes[0];
        killed.child.kill('SIGKILL');
        killedAt = Date.now();
        report.print(`SIGKILL ${killed.id} (the lease holder); the client keeps using ${address}`);
      }
      try {
        if (seq % 4 === 0) {
          const tx = await client.transaction('write');
          try {
            await tx.execute({ sql: "INSERT INTO demo_log VALUES (?, 'tx', ?)", args: [seq, Date.now()] });
          } catch (err) {
            tx.close();
            outcomes.set(seq, 'failed'); // COMMIT never sent
            throw Object.assign(err as object, { counted: true });
          }
          await tx.commit();
        } else {
          await client.execute({ sql: "INSERT INTO demo_log VALUES (?, 'auto', ?)", args: [seq, Date.now()] });
        }
        outcomes.set(seq, 'acked');
        if (killedAt) {
          ackedAfterKill++;
          if (firstAckAfterKillMs === null) {
            firstAckAfterKillMs = Date.now() - killedAt;
            report.print(`first write acknowledged ${firstAckAfterKillMs} ms after the kill`);
          }
        }
      } catch (err) {
        const e = err as LibsqlError & { counted?: boolean };
        const unknown = !(err instanceof LibsqlError) || ['SQLITE_HA_COMMIT_OUTCOME_UNKNOWN', 'SERVER_ERROR', 'UNKNOWN'].includes(e.code);
        if (!e.counted) outcomes.set(seq, unknown ? 'unknown' : 'failed');
        report.print(`write ${seq}: ${unknown ? 'outcome unknown' : 'refused'} (${e.code ?? e.message})`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    client.close();
    await lb.stop();
    for (const n of nodes) if (n !== killed) n.child.kill('SIGTERM');
    await Promise.all(nodes.map((n) => (n.child.exitCode !== null || n.child.signalCode !== null) ? null
      : new Promise((r) => { const t = setTimeout(() => { n.child.kill('SIGKILL'); r(null); }, 10000); n.child.once('exit', () => { clearTimeout(t); r(null); }); })));
  }
  const db = new Database(opts.dbPath, { readonly: true });
  let counts: Map<number, number>;
  let integrity: string;
  try {
    counts = new Map((db.prepare('SELECT seq, count(*) AS n FROM demo_log GROUP BY seq').all() as { seq: number; n: number }[]).map((r) => [r.seq, r.n]));
    integrity = String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
  // The client's own record, so a checker can verify the file without trusting this summary.
  fs.writeFileSync(path.join(opts.logDir, 'client.jsonl'), [...outcomes].map(([seq, outcome]) => JSON.stringify({ seq, outcome })).join('\n') + '\n');
  const of = (o: string) => [...outcomes].filter(([, v]) => v === o).map(([s]) => s);
  const acked = of('acked');
  const missing = acked.filter((s) => !counts.has(s));
  const doubled = [...counts].filter(([, n]) => n > 1).map(([s]) => s);
  const failedPresent = of('failed').filter((s) => counts.has(s));
  const ok = missing.length === 0 && doubled.length === 0 && failedPresent.length === 0 && integrity === 'ok' &&
    killed !== null && ackedAfterKill > 0;
  return {
    ok, mode: 'serve', address, acked: acked.length, failed: of('failed').length, unknown: of('unknown').length, ackedAfterKill,
    missing, doubled, failedPresent, killed: killed?.id ?? null, firstAckAfterKillMs, integrity, workDir: opts.workDir,
    database: opts.dbPath,
  };
}
