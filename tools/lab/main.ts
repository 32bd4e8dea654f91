/**
 * sqlite-ha NFS lab: real NFS between virtual machines. Boots N client VMs (QEMU TCG, Debian's
 * kernel, each with its own NFS client), an NFS server (nfs-ganesha on the host loopback, or the
 * kernel NFS server in its own VM), etcd on the host; runs a scenario through the chaos node
 * workers and checks every history against the final file.
 *
 *   npm run lab -- --nodes 2 --server ganesha --scenario counter --duration 60 --seed 7
 *
 * Exit: 0 PASS, 1 FAIL (violations), 2 bad flags or missing packages, 3 the harness failed.
 * docs/NFS.md explains the settings and lists the results.
 */
import { spawnSync } from 'child_process';
import { Command, InvalidArgumentError } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { check, readFinalDb } from '../chaos/checker';
import { readHistoryFiles } from '../chaos/history';
import { ChaosReport, formatReport } from '../chaos/report';
import { contractViolations, counterCheck, countHandovers, freshViolations, handoverTimes, LabViolation, storageFaults } from './checks';
import { open } from '../../src/index';
import { setupTransaction } from '../chaos/schema';
import { BenchSide, DB_NAME, Lab, LAB_TIMING, MOUNT_POINT, NFS_LEASE_SECONDS, NFS_VERSIONS, NfsVersion, ServerKind, setLabTtl } from './lab';
import { BANK, runScenario, Scenario, SCENARIOS } from './scenarios';

export interface LabOptions {
  nodes: number;
  server: ServerKind;
  scenario: Scenario;
  durationMs: number;
  seed: number;
  keep: boolean;
  failover: boolean;
  mountOptions: string | null;
  report: string | null;
  quiet: boolean;
  maxVms: number;
  /** Cross-host BEGIN EXCLUSIVE probe before the workload. */
  lockProbe: boolean;
  /** Run sqlite-ha doctor in a client VM at the end. */
  doctor: boolean;
  /** Lease TTL (ms) for this run. */
  ttlMs: number;
  /** ganesha: hand out NFSv4 delegations (knfsd always may). */
  delegations: boolean;
  nfsVersion: NfsVersion;
  /** The workers' `locks` option ('auto' unless forced). */
  locks: LocksChoice;
}

type LocksChoice = 'auto' | 'trusted' | 'none';

/**
 * stale-cache: NFSv3 with no lock requests to the server (nolock), no close-to-open revalidation
 * and a 10-minute attribute cache, so a host's page cache serves views from before the other
 * host's commits (the cache probe shows it for reads outside a lock); with locks 'trusted' forced
 * (the etcd lease still serializes writers). The scenario forces --nfs-version 3.
 */
export const STALE_CACHE_MOUNT_OPTIONS = 'nocto,actimeo=600';

