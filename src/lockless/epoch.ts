/**
 * Closing the paused-writer window of the lockless mode (docs/HAZARDS.md H5, H8). After an unclean
 * hand-over the successor, having waited out the old lease and with readers gated out, recovers
 * the hot journal, copies the database to a new file and renames it over the old path. A stale
 * writer that resumes mid-commit still holds descriptors of the old inode and the old journal:
 * its writes land in an orphan no one reads. The meta row's `epoch` names the file generation, so
 * a reader still holding the orphan open notices (its epoch differs from the published one).
 *
 * The move must not cost the lease (issue 10, defect 2): the copy is asynchronous (a reflink where
 * the filesystem has one, else the kernel's copy on libuv's thread pool), so keep-alives flow
 * whatever the size. And a *stale mover* (a successor paused mid-move whose lease then ran out)
 * must never rename its copy over a newer holder's file. Two guards:
 *  - the lease is checked after the copy, right before the rename;
 *  - the next mover first turns the previous holder's temp name into a tombstone directory: the
 *    stale mover's rename of a file name that is now a directory fails (ENOTDIR/EISDIR), and an
 *    exclusive create of it fails (EEXIST). This closes the window between the lease check and
 *    the rename, which no clock can.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LeaseLostError } from '../errors';
import { openReadWrite, ConnectionSettings } from '../storage/connection';
import { readMeta } from '../storage/meta';

/** What the move needs to know about the lease, asked at each step. */
export interface MoveLease {
  /** True while the lease is valid and before its commit deadline. */
  usable(): boolean;
}

/** How many tombstones (one per unclean hand-over) stay next to the database. */
const TOMBSTONES_KEPT = 16;

/** The temp name a mover with this fence copies to. */
export function moveTempPath(dbPath: string, fence: number): string {
  return `${dbPath}.sqlite-ha-epoch-${fence}.tmp`;
}

/**
 * Moves the file to a new inode with the meta epoch to be `epoch` (our fence). `previousFence`: the
 * holder before us, whose half-done move (if any) is neutralized first.
 */
export async function moveToNewInode(
  s: ConnectionSettings, epoch: number, lease: MoveLease, previousFence: number | null,
): Promise<void> {
  assertUsable(lease, 'before moving the file');
  if (previousFence !== null && previousFence !== epoch) tombstone(moveTempPath(s.path, previousFence));
  pruneTombstones(s.path, previousFence);
  // A read-write open rolls back a hot journal on its first read (H8).
  const rw = openReadWrite(s);
  try {
    readMeta(rw);
  } finally {
    rw.close();
  }
  const tmp = moveTempPath(s.path, epoch);
  if (fs.statSync(tmp, { throwIfNoEntry: false })?.isDirectory()) throw tombstoned(tmp);
  fs.rmSync(tmp, { force: true }); // our own leftover from an earlier attempt with this fence
  try {
    // EXCL: never write into someone's tombstone. FICLONE: a reflink where supported (constant
    // time), else a kernel copy; either way off the event loop.
    await fs.promises.copyFile(s.path, tmp, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE);
    const fh = await fs.promises.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    assertUsable(lease, 'after copying the file, before the rename');
    // The old journal goes with the old inode: unlink it so the stale writer keeps only its fd.
    fs.rmSync(`${s.path}-journal`, { force: true });
    fs.renameSync(tmp, s.path);
  } catch (err) {
    if (fs.statSync(tmp, { throwIfNoEntry: false })?.isDirectory()) throw tombstoned(tmp);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(path.dirname(s.path));
}

/** A newer holder tombstoned our temp name: it took over while this move was paused. */
function tombstoned(tmp: string): LeaseLostError {
  return new LeaseLostError(`a newer holder took over while this node was moving the file (${path.basename(tmp)} was neutralized)`);
}

function assertUsable(lease: MoveLease, when: string): void {
  if (!lease.usable()) {
    throw new LeaseLostError(`the lease ran out during the lockless takeover (${when}); the file was left as it was`);
  }
}

/** Replaces `p` by an empty directory (bounded: a stale mover may recreate the file in between). */
function tombstone(p: string): void {
  for (let i = 0; i < 10; i++) {
    try {
      fs.mkdirSync(p);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (fs.statSync(p, { throwIfNoEntry: false })?.isDirectory()) return;
      fs.rmSync(p, { force: true });
    }
  }
  throw new Error(
    `could not neutralize the stale temp file ${p}: a former holder kept recreating it; the takeover stopped before ` +
      'touching the database. Stop that process (or remove the file) and retry.',
  );
}

/** Keeps the newest TOMBSTONES_KEPT tombstones below the previous fence. */
function pruneTombstones(dbPath: string, previousFence: number | null): void {
  const dir = path.dirname(dbPath);
  const prefix = `${path.basename(dbPath)}.sqlite-ha-epoch-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const fences = names
    .filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'))
    .map((n) => Number(n.slice(prefix.length, -'.tmp'.length)))
    .filter((f) => Number.isInteger(f) && (previousFence === null || f < previousFence))
    .sort((a, b) => b - a);
  for (const f of fences.slice(TOMBSTONES_KEPT)) {
    const p = moveTempPath(dbPath, f);
    if (fs.statSync(p, { throwIfNoEntry: false })?.isDirectory()) fs.rmSync(p, { recursive: true, force: true });
  }
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } catch {
    /* some filesystems refuse fsync on directories; the rename is still ordered after the data */
  } finally {
    fs.closeSync(fd);
  }
}
