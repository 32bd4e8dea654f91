/**
 * Materialising a standby copy: a snapshot plus the segments after it, in chain order.
 *
 * Incremental apply (the copy at <dir>/<name> moving forward) is crash-safe by an undo log, the
 * rollback journal's idea: (1) the pages about to be overwritten and the old size go into
 * `<copy>.undo` (segment format, fsynced); (2) the new pages are written and the file truncated,
 * fsynced; (3) `<copy>.applied.json` names the new position (write, fsync, rename); (4) the undo
 * log is deleted. A crash before (3) is rolled back from the undo log on the next apply; a torn
 * undo log means (2) never started. So the copy is always at some applied position, never torn.
 * A rebuild from a snapshot goes to a temporary file and is renamed into place.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import { StandbyCorruptError, StandbyTargetError } from '../errors';
import { hasMetaTable, readMetaAnyVersion } from '../storage/meta';
import { Chain, ChainEntry } from './chain';
import { checksumHex, DbChecksum } from './checksum';
import { fsyncPath, readJson, writeFileDurable, writeJsonDurable } from './files';
import { comparePos, SegmentHeader, segmentPages, verifySegment, writeSegmentFd } from './segment';

/** Where a materialised copy stands. */
export interface AppliedState {
  generation: string;
  txid: number;
  fence: number;
  epoch: number;
  pageSize: number;
  dbPages: number;
  /** Commit time of the newest applied transaction. */
  timeMs: number;
  /** Whole-database checksum (hex) the chain states for this position. */
  checksum: string;
}

/** A point to stop at: the newest position with txid ≤ `txid`, or committed at or before `timeMs`. */
export interface ApplyTarget {
  txid?: number;
  timeMs?: number;
}

export interface MaterialiseOptions {
  /** The copy to build or bring forward. Default `<dir>/<name>`. */
  out?: string;
  /** Stop at this point instead of the newest. */
  target?: ApplyTarget;
  /** Hash the result and compare with the chain's checksum (promotion, restore). */
  verifyChecksum?: boolean;
  /** False: only move an existing copy forward; return null when it would need a rebuild. */
  rebuild?: boolean;
}

/** Path of the state file beside a copy. */
function stateFile(copy: string): string {
  return `${copy}.applied.json`;
}

/** Reads a copy's state, or null when it has none. */
export function readApplied(copy: string): AppliedState | null {
  return readJson<AppliedState>(stateFile(copy));
}

/**
 * Brings a copy to the newest position of the chain (or to `target`): incrementally when it is
 * already on the chain, else rebuilt from the best snapshot. Returns the position reached.
 */
export function materialise(chain: Chain, opts: MaterialiseOptions & { rebuild: false }): AppliedState | null;
export function materialise(chain: Chain, opts?: MaterialiseOptions): AppliedState;
export function materialise(chain: Chain, opts: MaterialiseOptions = {}): AppliedState | null {
  const out = opts.out ?? path.join(chain.dir, chain.name);
  recoverUndo(out);
  const target = opts.target;
  const until = target ? accepts(target) : undefined;
  let state = readApplied(out);
  const gen = target ? findGeneration(chain, until!) : chain.current();
  if (!gen) throw new StandbyTargetError(`no standby chain in ${chain.dir} (nothing was ever written there)`);
  if (state && (state.generation !== gen || !copyIsAt(out, state))) state = null;
  if (state && target && (target.txid !== undefined ? state.txid > target.txid : state.timeMs > (target.timeMs ?? Infinity))) state = null;
  if (state) {
    const next = chain.follow(gen, state, until);
    if (next.segments.length > 0 || next.unlinked.length === 0) {
      if (next.segments.length > 0) state = applyIncremental(out, state, next.segments);
      return finish(out, state, opts);
    }
    // The copy sits off the chain (e.g. compaction removed its continuation): rebuild it.
  }
  if (opts.rebuild === false) return null;
  const walk = chain.walk(gen, until);
  state = rebuild(out, gen, walk.snapshot, walk.snapshotHeader, walk.segments);
  return finish(out, state, opts);
}

function finish(out: string, state: AppliedState, opts: MaterialiseOptions): AppliedState {
  if (opts.verifyChecksum) {
    const actual = checksumHex(DbChecksum.ofFile(out, state.pageSize).value);
    if (actual !== state.checksum) {
      throw new StandbyCorruptError(out, `whole-database checksum ${actual} differs from the chain's ${state.checksum} at txid ${state.txid}`);
    }
  }
  return state;
}

function accepts(t: ApplyTarget): (h: SegmentHeader) => boolean {
  if (t.txid !== undefined) return (h) => h.pos.txid <= t.txid!;
  if (t.timeMs !== undefined) return (h) => h.timeMs <= t.timeMs!;
  return () => true;
}

/** The newest generation whose snapshot is at or before the target. */
function findGeneration(chain: Chain, until: (h: SegmentHeader) => boolean): string {
  const gens = chain.generations().reverse();
  for (const g of gens) {
    const snaps = chain.entries(g).filter((e) => e.kind === 'snap');
    if (snaps.some((s) => until(verifySegment(s.file)))) return g;
  }
  throw new StandbyTargetError(
    `the requested point is older than every snapshot in ${chain.dir} (compaction removed it) or the chain is empty`,
  );
}

