/**
 * sqlite-ha chaos: a Jepsen-style run against real processes. Starts a 3-member etcd on a bridge,
 * N node processes each in its own network namespace sharing one database file, injects a seeded
 * schedule of faults, undoes them, stops the nodes and checks every history against the final file.
 *
 *   npm run chaos -- --duration 60s --nodes 3 --faults kill,pause,partition,etcd --fs local --seed 7
 *   npm run chaos -- --duration 40s --fs sshfs --seed 7      (lockless mode: one sshfs mount per node)
 *
 * Exit: 0 no violation; 1 violations; 2 bad flags or unsupported setup; 3 the harness failed
 * (including a fault it could not inject or undo).
 * Needs root (network namespaces) and etcd/etcdctl on PATH; --fs sshfs also sshfs, sshd, ssh-keygen
 * and /dev/fuse. docs/CHAOS.md explains the rest.
 */
import Database from 'better-sqlite3';
import { spawnSync } from 'child_process';
import { Command, InvalidArgumentError } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SshfsExport } from '../cluster/sshfs';
import { UsageError } from '../../src/cli/settings';
import { open } from '../../src/index';
import { check, checkAvailability, readFinalDb } from './checker';
import { Cleanup, stopSshfsSync, sweepOrphans, sweepStaleMounts } from './cleanup';
import { ChaosEtcd } from './cluster';
import { FAULT_KINDS, FaultKind, FaultRunner, parseFaultKinds, planSchedule } from './faults';
import { readHistoryFiles } from './history';
import { ChaosNetwork, sweepStale } from './netns';
import type { WorkerConfig } from './node-worker';
import { NodeManager } from './nodes';
import { ChaosReport, formatReport } from './report';
import { BankConfig, setupTransaction } from './schema';

export interface ChaosOptions {
  durationMs: number;
  nodes: number;
  faults: FaultKind[];
  fs: 'local' | 'sshfs';
  seed: number;
  json: boolean;
  dir: string | null;
  keep: boolean;
  report: string | null;
  ttlMs: number;
  quiet: boolean;
  /** Ballast pages written into the database before the nodes start (MB): large-file takeovers. */
  dbMb: number;
}

/** Timing of every node; TTL 2 s (etcd's minimum) keeps fault windows short. */
const LEASE = { safetyMarginMs: 500, idleReleaseMs: 300, acquireTimeoutMs: 8000, rpcTimeoutMs: 1000, busyTimeoutMs: 5000 };
const BANK: BankConfig = { accounts: 5, initialBalance: 100 };
const RECOVERY_BOUND_MS = 15000;
/** A lockless unclean takeover copies the file: the bound grows by this much per MB of ballast (~16 MB/s). */
const RECOVERY_MS_PER_MB = 60;
const SETTLE_MS = 1000;
const STOP_GRACE_MS = 12000;

export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$/.exec(text);
  if (!m) throw new InvalidArgumentError(`expected a duration like 60s, 1m or 500ms, got '${text}'`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const msv = unit === 'ms' ? n : unit === 's' ? n * 1000 : n * 60000;
  if (msv < 1000 || msv > 3600_000) throw new InvalidArgumentError('the duration must be between 1s and 1h');
  return Math.round(msv);
}

function parseIntFlag(min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

export function parseArgs(argv: string[]): ChaosOptions {
  const program = new Command()
    .name('chaos')
    .description('Fault-injection run against sqlite-ha: real processes, real faults, every history checked')
    .option('--duration <time>', 'how long faults are injected (e.g. 60s, 1m)', parseDuration, 60000)
    .option('--nodes <n>', 'node processes, each in its own network namespace', parseIntFlag(1, 9), 3)
    .option('--faults <list>', `comma list of ${FAULT_KINDS.join(', ')} (or none)`, FAULT_KINDS.join(','))
    .option('--fs <kind>', 'where the shared database lives: local (one file, trusted locks) or sshfs (one mount per node, lockless mode)', 'local')
    .option('--seed <n>', 'seed for the fault schedule and the workloads (default: random, printed)', parseIntFlag(0, 2 ** 31 - 1))
    .option('--ttl <ms>', 'lease TTL of the nodes in ms (etcd grants whole seconds, at least 2)', parseIntFlag(2000, 60000), 2000)
    .option('--json', 'print the JSON report on stdout (the summary goes to stderr)', false)
    .option('--report <file>', 'also write the JSON report to this file')
    .option('--dir <dir>', 'working directory (default: a new temp dir)')
    .option('--keep', 'keep the working directory (it is always kept when a check fails)', false)
    .option('--quiet', 'no progress lines on stderr', false)
    .option('--db-mb <n>', 'grow the database by about n MB of ballast pages before the nodes start (large-file takeovers)', parseIntFlag(0, 8192), 0)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') process.exit(0);
    throw new UsageError('');
  }
  const o = program.opts();
  let faults: FaultKind[];
  try {
    faults = parseFaultKinds(String(o.faults));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (o.fs !== 'local' && o.fs !== 'sshfs') throw new UsageError(`--fs ${o.fs}: expected local or sshfs`);
  return {
    durationMs: o.duration,
    nodes: o.nodes,
    faults,
    fs: o.fs,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 31),
    json: Boolean(o.json),
    dir: o.dir ?? null,
    keep: Boolean(o.keep),
    report: o.report ?? null,
    ttlMs: o.ttl,
    quiet: Boolean(o.quiet),
    dbMb: o.dbMb,
  };
}