function intFlag(min: number, max: number) {
  return (t: string): number => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

export function parseArgs(argv: string[]): LabOptions {
  const p = new Command()
    .name('lab')
    .description('sqlite-ha over real NFS between QEMU virtual machines')
    .option('--nodes <n>', 'client VMs', intFlag(1, 6), 3)
    .option('--server <kind>', 'ganesha (user space, host loopback) or knfsd (kernel server in its own VM)', 'ganesha')
    .option('--scenario <name>', SCENARIOS.join(' | '), 'counter')
    .option('--duration <s>', 'seconds of workload after the warm-up', intFlag(10, 3600), 60)
    .option('--seed <n>', 'seed for workloads and faults (default: random, printed)', intFlag(0, 2 ** 31 - 1))
    .option('--failover', 'counter/bank: SIGKILL the holder\'s process once, half-way', false)
    .option('--delegations', 'ganesha: hand out NFSv4 read/write delegations (ganesha\'s own default is off; knfsd hands out read delegations by default)', false)
    .option('--ttl <ms>', 'lease TTL of every node (ms); safety margin TTL/5, rpc timeout TTL/2 (TCG is slow: below 30000 first writes may miss their deadline under load)', intFlag(5000, 120000), LAB_TIMING.leaseTtlMs)
    .option('--lock-probe', 'before the workload: BEGIN EXCLUSIVE held on the first client VM, tried on the second (SQLITE_BUSY expected when locks cross hosts)', false)
    .option('--doctor', 'run sqlite-ha doctor on the database in the last client VM at the end', false)
    .option('--mount-options <opts>', 'extra NFS mount options for the clients (e.g. nolock, local_lock=all)')
    .option('--nfs-version <v>', 'NFS version of the client mounts: 4.1, or 3 (ganesha only; mounted nolock: no NLM in the lab)', '4.1')
    .option('--locks <mode>', "the workers' locks option: auto | trusted | none (stale-cache: trusted)")
    .option('--max-vms <n>', 'refuse to run more VMs at once than this (CPU is shared)', intFlag(1, 12), 3)
    .option('--report <file>', 'also write the JSON report here')
    .option('--keep', 'keep the run directory (histories, logs, the database)', false)
    .option('--quiet', 'no progress lines', false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    p.parse(argv, { from: 'user' });
  } catch (err) {
    const e = err as { code?: string };
    if (e.code === 'commander.helpDisplayed') process.exit(0);
    throw new UsageError('');
  }
  const o = p.opts();
  if (o.server !== 'ganesha' && o.server !== 'knfsd') throw new UsageError(`--server ${o.server}: expected ganesha or knfsd`);
  if (o.scenario === 'stale-cache') {
    o.nfsVersion = '3';
    o.locks ??= 'trusted';
    o.mountOptions ??= STALE_CACHE_MOUNT_OPTIONS;
    if (o.nodes < 2) throw new UsageError('--scenario stale-cache needs --nodes 2 or more (writers alternating)');
  }
  if (!NFS_VERSIONS.includes(o.nfsVersion)) throw new UsageError(`--nfs-version ${o.nfsVersion}: expected ${NFS_VERSIONS.join(' or ')}`);
  if (o.nfsVersion === '3' && o.server !== 'ganesha') throw new UsageError('--nfs-version 3 is served by ganesha only in the lab');
  if (o.locks !== undefined && !['auto', 'trusted', 'none'].includes(o.locks)) throw new UsageError(`--locks ${o.locks}: expected auto, trusted or none`);
  if (!SCENARIOS.includes(o.scenario)) throw new UsageError(`--scenario ${o.scenario}: expected ${SCENARIOS.join(', ')}`);
  const vms = o.nodes + (o.server === 'knfsd' ? 1 : 0);
  if (vms > o.maxVms) throw new UsageError(`${vms} VMs (${o.nodes} clients${o.server === 'knfsd' ? ' + the knfsd VM' : ''}) exceed --max-vms ${o.maxVms}`);
  if (o.lockProbe && o.nodes < 2) throw new UsageError('--lock-probe needs --nodes 2 or more');
  if (o.delegations && o.server !== 'ganesha') throw new UsageError('--delegations is a ganesha setting (knfsd hands out read delegations unless fs.leases-enable = 0)');
  if ((o.scenario === 'failover' || o.scenario === 'zombie') && o.nodes < 2) throw new UsageError(`--scenario ${o.scenario} needs --nodes 2 or more`);
  return {
    nodes: o.nodes, server: o.server, scenario: o.scenario, durationMs: o.duration * 1000,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 31), keep: Boolean(o.keep), failover: Boolean(o.failover),
    mountOptions: o.mountOptions ?? null, report: o.report ?? null, quiet: Boolean(o.quiet), maxVms: o.maxVms,
    delegations: Boolean(o.delegations), ttlMs: o.ttl, doctor: Boolean(o.doctor), lockProbe: Boolean(o.lockProbe),
    nfsVersion: o.nfsVersion, locks: o.locks ?? 'auto',
  };
}

class UsageError extends Error {}

