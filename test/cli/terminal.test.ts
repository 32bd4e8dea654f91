/**
 * What the CLI prints cannot drive the terminal (issue #10, defect 10): etcd keys and values with
 * control characters (a crafted lock key with ESC]0;… that sets the window title, a node id with
 * ESC[2J and a C1 CSI) come out escaped in status, history, release and doctor, as text and as
 * JSON; and monitor's metrics server stays on loopback unless an address is given.
 * Run after `npm run build` (it spawns dist/cli/main.js).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EtcdCluster } from '../../tools/cluster/etcd-process';
import { printable, printableCopy, jsonText } from '../../src/cli/format';
import { CLI, killAll, runCli, startProc, waitFor } from './helpers';

jest.setTimeout(60000);

// Raw control characters other than newline: none may reach the terminal.
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const TITLE = '\u001b]0;pwned\u0007';
const EVIL_DB = `evil${TITLE}.db`;
const EVIL_NODE = 'n\u001b[2J\u009b31m\u202eode';

let cluster: EtcdCluster;
let eps: string[];
let dir: string;
const prefix = '/t-terminal';

beforeAll(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  eps = cluster.endpoints;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-cli-'));
  const lock = { node: EVIL_NODE, pid: 7, ttlMs: 5000, queuedAt: Date.now() };
  cluster.etcdctl(['put', `${prefix}/${EVIL_DB}/lock/694d7a1b2c3d4e5f`, JSON.stringify(lock)]);
  const handover = { fence: 3, node: EVIL_NODE, previousNode: `p${TITLE}`, cause: 'released', waitedMs: 1, handoverMs: 2, time: Date.now() };
  cluster.etcdctl(['put', `${prefix}/${EVIL_DB}/history/0000000000000003`, JSON.stringify(handover)]);
}, 60000);

afterAll(async () => {
  await killAll();
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const conn = () => ['--endpoints', eps.join(','), '--prefix', prefix];

describe('printable()', () => {
  test('escapes C0, DEL, C1 and bidi overrides; keeps ordinary text and, on request, newlines', () => {
    expect(printable(`a${TITLE}b`)).toBe('a\\x1b]0;pwned\\x07b');
    expect(printable('x\u009by\u007fz\u202e')).toBe('x\\x9by\\x7fz\\u202e');
    expect(printable('line1\nline2\ttab')).toBe('line1\\x0aline2\\x09tab');
    expect(printable('line1\nline2', { keepNewlines: true })).toBe('line1\nline2');
    expect(printable('ünïcødé ✓ 数据库')).toBe('ünïcødé ✓ 数据库');
    expect(printableCopy({ [`k${TITLE}`]: [EVIL_NODE, 3, null] })).toEqual({ 'k\\x1b]0;pwned\\x07': ['n\\x1b[2J\\x9b31m\\u202eode', 3, null] });
    const json = jsonText({ node: EVIL_NODE });
    expect(json).not.toMatch(RAW_CONTROL);
    expect(JSON.parse(json)).toEqual({ node: EVIL_NODE });
  });
});

describe('etcd values never reach the terminal raw', () => {
  test('status, as text and as JSON', async () => {
    const text = await runCli(['status', ...conn()]);
    expect(text.code).toBe(0);
    expect(text.stdout).not.toMatch(RAW_CONTROL);
    expect(text.stdout).toContain('evil\\x1b]0;pwned\\x07.db');
    expect(text.stdout).toContain('n\\x1b[2J\\x9b31m\\u202eode');
    const json = await runCli(['status', '--json', ...conn()]);
    expect(json.code).toBe(0);
    expect(json.stdout).not.toMatch(RAW_CONTROL);
    const parsed = JSON.parse(json.stdout) as { databases: { name: string }[] };
    expect(parsed.databases.map((d) => d.name)).toContain(EVIL_DB); // JSON readers get the value back
  });

  test('history, as text and as JSON', async () => {
    const text = await runCli(['history', ...conn()]);
    expect(text.code).toBe(0);
    expect(text.stdout).not.toMatch(RAW_CONTROL);
    expect(text.stdout).toContain('p\\x1b]0;pwned\\x07');
    const json = await runCli(['history', '--json', ...conn()]);
    expect(json.stdout).not.toMatch(RAW_CONTROL);
    expect((JSON.parse(json.stdout) as { node: string }[])[0].node).toBe(EVIL_NODE);
  });

  test('release (a holder key without a lease) and an unknown database', async () => {
    const r = await runCli(['release', '--force', '-y', EVIL_DB, ...conn()]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toMatch(RAW_CONTROL);
    expect(r.stderr).toContain('evil\\x1b]0;pwned\\x07.db/lock/694d7a1b2c3d4e5f');
    const unknown = await runCli(['release', '--force', '-y', 'nope.db', ...conn()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).not.toMatch(RAW_CONTROL);
    expect(unknown.stderr).toContain('known: evil\\x1b]0;pwned\\x07.db');
  });

  test("doctor quotes the holder's info record escaped", async () => {
    const file = path.join(dir, 'doc.db');
    const info = { node: EVIL_NODE, path: `/mnt/${TITLE}`, locks: 'none', journalMode: 'TRUNCATE', leaseTtlMs: 5000, time: Date.now() };
    cluster.etcdctl(['put', `${prefix}/doc.db/info`, JSON.stringify(info)]);
    const r = await runCli(['doctor', file, '--fsync-samples', '3', ...conn()], { timeoutMs: 30000 });
    expect(r.stdout + r.stderr).not.toMatch(RAW_CONTROL);
    expect(r.stdout).toContain('n\\x1b[2J\\x9b31m\\u202eode');
  });
});

describe('monitor --metrics-port', () => {
  async function metricsUrl(args: string[]): Promise<string> {
    const mon = startProc(process.execPath, [CLI, 'monitor', '--json', ...conn(), ...args]);
    try {
      return await waitFor('the metrics URL', () => /Prometheus metrics at (http:\/\/\S+)/.exec(mon.stderr)?.[1], 15000);
    } finally {
      mon.child.kill('SIGINT');
      await mon.exited;
    }
  }

  test('binds 127.0.0.1 unless an address is given', async () => {
    expect(await metricsUrl(['--metrics-port', '0'])).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(await metricsUrl(['--metrics-port', '0.0.0.0:0'])).toMatch(/^http:\/\/0\.0\.0\.0:\d+\/metrics$/);
    expect(await metricsUrl(['--metrics-port', '0', '--metrics-host', '0.0.0.0'])).toMatch(/^http:\/\/0\.0\.0\.0:\d+\/metrics$/);
  });

  test('two different addresses, or a host without a port, are usage errors', async () => {
    const both = await runCli(['monitor', ...conn(), '--metrics-port', '127.0.0.1:0', '--metrics-host', '0.0.0.0']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/name different addresses/);
    const hostOnly = await runCli(['monitor', ...conn(), '--metrics-host', '0.0.0.0']);
    expect(hostOnly.code).toBe(2);
    expect(hostOnly.stderr).toMatch(/--metrics-host needs --metrics-port/);
  });
});
