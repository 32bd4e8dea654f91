/**
 * The segment file: one captured transaction (or several coalesced, or a whole-database snapshot)
 * in a checksummed, versioned binary format. Big-endian throughout:
 *
 *   header (96 bytes): magic "SQHASEG\0", version u32, flags u32 (1 = snapshot), prevTxid u64,
 *     prevFence u64, txid u64, fence u64, epoch u64, pageSize u32, dbPages u32, nPages u32,
 *     reserved u32, timeMs u64, checksum u64 (the whole-database checksum after applying)
 *   nPages records: pgno u32, page (pageSize bytes), in ascending pgno
 *   trailer: SHA-256 over header and records (32 bytes)
 *
 * A segment moves the database from state (prevTxid, prevFence) to (txid, fence): the fence is part
 * of the position because a new holder's first, fence-raising transaction keeps the txid.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import { StandbyCorruptError } from '../errors';

const SEGMENT_MAGIC = Buffer.from('SQHASEG\0', 'latin1');
const SEGMENT_VERSION = 1;
export const HEADER_BYTES = 96;
const TRAILER_BYTES = 32;
const FLAG_SNAPSHOT = 1;

/** A position in the chain: the database state after txid `txid` committed under `fence`. */
export interface Position {
  txid: number;
  fence: number;
}

export interface SegmentHeader {
  version: number;
  snapshot: boolean;
  prev: Position;
  pos: Position;
  epoch: number;
  pageSize: number;
  /** Database size in pages after applying. */
  dbPages: number;
  nPages: number;
  /** Wall clock of the (newest) commit in the segment. */
  timeMs: number;
  /** Whole-database checksum after applying (checksum.ts). */
  checksum: bigint;
}

/** Compares positions: txid first, then fence. */
export function comparePos(a: Position, b: Position): number {
  return a.txid - b.txid || a.fence - b.fence;
}

function encodeHeader(h: Omit<SegmentHeader, 'version'>): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeUInt32BE(SEGMENT_VERSION, 8);
  b.writeUInt32BE(h.snapshot ? FLAG_SNAPSHOT : 0, 12);
  b.writeBigUInt64BE(BigInt(h.prev.txid), 16);
  b.writeBigUInt64BE(BigInt(h.prev.fence), 24);
  b.writeBigUInt64BE(BigInt(h.pos.txid), 32);
  b.writeBigUInt64BE(BigInt(h.pos.fence), 40);
  b.writeBigUInt64BE(BigInt(h.epoch), 48);
  b.writeUInt32BE(h.pageSize, 56);
  b.writeUInt32BE(h.dbPages, 60);
  b.writeUInt32BE(h.nPages, 64);
  b.writeBigUInt64BE(BigInt(h.timeMs), 72);
  b.writeBigUInt64BE(h.checksum, 80);
  return b;
}

export function decodeHeader(b: Buffer, file = 'segment'): SegmentHeader {
  if (b.length < HEADER_BYTES || !b.subarray(0, 8).equals(SEGMENT_MAGIC)) {
    throw new StandbyCorruptError(file, 'not a sqlite-ha segment (bad magic)');
  }
  const version = b.readUInt32BE(8);
  if (version !== SEGMENT_VERSION) throw new StandbyCorruptError(file, `unsupported segment version ${version}`);
  return {
    version,
    snapshot: (b.readUInt32BE(12) & FLAG_SNAPSHOT) !== 0,
    prev: { txid: Number(b.readBigUInt64BE(16)), fence: Number(b.readBigUInt64BE(24)) },
    pos: { txid: Number(b.readBigUInt64BE(32)), fence: Number(b.readBigUInt64BE(40)) },
    epoch: Number(b.readBigUInt64BE(48)),
    pageSize: b.readUInt32BE(56),
    dbPages: b.readUInt32BE(60),
    nPages: b.readUInt32BE(64),
    timeMs: Number(b.readBigUInt64BE(72)),
    checksum: b.readBigUInt64BE(80),
  };
}