export interface LabReport extends ChaosReport {
  lab: {
    server: ServerKind;
    scenario: Scenario;
    nfsVersion: NfsVersion;
    /** The workers' locks option. */
    locksOption: LocksChoice;
    kernel: string;
    mountOptions: string;
    /** The options as the kernel applied them (/proc/mounts in the first client). */
    effectiveMountOptions: string;
    timing: typeof LAB_TIMING;
    nfsLeaseSeconds: number;
    delegations: string;
    handovers: number;
    failoverMs: { kind: string; ms: number; ttlMultiple: number }[];
    counter: ReturnType<typeof counterCheck>['stats'];
    rawErrors: Record<string, number>;
    storageFaults: Record<string, number>;
    /** Failed writes by error code (the stale-cache scenario: SQLITE_HA_STALE_VIEW = a stale view refused). */
    failuresByCode: Record<string, number>;
    /** Per client VM: NFS operations on the mount (mountstats). */
    nfsOps: Record<string, Record<string, number>>;
    /** --scenario bench: ratios with targets and verdicts. */
    bench: BenchFigure[] | null;
    /** BEGIN EXCLUSIVE on one VM vs another (--lock-probe). */
    lockProbe: { holder: string; other: string; whileHeld: string; afterRelease: string } | null;
    /** stale-cache: a file rewritten by one VM, read by another plainly and under a lock. */
    cacheProbe: { before: string; plainRead: string; underLock: string } | null;
    /** sqlite-ha doctor run in the last client VM on the database (--doctor). */
    doctor: { vm: string; findings: { check: string; verdict: string; summary: string }[] } | null;
    clock: { maxOffsetMs: number; maxRttMs: number };
    violations: LabViolation[];
  };
}

