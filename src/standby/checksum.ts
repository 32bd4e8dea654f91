/**
 * The whole-database checksum, updatable page by page (as LiteFS's LTX keeps it): the XOR of a
 * 64-bit hash of (page number, content) over every page. Changing a page XORs its old hash out
 * and its new hash in, so a writer that remembers each page's hash never rereads the database.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';

/** 64-bit hash of one page (the first 8 bytes of MD5 over the page number and content: fast, not a MAC). */
export function pageHash(pgno: number, data: Buffer): bigint {
  const h = crypto.createHash('md5');
  const n = Buffer.alloc(4);
  n.writeUInt32BE(pgno);
  h.update(n);
  h.update(data);
  return h.digest().readBigUInt64BE(0);
}

/** Per-page hashes of one database image and their XOR. */
export class DbChecksum {
  private hashes: bigint[] = [];
  /** XOR of every page's hash: the database checksum. */
  value = 0n;

  /** Sets page pgno's content (appending pages as needed). */
  set(pgno: number, data: Buffer): void {
    const old = this.hashes[pgno - 1];
    if (old !== undefined) this.value ^= old;
    const h = pageHash(pgno, data);
    this.hashes[pgno - 1] = h;
    this.value ^= h;
  }

  /** Drops pages past `pages` (the database shrank). */
  truncate(pages: number): void {
    while (this.hashes.length > pages) {
      const h = this.hashes.pop();
      if (h !== undefined) this.value ^= h;
    }
  }

  get pages(): number {
    return this.hashes.length;
  }

  /** Hashes a whole file. */
  static ofFile(file: string, pageSize: number): DbChecksum {
    const c = new DbChecksum();
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(pageSize);
      for (let pgno = 1; (pgno - 1) * pageSize < size; pgno++) {
        const n = fs.readSync(fd, buf, 0, pageSize, (pgno - 1) * pageSize);
        c.set(pgno, n === pageSize ? buf : buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
    return c;
  }
}

/** DbChecksum.ofFile with asynchronous reads in ~1 MiB chunks (the event loop keeps running). */
export async function checksumOfFileAsync(file: string, pageSize: number): Promise<DbChecksum> {
  const c = new DbChecksum();
  const fh = await fs.promises.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const per = Math.max(1, Math.floor((1 << 20) / pageSize));
    const buf = Buffer.alloc(per * pageSize);
    for (let first = 1; (first - 1) * pageSize < size; first += per) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, (first - 1) * pageSize);
      for (let i = 0; i * pageSize < bytesRead; i++) {
        c.set(first + i, buf.subarray(i * pageSize, Math.min(bytesRead, (i + 1) * pageSize)));
      }
    }
  } finally {
    await fh.close();
  }
  return c;
}

/** Checksum as 16 hex digits, for JSON and display. */
export function checksumHex(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}
