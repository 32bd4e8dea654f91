/**
 * Settings of the node workload (workload.ts) from command-line flags and environment variables.
 * Pure (argv and env are parameters) so it is unit-tested without a process; precedence is
 * flag > environment variable > default. Compose sets the environment; people type flags.
 */
import { Command, CommanderError } from 'commander';
import { InvalidOptionError } from '../../src/errors';
import { DEFAULTS } from '../../src/options';

export type WorkloadCoordinator =
  | { kind: 'etcd'; endpoints: string[]; prefix: string }
  | { kind: 'lockfile' };

export interface WorkloadConfig {
  dbPath: string;
  coordinator: WorkloadCoordinator;
  nodeId: string;
  /** Pause between two appends. */
  writeIntervalMs: number;
  /** Stop after this long; 0 runs until SIGTERM/SIGINT. */
  durationMs: number;
  /** Stop after this many append attempts; 0 means no count limit. */
  maxWrites: number;
  /** A linearizable count(*) after every Nth acknowledged append; 0 never reads. */
  readEvery: number;
  leaseTtlMs: number;
  acquireTimeoutMs: number;
  /** Touched on every loop turn so a container healthcheck can see the loop is alive. */
  heartbeatFile: string | null;
}

export type WorkloadArgs = { kind: 'run'; config: WorkloadConfig } | { kind: 'help'; text: string };

interface Setting {
  key: keyof RawSettings;
  flag: string;
  env: string;
  help: string;
  dflt?: string;
}

type RawSettings = {
  db: string; coordinator: string; etcdEndpoints: string; prefix: string; nodeId: string;
  writeIntervalMs: string; durationMs: string; maxWrites: string; readEvery: string;
  leaseTtlMs: string; acquireTimeoutMs: string; heartbeatFile: string;
};

/** Every setting with its flag and variable: the compose file and the tests use these names. */
export const WORKLOAD_SETTINGS: readonly Setting[] = [
  { key: 'db', flag: '--db <path>', env: 'SQLITE_HA_DB_PATH', help: 'database file on shared storage' },
  { key: 'coordinator', flag: '--coordinator <kind>', env: 'SQLITE_HA_COORDINATOR', help: "'etcd' or 'lockfile'", dflt: 'etcd' },
  { key: 'etcdEndpoints', flag: '--etcd-endpoints <urls>', env: 'SQLITE_HA_ETCD_ENDPOINTS', help: 'comma-separated etcd client URLs' },
  { key: 'prefix', flag: '--prefix <key>', env: 'SQLITE_HA_PREFIX', help: 'etcd key prefix', dflt: DEFAULTS.prefix },
  { key: 'nodeId', flag: '--node-id <id>', env: 'SQLITE_HA_NODE_ID', help: 'node id in output and lease records, hostname:pid if unset' },
  { key: 'writeIntervalMs', flag: '--write-interval-ms <ms>', env: 'SQLITE_HA_WRITE_INTERVAL_MS', help: 'pause between appends', dflt: '200' },
  { key: 'durationMs', flag: '--duration-ms <ms>', env: 'SQLITE_HA_DURATION_MS', help: 'run time, 0 = until SIGTERM/SIGINT', dflt: '0' },
  { key: 'maxWrites', flag: '--max-writes <n>', env: 'SQLITE_HA_MAX_WRITES', help: 'append attempts, 0 = no limit', dflt: '0' },
  { key: 'readEvery', flag: '--read-every <n>', env: 'SQLITE_HA_READ_EVERY', help: 'linearizable count(*) every N acked appends, 0 = never', dflt: '5' },
  { key: 'leaseTtlMs', flag: '--lease-ttl-ms <ms>', env: 'SQLITE_HA_LEASE_TTL_MS', help: 'write lease TTL (lockfile: stale time of the lock)', dflt: '5000' },
  { key: 'acquireTimeoutMs', flag: '--acquire-timeout-ms <ms>', env: 'SQLITE_HA_ACQUIRE_TIMEOUT_MS', help: 'longest wait for the lease per append', dflt: '10000' },
  { key: 'heartbeatFile', flag: '--heartbeat-file <path>', env: 'SQLITE_HA_HEARTBEAT_FILE', help: 'file touched every loop turn (for healthchecks)' },
];

/** Parses flags (argv without node and script) over env; throws InvalidOptionError naming the flag. */
export function parseWorkloadArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  defaultNodeId: string,
): WorkloadArgs {
  let out = '';
  const program = new Command('workload')
    .description('Appends rows through sqlite-ha and prints one JSON line per outcome')
    .exitOverride()
    .configureOutput({ writeOut: (s) => { out += s; }, writeErr: () => undefined });
  for (const s of WORKLOAD_SETTINGS) {
    program.option(s.flag, `${s.help} (env ${s.env}${s.dflt !== undefined ? `, default ${s.dflt}` : ''})`);
  }
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError && err.code === 'commander.helpDisplayed') return { kind: 'help', text: out };
    if (err instanceof CommanderError) throw new InvalidOptionError('arguments', [...argv], err.message.replace(/^error: /, ''));
    throw err;
  }
  const flags = program.opts<Partial<RawSettings>>();
  const raw = {} as Partial<RawSettings>;
  for (const s of WORKLOAD_SETTINGS) {
    const fromEnv = env[s.env];
    raw[s.key] = flags[s.key] ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : s.dflt);
  }
  return { kind: 'run', config: toConfig(raw, defaultNodeId) };
}

function toConfig(raw: Partial<RawSettings>, defaultNodeId: string): WorkloadConfig {
  if (!raw.db) throw new InvalidOptionError('--db', raw.db, 'a database path (or SQLITE_HA_DB_PATH)');
  return {
    dbPath: raw.db,
    coordinator: coordinatorOf(raw),
    nodeId: raw.nodeId || defaultNodeId,
    writeIntervalMs: count(raw, 'writeIntervalMs', 1),
    durationMs: count(raw, 'durationMs', 0),
    maxWrites: count(raw, 'maxWrites', 0),
    readEvery: count(raw, 'readEvery', 0),
    leaseTtlMs: count(raw, 'leaseTtlMs', 1),
    acquireTimeoutMs: count(raw, 'acquireTimeoutMs', 1),
    heartbeatFile: raw.heartbeatFile || null,
  };
}

function coordinatorOf(raw: Partial<RawSettings>): WorkloadCoordinator {
  if (raw.coordinator === 'lockfile') return { kind: 'lockfile' };
  if (raw.coordinator !== 'etcd') {
    throw new InvalidOptionError('--coordinator', raw.coordinator, "'etcd' or 'lockfile'");
  }
  const endpoints = (raw.etcdEndpoints ?? '').split(',').map((e) => e.trim()).filter((e) => e !== '');
  if (endpoints.length === 0) {
    throw new InvalidOptionError(
      '--etcd-endpoints', raw.etcdEndpoints,
      "comma-separated URLs such as 'http://etcd1:2379' (or SQLITE_HA_ETCD_ENDPOINTS, or --coordinator lockfile)",
    );
  }
  return { kind: 'etcd', endpoints, prefix: raw.prefix ?? DEFAULTS.prefix };
}

function count(raw: Partial<RawSettings>, key: keyof RawSettings, min: number): number {
  const text = raw[key] ?? '';
  const flag = WORKLOAD_SETTINGS.find((s) => s.key === key)!.flag.split(' ')[0];
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new InvalidOptionError(flag, text, `a whole number >= ${min}`);
  }
  return n;
}
