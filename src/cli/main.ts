#!/usr/bin/env node
/**
 * The `sqlite-ha` command: wiring only. Each command lives in its own file; connection settings
 * come from flags or the environment (connection.ts). Exit codes: 0 ok, 1 a finding or a failure,
 * 2 a usage error.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
// Commands are loaded when run: usage errors and --help stay fast and never load gRPC.
import { DEFAULTS } from '../options';
import { printable } from './format';
import { EtcdAccessError, GlobalFlags, UsageError, resolveConnection } from './settings';

const ENV_HELP = `
Environment (flags win):
  SQLITE_HA_ETCD_ENDPOINTS       comma-separated etcd URLs (default ${DEFAULTS.cliEndpoint})
  SQLITE_HA_PREFIX               key prefix (default ${DEFAULTS.prefix})
  SQLITE_HA_ETCD_CA, _CERT, _KEY TLS files (PEM)
  SQLITE_HA_ETCD_USER            etcd user
  SQLITE_HA_ETCD_PASSWORD        etcd password (or SQLITE_HA_ETCD_PASSWORD_FILE); never printed
  SQLITE_HA_ETCD_TIMEOUT_MS      deadline of each etcd call (default ${DEFAULTS.cliTimeoutMs})
  SQLITE_HA_SERVE_TOKEN          serve: bearer token clients must send (or SQLITE_HA_SERVE_TOKEN_FILE); never printed

Exit codes: 0 ok, 1 finding or failure (etcd unreachable included), 2 usage error.`;

function intArg(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

/** `--metrics-port`: `<port>`, `<host>:<port>` or `[<ipv6>]:<port>`. */
function metricsAddress(value: string): { host?: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s\[\]]+)):(\d+)$/.exec(value);
  const port = intArg('--metrics-port', 0, 65535)(m ? m[3] : value);
  return m ? { host: m[1] ?? m[2], port } : { port };
}

/** Metrics stay on loopback unless an address is given (they describe the cluster to anyone who asks). */
const DEFAULT_METRICS_HOST = '127.0.0.1';

