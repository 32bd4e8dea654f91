/** A fresh temporary directory (and database path inside it) per test, removed afterwards. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface TmpDir {
  readonly dir: string;
  /** A path inside the directory; the file is not created. */
  file(name?: string): string;
  remove(): void;
}

export function makeTmpDir(prefix = 'sqlite-ha-unit-'): TmpDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    file: (name = 'db.sqlite') => path.join(dir, name),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Registers beforeEach/afterEach hooks: each test gets its own directory. `cleanups` run (in
 * reverse order) before the directory is removed, e.g. to close database handles.
 */
export function useTmpDir(prefix?: string): {
  dir: () => string;
  file: (name?: string) => string;
  defer: (fn: () => unknown) => void;
} {
  let current: TmpDir | null = null;
  let cleanups: (() => unknown)[] = [];
  beforeEach(() => {
    current = makeTmpDir(prefix);
  });
  afterEach(async () => {
    const fns = cleanups.reverse();
    cleanups = [];
    for (const fn of fns) {
      try {
        await fn();
      } catch {
        /* best effort: the test already reported its failure */
      }
    }
    current?.remove();
    current = null;
  });
  const need = (): TmpDir => {
    if (!current) throw new Error('useTmpDir: no directory outside a test');
    return current;
  };
  return {
    dir: () => need().dir,
    file: (name?: string) => need().file(name),
    defer: (fn) => void cleanups.push(fn),
  };
}

/** Resolves when pred() is true; rejects after timeoutMs (bounded polling). */
export async function waitUntil(pred: () => boolean, timeoutMs = 3000, stepMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