/** True when the copy's meta row agrees with its state file (a rename may have outrun the state write). */
function copyIsAt(copy: string, state: AppliedState): boolean {
  if (!fs.existsSync(copy)) return false;
  try {
    const db = new Database(copy, { readonly: true, fileMustExist: true });
    try {
      if (!hasMetaTable(db)) return false;
      const row = readMetaAnyVersion(db);
      return row.txid === state.txid && row.fence === state.fence;
    } finally {
      db.close();
    }
  } catch {
    return false;
  }
}

function stateOf(gen: string, h: SegmentHeader): AppliedState {
  return {
    generation: gen, txid: h.pos.txid, fence: h.pos.fence, epoch: h.epoch, pageSize: h.pageSize,
    dbPages: h.dbPages, timeMs: h.timeMs, checksum: checksumHex(h.checksum),
  };
}

/** Builds `out` from a snapshot and segments (through a temporary file); records its state unless told not to. */
export function rebuild(
  out: string, gen: string, snap: ChainEntry, snapHeader: SegmentHeader, segs: { entry: ChainEntry; header: SegmentHeader }[],
  recordState = true,
): AppliedState {
  let last = snapHeader;
  writeFileDurable(out, (fd) => {
    writePages(fd, snap.file, snapHeader);
    for (const s of segs) {
      if (s.header.pageSize !== snapHeader.pageSize) throw new StandbyCorruptError(s.entry.file, 'page size differs from its snapshot');
      writePages(fd, s.entry.file, s.header);
      last = s.header;
    }
  });
  const state = stateOf(gen, last);
  if (recordState) writeJsonDurable(stateFile(out), state);
  return state;
}

function writePages(fd: number, file: string, h: SegmentHeader): void {
  for (const [pgno, data] of segmentPages(file)) {
    if (pgno <= h.dbPages) fs.writeSync(fd, data, 0, data.length, (pgno - 1) * h.pageSize);
  }
  fs.ftruncateSync(fd, h.dbPages * h.pageSize);
}

function applyIncremental(out: string, state: AppliedState, segs: { entry: ChainEntry; header: SegmentHeader }[]): AppliedState {
  const ps = state.pageSize;
  for (const s of segs) {
    if (s.header.pageSize !== ps) throw new StandbyCorruptError(s.entry.file, 'page size differs from the copy');
  }
  const touched = new Set<number>();
  for (const s of segs) for (const [pgno] of segmentPages(s.entry.file)) touched.add(pgno);
  const fd = fs.openSync(out, 'r+');
  try {
    const oldPages = Math.ceil(fs.fstatSync(fd).size / ps);
    const olds = [...touched].filter((p) => p <= oldPages).sort((a, b) => a - b);
    // (1) the undo log: every page about to change, the old size and position.
    writeFileDurable(undoFile(out), (ufd) =>
      writeSegmentFd(ufd, {
        snapshot: false, prev: state, pos: state, epoch: state.epoch, pageSize: ps, dbPages: oldPages,
        timeMs: state.timeMs, checksum: BigInt('0x' + state.checksum),
      }, readPages(fd, olds, ps), olds.length),
    );
    // (2) the new content, then (3) the new position, then (4) drop the undo log.
    for (const s of segs) writePages(fd, s.entry.file, s.header);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const last = segs[segs.length - 1].header;
  const next = stateOf(state.generation, last);
  writeJsonDurable(stateFile(out), next);
  fs.rmSync(undoFile(out), { force: true });
  fsyncPath(path.dirname(out));
  return next;
}

function* readPages(fd: number, pgnos: number[], ps: number): Generator<[number, Buffer]> {
  for (const p of pgnos) {
    const buf = Buffer.alloc(ps);
    fs.readSync(fd, buf, 0, ps, (p - 1) * ps);
    yield [p, buf];
  }
}

function undoFile(copy: string): string {
  return `${copy}.undo`;
}

/** Rolls an interrupted incremental apply back (or clears a finished one's undo log). */
export function recoverUndo(copy: string): 'none' | 'rolled-back' | 'discarded' {
  const undo = undoFile(copy);
  if (!fs.existsSync(undo)) return 'none';
  let h: SegmentHeader;
  try {
    h = verifySegment(undo);
  } catch {
    fs.rmSync(undo, { force: true }); // torn: step (2) never started
    return 'discarded';
  }
  const state = readApplied(copy);
  if (state && comparePos(state, h.pos) !== 0) {
    fs.rmSync(undo, { force: true }); // step (3) happened: the apply finished
    return 'discarded';
  }
  const fd = fs.openSync(copy, 'r+');
  try {
    for (const [pgno, data] of segmentPages(undo)) fs.writeSync(fd, data, 0, data.length, (pgno - 1) * h.pageSize);
    fs.ftruncateSync(fd, h.dbPages * h.pageSize);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.rmSync(undo, { force: true });
  fsyncPath(path.dirname(copy));
  return 'rolled-back';
}
