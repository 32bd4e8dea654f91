/**
 * The sshfs harness: one export on a private loopback sshd, mounted twice; the two mounts act as
 * two hosts whose POSIX locks do not see each other (docs/HAZARDS.md H2-H4 need exactly this).
 */
import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { isSshfsMounted, SshfsExport } from '../../tools/cluster/sshfs';
import { lockVerdictFor } from '../../src/storage/mounts';

let exp: SshfsExport | null = null;
const holders: ChildProcess[] = [];

beforeAll(async () => {
  if (!SshfsExport.available()) {
    throw new Error('sshfs harness needs sshfs, /usr/sbin/sshd, ssh-keygen and /dev/fuse (apt-get install sshfs openssh-server)');
  }
  exp = await SshfsExport.start({ mounts: 2 });
}, 30000);

afterAll(async () => {
  for (const h of holders.splice(0)) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  await exp?.stop();
});

function sx(): SshfsExport {
  if (!exp) throw new Error('sshfs export not started');
  return exp;
}

function sshfsLinesFor(points: string[]): string[] {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => points.some((p) => l.split(' ')[1] === p));
}

/** A separate process that opens `file` and holds BEGIN EXCLUSIVE until killed. */
async function holdExclusive(file: string): Promise<ChildProcess> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(${JSON.stringify(file)}, { timeout: 0 });
    db.exec('BEGIN EXCLUSIVE');
    process.stdout.write('held\\n');
    setInterval(() => {}, 1000);
  `;
  const p = spawn(process.execPath, ['-e', script], { cwd: path.resolve(__dirname, '../..'), stdio: ['ignore', 'pipe', 'pipe'] });
  holders.push(p);
  let err = '';
  p.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lock holder did not report within 10 s: ${err}`)), 10000);
    p.stdout!.on('data', (d) => {
      if (String(d).includes('held')) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`lock holder exited ${code}: ${err}`));
    });
  });
  return p;
}

/** Tries BEGIN EXCLUSIVE on a fresh connection without waiting; returns 'ok' or the error code. */
function tryExclusive(file: string): string {
  const db = new Database(file, { timeout: 0 });
  try {
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  } finally {
    db.close();
  }
}

test('starts two fuse.sshfs mounts of one export', () => {
  const e = sx();
  expect(e.mounts).toHaveLength(2);
  expect(new Set(e.mounts).size).toBe(2);
  for (const m of e.mounts) expect(isSshfsMounted(m)).toBe(true);
  const lines = sshfsLinesFor(e.mounts);
  expect(lines).toHaveLength(2);
  for (const l of lines) expect(l.split(' ')[2]).toBe('fuse.sshfs');
  expect(fs.statSync(e.exportDir).isDirectory()).toBe(true);
});

test('a file written through mount 0 is visible through mount 1 and in the export', () => {
  const e = sx();
  const body = `hello ${Date.now()}\n`;
  fs.writeFileSync(path.join(e.mounts[0], 'hello.txt'), body);
  expect(fs.readFileSync(path.join(e.mounts[1], 'hello.txt'), 'utf8')).toBe(body);
  expect(fs.readFileSync(path.join(e.exportDir, 'hello.txt'), 'utf8')).toBe(body);
  // And the other way round, from the server's side.
  fs.writeFileSync(path.join(e.exportDir, 'server.txt'), 'from server');
  expect(fs.readFileSync(path.join(e.mounts[0], 'server.txt'), 'utf8')).toBe('from server');
});

test('POSIX locks do not cross mounts, but do work within one mount (H2)', async () => {
  const e = sx();
  const on0 = path.join(e.mounts[0], 'locks.db');
  const on1 = path.join(e.mounts[1], 'locks.db');
  const setup = new Database(on0);
  setup.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1);');
  setup.close();

  const holder = await holdExclusive(on0);
  // Control: another process on the same mount sees the lock.
  expect(tryExclusive(on0)).toBe('SQLITE_BUSY');
  // Through the other mount the lock is invisible: a second writer gets in.
  expect(tryExclusive(on1)).toBe('ok');
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  // With the holder gone the same mount is free again.
  expect(tryExclusive(on0)).toBe('ok');
}, 20000);

test('lockVerdictFor a file on a mount says locks are not trusted, naming FUSE', () => {
  const v = lockVerdictFor(path.join(sx().mounts[0], 'locks.db'));
  expect(v.trusted).toBe(false);
  expect(v.mount.fsType).toBe('fuse.sshfs');
  expect(v.reason).toMatch(/fuse/i);
  expect(v.advice).toBeTruthy();
});

test('stop() unmounts everything, ends sshd and its sessions, removes the temp dir; twice is fine', async () => {
  const e = sx();
  const sshdPid = e.sshdPid;
  expect(sshdPid).toBeDefined();
  await e.stop();
  expect(sshfsLinesFor(e.mounts)).toEqual([]);
  for (const m of e.mounts) expect(isSshfsMounted(m)).toBe(false);
  expect(() => process.kill(sshdPid!, 0)).toThrow();
  // Nothing listens on the port any more.
  const listening = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: e.port });
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
  expect(listening).toBe(false);
  expect(e.sshdPid).toBeUndefined();
  expect(fs.existsSync(e.dir)).toBe(false);
  await expect(e.stop()).resolves.toBeUndefined();
});
