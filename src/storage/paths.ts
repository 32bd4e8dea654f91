/**
 * The database's real path, resolved once by open(): every later decision (which mount judges the
 * locks, where the lock and fence files go, which file the lockless takeover moves to a new inode)
 * must be about the file itself, not about a symlink to it in another directory.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError } from '../errors';

const MAX_LINKS = 40; // as the kernel's ELOOP limit

/** Symlinks resolved in the directories and in the file itself; the file (or a link's target) may not exist yet. */
export function realPath(file: string): string {
  let p = path.resolve(file);
  for (let i = 0; i < MAX_LINKS; i++) {
    try {
      return fs.realpathSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') break;
      if (code !== 'ENOENT') throw err;
    }
    let target: string | null = null;
    try {
      target = fs.readlinkSync(p); // a dangling symlink: open() would create its target
    } catch {
      target = null;
    }
    if (target === null) {
      // A file still to be created: its directory's real path (a missing directory is reported by open()).
      try {
        return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
      } catch {
        return p;
      }
    }
    p = path.resolve(path.dirname(p), target);
  }
  throw new InvalidOptionError('path', file, `a path with fewer than ${MAX_LINKS} levels of symbolic links`);
}
