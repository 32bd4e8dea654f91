/**
 * Closing the paused-writer window of the lockless mode (HAZARDS H5, H8). After an unclean
 * hand-over the successor, having waited out the old lease and with readers gated out, recovers
 * the hot journal, copies the database to a new file and renames it over the old path. A stale
 * writer that resumes mid-commit still holds descriptors of the old inode and the old journal:
 * its writes land in an orphan no one reads. The meta row's `epoch` names the file generation, so
 * a reader still holding the orphan open notices (its epoch differs from the published one).
 */
import * as fs from 'fs';
import * as path from 'path';
import { openReadWrite, ConnectionSettings } from '../storage/connection';
import { readMeta } from '../storage/meta';

export function moveToNewInode(s: ConnectionSettings, epoch: number): void {
  // A read-write open rolls back a hot journal on its first read (H8).
  const rw = openReadWrite(s);
  try {
    readMeta(rw);
  } finally {
    rw.close();
  }
  const tmp = `${s.path}.sqlite-ha-epoch-${epoch}.tmp`;
  fs.copyFileSync(s.path, tmp);
  fsyncPath(tmp);
  // The old journal goes with the old inode: unlink it so the stale writer keeps only its fd.
  fs.rmSync(`${s.path}-journal`, { force: true });
  fs.renameSync(tmp, s.path);
  fsyncPath(path.dirname(s.path));
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
