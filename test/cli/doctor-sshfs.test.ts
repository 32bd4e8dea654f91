/**
 * `sqlite-ha doctor` on a real sshfs mount (FUSE: locks stay on this host, docs/HAZARDS.md H2-H5): the
 * lock verdict names the filesystem and points at the lockless mode; on a local directory the
 * same check says the locks can be trusted.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { useSshfs } from '../helpers/sshfs';
import { runCli } from './helpers';

interface Report { ok: boolean; findings: { check: string; verdict: string; summary: string; advice: string | null; data?: Record<string, unknown> }[] }

const sshfs = useSshfs(1);

test('doctor on sshfs: fuse.sshfs, cross-host locks not trusted, lockless mode advised', async () => {
  const r = await runCli(['doctor', '--json', path.join(sshfs().mounts[0], 'app.db')]);
  const rep = JSON.parse(r.stdout) as Report;
  const locks = rep.findings.find((f) => f.check === 'locks')!;
  const filesystem = rep.findings.find((f) => f.check === 'filesystem')!;
  expect(filesystem.data).toMatchObject({ fsType: 'fuse.sshfs' });
  expect(locks.verdict).toBe('warn');
  expect(locks.data).toMatchObject({ trusted: false });
  expect(locks.summary).toMatch(/FUSE/);
  expect(locks.advice).toMatch(/lockless|locks: 'none'/);
}, 60000);

test('doctor on a local directory: the same check trusts the locks', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'doctor-local-'));
  try {
    const r = await runCli(['doctor', '--json', path.join(dir, 'app.db')]);
    const rep = JSON.parse(r.stdout) as Report;
    expect(rep.findings.find((f) => f.check === 'locks')).toMatchObject({ verdict: 'ok', data: { trusted: true } });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60000);
