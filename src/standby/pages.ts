/**
 * Page-level facts about a database file that capture needs: its page size and page count, and
 * the freelist as it was when the transaction started. SQLite reuses a free leaf page without
 * journaling it (its old content does not matter to SQLite), so the journal alone misses it.
 */
import * as fs from 'fs';

/** Page size from the database header (offset 16; the value 1 means 65536). */
export function pageSizeOf(page1: Buffer): number {
  const v = page1.readUInt16BE(16);
  return v === 1 ? 65536 : v;
}

/** Reads page `pgno` (1-based) of an open file; a page past the end reads as null. */
export function readPage(fd: number, pgno: number, pageSize: number): Buffer | null {
  const buf = Buffer.alloc(pageSize);
  const n = fs.readSync(fd, buf, 0, pageSize, (pgno - 1) * pageSize);
  if (n === 0) return null;
  return n === pageSize ? buf : buf.subarray(0, n);
}

/** Number of pages in a file of `bytes` (a trailing partial page counts). */
export function pageCount(bytes: number, pageSize: number): number {
  return Math.ceil(bytes / pageSize);
}

/** The freelist: trunk pages and the leaf pages they list. */
export interface Freelist {
  trunks: number[];
  leaves: number[];
}

/**
 * Walks the freelist as `pageAt` shows it (give it transaction-start content: the journal's
 * original where a page was journaled, else the file). Bounded by the header's free-page count
 * and `maxPage`, so a corrupt list cannot loop.
 */
export function freelistOf(pageAt: (pgno: number) => Buffer | null, maxPage: number): Freelist {
  const page1 = pageAt(1);
  const out: Freelist = { trunks: [], leaves: [] };
  if (!page1 || page1.length < 100) return out;
  let trunk = page1.readUInt32BE(32);
  let remaining = page1.readUInt32BE(36);
  const seen = new Set<number>();
  while (trunk !== 0 && trunk <= maxPage && remaining > 0 && !seen.has(trunk)) {
    seen.add(trunk);
    out.trunks.push(trunk);
    remaining--;
    const page = pageAt(trunk);
    if (!page || page.length < 8) break;
    const count = Math.min(page.readUInt32BE(4), Math.floor((page.length - 8) / 4), remaining);
    for (let i = 0; i < count; i++) {
      const leaf = page.readUInt32BE(8 + 4 * i);
      if (leaf > 0 && leaf <= maxPage) out.leaves.push(leaf);
    }
    remaining -= count;
    trunk = page.readUInt32BE(0);
  }
  return out;
}