function version(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

function buildProgram(setCode: (code: number) => void): Command {
  const program = new Command('sqlite-ha');
  program
    .description('Watch and operate sqlite-ha write leases in etcd.')
    .version(version(), '-V, --version')
    .exitOverride()
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      writeOut: (str) => process.stdout.write(str),
      writeErr: (str) => process.stderr.write(str),
    })
    .addOption(new Option('--endpoints <urls>', 'comma-separated etcd URLs').env('SQLITE_HA_ETCD_ENDPOINTS'))
    .addOption(new Option('--prefix <prefix>', 'etcd key prefix (default: /sqlite-ha)').env('SQLITE_HA_PREFIX'))
    .addOption(new Option('--ca <file>', 'CA certificate (PEM) for TLS').env('SQLITE_HA_ETCD_CA'))
    .addOption(new Option('--cert <file>', 'client certificate (PEM)').env('SQLITE_HA_ETCD_CERT'))
    .addOption(new Option('--key <file>', 'client key (PEM)').env('SQLITE_HA_ETCD_KEY'))
    .addOption(new Option('--user <name>', 'etcd user (password from SQLITE_HA_ETCD_PASSWORD or --password-file)').env('SQLITE_HA_ETCD_USER'))
    .addOption(new Option('--password-file <file>', 'file holding the etcd password').env('SQLITE_HA_ETCD_PASSWORD_FILE'))
    .addOption(new Option('--timeout <ms>', `deadline of each etcd call in ms (default: ${DEFAULTS.cliTimeoutMs})`).env('SQLITE_HA_ETCD_TIMEOUT_MS'))
    .addHelpText('after', ENV_HELP);

  const settingsOf = (cmd: Command) => resolveConnection(cmd.optsWithGlobals() as GlobalFlags, process.env);

  program
    .command('status')
    .description('every database under the prefix: holder, fence, lease TTL left, waiters, last commit, storage mode')
    .option('--json', 'stable JSON for scripts')
    .option('--db <name>', 'only this database (reads <prefix>/<db>/ alone: enough with a role granted on that database)')
    .action(async (opts: { json?: boolean; db?: string }, cmd: Command) => {
      const { runStatus } = await import('./status');
      setCode(await runStatus(settingsOf(cmd), opts, process.stdout));
    });

  program
    .command('monitor')
    .description('live view driven by an etcd watch (redraws on a terminal, JSON lines otherwise)')
    .option('--json', 'JSON lines even on a terminal')
    .option('--metrics-port <[host:]port>', 'serve Prometheus metrics on this port (0: any free port), on 127.0.0.1 unless a host is given', metricsAddress)
    .option('--metrics-host <host>', `address for the metrics server (default: ${DEFAULT_METRICS_HOST}; 0.0.0.0 for every interface)`)
    .option('--events <n>', 'events kept in the terminal view', intArg('--events', 1, 10000), 200)
    .action(async (opts: { json?: boolean; metricsPort?: { host?: string; port: number }; metricsHost?: string; events: number }, cmd: Command) => {
      const addr = opts.metricsPort;
      if (addr?.host !== undefined && opts.metricsHost !== undefined && addr.host !== opts.metricsHost) {
        throw new UsageError(`--metrics-port ${addr.host}:${addr.port} and --metrics-host ${opts.metricsHost} name different addresses; give one`);
      }
      if (opts.metricsHost !== undefined && !addr) throw new UsageError('--metrics-host needs --metrics-port');
      const { runMonitor } = await import('./monitor');
      setCode(await runMonitor(settingsOf(cmd), {
        json: opts.json, events: opts.events, metricsPort: addr?.port,
        metricsHost: addr?.host ?? opts.metricsHost ?? DEFAULT_METRICS_HOST,
      }, { out: process.stdout, err: process.stderr, input: process.stdin }));
    });

  program
    .command('history')
    .description('recent hand-overs, newest first, with latency and cause (released, expired, lost)')
    .option('--db <name>', 'only this database')
    .option('--limit <n>', 'at most this many rows', intArg('--limit', 1, 100000), 20)
    .option('--json', 'JSON array')
    .action(async (opts: { db?: string; limit: number; json?: boolean }, cmd: Command) => {
      const { runHistory } = await import('./history');
      setCode(await runHistory(settingsOf(cmd), opts, process.stdout));
    });

  program
    .command('release')
    .description("revoke a stuck holder's lease so the next waiter proceeds")
    .argument('<db>', 'database name (as shown by status)')
    .option('--force', 'required: you mean to take the lease from its holder')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (db: string, opts: { force?: boolean; yes?: boolean }, cmd: Command) => {
      const { runRelease } = await import('./release');
      setCode(await runRelease(settingsOf(cmd), db, opts, { input: process.stdin, out: process.stdout, err: process.stderr }));
    });

  program
    .command('doctor')
    .description('check a database path: filesystem, lock trust, journal mode, fsync latency, clock offset, lease settings')
    .argument('<path>', 'database file (it need not exist yet)')
    .option('--json', 'JSON report')
    .option('--name <db>', 'database name in etcd (default: the file name)')
    .option('--lease-ttl-ms <ms>', `lease TTL to judge (default: from etcd info, else ${DEFAULTS.leaseTtlMs})`, intArg('--lease-ttl-ms', 1, 3_600_000))
    .option('--safety-margin-ms <ms>', `safety margin to judge (default: min(${DEFAULTS.safetyMarginMs}, TTL/4))`, intArg('--safety-margin-ms', 0, 3_600_000))
    .option('--fsync-samples <n>', 'fsyncs to time', intArg('--fsync-samples', 1, 1000), 20)
    .option('--standby <dir>', 'also judge this standby directory (must be on another device and filesystem)')
    .option('--compaction-revisions <n>', 'warn when etcd was never compacted past this revision (default: 100000)', intArg('--compaction-revisions', 1, 1e12))
    .action(async (file: string, opts: { json?: boolean; name?: string; leaseTtlMs?: number; safetyMarginMs?: number; fsyncSamples: number; standby?: string; compactionRevisions?: number }, cmd: Command) => {
      const { runDoctor } = await import('./doctor');
      setCode(await runDoctor(settingsOf(cmd), file, opts, process.stdout));
    });

  program
    .command('serve')
    .description('open <path> as a cluster node and serve Hrana over HTTP v2 (@libsql/client, Drizzle, Kysely, Prisma adapters) until SIGTERM')
    .argument('<path>', 'database file on shared storage')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8080')
    .option('--writes <mode>', 'local: this node takes the lease to write; forward: send writes to the holder', 'local')
    .option('--advertise-url <url>', "this node's URL for other nodes and for base_url (default: from --listen)")
    .option('--no-pin-streams', 'behind a load balancer: leave base_url empty; nodes relay requests for each other\'s streams')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM); --cert/--key are the etcd client TLS flags')
    .option('--tls-key <file>', 'private key (PEM) for --tls-cert')
    .addOption(new Option('--auth-token-file <file>', 'file holding the bearer token clients must send (or SQLITE_HA_SERVE_TOKEN)').env('SQLITE_HA_SERVE_TOKEN_FILE'))
    .option('--coordinator <kind>', 'etcd, or lockfile for one host', 'etcd')
    .option('--name <db>', 'database name in etcd (default: the file name)')
    .option('--node-id <id>', 'this node in lease records and /health (default: hostname:pid)')
    .option('--lease-ttl-ms <ms>', 'lease TTL', intArg('--lease-ttl-ms', 2000, 3_600_000))
    .option('--acquire-timeout-ms <ms>', 'longest wait for the lease', intArg('--acquire-timeout-ms', 1, 3_600_000))
    .option('--idle-release-ms <ms>', 'release the lease after this long without writes', intArg('--idle-release-ms', 0, 3_600_000))
    .option('--locks <mode>', 'auto, trusted or none (see docs/API.md)')
    .option('--max-body-bytes <n>', 'largest request body', intArg('--max-body-bytes', 1024, 1024 * 1024 * 1024))
    .option('--max-rows <n>', 'most rows one statement returns', intArg('--max-rows', 1, 10_000_000))
    .option('--max-streams <n>', 'most streams open at once', intArg('--max-streams', 1, 100000))
    .option('--stream-idle-ms <ms>', 'close streams idle this long', intArg('--stream-idle-ms', 100, 3_600_000))
    .action(async (file: string, opts: import('./serve').ServeFlags, cmd: Command) => {
      const { runServe } = await import('./serve');
      setCode(await runServe(settingsOf(cmd), file, opts, { out: process.stdout, err: process.stderr }));
    });

  program
    .command('promote')
    .description('the primary is lost: build a new primary from the standby chain, fence the old path out in etcd')
    .argument('<db>', 'database name (as shown by status)')
    .requiredOption('--from <dir>', 'the standby directory (open() option standby.dir)')
    .requiredOption('--to <path>', 'the new primary file (must not exist), on storage every node mounts')
    .option('--json', 'JSON result')
    .action(async (db: string, opts: { from: string; to: string; json?: boolean }, cmd: Command) => {
      const { runPromote } = await import('./promote');
      setCode(await runPromote(settingsOf(cmd), db, opts, process.stdout));
    });

  program
    .command('standby')
    .description('offline care of a standby chain: verify (hashes, links, checksum), apply (bring <dir>/<name> forward), compact')
    .argument('<action>', 'verify | apply | compact')
    .argument('<dir>', 'the standby directory')
    .option('--retain-segments <n>', 'compact: segments to keep after the snapshot', intArg('--retain-segments', 1, 10_000_000))
    .option('--retain-ms <ms>', 'compact: fold segments older than this', intArg('--retain-ms', 1000, Number.MAX_SAFE_INTEGER))
    .option('--json', 'JSON result')
    .action(async (action: string, dir: string, opts: { json?: boolean; retainSegments?: number; retainMs?: number }) => {
      if (action !== 'verify' && action !== 'apply' && action !== 'compact') {
        throw new UsageError(`unknown standby action ${JSON.stringify(action)}: expected verify, apply or compact`);
      }
      const { runStandby } = await import('./standby');
      setCode(runStandby(action, dir, opts, process.stdout));
    });

  program
    .command('restore')
    .description('point-in-time restore from a standby chain into a new file (no etcd needed)')
    .argument('<dir>', 'the standby directory')
    .option('--to-txid <n>', 'the newest state with txid <= n', intArg('--to-txid', 0, Number.MAX_SAFE_INTEGER))
    .option('--to-time <time>', 'the newest state committed at or before this ISO time (or ms since the epoch)')
    .requiredOption('--out <file>', 'the file to write (must not exist)')
    .option('--json', 'JSON result')
    .action(async (dir: string, opts: { toTxid?: number; toTime?: string; out: string; json?: boolean }) => {
      const { runRestore } = await import('./restore');
      setCode(runRestore(dir, opts, process.stdout));
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c));
  try {
    if (argv.length <= 2) {
      program.outputHelp({ error: true });
      return 2;
    }
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return 2; // commander already printed the error and the usage
    }
    if (err instanceof UsageError) {
      process.stderr.write(`sqlite-ha: ${printable(err.message, { keepNewlines: true })}\nRun 'sqlite-ha --help' for usage.\n`);
      return 2;
    }
    if (err instanceof EtcdAccessError) {
      process.stderr.write(`sqlite-ha: ${printable(err.message, { keepNewlines: true })}\n`);
      return 1;
    }
    process.stderr.write(`sqlite-ha: ${printable((err as Error)?.message ?? String(err), { keepNewlines: true })}\n`);
    if (process.env.SQLITE_HA_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
  });
  main(process.argv).then(
    (code) => process.stdout.write('', () => process.exit(code)),
    (err) => {
      process.stderr.write(`sqlite-ha: ${printable(String(err), { keepNewlines: true })}\n`);
      process.exit(1);
    },
  );
}
