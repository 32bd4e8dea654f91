/**
 * The chain on disk: generations of one snapshot plus the segments that follow it.
 *
 *   <dir>/standby.json                                  { format, name, generation } (the current one)
 *   <dir>/generations/<gen>/<txid>-<fence>.snap|.seg    16-digit zero-padded positions
 *   <dir>/<name>                                        the materialised copy (apply.ts)
 *
 * A generation starts with a snapshot whenever the chain cannot continue (first use, a gap after
 * a crash, a page-size change); compaction adds a snapshot inside a generation and deletes what
 * it covers. Every file is written under a temporary name, fsynced, renamed: a crash leaves
 * either the whole file or none of it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { StandbyCorruptError, StandbyWriteError } from '../errors';
import { readJson, writeBufferDurableAsync, writeFileDurable, writeFileDurableAsync, writeJsonDurable, fsyncPath } from './files';
import { comparePos, Position, SegmentHeader, verifySegment, writeSegmentFd } from './segment';

export interface ChainEntry {
  file: string;
  kind: 'snap' | 'seg';
  pos: Position;
}

interface StandbyManifest {
  format: 1;
  name: string;
  generation: string;
}

/** The path from a snapshot through linked segments, and what did not link. */
export interface Walk {
  generation: string;
  snapshot: ChainEntry;
  segments: { entry: ChainEntry; header: SegmentHeader }[];
  snapshotHeader: SegmentHeader;
  /** Entries after the snapshot that no path reaches (a fork or a hole). */
  unlinked: ChainEntry[];
}

function posName(p: Position): string {
  return `${String(p.txid).padStart(16, '0')}-${String(p.fence).padStart(16, '0')}`;
}

export class Chain {
  constructor(readonly dir: string, readonly name: string) {}

  get manifestFile(): string {
    return path.join(this.dir, 'standby.json');
  }

  genDir(gen: string): string {
    return path.join(this.dir, 'generations', gen);
  }

  /** The current generation, or null when the directory holds no chain yet. */
  current(): string | null {
    return readJson<StandbyManifest>(this.manifestFile)?.generation ?? null;
  }

  /** Every generation, oldest first (ids sort by creation time). */
  generations(): string[] {
    try {
      return fs.readdirSync(path.join(this.dir, 'generations')).filter((g) => /^[0-9a-z]+-[0-9a-f]+$/.test(g)).sort();
    } catch {
      return [];
    }
  }

