/** The workload's settings: flags beat environment variables beat defaults, and bad values name the flag. */
import { InvalidOptionError } from '../../src/errors';
import { parseWorkloadArgs, WORKLOAD_SETTINGS, WorkloadConfig } from '../../tools/cluster/workload-config';

function config(argv: string[], env: Record<string, string> = {}): WorkloadConfig {
  const parsed = parseWorkloadArgs(argv, env, 'host:1');
  if (parsed.kind !== 'run') throw new Error('expected a run config');
  return parsed.config;
}

function invalidOption(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error('expected an InvalidOptionError');
}

const ETCD_ENV = { SQLITE_HA_DB_PATH: '/shared/a.db', SQLITE_HA_ETCD_ENDPOINTS: 'http://e1:2379, http://e2:2379' };

describe('parseWorkloadArgs', () => {
  it('reads everything from the environment, with defaults for the rest', () => {
    expect(config([], ETCD_ENV)).toEqual({
      dbPath: '/shared/a.db',
      coordinator: { kind: 'etcd', endpoints: ['http://e1:2379', 'http://e2:2379'], prefix: '/sqlite-ha' },
      nodeId: 'host:1',
      writeIntervalMs: 200,
      durationMs: 0,
      maxWrites: 0,
      readEvery: 5,
      leaseTtlMs: 5000,
      acquireTimeoutMs: 10000,
      heartbeatFile: null,
    });
  });

  it('lets flags win over environment variables', () => {
    const env = { ...ETCD_ENV, SQLITE_HA_NODE_ID: 'from-env', SQLITE_HA_WRITE_INTERVAL_MS: '50', SQLITE_HA_PREFIX: '/env' };
    const c = config(['--node-id', 'from-flag', '--write-interval-ms', '75', '--db', '/other.db'], env);
    expect(c.nodeId).toBe('from-flag');
    expect(c.writeIntervalMs).toBe(75);
    expect(c.dbPath).toBe('/other.db');
    expect(c.coordinator).toEqual({ kind: 'etcd', endpoints: ['http://e1:2379', 'http://e2:2379'], prefix: '/env' });
  });

  it('treats an empty variable as unset', () => {
    expect(config([], { ...ETCD_ENV, SQLITE_HA_READ_EVERY: '', SQLITE_HA_NODE_ID: '' })).toMatchObject({
      readEvery: 5,
      nodeId: 'host:1',
    });
  });

  it('needs no endpoints for the lockfile coordinator', () => {
    const c = config(['--coordinator', 'lockfile', '--db', 'x.db', '--duration-ms', '3000', '--max-writes', '10']);
    expect(c.coordinator).toEqual({ kind: 'lockfile' });
    expect(c.durationMs).toBe(3000);
    expect(c.maxWrites).toBe(10);
  });

  it('names the missing or bad setting', () => {
    expect(invalidOption(() => config([], { SQLITE_HA_ETCD_ENDPOINTS: 'http://e:2379' })).option).toBe('--db');
    expect(invalidOption(() => config(['--db', 'x.db'])).option).toBe('--etcd-endpoints');
    expect(invalidOption(() => config(['--coordinator', 'zookeeper'], ETCD_ENV)).option).toBe('--coordinator');
    expect(invalidOption(() => config(['--write-interval-ms', '0'], ETCD_ENV)).option).toBe('--write-interval-ms');
    expect(invalidOption(() => config([], { ...ETCD_ENV, SQLITE_HA_LEASE_TTL_MS: '5s' })).option).toBe('--lease-ttl-ms');
    expect(invalidOption(() => config(['--bogus'], ETCD_ENV)).message).toMatch(/unknown option '--bogus'/);
  });

  it('prints help listing every flag and its variable instead of running', () => {
    const parsed = parseWorkloadArgs(['--help'], {}, 'host:1');
    expect(parsed.kind).toBe('help');
    const text = parsed.kind === 'help' ? parsed.text : '';
    for (const s of WORKLOAD_SETTINGS) {
      expect(text).toContain(s.flag.split(' ')[0]);
      expect(text).toContain(s.env);
    }
  });
});
