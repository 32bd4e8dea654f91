/**
 * Hrana over HTTP v2 (libSQL's docs/HTTP_V2_SPEC.md with the Hrana 2 types), JSON encoding: the
 * request shapes this server accepts, checked field by field so a malformed body becomes a Hrana
 * error naming the field, never an exception deep inside execution.
 */
import { ServeError } from '../errors';

/** A Hrana value as JSON: integers travel as decimal strings, blobs as base64. */
export type ProtoValue =
  | { type: 'null' }
  | { type: 'integer'; value: string }
  | { type: 'float'; value: number }
  | { type: 'text'; value: string }
  | { type: 'blob'; base64: string };

export interface ProtoStmt {
  sql?: string;
  sql_id?: number;
  args: ProtoValue[];
  named_args: { name: string; value: ProtoValue }[];
  want_rows: boolean;
}

export type ProtoCond =
  | { type: 'ok' | 'error'; step: number }
  | { type: 'not'; cond: ProtoCond }
  | { type: 'and' | 'or'; conds: ProtoCond[] }
  | { type: 'is_autocommit' };

export interface ProtoBatchStep {
  condition: ProtoCond | null;
  stmt: ProtoStmt;
}

export type StreamRequest =
  | { type: 'close' }
  | { type: 'execute'; stmt: ProtoStmt }
  | { type: 'batch'; batch: { steps: ProtoBatchStep[] } }
  | { type: 'sequence'; sql?: string; sql_id?: number }
  | { type: 'describe'; sql?: string; sql_id?: number }
  | { type: 'store_sql'; sql_id: number; sql: string }
  | { type: 'close_sql'; sql_id: number }
  | { type: 'get_autocommit' };

export interface PipelineRequest {
  baton: string | null;
  requests: StreamRequest[];
}

export interface ProtoError {
  message: string;
  code: string;
}

export interface ProtoCol {
  name: string | null;
  decltype: string | null;
}

export interface StmtResult {
  cols: ProtoCol[];
  rows: ProtoValue[][];
  affected_row_count: number;
  last_insert_rowid: string | null;
}

export interface BatchResult {
  step_results: (StmtResult | null)[];
  step_errors: (ProtoError | null)[];
}

export type StreamResponse =
  | { type: 'close' }
  | { type: 'execute'; result: StmtResult }
  | { type: 'batch'; result: BatchResult }
  | { type: 'sequence' }
  | { type: 'describe'; result: { params: { name: string | null }[]; cols: ProtoCol[]; is_explain: boolean; is_readonly: boolean } }
  | { type: 'store_sql' }
  | { type: 'close_sql' }
  | { type: 'get_autocommit'; is_autocommit: boolean };

export type StreamResult = { type: 'ok'; response: StreamResponse } | { type: 'error'; error: ProtoError };

export interface PipelineResponse {
  baton: string | null;
  base_url: string | null;
  results: StreamResult[];
}

/** Deepest condition nesting accepted: conditions are evaluated recursively. */
const MAX_COND_DEPTH = 32;

function bad(where: string, what: string): never {
  throw new ServeError('HRANA_PROTO_ERROR', `malformed request: ${where} ${what}`, { httpStatus: 400 });
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(where, 'must be an object');
  return v as Record<string, unknown>;
}

function int32(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) bad(where, 'must be a 32-bit integer');
  return v as number;
}

function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') bad(where, 'must be a string');
  return v as string;
}

function optInt32(v: unknown, where: string): number | undefined {
  return v === undefined || v === null ? undefined : int32(v, where);
}

/** Parses the body of POST /v2/pipeline. */
export function parsePipeline(body: unknown): PipelineRequest {
  const o = obj(body, 'body');
  const baton = o.baton === undefined || o.baton === null ? null : o.baton;
  if (baton !== null && typeof baton !== 'string') bad('baton', 'must be a string or null');
  if (!Array.isArray(o.requests)) bad('requests', 'must be an array');
  const requests = (o.requests as unknown[]).map((r, i) => parseRequest(r, `requests[${i}]`));
  return { baton: baton as string | null, requests };
}

function sqlSource(o: Record<string, unknown>, where: string): { sql?: string; sql_id?: number } {
  const sql = optString(o.sql, `${where}.sql`);
  const sqlId = optInt32(o.sql_id, `${where}.sql_id`);
  if ((sql === undefined) === (sqlId === undefined)) bad(where, 'needs exactly one of sql and sql_id');
  return sql !== undefined ? { sql } : { sql_id: sqlId };
}

