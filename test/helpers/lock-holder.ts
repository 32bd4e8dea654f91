/**
 * Another process that holds SQLite's RESERVED lock on a file (BEGIN IMMEDIATE) for a while.
 * A separate process, because SQLite waits for locks synchronously: nothing in this process could
 * let go of a lock while the code under test is blocked on it.
 */
import { spawn } from 'child_process';

export interface LockHolder {
  /** Resolves when the process has exited (after its COMMIT, or when killed). */
  exited: Promise<void>;
  /** Kills it now; its transaction wrote nothing, so the lock just goes away. */
  kill(): Promise<void>;
}

/**
 * Resolves once the other process holds the lock (bounded: rejects after 5 s); it commits and exits
 * holdMs later. `defer` registers the kill for the test's cleanup. The result is an object, not a
 * bare promise: an async function returning a promise would wait for it.
 */
export async function holdWriteLock(file: string, holdMs: number, defer: (fn: () => unknown) => void): Promise<LockHolder> {
  const script = `
    const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
    const db = new D(${JSON.stringify(file)});
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, ${holdMs});
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const kill = () => {
    child.kill('SIGKILL');
    return exited;
  };
  defer(kill);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('lock holder did not start within 5 s')), 5000);
    child.stdout!.on('data', (d) => {
      if (String(d).includes('locked')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', () => {
      clearTimeout(t);
      reject(new Error('lock holder exited before taking the lock'));
    });
  });
  return { exited, kill };
}
