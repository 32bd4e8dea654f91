/** The one way unit tests open a handle: the lockfile coordinator on a file of the test's tmp dir, closed afterwards. */
import Database from 'better-sqlite3';
import { HADatabase, open, OpenOptions } from '../../src';
import { readMeta } from '../../src/storage/meta';
import type { useTmpDir } from './tmp';

type Tmp = ReturnType<typeof useTmpDir>;

/** Opens `name` (default: the tmp dir's default file) with the lockfile coordinator and `extra` options. */
export async function openHA(tmp: Tmp, extra: Partial<OpenOptions> = {}, name?: string): Promise<HADatabase> {
  const db = await open(tmp.file(name), { coordinator: { kind: 'lockfile' }, acquireTimeoutMs: 3000, ...extra });
  tmp.defer(() => db.close());
  return db;
}

/** The meta row (fence, txid) as another process reads it from `file`. */
export function storedMeta(file: string): { fence: number; txid: number } {
  const c = new Database(file, { readonly: true });
  try {
    return readMeta(c);
  } finally {
    c.close();
  }
}
