#!/usr/bin/env node
/**
 * `npm run demo`: a local sqlite-ha cluster in one command. Wiring and flags only: cluster.ts picks
 * and starts the coordinator, nodes.ts runs the node processes, scenario.ts is the timeline
 * (failover, graceful hand-over), summary.ts checks the database and prints the verdict.
 * Exit code: 0 when every acknowledged write was found, integrity_check said ok and a failover
 * happened; 1 otherwise or on an error; 2 for bad flags; 130 when interrupted.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runCleanupNow } from './cleanup';
import { CoordinatorChoice, DemoCoordinator, DemoUsageError, resolveChoice, startCoordinator } from './cluster';
import { NetnsSet, netnsUnavailable, removeStaleNamespaces } from './netns';
import { Fleet } from './nodes';
import { runScenario } from './scenario';
import { runServeDemo } from './serve-demo';
import { buildSummary, renderSummary } from './summary';
import { Reporter, ViewMode } from './view';

interface Flags {
  nodes: number;
  duration: number;
  coordinator: CoordinatorChoice;
  netns?: boolean;
  keep?: boolean;
  quiet?: boolean;
  json?: boolean;
  serve?: boolean;
}

/** Lease settings of the demo's nodes: short, so failover shows within seconds. */
const LEASE_TTL_MS = 2000;
const ACQUIRE_TIMEOUT_MS = 5000;
const WRITE_INTERVAL_MS = 200;
const READ_EVERY = 5;
const DB_NAME = 'demo.db';

