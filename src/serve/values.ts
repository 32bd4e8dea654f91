/**
 * Hrana's JSON value encoding <-> better-sqlite3 values. Integers are read with safeIntegers, so a
 * 64-bit value survives both ways as a decimal string; blobs are base64.
 */
import type { ProtoValue } from './protocol';

/** A value better-sqlite3 binds. */
export type SqlValue = null | bigint | number | string | Buffer;

/** Protocol value -> bind value. */
export function fromProto(v: ProtoValue): SqlValue {
  switch (v.type) {
    case 'null':
      return null;
    case 'integer':
      return BigInt(v.value);
    case 'float':
      return v.value;
    case 'text':
      return v.value;
    case 'blob':
      return Buffer.from(v.base64, 'base64');
  }
}

/** Column value (read with safeIntegers) -> protocol value. */
export function toProto(v: unknown): ProtoValue {
  if (v === null || v === undefined) return { type: 'null' };
  if (typeof v === 'bigint') return { type: 'integer', value: v.toString() };
  if (typeof v === 'number') {
    // better-sqlite3 returns REAL columns as numbers; a non-finite REAL has no JSON form.
    return Number.isFinite(v) ? { type: 'float', value: v } : { type: 'null' };
  }
  if (typeof v === 'string') return { type: 'text', value: v };
  if (Buffer.isBuffer(v)) return { type: 'blob', base64: v.toString('base64') };
  if (v instanceof Uint8Array) return { type: 'blob', base64: Buffer.from(v).toString('base64') };
  return { type: 'text', value: String(v) };
}