function parseRequest(v: unknown, where: string): StreamRequest {
  const o = obj(v, where);
  switch (o.type) {
    case 'close':
    case 'get_autocommit':
      return { type: o.type };
    case 'execute':
      return { type: 'execute', stmt: parseStmt(o.stmt, `${where}.stmt`) };
    case 'batch': {
      const b = obj(o.batch, `${where}.batch`);
      if (!Array.isArray(b.steps)) bad(`${where}.batch.steps`, 'must be an array');
      const steps = (b.steps as unknown[]).map((s, i) => {
        const so = obj(s, `${where}.batch.steps[${i}]`);
        const condition = so.condition === undefined || so.condition === null
          ? null : parseCond(so.condition, `${where}.batch.steps[${i}].condition`, 0);
        return { condition, stmt: parseStmt(so.stmt, `${where}.batch.steps[${i}].stmt`) };
      });
      return { type: 'batch', batch: { steps } };
    }
    case 'sequence':
    case 'describe':
      return { type: o.type, ...sqlSource(o, where) };
    case 'store_sql': {
      const sql = optString(o.sql, `${where}.sql`);
      if (sql === undefined) bad(`${where}.sql`, 'is required');
      return { type: 'store_sql', sql_id: int32(o.sql_id, `${where}.sql_id`), sql: sql as string };
    }
    case 'close_sql':
      return { type: 'close_sql', sql_id: int32(o.sql_id, `${where}.sql_id`) };
    default:
      return bad(`${where}.type`, `is ${JSON.stringify(String(o.type)).slice(0, 40)}, not a known request type`);
  }
}

function parseStmt(v: unknown, where: string): ProtoStmt {
  const o = obj(v, where);
  const src = sqlSource(o, where);
  const args = o.args === undefined || o.args === null ? [] : o.args;
  if (!Array.isArray(args)) bad(`${where}.args`, 'must be an array');
  const named = o.named_args === undefined || o.named_args === null ? [] : o.named_args;
  if (!Array.isArray(named)) bad(`${where}.named_args`, 'must be an array');
  const wantRows = o.want_rows === undefined || o.want_rows === null ? true : o.want_rows;
  if (typeof wantRows !== 'boolean') bad(`${where}.want_rows`, 'must be a boolean');
  return {
    ...src,
    args: (args as unknown[]).map((a, i) => parseValue(a, `${where}.args[${i}]`)),
    named_args: (named as unknown[]).map((n, i) => {
      const no = obj(n, `${where}.named_args[${i}]`);
      if (typeof no.name !== 'string' || no.name.length === 0) bad(`${where}.named_args[${i}].name`, 'must be a non-empty string');
      return { name: no.name as string, value: parseValue(no.value, `${where}.named_args[${i}].value`) };
    }),
    want_rows: wantRows as boolean,
  };
}

function parseValue(v: unknown, where: string): ProtoValue {
  const o = obj(v, where);
  switch (o.type) {
    case 'null':
      return { type: 'null' };
    case 'integer':
      if (typeof o.value !== 'string' || !/^-?\d{1,20}$/.test(o.value)) bad(`${where}.value`, 'must be a decimal string');
      {
        const n = BigInt(o.value as string);
        if (n > 9223372036854775807n || n < -9223372036854775808n) bad(`${where}.value`, 'is outside the 64-bit range');
      }
      return { type: 'integer', value: o.value as string };
    case 'float':
      if (typeof o.value !== 'number') bad(`${where}.value`, 'must be a number');
      return { type: 'float', value: o.value as number };
    case 'text':
      if (typeof o.value !== 'string') bad(`${where}.value`, 'must be a string');
      return { type: 'text', value: o.value as string };
    case 'blob':
      if (typeof o.base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.base64)) bad(`${where}.base64`, 'must be base64');
      return { type: 'blob', base64: o.base64 as string };
    default:
      return bad(`${where}.type`, 'is not a value type (null, integer, float, text, blob)');
  }
}

function parseCond(v: unknown, where: string, depth: number): ProtoCond {
  if (depth > MAX_COND_DEPTH) bad(where, `nests deeper than ${MAX_COND_DEPTH} levels`);
  const o = obj(v, where);
  switch (o.type) {
    case 'ok':
    case 'error':
      return { type: o.type, step: int32(o.step, `${where}.step`) };
    case 'not':
      return { type: 'not', cond: parseCond(o.cond, `${where}.cond`, depth + 1) };
    case 'and':
    case 'or':
      if (!Array.isArray(o.conds)) bad(`${where}.conds`, 'must be an array');
      return { type: o.type, conds: (o.conds as unknown[]).map((c, i) => parseCond(c, `${where}.conds[${i}]`, depth + 1)) };
    case 'is_autocommit':
      return { type: 'is_autocommit' };
    default:
      return bad(`${where}.type`, 'is not a condition type (ok, error, not, and, or, is_autocommit)');
  }
}
