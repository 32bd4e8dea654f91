/**
 * Retention: folds old segments into a snapshot. Segments past the newest `retainSegments`, or
 * committed more than `retainMs` ago, are applied into a new snapshot at the last folded position
 * (its checksum verified against the chain's before anything is deleted); then every file before
 * that snapshot, and every older generation, is deleted. Point-in-time restore reaches back to the
 * oldest snapshot kept.
 */
import * as fs from 'fs';
import { StandbyCorruptError } from '../errors';
import { rebuild } from './apply';
import { Chain } from './chain';
import { checksumHex, DbChecksum } from './checksum';
import { pageCount, readPage } from './pages';
import { writeSegmentFd } from './segment';

export interface Retention {
  retainSegments: number;
  retainMs: number;
}

/** Compacts the current generation; returns how many files it removed (0: nothing to do). */
export function compact(chain: Chain, retention: Retention, now = Date.now()): number {
  const gen = chain.current();
  if (!gen) return 0;
  const walk = chain.walk(gen);
  const segs = walk.segments;
  let cut = segs.length - retention.retainSegments - 1; // index of the last segment to fold
  for (let i = 0; i < segs.length; i++) if (now - segs[i].header.timeMs > retention.retainMs) cut = Math.max(cut, i);
  if (cut < 0) return 0;
  const last = segs[cut].header;
  const tmp = `${chain.genDir(gen)}/compact-${process.pid}.db`;
  try {
    rebuild(tmp, gen, walk.snapshot, walk.snapshotHeader, segs.slice(0, cut + 1), false);
    const actual = DbChecksum.ofFile(tmp, last.pageSize).value;
    if (actual !== last.checksum) {
      throw new StandbyCorruptError(tmp, `compaction built checksum ${checksumHex(actual)}, the chain says ${checksumHex(last.checksum)}`);
    }
    const fd = fs.openSync(tmp, 'r');
    try {
      const dbPages = pageCount(fs.fstatSync(fd).size, last.pageSize);
      const pages = function* (): Generator<[number, Buffer]> {
        for (let p = 1; p <= dbPages; p++) yield [p, readPage(fd, p, last.pageSize)!];
      };
      chain.addSnapshot(gen, last.pos, (out) =>
        writeSegmentFd(out, { ...last, snapshot: true, prev: last.pos, dbPages }, pages(), dbPages));
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return chain.pruneBefore(gen, last.pos);
}
