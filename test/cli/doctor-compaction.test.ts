/**
 * `sqlite-ha doctor` on etcd compaction (issue #10): against a real etcd without auto-compaction it
 * warns once the history is long, and against one started with --auto-compaction-retention it
 * reports the compact revision. A client cannot read etcd's flags: what is judged is the compact
 * revision (src/cli/compaction.ts), so the threshold is lowered here instead of writing 100000
 * revisions. Run after `npm run build` (it spawns dist/cli/main.js).
 */
import { Etcd3 } from 'etcd3';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EtcdCluster } from '../../tools/cluster/etcd-process';
import { runCli } from './helpers';

jest.setTimeout(90000);

interface Finding { check: string; verdict: string; summary: string; advice: string | null; data?: Record<string, number> }

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-doctor-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function withEtcd(extraArgs: string[], fn: (c: EtcdCluster, client: Etcd3) => Promise<void>): Promise<void> {
  const c = await EtcdCluster.start({ members: 1, extraArgs });
  const client = new Etcd3({ hosts: c.endpoints });
  try {
    await fn(c, client);
  } finally {
    client.close();
    await c.stop();
  }
}

async function compaction(c: EtcdCluster): Promise<Finding> {
  const r = await runCli([
    'doctor', '--json', path.join(dir, 'app.db'), '--fsync-samples', '2', '--compaction-revisions', '50',
    '--endpoints', c.endpoints.join(','), '--prefix', '/t-doctor',
  ], { timeoutMs: 30000 });
  const report = JSON.parse(r.stdout) as { findings: Finding[] };
  return report.findings.find((f) => f.check === 'compaction')!;
}

test('no auto-compaction: a warning once the history is past the threshold, saying what to set', async () => {
  await withEtcd([], async (c, client) => {
    expect((await compaction(c)).verdict).toBe('ok'); // young: cannot tell
    for (let i = 0; i < 60; i++) await client.put('/t-doctor/app.db/commit').value(String(i));
    const f = await compaction(c);
    expect(f.verdict).toBe('warn');
    expect(f.summary).toMatch(/never compacted and is at revision \d+.*auto-compaction looks off/);
    expect(f.advice).toMatch(/--auto-compaction-retention/);
    expect(f.data!.compactRevision).toBe(0);
  });
});

test('with --auto-compaction-retention: the compact revision is found and reported', async () => {
  await withEtcd(['--auto-compaction-retention', '1s'], async (c, client) => {
    let f: Finding | null = null;
    for (let i = 0; i < 40; i++) {
      for (let j = 0; j < 10; j++) await client.put('/t-doctor/app.db/commit').value(String(j));
      const raw = await client.kv.range({ key: Buffer.from('/t-doctor/app.db/commit') });
      // Wait for etcd's own compactor (about a second) before asking doctor.
      const compacted = await client.kv.range({ key: Buffer.from('/t-doctor/app.db/commit'), revision: '1' }).then(() => false, () => true);
      if (compacted && Number(raw.header.revision) > 60) {
        f = await compaction(c);
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(f).not.toBeNull();
    expect(f!.verdict).toBe('ok');
    expect(f!.summary).toMatch(/compacted up to revision \d+ of \d+/);
    expect(f!.data!.compactRevision).toBeGreaterThan(1);
    expect(f!.data!.compactRevision).toBeLessThanOrEqual(f!.data!.revision);
  });
});