export async function runLab(opts: LabOptions): Promise<LabReport> {
  const started = Date.now();
  const log = (m: string) => {
    if (!opts.quiet) process.stderr.write(`[lab +${((Date.now() - started) / 1000).toFixed(1)}s] ${m}\n`);
  };
  setLabTtl(opts.ttlMs);
  const lab = new Lab({
    server: opts.server, nodes: opts.nodes, mountOptions: opts.mountOptions ?? undefined, log, keep: opts.keep, delegations: opts.delegations,
    nfsVersion: opts.nfsVersion,
  });
  try {
    log(`run dir ${lab.dir}; seed ${opts.seed}; timing ${JSON.stringify(LAB_TIMING)}`);
    await lab.start();
    // What the kernel made of the mount options (on NFSv4 `nolock` is ignored: locks still reach
    // the server): local_lock=all|posix in the effective options means locks stay on each host.
    const effective = await lab.guestExec(lab.nodes[0].vm, ['cat', '/proc/mounts'], 30000)
      .then((t) => t.split('\n').find((l) => l.split(' ')[1] === MOUNT_POINT)?.split(' ')[3] ?? '').catch(() => '');
    const locksExpected = opts.locks !== 'auto' ? opts.locks : /(^|,)(nolock|local_lock=(all|posix))(,|$)/.test(effective) ? 'none' : 'trusted';
    log(`effective mount options in ${lab.nodes[0].vm}: ${effective}`);
    // The setup opens in the mode the workers will be in: etcd records it, and a node in another mode is refused.
    const setupLocks = await writeSetup(lab, locksExpected);
    let lockProbe: LabReport['lab']['lockProbe'] = null;
    if (opts.lockProbe) {
      log('lock probe: BEGIN EXCLUSIVE held on one VM, tried on another');
      lockProbe = await lab.lockProbe();
      log(`lock probe: while held ${lockProbe.whileHeld}, after release ${lockProbe.afterRelease}`);
    }
    let cacheProbe: LabReport['lab']['cacheProbe'] = null;
    if (opts.scenario === 'stale-cache') {
      cacheProbe = await lab.cacheProbe();
      log(`cache probe: ${lab.nodes[0].vm} read '${cacheProbe.before}', ${lab.nodes[1].vm} rewrote it; ${lab.nodes[0].vm} then read '${cacheProbe.plainRead}' plainly, '${cacheProbe.underLock}' under a lock`);
    }
    let throughput: { writes: BenchSide; reads: BenchSide; locks: string } | null = null;
    if (opts.scenario === 'bench') {
      log(`bench: sqlite-ha vs raw better-sqlite3 on the NFS mount in ${lab.nodes[0].vm} (other VMs idle)`);
      throughput = await lab.benchInGuest(lab.nodes[0].vm, 8000, 2);
      log(`bench: writes ${throughput.writes.ratio.toFixed(3)}, reads ${throughput.reads.ratio.toFixed(3)}`);
    }
    const res = await runScenario(lab, { scenario: opts.scenario, durationMs: opts.durationMs, seed: opts.seed, failover: opts.failover, locks: opts.locks });
    log('stopping workers');
    await lab.stopWorkers(LAB_TIMING.acquireTimeoutMs);
    const lastVm = lab.nodes[lab.nodes.length - 1].vm;
    const [nfsOps, doctor] = await Promise.all([
      lab.nfsOpCounts(),
      opts.doctor && lab.control.agent(lastVm)
        ? lab.doctorInGuest(lastVm).catch((err) => [{ check: 'doctor', verdict: 'error', summary: (err as Error).message.slice(0, 300) }])
        : Promise.resolve(null),
    ]);
    await lab.sampleClocks();
    lab.convertHistories();
    const clock = lab.clockSummary();
    const locksSeen: Record<string, number> = {};
    for (const n of lab.nodes) if (n.locks) locksSeen[n.locks] = (locksSeen[n.locks] ?? 0) + 1;
    await lab.shutdown();
    const finalFile = await lab.finalDbFile();
    const hist = readHistoryFiles(lab.nodes.map((n) => lab.historyFile(n)));
    const finalDb = readFinalDb(finalFile);
    const result = check(hist.ops, finalDb, BANK);
    const contract = contractViolations(hist.ops);
    const counter = counterCheck(hist.ops, finalDb);
    const handovers = countHandovers(lab.acquisitions);
    // stale-cache and stale-knfsd try to make stale views: a refused one (typed) is the expected outcome there.
    const nfsFaults = res.faults.some((f) => f.kind === 'nfs') || opts.scenario === 'stale-cache' || opts.scenario === 'stale-knfsd';
    const labViolations: LabViolation[] = [...contract.violations, ...freshViolations(hist.ops, nfsFaults), ...counter.violations];
    // bank writes on the first half of the nodes only: with 2 nodes one writer, no hand-over to expect.
    const writers = opts.scenario === 'bank' ? Math.ceil(opts.nodes / 2) : opts.nodes;
    if (writers > 1 && handovers === 0) labViolations.push({ check: 'handover', message: 'the lease never moved between hosts: nothing about hand-overs was tested' });
    const bound = LAB_TIMING.leaseTtlMs + LAB_TIMING.safetyMarginMs;
    for (const f of res.failoverMs) {
      if (f.ms > bound) labViolations.push({ check: 'failover', message: `${f.kind}: the successor first wrote ${f.ms} ms after the fault, above TTL + margin (${bound} ms)` });
    }
    if (res.zombie) {
      const z = res.zombie;
      const after = finalDb.commits.filter((c) => c.node === z.node && c.opid === z.opId);
      const op = hist.ops.find((x) => x.id === z.opId);
      if (after.length || op?.outcome === 'ok') {
        labViolations.push({ check: 'zombie', message: `the paused holder's transaction ${z.opId} committed after being stopped past its TTL (${op?.outcome}, ${after.length} rows)` });
      }
    }
    if (lockProbe) {
      // Locks must cross hosts on a plain nfs4 mount; with nolock/local_lock they stay local (and auto picks 'none').
      const crossing = lockProbe.whileHeld === 'SQLITE_BUSY' && lockProbe.afterRelease === 'acquired';
      const local = lockProbe.whileHeld === 'acquired';
      if (locksExpected === 'trusted' ? !crossing : !local) {
        labViolations.push({ check: 'locks', message: `lock probe on a mount with ${effective}: BEGIN EXCLUSIVE held on ${lockProbe.holder}, ${lockProbe.other} got ${lockProbe.whileHeld} (after release: ${lockProbe.afterRelease})` });
      }
    }
    for (const n of lab.nodes) {
      if (n.locks && n.locks !== locksExpected) labViolations.push({ check: 'locks', message: `${n.nodeId} opened with locks '${n.locks}'; expected '${locksExpected}' on this mount` });
    }
    const bench = throughput ? benchFigures(throughput, handoverTimes(lab.releases, lab.acquisitions, lab.acks), res.failoverMs) : null;
    const violations = [...result.violations, ...labViolations.map((v) => ({ check: v.check as never, kind: v.check as never, message: v.message }))];
    const counts: Record<string, number> = { ...result.counts };
    for (const v of labViolations) counts[v.check] = (counts[v.check] ?? 0) + 1;
    const ok = violations.length === 0 && res.harnessErrors.length === 0;
    const report: LabReport = {
      ok,
      seed: opts.seed,
      durationMs: opts.durationMs,
      nodes: opts.nodes,
      fs: `${lab.fsType} v${opts.nfsVersion} (${opts.server})`,
      locks: { expected: locksExpected, setup: setupLocks, nodeStarts: locksSeen },
      faultKinds: [...new Set(res.faults.map((f) => f.kind))] as never,
      startedAt: new Date(started).toISOString(),
      wallMs: Date.now() - started,
      dir: lab.dir,
      kept: opts.keep || !ok,
      faults: res.faults.map((f) => ({ ...f, availability: null, subjectOp: null })) as never,
      missingKinds: [],
      skippedFaults: 0,
      stats: result.stats,
      violationCounts: counts as never,
      violations,
      unexpectedExits: lab.nodes.flatMap((n) => n.exits.filter((e) => e.signal !== 'SIGKILL' && e.signal !== 'SIGTERM' && e.code !== 0).map((e) => `${n.nodeId}: exit ${e.code ?? e.signal}`)),
      historyLinesSkipped: hist.skipped.length,
      errors: res.harnessErrors,
      lab: {
        server: opts.server, scenario: opts.scenario, nfsVersion: opts.nfsVersion, locksOption: opts.locks, kernel: lab.kernel.version, mountOptions: lab.mountOptions, effectiveMountOptions: effective,
        timing: { ...LAB_TIMING }, nfsLeaseSeconds: NFS_LEASE_SECONDS, handovers,
        delegations: opts.server === 'knfsd' ? 'knfsd default (read delegations)' : opts.delegations ? 'ganesha on' : 'ganesha off',
        failoverMs: res.failoverMs.map((f) => ({ ...f, ttlMultiple: Math.round((f.ms / LAB_TIMING.leaseTtlMs) * 100) / 100 })),
        counter: counter.stats, rawErrors: contract.rawByCode, storageFaults: storageFaults(hist.ops).byCode, nfsOps,
        failuresByCode: failuresByCode(hist.ops),
        doctor: doctor ? { vm: lastVm, findings: doctor } : null, lockProbe, cacheProbe, bench, clock, violations: labViolations,
      },
    };
    if (!ok) lab.setup.keep = true;
    fs.writeFileSync(path.join(lab.dir, 'report.json'), JSON.stringify(report, null, 2));
    if (opts.report) fs.writeFileSync(opts.report, JSON.stringify(report, null, 2));
    return report;
  } catch (err) {
    lab.setup.keep = true;
    log(`harness failed; keeping ${lab.dir}`);
    throw err;
  } finally {
    lab.finish();
  }
}

