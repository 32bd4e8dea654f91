/**
 * A dqlite cluster for comparison figures: Debian's go-dqlite package ships `dqlite-demo` (a
 * key/value HTTP API over a replicated SQLite database: PUT /key stores the body, GET /key reads it)
 * and the `dqlite` shell. Nodes listen on free loopback ports and keep their data in a temp dir;
 * stop() ends every process it started and removes the dir. Not needed by the tests: install
 * with `apt-get install go-dqlite` (docs/BENCHMARKS.md).
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { freePort } from './etcd-process';

export const DQLITE_DEMO = 'dqlite-demo';
const DQLITE_SHELL = 'dqlite';
/** The database the demo's HTTP API writes to (its name is fixed in the demo). */
const DEMO_DATABASE = 'demo';

/** True when `cmd` is an executable on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

export interface DqliteMember {
  id: string;
  address: string;
  role: string;
}

/** The `dqlite -s ... demo .cluster` table, one `id|address|role` line per member. */
export function parseClusterMembers(out: string): DqliteMember[] {
  const members: DqliteMember[] = [];
  for (const line of out.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length !== 3 || cells.some((c) => c === '')) continue;
    const [id, address, role] = cells;
    if (!/^[0-9a-f]+$/i.test(id) || !/:\d+$/.test(address)) continue;
    members.push({ id, address, role: role.toLowerCase() });
  }
  return members;
}

/** Whether every one of `expected` database addresses is a voter. */
export function allVoters(members: readonly DqliteMember[], expected: readonly string[]): boolean {
  return expected.every((a) => members.some((m) => m.address === a && m.role === 'voter'));
}

interface Node {
  log: string;
  api: string;
  db: string;
  dir: string;
  process: ChildProcess;
}

export class DqliteCluster {
  private readonly nodes: Node[] = [];
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  private constructor(readonly dir: string) {}

  /** Starts `size` nodes (the first bootstraps, the others join it) and waits until all are voters. */
  static async start(opts: { parentDir: string; size?: number; startTimeoutMs?: number }): Promise<DqliteCluster> {
    const cluster = new DqliteCluster(fs.mkdtempSync(path.join(opts.parentDir, 'dqlite-')));
    try {
      const deadline = Date.now() + (opts.startTimeoutMs ?? 20000);
      // The others join through the first, so it must be serving before they start.
      await cluster.spawnNode(0);
      await cluster.waitReady(deadline);
      for (let i = 1; i < (opts.size ?? 3); i++) await cluster.spawnNode(i);
      await cluster.waitReady(deadline);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** The node the bench writes through (the bootstrap node, normally the leader). */
  get apiUrl(): string {
    return `http://${this.nodes[0].api}`;
  }

  private async spawnNode(i: number): Promise<void> {
    const api = `127.0.0.1:${await freePort()}`;
    const db = `127.0.0.1:${await freePort()}`;
    const dir = path.join(this.dir, `node${i + 1}`);
    fs.mkdirSync(dir);
    const logFile = path.join(this.dir, `node${i + 1}.log`);
    const log = fs.openSync(logFile, 'a');
    const join = i === 0 ? [] : ['--join', this.nodes[0].db];
    const child = spawn(DQLITE_DEMO, ['--api', api, '--db', db, '--dir', dir, ...join], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child.on('error', () => undefined);
    this.nodes.push({ log: logFile, api, db, dir, process: child });
  }

  /** Until every node started so far is a voter and a write through the API is acknowledged. */
  private async waitReady(deadline: number): Promise<void> {
    const addresses = this.nodes.map((n) => n.db);
    let last = '';
    for (;;) {
      const dead = this.nodes.find((n) => n.process.exitCode !== null);
      if (dead) throw new Error(`dqlite-demo on ${dead.api} exited with ${dead.process.exitCode}: ${this.logTail(dead)}`);
      const r = spawnSync(DQLITE_SHELL, ['-s', addresses.join(','), DEMO_DATABASE, '.cluster'], { encoding: 'utf8', timeout: 5000 });
      last = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
      if (r.status === 0 && allVoters(parseClusterMembers(r.stdout), addresses)) {
        try {
          await this.put('bench-ready', 'ready');
          return;
        } catch (err) {
          last = (err as Error).message;
        }
      }
      if (Date.now() > deadline) throw new Error(`dqlite cluster not ready in time: ${last}; ${this.logTail(this.nodes[0])}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private logTail(n: Node): string {
    try {
      return fs.readFileSync(n.log, 'utf8').trim().split('\n').slice(-5).join(' | ') || '(empty log)';
    } catch {
      return '(no log)';
    }
  }

  /** One write through the demo's HTTP API: INSERT OR REPLACE of (key, value), acknowledged once replicated. */
  put(key: string, value: string, timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${this.apiUrl}/${encodeURIComponent(key)}`,
        { method: 'PUT', agent: this.agent, timeout: timeoutMs, headers: { 'content-length': Buffer.byteLength(value) } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => (res.statusCode === 200 && body.trim() === 'done'
            ? resolve()
            : reject(new Error(`dqlite PUT ${key}: HTTP ${res.statusCode}: ${body.trim().slice(0, 200)}`))));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`dqlite PUT ${key}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(value);
    });
  }

  /** SIGTERM (the demo hands over and closes), SIGKILL after 5 s; then the data dir goes. */
  async stop(): Promise<void> {
    this.agent.destroy();
    await Promise.all(this.nodes.map(async (n) => {
      const p = n.process;
      if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return; // never started, or gone
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const killer = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
