/** Small text helpers shared by the commands: durations, tables, TTL bars, optional colour. */

/** 850 ms, 3.2 s, 4m12s, 2h03m, 3d04h. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** Local time of day with milliseconds, for event lists. */
export function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** Local date and time of day with milliseconds. */
export function dateTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${clock(ms)}`;
}

/** `[#######.....]` showing `left` of `total`. */
export function ttlBar(left: number | null, total: number | null, width: number): string {
  if (left === null || !total || total <= 0) return '[' + ' '.repeat(width) + ']';
  const filled = Math.max(0, Math.min(width, Math.round((left / total) * width)));
  return '[' + '#'.repeat(filled) + '.'.repeat(width - filled) + ']';
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(visible(h), ...rows.map((r) => visible(r[i] ?? ''))));
  const pad = (c: string, w: number) => c + ' '.repeat(Math.max(0, w - visible(c)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : pad(c, widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** Length on screen: ANSI colour sequences take no room. */
export function visible(s: string): number {
  return s.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/** Cuts a string to `width` characters, marking the cut with '…'. */
export function fit(text: string, width: number): string {
  if (width <= 0) return '';
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + '…';
}

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
}

const plain: Style = { bold: (s) => s, dim: (s) => s, red: (s) => s, green: (s) => s, yellow: (s) => s };
const ansi: Style = {
  bold: (s) => `\x1b[1m${s}\x1b[22m`,
  dim: (s) => `\x1b[2m${s}\x1b[22m`,
  red: (s) => `\x1b[31m${s}\x1b[39m`,
  green: (s) => `\x1b[32m${s}\x1b[39m`,
  yellow: (s) => `\x1b[33m${s}\x1b[39m`,
};

/** Colour only on a terminal, and never when NO_COLOR is set. */
export function styleFor(stream: NodeJS.WriteStream): Style {
  return stream.isTTY && !process.env.NO_COLOR ? ansi : plain;
}

// Control characters (C0 but for nothing, DEL, C1) and the Unicode bidi overrides, which can
// rewrite a terminal (ESC]0;… sets the title, ESC[2J clears) or reorder a line.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/**
 * The one escape for text the CLI did not write itself (etcd keys and values, node ids, error
 * messages): every control character becomes a visible `\xNN`. `keepNewlines` for multi-line text.
 */
export function printable(text: string, opts: { keepNewlines?: boolean } = {}): string {
  return opts.keepNewlines
    ? text.split('\n').map((l) => l.replace(UNPRINTABLE, escapeChar)).join('\n')
    : text.replace(UNPRINTABLE, escapeChar);
}

/** A copy of plain data with every string (keys included) passed through printable(), for rendering. */
export function printableCopy<T>(value: T): T {
  if (typeof value === 'string') return printable(value) as T;
  if (Array.isArray(value)) return value.map((v) => printableCopy(v)) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[printable(k)] = printableCopy(v);
    return out as T;
  }
  return value;
}

// What JSON.stringify leaves raw inside strings (it escapes C0 itself; newlines outside are layout).
const JSON_RAW = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** JSON.stringify whose output has no raw control character either (JSON leaves DEL and C1 raw). */
export function jsonText(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(JSON_RAW, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