/** Zero-filled blob pages in a table of their own (the checker reads only the workload's tables). */
function growDatabase(file: string, mb: number): void {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = TRUNCATE');
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE IF NOT EXISTS ballast (id INTEGER PRIMARY KEY, b BLOB)');
    const ins = db.prepare('INSERT INTO ballast (b) VALUES (zeroblob(?))');
    for (let left = mb; left > 0; left -= 50) ins.run(Math.min(50, left) * 2 ** 20);
  } finally {
    db.close();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const log = (msg: string) => {
    if (!opts.quiet) process.stderr.write(`[chaos +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
  };
  const cleanup = new Cleanup(log);
  cleanup.install();

  const orphans = sweepOrphans();
  if (orphans.length) log(`killed processes of earlier runs: ${orphans.join(', ')}`);
  const swept = [...sweepStaleMounts(), ...sweepStale()];
  if (swept.length) log(`removed leftovers of earlier runs: ${swept.join(', ')}`);

  const dir = opts.dir ? path.resolve(opts.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-chaos-'));
  fs.mkdirSync(dir, { recursive: true });
  // Lets a later run tell this run's mounts and processes from a live run's (sweepOrphans).
  fs.writeFileSync(path.join(dir, 'harness.pid'), `${process.pid}\n`);
  fs.mkdirSync(path.join(dir, 'history'), { recursive: true });
  if (opts.fs === 'local') fs.mkdirSync(path.join(dir, 'db'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  let keepDir = opts.keep || opts.dir !== null;
  cleanup.add('work dir', () => {
    if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
  });
  const errors: string[] = [];
  try {
    return await runInDir(opts, dir, cleanup, log, started, errors, (keep) => (keepDir = keepDir || keep));
  } catch (err) {
    keepDir = true;
    log(`harness failed; keeping ${dir}`);
    throw err;
  }
}

async function runInDir(
  opts: ChaosOptions, dir: string, cleanup: Cleanup, log: (msg: string) => void, started: number, errors: string[],
  keep: (k: boolean) => boolean,
): Promise<ChaosReport> {
  let net: ChaosNetwork | null = null;
  cleanup.add('network', () => net?.destroy());
  net = ChaosNetwork.create(opts.nodes, (n) => (net = n));
  log(`network: bridge ${net.bridge} ${net.hostAddr}/24, namespaces ${net.nodes.map((n) => `${n.ns}=${n.addr}`).join(' ')}`);

  const prefix = `/chaos-${process.pid}`;
  const recoveryBound = RECOVERY_BOUND_MS + (opts.fs === 'sshfs' ? opts.dbMb * RECOVERY_MS_PER_MB : 0);
  const dbName = 'chaos.db';
  // local: one file in the work dir. sshfs: one export, mount 0 for the harness's own setup, mount
  // i for node i (each its own "host": locks through one mount are invisible through the others);
  // the checker reads the export directly, the server's disk.
  let storage: SshfsExport | null = null;
  cleanup.add('sshfs', () => {
    if (storage) stopSshfsSync(storage);
  });
  const expectLocks = opts.fs === 'sshfs' ? 'none' : 'trusted';
  if (opts.fs === 'sshfs') {
    storage = await SshfsExport.start({ mounts: opts.nodes + 1, dir: path.join(dir, 'sshfs') });
    log(`sshfs: export ${storage.exportDir} (sshd 127.0.0.1:${storage.port}), mounts ${storage.mounts.map((m) => path.basename(m)).join(' ')}`);
  }
  const mounted = storage;
  const dbFile = mounted ? path.join(mounted.mounts[0], dbName) : path.join(dir, 'db', dbName);
  const nodeDbFile = (i: number) => (mounted ? path.join(mounted.mounts[i], dbName) : dbFile);
  const finalDbFile = mounted ? path.join(mounted.exportDir, dbName) : dbFile;
  let etcd: ChaosEtcd | null = null;
  const etcdDir = path.join(dir, 'etcd');
  fs.mkdirSync(etcdDir, { recursive: true });
  cleanup.add('etcd', () => etcd?.killAllSync());
  etcd = await ChaosEtcd.start(net.hostAddr, 3, etcdDir, prefix, dbName);
  log(`etcd: ${etcd.endpoints.join(' ')} (mutual TLS, certificates in ${path.join(etcdDir, 'tls')})`);

  // Ballast for large-file runs, written on the server's disk before any node (fast; no meta row
  // yet: the setup below is the database's first holder).
  if (opts.dbMb > 0) {
    const t0 = Date.now();
    growDatabase(finalDbFile, opts.dbMb);
    log(`ballast: ${opts.dbMb} MB in ${Date.now() - t0} ms (${(fs.statSync(finalDbFile).size / 2 ** 20).toFixed(0)} MB file)`);
  }
  // The schema and the accounts, written through the library like everything else.
  const setupDb = await open(dbFile, {
    coordinator: { kind: 'etcd', endpoints: etcd.endpoints, prefix, tls: etcd.clientTls },
    nodeId: 'setup', leaseTtlMs: opts.ttlMs, ...LEASE,
  });
  const setupLocks = setupDb.locks;
  await setupDb.write((c) => setupTransaction(c, BANK));
  await setupDb.close();
  if (setupLocks !== expectLocks) {
    throw new Error(`open() chose locks '${setupLocks}' for ${dbFile} (--fs ${opts.fs}); expected '${expectLocks}'`);
  }
  log(`setup written through the library (locks '${setupLocks}')`);

  const historyFile = (i: number) => path.join(dir, 'history', `n${i}.jsonl`);
  const e = etcd;
  const n0 = net;
  const nodes = new NodeManager(
    opts.nodes,
    (i) => n0.execPrefix(i),
    (i, incarnation): WorkerConfig => ({
      db: nodeDbFile(i),
      endpoints: e.endpoints,
      tls: e.clientTls,
      prefix,
      nodeId: `n${i}`,
      incarnation,
      historyFile: historyFile(i),
      seed: opts.seed,
      bank: BANK,
      locks: 'auto',
      expectLocks,
      leaseTtlMs: opts.ttlMs,
      ...LEASE,
      thinkMs: 20,
      bulkRows: 4000,
      padBytes: 1024,
      maxOps: 200000,
      maxRunMs: opts.durationMs + 120000,
      parentPid: process.pid,
    }),
    log,
    path.join(dir, 'logs'),
  );
  cleanup.add('nodes', () => nodes.killAllSync());
  for (let i = 1; i <= opts.nodes; i++) nodes.start(i);

  // Warm-up: every node has written once, so the wiring (namespaces → etcd, file) works.
  const warmUntil = Date.now() + 30000;
  const ackedBy = new Set<number>();
  while (ackedBy.size < opts.nodes && Date.now() < warmUntil) {
    const r = await nodes.waitEvent(null, (ev) => ev.ev === 'ack', Math.max(1, warmUntil - Date.now()));
    if (r) ackedBy.add(r.node.index);
  }
  if (ackedBy.size < opts.nodes) {
    const tails = nodes.nodes.map((n) => `${n.nodeId}: ${n.stderrTail.trim().split('\n').slice(-3).join(' | ')}`).join('\n');
    throw new Error(`warm-up: only ${ackedBy.size}/${opts.nodes} nodes acknowledged a write within 30 s; logs in ${dir}\n${tails}`);
  }
  log(`warm-up done: all ${opts.nodes} nodes writing`);

  // Faults.
  const plan = planSchedule(opts.seed, opts.faults, opts.durationMs, opts.ttlMs);
  log(`schedule (seed ${opts.seed}): ${plan.map((f) => `${f.type}/${f.holdMs}ms`).join(', ') || 'no faults'}`);
  // mount-missing: what node i's mount point looks like when its filesystem is not mounted.
  const unmountedPath = (i: number) => {
    const d = path.join(dir, 'unmounted', `mnt-${i}`);
    fs.mkdirSync(d, { recursive: true });
    return path.join(d, dbName);
  };
  const runner = new FaultRunner({
    nodes, net, etcd, log, recoveryBoundMs: recoveryBound, storage: { locks: expectLocks, unmountedPath },
  });
  const faultsStart = Date.now();
  const endAt = faultsStart + opts.durationMs;
  cleanup.add('undo faults', () => net?.healAll());
  try {
    await runner.run(plan, endAt, opts.ttlMs);
  } catch (err) {
    errors.push(`fault runner: ${(err as Error).message}`);
  }
  for (const r of runner.records) if (r.error) errors.push(`fault ${r.index} ${r.type}: ${r.error}`);
  if (Date.now() < endAt) await sleep(endAt - Date.now());
  await runner.undoAll().catch((err) => errors.push(`undo: ${(err as Error).message}`));
  log('faults undone; settling');
  const settleFrom = Date.now();
  await sleep(SETTLE_MS);
  const settled = (await nodes.waitAckAfter(settleFrom, recoveryBound)) !== null;
  const runEnd = Date.now();
  log('stopping nodes');
  await nodes.stopAll(STOP_GRACE_MS);
  await etcd.stop(true).catch(() => undefined);
  if (storage) {
    await storage.stop();
    log('sshfs export stopped (mounts gone)');
  }
  for (const [mode, n] of Object.entries(nodes.locksSeen)) {
    if (mode !== expectLocks) errors.push(`${n} node start(s) opened the database with locks '${mode}' on --fs ${opts.fs}; expected '${expectLocks}'`);
  }

  // Check.
  const files = nodes.nodes.map((n) => historyFile(n.index));
  const hist = readHistoryFiles(files);
  const finalDb = readFinalDb(finalDbFile);
  const result = check(hist.ops, finalDb, BANK);
  const avail = checkAvailability(runner.records, hist.ops, recoveryBound, runEnd);
  const violations = [...result.violations, ...avail.violations];
  const counts = { ...result.counts, ...(avail.violations.length ? { availability: avail.violations.length } : {}) };
  if (!settled) {
    violations.push({ check: 'availability', kind: 'availability', message: `no write succeeded within ${recoveryBound} ms after every fault was undone` });
    counts.availability = (counts.availability ?? 0) + 1;
  }
  const committedOps = new Set(finalDb.commits.map((c) => c.opid));
  const subjectOp = (id: string) => {
    const op = hist.ops.find((o) => o.id === id);
    return { id, outcome: op?.outcome ?? 'unknown', crashed: op?.crashed ?? true, committed: committedOps.has(id) };
  };
  const injectedKinds = new Set(runner.records.filter((r) => r.injected).map((r) => r.kind));
  const ok = violations.length === 0;
  const kept = keep(!ok);
  const report: ChaosReport = {
    ok,
    seed: opts.seed,
    durationMs: opts.durationMs,
    nodes: opts.nodes,
    fs: opts.fs,
    locks: { expected: expectLocks, setup: setupLocks, nodeStarts: { ...nodes.locksSeen } },
    faultKinds: opts.faults,
    startedAt: new Date(started).toISOString(),
    wallMs: Date.now() - started,
    dir,
    kept,
    faults: runner.records.map((r) => ({
      ...r,
      availability: avail.availability.find((a) => a.index === r.index) ?? null,
      subjectOp: r.opId ? subjectOp(r.opId) : null,
    })),
    missingKinds: opts.faults.filter((k) => !injectedKinds.has(k)),
    skippedFaults: runner.skipped.length,
    stats: result.stats,
    violationCounts: counts,
    violations,
    unexpectedExits: nodes.unexpectedExits,
    historyLinesSkipped: hist.skipped.length,
    errors,
  };
  fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(report, null, 2));
  if (opts.report) fs.writeFileSync(opts.report, JSON.stringify(report, null, 2));
  cleanup.runAll();
  return report;
}

function preflight(opts: ChaosOptions): string | null {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'chaos needs root: it creates network namespaces, veth pairs and a bridge';
  }
  for (const bin of ['ip', 'etcd', 'etcdctl']) {
    const r = spawnSync(bin, bin === 'ip' ? ['-V'] : bin === 'etcdctl' ? ['version'] : ['--version'], { stdio: 'ignore' });
    if (r.status !== 0) return `chaos needs '${bin}' on PATH`;
  }
  if (opts.fs === 'sshfs' && !SshfsExport.available()) {
    return "chaos --fs sshfs needs 'sshfs' on PATH, /usr/sbin/sshd, 'ssh-keygen' and /dev/fuse";
  }
  return null;
}

async function main(): Promise<number> {
  let opts: ChaosOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`chaos: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const missing = preflight(opts);
  if (missing) {
    process.stderr.write(`chaos: ${missing}\n`);
    return 2;
  }
  const report = await runChaos(opts);
  const text = formatReport(report);
  if (opts.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
    process.stderr.write(text + '\n');
  } else {
    process.stdout.write(text + '\n');
  }
  if (!report.ok) return 1;
  // The checks passed, but the harness could not do everything it planned: say so in the status.
  return report.errors.length > 0 ? 3 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`chaos: ${(err as Error)?.stack ?? err}\n`);
      process.exit(3);
    },
  );
}
