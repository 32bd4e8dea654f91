/**
 * The standby's pure parts: the segment format (round trip, every kind of damage refused with a
 * typed error), the rolling checksum, the freelist walk, and the `standby` option's validation.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InvalidOptionError, StandbyCorruptError } from '../../src/errors';
import { DEFAULTS, resolveOptions } from '../../src/options';
import { DbChecksum, pageHash } from '../../src/standby/checksum';
import { freelistOf } from '../../src/standby/pages';
import { encodeSegment, segmentPages, verifySegment } from '../../src/standby/segment';
import { useTmpDir } from '../helpers/tmp';

const tmp = useTmpDir('sqlite-ha-sbfmt-');

function sample(): Buffer {
  const pages = new Map<number, Buffer>([[3, Buffer.alloc(512, 3)], [1, Buffer.alloc(512, 1)]]);
  return encodeSegment({ snapshot: false, prev: { txid: 4, fence: 7 }, pos: { txid: 5, fence: 7 }, epoch: 2, pageSize: 512, dbPages: 3, timeMs: 1234, checksum: 99n }, pages);
}

test('a segment round-trips: header fields and pages in ascending order', () => {
  const f = tmp.file('a.seg');
  fs.writeFileSync(f, sample());
  const h = verifySegment(f);
  expect(h).toMatchObject({ version: 1, snapshot: false, prev: { txid: 4, fence: 7 }, pos: { txid: 5, fence: 7 }, epoch: 2, pageSize: 512, dbPages: 3, nPages: 2, timeMs: 1234, checksum: 99n });
  expect([...segmentPages(f)].map(([p, d]) => [p, d[0]])).toEqual([[1, 1], [3, 3]]);
});

test.each([
  ['a flipped byte', (b: Buffer) => { b[200] ^= 1; return b; }, /SHA-256/],
  ['a truncated tail', (b: Buffer) => b.subarray(0, b.length - 1), /truncated or torn/],
  ['another magic', (b: Buffer) => { b[0] = 0; return b; }, /bad magic/],
  ['a newer version', (b: Buffer) => { b.writeUInt32BE(2, 8); return b; }, /version 2/],
])('%s is refused with StandbyCorruptError', (_what, damage, message) => {
  const f = tmp.file('b.seg');
  fs.writeFileSync(f, damage(sample()));
  expect(() => verifySegment(f)).toThrow(StandbyCorruptError);
  expect(() => verifySegment(f)).toThrow(message);
});

test('the rolling checksum equals a full rehash after any sequence of page changes and truncation', () => {
  const c = new DbChecksum();
  const pages = new Map<number, Buffer>();
  for (let i = 0; i < 200; i++) {
    const pgno = 1 + ((i * 37) % 20);
    const data = Buffer.alloc(64, i);
    c.set(pgno, data);
    pages.set(pgno, data);
  }
  c.truncate(15);
  let full = 0n;
  for (const [pgno, data] of pages) if (pgno <= 15) full ^= pageHash(pgno, data);
  expect(c.value).toBe(full);
  expect(pageHash(1, Buffer.alloc(64))).not.toBe(pageHash(2, Buffer.alloc(64))); // the position counts
});

test('the freelist walk follows trunks and stops on a cycle or a bad count', () => {
  const page = (fill: (b: Buffer) => void) => { const b = Buffer.alloc(512); fill(b); return b; };
  const p1 = page((b) => { b.writeUInt32BE(5, 32); b.writeUInt32BE(5, 36); });
  const t5 = page((b) => { b.writeUInt32BE(6, 0); b.writeUInt32BE(2, 4); b.writeUInt32BE(8, 8); b.writeUInt32BE(9, 12); });
  const t6 = page((b) => { b.writeUInt32BE(5, 0); b.writeUInt32BE(1, 4); b.writeUInt32BE(10, 8); }); // points back at 5
  const pages = new Map([[1, p1], [5, t5], [6, t6]]);
  expect(freelistOf((p) => pages.get(p) ?? null, 20)).toEqual({ trunks: [5, 6], leaves: [8, 9, 10] });
  expect(freelistOf((p) => pages.get(p) ?? null, 8)).toEqual({ trunks: [5, 6], leaves: [8] }); // past the size: ignored
});

describe('the standby option', () => {
  const base = { coordinator: { kind: 'lockfile' as const } };
  test('defaults', () => {
    const dir = tmp.dir();
    const r = resolveOptions(path.join(dir, 'db', 'x.db'), { ...base, standby: { dir } });
    expect(r.standby).toEqual({ dir, mode: 'async', maxLagMs: 1000, retainSegments: DEFAULTS.standbyRetainSegments, retainMs: DEFAULTS.standbyRetainMs });
    expect(Object.isFrozen(r.standby)).toBe(true);
  });
  test.each([
    ['standby', 'x', /standby: got "x"/],
    ['standby.dir', { dir: '' }, /standby.dir/],
    ['standby.dir', { dir: '/nonexistent/standby' }, /an existing directory \(mount the standby volume first\)/],
    ['standby.mode', { mode: 'eventually' }, /'async' or 'sync'/],
    ['standby.maxLagMs', { maxLagMs: 1 }, /from 10 to/],
    ['standby.retainSegments', { retainSegments: 0 }, /integer from 1/],
    ['standby.colour', { colour: 'red' }, /known options: dir, mode/],
  ])('%s %j is refused with InvalidOptionError', (option, value, message) => {
    const dir = tmp.dir();
    const sb = typeof value === 'object' && !('dir' in value) ? { dir, ...value } : value;
    let err: unknown;
    try {
      resolveOptions(path.join(dir, 'db', 'x.db'), { ...base, standby: sb });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).option).toBe(option);
    expect((err as Error).message).toMatch(message);
  });
  test("the database's own directory is refused", () => {
    const dir = tmp.dir();
    expect(() => resolveOptions(path.join(dir, 'x.db'), { ...base, standby: { dir } })).toThrow(/other than the database's own/);
  });
});