/** Writes a segment to an open fd, streaming its pages; does not fsync. */
export function writeSegmentFd(
  fd: number, header: Omit<SegmentHeader, 'version' | 'nPages'>, pages: Iterable<[number, Buffer]>, nPages: number,
): void {
  const hash = crypto.createHash('sha256');
  let pos = 0;
  const put = (b: Buffer) => {
    hash.update(b);
    let done = 0;
    while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, pos + done);
    pos += b.length;
  };
  put(encodeHeader({ ...header, nPages }));
  const no = Buffer.alloc(4);
  let written = 0;
  for (const [pgno, data] of pages) {
    if (data.length !== header.pageSize) throw new RangeError(`page ${pgno} is ${data.length} bytes, not ${header.pageSize}`);
    no.writeUInt32BE(pgno);
    put(no);
    put(data);
    written++;
  }
  if (written !== nPages) throw new RangeError(`segment promised ${nPages} pages, got ${written}`);
  const digest = hash.digest();
  fs.writeSync(fd, digest, 0, digest.length, pos);
}

/** writeSegmentFd for a file handle and an async page source, writing in ~1 MiB batches. */
export async function writeSegmentAsync(
  fh: fs.promises.FileHandle, header: Omit<SegmentHeader, 'version' | 'nPages'>, pages: AsyncIterable<[number, Buffer]>, nPages: number,
): Promise<void> {
  const hash = crypto.createHash('sha256');
  let pos = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const drain = async () => {
    const b = Buffer.concat(batch);
    batch = [];
    batchBytes = 0;
    hash.update(b);
    await fh.write(b, 0, b.length, pos);
    pos += b.length;
  };
  batch.push(encodeHeader({ ...header, nPages }));
  let written = 0;
  for await (const [pgno, data] of pages) {
    const no = Buffer.alloc(4);
    no.writeUInt32BE(pgno);
    batch.push(no, data);
    batchBytes += 4 + data.length;
    written++;
    if (batchBytes >= 1 << 20) await drain();
  }
  await drain();
  if (written !== nPages) throw new RangeError(`segment promised ${nPages} pages, got ${written}`);
  const digest = hash.digest();
  await fh.write(digest, 0, digest.length, pos);
}

/** Encodes a small segment in memory (the async writer hands this to fs.promises). */
export function encodeSegment(header: Omit<SegmentHeader, 'version' | 'nPages'>, pages: Map<number, Buffer>): Buffer {
  const sorted = [...pages.keys()].sort((a, b) => a - b);
  const parts: Buffer[] = [encodeHeader({ ...header, nPages: sorted.length })];
  for (const pgno of sorted) {
    const no = Buffer.alloc(4);
    no.writeUInt32BE(pgno);
    parts.push(no, pages.get(pgno)!);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, crypto.createHash('sha256').update(body).digest()]);
}

/** Reads a segment's header and checks its SHA-256 trailer by streaming it; throws StandbyCorruptError. */
export function verifySegment(file: string): SegmentHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const header = readHeaderFd(fd, file);
    const expected = HEADER_BYTES + header.nPages * (header.pageSize + 4) + TRAILER_BYTES;
    const size = fs.fstatSync(fd).size;
    if (size !== expected) throw new StandbyCorruptError(file, `size ${size}, expected ${expected} (truncated or torn)`);
    const hash = crypto.createHash('sha256');
    const buf = Buffer.alloc(1 << 20);
    let pos = 0;
    const body = size - TRAILER_BYTES;
    while (pos < body) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, body - pos), pos);
      if (n <= 0) throw new StandbyCorruptError(file, 'short read');
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    const trailer = Buffer.alloc(TRAILER_BYTES);
    fs.readSync(fd, trailer, 0, TRAILER_BYTES, body);
    if (!hash.digest().equals(trailer)) throw new StandbyCorruptError(file, 'SHA-256 trailer mismatch');
    return header;
  } finally {
    fs.closeSync(fd);
  }
}

/** Iterates a (verified) segment's pages in file order. */
export function* segmentPages(file: string): Generator<[number, Buffer]> {
  const fd = fs.openSync(file, 'r');
  try {
    const header = readHeaderFd(fd, file);
    const rec = header.pageSize + 4;
    for (let i = 0; i < header.nPages; i++) {
      const buf = Buffer.alloc(rec);
      const n = fs.readSync(fd, buf, 0, rec, HEADER_BYTES + i * rec);
      if (n !== rec) throw new StandbyCorruptError(file, `short record ${i}`);
      yield [buf.readUInt32BE(0), buf.subarray(4)];
    }
  } finally {
    fs.closeSync(fd);
  }
}

function readHeaderFd(fd: number, file: string): SegmentHeader {
  const b = Buffer.alloc(HEADER_BYTES);
  const n = fs.readSync(fd, b, 0, HEADER_BYTES, 0);
  if (n !== HEADER_BYTES) throw new StandbyCorruptError(file, 'shorter than a segment header');
  return decodeHeader(b, file);
}