/** One lab benchmark figure: a ratio (×raw or ×TTL) with its target and verdict. */
export interface BenchFigure {
  id: string;
  label: string;
  value: number | null;
  target: { op: '>=' | '<='; value: number };
  verdict: 'PASS' | 'MISS' | 'NO DATA';
  note?: string;
}

/** Failed or unknown (not crashed) operations, counted by error code. */
function failuresByCode(ops: { outcome: string; crashed?: boolean; error?: { code: string } | null }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of ops) if (o.outcome !== 'ok' && !o.crashed && o.error) out[o.error.code] = (out[o.error.code] ?? 0) + 1;
  return out;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The lab benchmark's figures (targets as in docs/BENCHMARKS.md): throughput ÷ raw, times ÷ TTL. */
export function benchFigures(
  t: { writes: BenchSide; reads: BenchSide }, handoverMs: number[], failoverMs: { kind: string; ms: number }[],
): BenchFigure[] {
  const ttl = LAB_TIMING.leaseTtlMs;
  const fig = (id: string, label: string, value: number | null, target: BenchFigure['target'], note?: string): BenchFigure => ({
    id, label, value: value === null ? null : Math.round(value * 1000) / 1000, target, note,
    verdict: value === null ? 'NO DATA' : (target.op === '>=' ? value >= target.value : value <= target.value) ? 'PASS' : 'MISS',
  });
  const h = median(handoverMs);
  const f = failoverMs.find((x) => x.kind === 'process SIGKILL');
  return [
    fig('lab.writes.ratio', 'writes: sqlite-ha ÷ raw better-sqlite3 (×)', t.writes.ratio, { op: '>=', value: 0.9 },
      `raw ${t.writes.rawPerS.toFixed(1)}/s, sqlite-ha ${t.writes.haPerS.toFixed(1)}/s, one-row transactions`),
    fig('lab.reads.ratio', 'reads (local): sqlite-ha ÷ raw better-sqlite3 (×)', t.reads.ratio, { op: '>=', value: 0.95 },
      `raw ${t.reads.rawPerS.toFixed(0)}/s, sqlite-ha ${t.reads.haPerS.toFixed(0)}/s`),
    fig('lab.handover.ttl', 'hand-over, release → next first ack (× TTL)', h === null ? null : h / ttl, { op: '<=', value: 0.5 },
      `median of ${handoverMs.length}, ${h === null ? '—' : Math.round(h)} ms`),
    fig('lab.failover.ttl', 'failover after SIGKILL of the holder (× TTL)', f ? f.ms / ttl : null, { op: '<=', value: 1.2 },
      f ? `${f.ms} ms; bound TTL + margin` : 'needs --failover'),
  ];
}

