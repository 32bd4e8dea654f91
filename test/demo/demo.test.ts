/**
 * `npm run demo` end to end in a short mode (run after `npm run build`): the demo's own summary is
 * checked, and so is the database itself, independently: every write a node acknowledged in its
 * log (logs/<node>.jsonl) must be in the file exactly once, and integrity_check must say ok.
 * Three runs: etcd from PATH, a PATH without etcd (the lockfile coordinator, said plainly), and
 * --netns when running as root with a working `ip netns`.
 */
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..', '..');
const DEMO = path.join(ROOT, 'build', 'tools', 'demo', 'main.js');
const RUN_LIMIT_MS = 45000;

interface DemoRun {
  pid: number | undefined;
  code: number | null;
  stdout: string;
  stderr: string;
  summary: any;
}

const workDirs: string[] = [];
afterAll(() => {
  for (const d of workDirs) fs.rmSync(d, { recursive: true, force: true });
});

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SQLITE_HA_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs the demo to completion (SIGKILLed past RUN_LIMIT_MS); the summary is its last stdout line. */
function runDemo(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), limitMs = RUN_LIMIT_MS): Promise<DemoRun> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [DEMO, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), limitMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').pop() ?? '';
      let summary: any = null;
      try {
        summary = JSON.parse(last);
      } catch {
        // left null: the assertions below say so
      }
      if (summary?.workDir) workDirs.push(summary.workDir);
      resolve({ pid: p.pid, code, stdout, stderr, summary });
    });
  });
}

/** Acknowledged (node, seq) pairs from the node logs, checked against the database file itself. */
function verifyIndependently(summary: any): { acked: number } {
  const logs: string = summary.logs;
  const acked = new Set<string>();
  for (const f of fs.readdirSync(logs).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of fs.readFileSync(path.join(logs, f), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const e = JSON.parse(line);
      if (e.op === 'append' && e.ok === true) acked.add(`${e.node}#${e.seq}`);
    }
  }
  const db = new Database(summary.database, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT node, seq, count(*) AS n FROM events GROUP BY node, seq').all() as { node: string; seq: number; n: number }[];
    const copies = new Map(rows.map((r) => [`${r.node}#${r.seq}`, r.n]));
    const wrong = [...acked].filter((k) => copies.get(k) !== 1);
    expect(wrong).toEqual([]);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  } finally {
    db.close();
  }
  expect(acked.size).toBe(summary.writes.acknowledged);
  return { acked: acked.size };
}

function expectPassingSummary(run: DemoRun, kind: 'etcd' | 'lockfile'): void {
  if (run.code !== 0 || !run.summary) {
    throw new Error(`demo exited ${run.code}\n--- stdout\n${run.stdout.slice(-4000)}\n--- stderr\n${run.stderr.slice(-2000)}`);
  }
  const s = run.summary;
  expect(s.ok).toBe(true);
  expect(s.coordinator.kind).toBe(kind);
  expect(s.writes.acknowledged).toBeGreaterThan(0);
  expect(s.writes.found).toBe(s.writes.acknowledged);
  expect(s.writes.missing).toEqual([]);
  expect(s.writes.duplicated).toEqual([]);
  expect(s.integrityCheck).toBe('ok');
  expect(s.reads.stale).toBe(0);
  // A real failover: the killed node held the lease, another node wrote once it ran out.
  expect(s.failover).not.toBeNull();
  expect(s.failover.wasHolder).toBe(true);
  expect(s.failover.confirmed).toBe(true);
  expect(s.failover.firstWriteBy).not.toBe(s.failover.node);
  expect(s.failover.failoverMs).toBeGreaterThan(0);
  expect(s.failover.failoverMs).toBeLessThan(10000);
  if (kind === 'etcd') expect(s.failover.cause).toBe('expired');
  // The graceful hand-over ran: the holder got SIGTERM, exited 0, and another node wrote.
  expect(s.gracefulHandover).not.toBeNull();
  expect(s.gracefulHandover.exitCode).toBe(0);
  expect(s.gracefulHandover.nextWriter).not.toBeNull();
  expect(s.gracefulHandover.nextWriter).not.toBe(s.gracefulHandover.node);
  expect(s.handovers).toBeGreaterThanOrEqual(2);
  expect(s.kept).toBe(true); // --keep: the test reads the files itself
  expect(run.stdout).toContain('PASS: every acknowledged write is in the database');
}