function numberArg(name: string, min: number, max: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}.`);
    }
    return n;
  };
}

function parseFlags(argv: string[]): Flags | number {
  const program = new Command('demo')
    .description(
      'Runs a local sqlite-ha cluster: etcd (or the lockfile coordinator), N node processes writing one ' +
        'SQLite file, a SIGKILL of the lease holder (failover) and a SIGTERM (graceful hand-over), then ' +
        'checks that every acknowledged write is in the database.',
    )
    .usage('[options]   (npm run demo -- [options])')
    .exitOverride()
    .option('--nodes <n>', 'node processes sharing the database', numberArg('--nodes', 2, 16, true), 3)
    .option('--duration <seconds>', 'how long the nodes write', numberArg('--duration', 5, 3600, false), 20)
    .addOption(
      new Option('--coordinator <kind>', 'etcd (3 members from PATH), lockfile (embedded, one host), or auto')
        .choices(['auto', 'etcd', 'lockfile'])
        .default('auto'),
    )
    .option('--netns', 'root only: each node in its own network namespace, reaching etcd over a veth pair')
    .option('--keep', 'keep the work dir (database, logs) even when every check passed')
    .option('--quiet', 'print only the first lines and the summary')
    .option('--json', 'also print the summary as one JSON line at the end')
    .option('--serve', 'instead: 3 `sqlite-ha serve` nodes behind one address, an @libsql/client writing through it across the SIGKILL');
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    }
    throw err;
  }
  return program.opts<Flags>();
}

async function main(argv: string[]): Promise<number> {
  const t0 = Date.now();
  const parsed = parseFlags(argv);
  if (typeof parsed === 'number') return parsed;
  const flags = parsed;

  let choice: ReturnType<typeof resolveChoice>;
  try {
    if (flags.netns) {
      const why = netnsUnavailable();
      if (why) throw new DemoUsageError(why);
      if (flags.coordinator === 'lockfile') throw new DemoUsageError('--netns needs etcd: the lockfile coordinator uses no network');
    }
    choice = resolveChoice(flags.coordinator);
    if (flags.serve && choice.kind === 'lockfile') throw new DemoUsageError(`--serve needs etcd (${choice.why.split(';')[0]})`);
    if (flags.netns && choice.kind === 'lockfile') {
      throw new DemoUsageError(`--netns needs etcd (${choice.why.split(';')[0]})`);
    }
  } catch (err) {
    if (err instanceof DemoUsageError) {
      process.stderr.write(`demo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-demo-'));
  const logDir = path.join(workDir, 'logs');
  fs.mkdirSync(logDir);
  const dbPath = path.join(workDir, DB_NAME);
  const mode: ViewMode = flags.quiet ? 'quiet' : process.stdout.isTTY && choice.kind === 'etcd' ? 'monitor' : 'lines';
  const report = new Reporter(mode, process.stdout, t0, path.join(logDir, 'demo.log'));
  const durationS = flags.duration;

  report.print(`sqlite-ha demo: ${flags.nodes} node processes share one SQLite file for ${durationS} s; the lease holder is killed part-way.`);
  if (choice.kind === 'lockfile') {
    report.print(`coordinator: the embedded LOCKFILE coordinator, NOT etcd (${choice.why}).`);
  } else {
    report.print(`coordinator: etcd (starting ${3} members from PATH${flags.netns ? ', reachable from the node namespaces' : ''})`);
  }
  report.print(`work dir: ${workDir} (database ${DB_NAME}, logs in logs/)`);

  const abort = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      report.expectMonitorExit();
      process.stderr.write(`\ndemo: ${sig}: stopping the nodes and the cluster (again to quit at once)\n`);
      abort.abort();
    } else {
      runCleanupNow();
      process.exit(130);
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);

  let netns: NetnsSet | null = null;
  let coord: DemoCoordinator | null = null;
  let failed = true;
  try {
    if (flags.netns) {
      const stale = removeStaleNamespaces();
      netns = NetnsSet.create(flags.nodes);
      report.print(
        `network: ${flags.nodes} namespaces (${netns.slots[0].ns} ...), veth pairs 10.x.<slot>.1 <-> .2; ` +
          `etcd on ${netns.etcdHost}${stale ? ` (removed ${stale} left over by an earlier demo)` : ''}`,
      );
    }
    coord = await startCoordinator(choice, workDir, netns?.etcdHost ?? '127.0.0.1');
    if (coord.kind === 'etcd') report.print(coord.describe);
    const coordInfo = {
      kind: coord.kind, endpoints: coord.endpoints, note: choice.kind === 'lockfile' ? choice.why : 'etcd members from PATH',
    };
    if (abort.signal.aborted) return 130;

    if (flags.serve) {
      const summary = await runServeDemo({
        cli: path.join(__dirname, '..', '..', 'src', 'cli', 'main.js'), dbPath, workDir, logDir, durationMs: durationS * 1000, coord,
      }, report, abort.signal);
      report.print(`serve demo: ${summary.acked} writes acknowledged through ${summary.address} (${summary.ackedAfterKill} after ` +
        `SIGKILL of ${summary.killed}), ${summary.failed} refused, ${summary.unknown} with unknown outcome; missing ` +
        `${summary.missing.length}, doubled ${summary.doubled.length}, refused-but-present ${summary.failedPresent.length}, ` +
        `integrity ${summary.integrity}: ${summary.ok ? 'OK' : 'FAILED'}`);
      if (flags.json) report.print(JSON.stringify(summary));
      failed = !summary.ok;
      return summary.ok ? 0 : 1;
    }

    if (report.showingMonitor) {
      report.print('live view: `sqlite-ha monitor` takes the screen while the demo runs (Ctrl-C stops the demo)');
      report.startMonitor(path.join(__dirname, '..', '..', 'src', 'cli', 'main.js'), coord.endpoints, coord.prefix, logDir);
    } else if (!flags.quiet) {
      report.print(process.stdout.isTTY
        ? 'live view: event lines (the monitor watches etcd, and there is none)'
        : 'event lines follow (no terminal; run in a terminal with etcd for the live monitor view)');
    }

    const fleet = new Fleet({
      workloadJs: path.join(__dirname, '..', 'cluster', 'workload.js'),
      dbPath,
      coordinator: coord.kind === 'etcd' ? { kind: 'etcd', endpoints: coord.endpoints, prefix: coord.prefix } : { kind: 'lockfile' },
      leaseTtlMs: LEASE_TTL_MS,
      acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
      writeIntervalMs: WRITE_INTERVAL_MS,
      readEvery: READ_EVERY,
      maxRunMs: durationS * 1000 + 60000,
      logDir,
      netnsOf: netns ? (slot) => netns!.nsOf(slot) : null,
    });
    fleet.setMaxListeners(100);
    const scenario = await runScenario(
      fleet, coord,
      { nodes: flags.nodes, durationMs: durationS * 1000, leaseTtlMs: LEASE_TTL_MS, acquireTimeoutMs: ACQUIRE_TIMEOUT_MS, dbName: DB_NAME },
      report, abort.signal,
    );
    await report.stopMonitor();
    await coord.stop({ keepData: true });
    coord = null;
    netns?.removeAll();
    netns = null;

    const summary = buildSummary({
      fleet, scenario, netns: Boolean(flags.netns), nodes: flags.nodes, dbPath, workDir, logDir,
      coordinator: coordInfo,
      etcdLogDir: coordInfo.kind === 'etcd' ? path.join(workDir, 'etcd') : null,
      kept: true,
    });
    summary.kept = Boolean(flags.keep) || !summary.ok;
    report.print(renderSummary(summary));
    if (summary.kept) fs.writeFileSync(path.join(workDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
    if (flags.json) report.print(JSON.stringify(summary));
    failed = !summary.ok;
    if (scenario.interrupted) return 130;
    return summary.ok ? 0 : 1;
  } catch (err) {
    report.print(`demo failed: ${(err as Error)?.message ?? String(err)}`);
    report.print(`work dir kept for the logs: ${workDir}`);
    return 1;
  } finally {
    await report.stopMonitor().catch(() => undefined);
    await coord?.stop({ keepData: true }).catch(() => undefined);
    netns?.removeAll();
    await report.close();
    if (!failed && !flags.keep) fs.rmSync(workDir, { recursive: true, force: true });
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, onSignal);
  }
}

process.on('exit', runCleanupNow);
process.on('uncaughtException', (err) => {
  process.stderr.write(`demo: unexpected error: ${err?.stack ?? String(err)}\n`);
  runCleanupNow();
  process.exit(1);
});

main(process.argv.slice(2)).then(
  (code) => process.stdout.write('', () => process.exit(code)),
  (err) => {
    process.stderr.write(`demo: ${(err as Error)?.stack ?? String(err)}\n`);
    runCleanupNow();
    process.exit(1);
  },
);