/**
 * The schema and accounts, written through the library: on ganesha from the host straight into the
 * export directory (no client has the file open yet; saves a guest node start), on knfsd from c1.
 */
async function writeSetup(lab: Lab, mode: 'trusted' | 'none'): Promise<string> {
  if (lab.ganesha) {
    const db = await open(path.join(lab.ganesha.exportDir, DB_NAME), {
      coordinator: { kind: 'etcd', endpoints: lab.etcd!.endpoints, prefix: lab.prefix }, nodeId: 'setup', ...LAB_TIMING, locks: mode,
    });
    await db.write((c) => setupTransaction(c, BANK));
    const locks = db.locks;
    await db.close();
    lab.log(`setup written through the library on the host into the export (locks '${locks}')`);
    return locks;
  }
  const c1 = lab.nodes[0];
  const out = await lab.guestExec(c1.vm, ['node', path.resolve(__dirname, 'guest-setup.js'), JSON.stringify({
    db: lab.dbPathInGuest, endpoints: lab.guestEndpoints(c1.vm), prefix: lab.prefix, bank: BANK, ...LAB_TIMING, locks: mode,
  })], 300000);
  const locks = JSON.parse(out.trim().split('\n').pop()!).locks as string;
  lab.log(`setup written through the library from ${c1.vm} (locks '${locks}')`);
  return locks;
}