  /** Snapshots and segments of a generation, by position (a snapshot before a segment at the same one). */
  entries(gen: string): ChainEntry[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.genDir(gen));
    } catch {
      return [];
    }
    const out: ChainEntry[] = [];
    for (const n of names) {
      const m = /^(\d{16})-(\d{16})\.(snap|seg)$/.exec(n);
      if (!m) continue;
      out.push({ file: path.join(this.genDir(gen), n), kind: m[3] as 'snap' | 'seg', pos: { txid: Number(m[1]), fence: Number(m[2]) } });
    }
    return out.sort((a, b) => comparePos(a.pos, b.pos) || (a.kind === 'snap' ? -1 : 1));
  }

  /**
   * Follows the chain from the newest snapshot accepted by `until` (default: the newest), checking
   * every file's SHA-256 and that each segment starts where the previous one ended; stops before
   * the first segment `until` rejects.
   */
  walk(gen: string, until?: (h: SegmentHeader) => boolean): Walk {
    const all = this.entries(gen);
    const snaps = all.filter((e) => e.kind === 'snap');
    for (let i = snaps.length - 1; i >= 0; i--) {
      const h = verifySegment(snaps[i].file);
      if (until && !until(h)) continue;
      const from = this.follow(gen, h.pos, until, all);
      return { generation: gen, snapshot: snaps[i], snapshotHeader: h, ...from };
    }
    throw new StandbyCorruptError(this.genDir(gen), 'no snapshot in this generation reaches the requested point');
  }

  /** The verified segments that continue the chain from `from`, and those that do not link. */
  follow(
    gen: string, from: Position, until?: (h: SegmentHeader) => boolean, all = this.entries(gen),
  ): { segments: Walk['segments']; unlinked: ChainEntry[] } {
    const rest = all.filter((e) => e.kind === 'seg' && comparePos(e.pos, from) > 0);
    const segments: Walk['segments'] = [];
    const used = new Set<ChainEntry>();
    let at = from;
    for (const e of rest) {
      if (comparePos(e.pos, at) <= 0) continue;
      const h = verifySegment(e.file);
      if (comparePos(h.prev, at) !== 0) continue;
      if (until && !until(h)) break;
      segments.push({ entry: e, header: h });
      used.add(e);
      at = h.pos;
    }
    return { segments, unlinked: rest.filter((e) => !used.has(e) && comparePos(e.pos, at) > 0) };
  }

  /** The newest position of the current generation (no verification: the writer's fast check). */
  tip(): { generation: string; pos: Position } | null {
    const gen = this.current();
    if (!gen) return null;
    const all = this.entries(gen);
    const last = all[all.length - 1];
    return last ? { generation: gen, pos: last.pos } : null;
  }

  /** Starts a new generation with a snapshot written by `write` and makes it current. */
  startGeneration(pos: Position, write: (fd: number) => void): string {
    const gen = `${Date.now().toString(36)}-${Math.random().toString(16).slice(2, 10)}`;
    const dir = this.genDir(gen);
    guard(() => {
      fs.mkdirSync(dir, { recursive: true });
      fsyncPath(path.dirname(dir));
      writeFileDurable(path.join(dir, `${posName(pos)}.snap`), write);
      writeJsonDurable(this.manifestFile, { format: 1, name: this.name, generation: gen } satisfies StandbyManifest);
    }, this.dir);
    return gen;
  }

  /** startGeneration with asynchronous I/O: the event loop (keep-alives) runs while a large snapshot is written. */
  async startGenerationAsync(pos: Position, write: (fh: fs.promises.FileHandle) => Promise<void>): Promise<string> {
    const gen = `${Date.now().toString(36)}-${Math.random().toString(16).slice(2, 10)}`;
    const dir = this.genDir(gen);
    try {
      await fs.promises.mkdir(dir, { recursive: true });
      fsyncPath(path.dirname(dir));
      await writeFileDurableAsync(path.join(dir, `${posName(pos)}.snap`), write);
      writeJsonDurable(this.manifestFile, { format: 1, name: this.name, generation: gen } satisfies StandbyManifest);
    } catch (err) {
      throw err instanceof StandbyCorruptError ? err : new StandbyWriteError(this.dir, err);
    }
    return gen;
  }

  /** Appends a segment synchronously (the sync mode: durable before the write is acknowledged). */
  appendSync(gen: string, header: Omit<SegmentHeader, 'version' | 'nPages'>, pages: Map<number, Buffer>): string {
    const file = path.join(this.genDir(gen), `${posName(header.pos)}.seg`);
    const sorted = [...pages.entries()].sort((a, b) => a[0] - b[0]);
    guard(() => writeFileDurable(file, (fd) => writeSegmentFd(fd, header, sorted, sorted.length)), this.dir);
    return file;
  }

  /** Appends an encoded segment with asynchronous I/O (the async mode). */
  async appendAsync(gen: string, pos: Position, encoded: Buffer): Promise<string> {
    const file = path.join(this.genDir(gen), `${posName(pos)}.seg`);
    try {
      await writeBufferDurableAsync(file, encoded);
    } catch (err) {
      throw new StandbyWriteError(this.dir, err);
    }
    return file;
  }

  /** Writes a snapshot inside a generation (compaction) from an already-built database file. */
  addSnapshot(gen: string, pos: Position, write: (fd: number) => void): string {
    const file = path.join(this.genDir(gen), `${posName(pos)}.snap`);
    guard(() => writeFileDurable(file, write), this.dir);
    return file;
  }

  /** Deletes files of `gen` older than `pos` (a snapshot at `pos` must exist) and older generations. */
  pruneBefore(gen: string, pos: Position): number {
    let removed = 0;
    for (const e of this.entries(gen)) {
      if (comparePos(e.pos, pos) < 0) {
        fs.rmSync(e.file, { force: true });
        removed++;
      }
    }
    for (const g of this.generations()) {
      if (g < gen) {
        fs.rmSync(this.genDir(g), { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }
}

/** Turns a filesystem failure (ENOSPC, EIO, EROFS …) into StandbyWriteError. */
function guard(fn: () => void, dir: string): void {
  try {
    fn();
  } catch (err) {
    if (err instanceof StandbyCorruptError) throw err;
    throw new StandbyWriteError(dir, err);
  }
}
