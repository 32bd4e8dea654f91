/** The one way unit tests open a handle: the lockfile coordinator on a file of the test's tmp dir, closed afterwards. */
import { HADatabase, open, OpenOptions } from '../../src';
import type { useTmpDir } from './tmp';

type Tmp = ReturnType<typeof useTmpDir>;

/** Opens `name` (default: the tmp dir's default file) with the lockfile coordinator and `extra` options. */
export async function openHA(tmp: Tmp, extra: Partial<OpenOptions> = {}, name?: string): Promise<HADatabase> {
  const db = await open(tmp.file(name), { coordinator: { kind: 'lockfile' }, acquireTimeoutMs: 3000, ...extra });
  tmp.defer(() => db.close());
  return db;
}