describe('npm run demo (short mode)', () => {
  beforeAll(() => {
    if (!fs.existsSync(DEMO)) throw new Error(`${DEMO} is missing: run \`npm run build\` first`);
  });

  it('with etcd on PATH: 3 etcd members, failover and graceful hand-over, every acknowledged write found', async () => {
    expect(spawnSync('etcd', ['--version']).status).toBe(0); // the suite needs etcd on PATH (.ci/run installs it)
    const run = await runDemo(['--duration', '8', '--json', '--keep']);
    expectPassingSummary(run, 'etcd');
    expect(run.summary.coordinator.endpoints).toHaveLength(3);
    expect(run.stdout.split('\n').slice(0, 5).join('\n')).toMatch(/coordinator: etcd/);
    verifyIndependently(run.summary);
  }, 60000);

  it('without etcd on PATH: says it uses the lockfile coordinator, and still passes', async () => {
    // A real PATH without etcd: one directory holding only a link to this node binary.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-demo-test-bin-'));
    workDirs.push(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const run = await runDemo(['--duration', '6', '--json', '--keep'], cleanEnv({ PATH: bin }));
    const firstLines = run.stdout.split('\n').slice(0, 3).join('\n');
    expect(firstLines).toMatch(/LOCKFILE coordinator, NOT etcd \(etcd is not on PATH/);
    expectPassingSummary(run, 'lockfile');
    expect(run.summary.coordinator.endpoints).toEqual([]);
    verifyIndependently(run.summary);
  }, 60000);

  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  const ipNetns = root && spawnSync('ip', ['netns', 'list']).status === 0;
  (ipNetns ? it : it.skip)('--netns (root): each node in its own network namespace, namespaces removed afterwards', async () => {
    const run = await runDemo(['--duration', '6', '--json', '--keep', '--netns']);
    expectPassingSummary(run, 'etcd');
    expect(run.summary.netns).toBe(true);
    const check = run.summary.checks.find((c: any) => /own network namespace/.test(c.name));
    expect(check).toMatchObject({ ok: true });
    expect(run.summary.coordinator.endpoints[0]).toMatch(/^http:\/\/10\.\d+\.1\.1:\d+$/);
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    expect(left).not.toContain(`sqlha-demo-${run.pid}-`);
    verifyIndependently(run.summary);
  }, 60000);

  it('--serve: one address in front of three serve nodes, a client writing through it across the SIGKILL', async () => {
    // Three etcd members and three serve processes start before the 8 s of writes: a longer bound.
    const run = await runDemo(['--serve', '--duration', '8', '--json', '--keep'], cleanEnv(), 90000);
    if (run.code !== 0 || !run.summary) {
      throw new Error(`demo exited ${run.code}\n--- stdout\n${run.stdout.slice(-4000)}\n--- stderr\n${run.stderr.slice(-2000)}`);
    }
    const s = run.summary;
    expect(s).toMatchObject({ ok: true, mode: 'serve', missing: [], doubled: [], failedPresent: [], integrity: 'ok' });
    expect(s.killed).toMatch(/^serve[123]$/);
    expect(s.ackedAfterKill).toBeGreaterThan(0);
    expect(run.stdout).toContain(`SIGKILL ${s.killed} (the lease holder); the client keeps using ${s.address}`);
    // Independently: the client's own log against the file.
    const log = fs.readFileSync(path.join(s.workDir, 'logs', 'client.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const db = new Database(s.database, { readonly: true, fileMustExist: true });
    try {
      const copies = new Map((db.prepare('SELECT seq, count(*) AS n FROM demo_log GROUP BY seq').all() as { seq: number; n: number }[]).map((r) => [r.seq, r.n]));
      expect(log.filter((e) => e.outcome === 'acked' && copies.get(e.seq) !== 1)).toEqual([]);
      expect(log.filter((e) => e.outcome === 'failed' && copies.has(e.seq))).toEqual([]);
      expect(log.filter((e) => e.outcome === 'acked')).toHaveLength(s.acked);
    } finally {
      db.close();
    }
  }, 100000);
});
