/**
 * Reads SQLite's rollback journal (the `-journal` file beside the database) while the writing
 * transaction is still open: the page numbers it names are the pages the transaction changes
 * (besides page 1, pages past the original size and reused free leaves, see capture.ts).
 *
 * Layout (sqlite.org/fileformat.html#the_rollback_journal): one or more segments, each a header
 * padded to the sector size, then nRec records of [pgno u32 BE][original page][checksum u32].
 * A cache spill syncs the journal and starts a new segment at the next sector boundary. Until a
 * segment is synced its magic and nRec are written as zeros: its record count is then whatever
 * the file holds, validated record by record with the segment's checksum nonce (which also stops
 * at stale records a PERSIST journal keeps from earlier transactions).
 */
import * as fs from 'fs';

/** The 8-byte magic of a synced journal header. */
const JOURNAL_MAGIC = Buffer.from('d9d505f920a163d7', 'hex');

/** What a journal says about the open transaction. */
export interface JournalScan {
  /** Database size in pages when the transaction started. */
  originalPages: number;
  pageSize: number;
  sectorSize: number;
  /** Original (transaction-start) content of every journaled page, first record wins. */
  originals: Map<number, Buffer>;
  /** Number of segments walked (more than one after a cache spill). */
  segments: number;
}

/** Parses a journal image; null when it holds no live transaction (empty or zeroed header). */
export function parseJournal(buf: Buffer): JournalScan | null {
  if (buf.length < 28) return null;
  const first = readHeader(buf, 0); // a committed PERSIST journal has a zeroed header: null
  if (!first) return null;
  const { pageSize, sectorSize, originalPages } = first;
  const originals = new Map<number, Buffer>();
  let off = 0;
  let segments = 0;
  for (;;) {
    const h = readHeader(buf, off);
    if (!h || h.pageSize !== pageSize || h.sectorSize !== sectorSize) break;
    segments++;
    const recSize = pageSize + 8;
    let p = off + sectorSize;
    // A synced segment states its count; an unsynced one is the last and runs to the end.
    const limit = h.synced && h.nRec !== 0xffffffff ? h.nRec : Math.floor((buf.length - p) / recSize);
    let n = 0;
    for (; n < limit && p + recSize <= buf.length; n++, p += recSize) {
      const pgno = buf.readUInt32BE(p);
      const data = buf.subarray(p + 4, p + 4 + pageSize);
      if (pgno === 0 || buf.readUInt32BE(p + 4 + pageSize) !== recordChecksum(h.nonce, data)) break;
      if (!originals.has(pgno)) originals.set(pgno, Buffer.from(data));
    }
    if (!h.synced || n < limit) break;
    off = Math.ceil(p / sectorSize) * sectorSize;
    if (off + 28 > buf.length) break;
  }
  return { originalPages, pageSize, sectorSize, originals, segments };
}

/** Reads and parses `<db>-journal`; null when there is no journal or no live transaction in it. */
export function readJournal(dbPath: string): JournalScan | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(`${dbPath}-journal`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseJournal(buf);
}

interface Header {
  synced: boolean;
  nRec: number;
  nonce: number;
  originalPages: number;
  sectorSize: number;
  pageSize: number;
}

function readHeader(buf: Buffer, off: number): Header | null {
  if (off + 28 > buf.length) return null;
  const magic = buf.subarray(off, off + 8);
  const synced = magic.equals(JOURNAL_MAGIC);
  if (!synced && !magic.every((b) => b === 0)) return null;
  const sectorSize = buf.readUInt32BE(off + 20);
  const pageSize = buf.readUInt32BE(off + 24);
  if (!isPowerOfTwo(pageSize) || pageSize < 512 || pageSize > 65536) return null;
  if (!isPowerOfTwo(sectorSize) || sectorSize < 32 || sectorSize > 65536) return null;
  return {
    synced,
    nRec: buf.readUInt32BE(off + 8),
    nonce: buf.readUInt32BE(off + 12),
    originalPages: buf.readUInt32BE(off + 16),
    sectorSize,
    pageSize,
  };
}

/** SQLite's journal record checksum: the nonce plus every 200th byte, from the end backwards. */
function recordChecksum(nonce: number, data: Buffer): number {
  let sum = nonce;
  for (let i = data.length - 200; i > 0; i -= 200) sum = (sum + data[i]) >>> 0;
  return sum >>> 0;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}
