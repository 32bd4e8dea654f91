/**
 * Per-transaction page capture from the rollback journal. Only the lease holder writes the file,
 * so inside its transaction the journal is its own and complete (every page record is written
 * before the page changes in the cache), and right after COMMIT the file holds exactly the
 * committed state until this process writes again.
 *
 * The pages a transaction changes are: every page the journal names (walking every segment: cache
 * spills start new ones), page 1, every page past the original page count (never journaled), and
 * every freelist leaf as the freelist stood at transaction start (SQLite reuses a free leaf
 * without journaling it). Extra pages cost bytes, never correctness: content is read after COMMIT.
 */
import * as fs from 'fs';
import { readJournal } from './journal';
import { freelistOf, pageCount, pageSizeOf, readPage } from './pages';

/** What before() learnt while the transaction was still open. */
export interface PreCommit {
  pageSize: number;
  originalPages: number;
  /** Candidate pages up to the original size (journaled, page 1, free leaves and trunks at start). */
  pages: Set<number>;
  /** Number of journal segments walked. */
  segments: number;
}

/** Pages of one committed transaction, read from the file after COMMIT. */
export interface Captured {
  pageSize: number;
  dbPages: number;
  pages: Map<number, Buffer>;
}

/** Call inside the transaction, just before COMMIT. Null: no live journal (capture impossible). */
export function beforeCommit(dbPath: string): PreCommit | null {
  const scan = readJournal(dbPath);
  if (!scan) return null;
  const pages = new Set<number>([1, ...scan.originals.keys()]);
  const fd = fs.openSync(dbPath, 'r');
  try {
    // Transaction-start content: a journaled page's original, else the file (an unjournaled page
    // has not been written yet, since a spill journals before it writes).
    const atStart = (pgno: number) => scan.originals.get(pgno) ?? readPage(fd, pgno, scan.pageSize);
    const free = freelistOf(atStart, scan.originalPages);
    for (const p of free.trunks) pages.add(p);
    for (const p of free.leaves) pages.add(p);
  } finally {
    fs.closeSync(fd);
  }
  return { pageSize: scan.pageSize, originalPages: scan.originalPages, pages, segments: scan.segments };
}

/**
 * Call right after COMMIT, before this process writes again. Null when the page size changed
 * (the chain needs a snapshot).
 */
export function afterCommit(dbPath: string, pre: PreCommit): Captured | null {
  const fd = fs.openSync(dbPath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const header = Buffer.alloc(100);
    fs.readSync(fd, header, 0, 100, 0);
    const pageSize = pageSizeOf(header);
    if (pageSize !== pre.pageSize) return null;
    const dbPages = pageCount(size, pageSize);
    const pages = new Map<number, Buffer>();
    const take = (pgno: number) => {
      if (pgno > dbPages || pages.has(pgno)) return;
      const data = readPage(fd, pgno, pageSize);
      if (data && data.length === pageSize) pages.set(pgno, data);
    };
    for (const p of pre.pages) take(p);
    for (let p = pre.originalPages + 1; p <= dbPages; p++) take(p);
    return { pageSize, dbPages, pages };
  } finally {
    fs.closeSync(fd);
  }
}