export function formatLabReport(r: LabReport): string {
  const l = r.lab;
  const head = [
    `sqlite-ha NFS lab: scenario ${l.scenario}, server ${l.server}, ${r.nodes} client VM(s) (QEMU TCG, kernel ${l.kernel}), seed ${r.seed}`,
    `  mount: ${l.nfsVersion === '3' ? 'nfs' : 'nfs4'} -o ${l.mountOptions}; workers' locks option '${l.locksOption}'; server NFSv4 lease ${l.nfsLeaseSeconds} s; delegations ${l.delegations}`,
    `  timing (sized for TCG): leaseTtlMs ${l.timing.leaseTtlMs}, safetyMarginMs ${l.timing.safetyMarginMs}, rpcTimeoutMs ${l.timing.rpcTimeoutMs}, ` +
      `idleReleaseMs ${l.timing.idleReleaseMs}, acquireTimeoutMs ${l.timing.acquireTimeoutMs}, busyTimeoutMs ${l.timing.busyTimeoutMs}`,
    `  guest clocks: max offset ${l.clock.maxOffsetMs} ms to the host (corrected in the histories; sample round trip ≤ ${l.clock.maxRttMs} ms)`,
    '',
    'Lab checks',
    `  handovers    lease moved between hosts ${l.handovers} time(s)`,
    `  counter      ${l.counter.rows} rows = ${l.counter.acked} acked + ${l.counter.unknownCommitted} unknown-committed (expected ${l.counter.expected})`,
    `  fresh        storage faults (typed): ${Object.entries(l.storageFaults).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    `  failures     failed or unknown operations by code: ${Object.entries(l.failuresByCode).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    ...Object.entries(l.nfsOps).map(([vm, o]) => `  nfs ops      ${vm}: ${Object.entries(o).map(([k, n]) => `${k} ${n}`).join(' ')}`),
    ...(l.doctor ? l.doctor.findings.filter((f) => f.check === 'nfs' || f.check === 'locks' || f.check === 'filesystem' || f.check === 'doctor')
      .map((f) => `  doctor       ${l.doctor!.vm}: ${f.verdict.padEnd(4)} ${f.check}: ${f.summary}`) : []),
    ...(l.cacheProbe ? [`  cache        a file rewritten on another VM read '${l.cacheProbe.plainRead}' plainly, '${l.cacheProbe.underLock}' under a lock (was '${l.cacheProbe.before}')`] : []),
    ...(l.lockProbe ? [`  locks        BEGIN EXCLUSIVE held on ${l.lockProbe.holder}: ${l.lockProbe.other} got ${l.lockProbe.whileHeld}, after the release ${l.lockProbe.afterRelease}`] : []),
    ...(l.bench ?? []).map((b) => `  bench        ${b.label.padEnd(44)} ${b.value === null ? '—' : b.value.toFixed(3)} (target ${b.target.op} ${b.target.value}) ${b.verdict}${b.note ? `; ${b.note}` : ''}`),
    `  contract     raw SQLite errors: ${Object.entries(l.rawErrors).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    ...l.failoverMs.map((f) => `  failover     ${f.kind}: successor's first ack after ${f.ms} ms = ${f.ttlMultiple} × TTL (bound TTL + margin = ${l.timing.leaseTtlMs + l.timing.safetyMarginMs} ms)`),
    `  violations   ${l.violations.length}${l.violations.length ? ': ' + l.violations.map((v) => `[${v.check}] ${v.message}`).join(' ; ') : ''}`,
    '',
  ];
  return head.join('\n') + formatReport(r).replace(/^sqlite-ha chaos:[^\n]*\n/, '\n');
}

function preflight(opts: LabOptions): string | null {
  const need: [string, string[]][] = [['qemu-system-x86_64', ['--version']], ['etcd', ['--version']], ['/bin/busybox', ['true']]];
  if (opts.server === 'ganesha') need.push(['ganesha.nfsd', ['-v']]);
  // NFSv3: ganesha registers with an rpcbind the lab starts for it (the rpcbind package, a dependency of nfs-common).
  if (opts.nfsVersion === '3') need.push(['rpcbind', ['-Z']], ['rpcinfo', []]);
  else need.push(['mkfs.ext4', ['-V']], ['debugfs', ['-V']]);
  for (const [bin, args] of need) {
    const r = spawnSync(bin, args, { stdio: 'ignore' });
    if (r.error) return `the lab needs '${bin}' (npm run setup installs the Debian packages)`;
  }
  if (!fs.readdirSync('/boot').some((f) => f.startsWith('vmlinuz-'))) return 'the lab needs /boot/vmlinuz-* (linux-image-amd64)';
  return null;
}

async function main(): Promise<number> {
  let opts: LabOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`lab: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const missing = preflight(opts);
  if (missing) {
    process.stderr.write(`lab: ${missing}\n`);
    return 2;
  }
  const report = await runLab(opts);
  process.stdout.write(formatLabReport(report) + '\n');
  return report.ok ? 0 : 1;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`lab: ${(err as Error)?.stack ?? err}\n`);
      process.exit(3);
    },
  );
}
