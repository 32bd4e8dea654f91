/**
 * One Hrana stream: its stored SQL texts and its transaction state, and the execution of each
 * request on it. Reads run locally (db.read(), or a read-only connection held for a read
 * transaction, so a write inside BEGIN TRANSACTION READONLY fails with SQLITE_READONLY); writes
 * take the lease (db.write(), or, for a transaction spanning requests, the handle's fenced
 * BEGIN … COMMIT while this stream holds the node's write slot).
 */
import Database from 'better-sqlite3';
import type { HADatabase } from '../handle/database';
import { CommitOutcomeUnknownError, LeaseLostError, ServeError } from '../errors';
import type { ResolvedServeOptions } from '../options';
import type {
  BatchResult, ProtoBatchStep, ProtoCond, ProtoError, ProtoStmt, StmtResult, StreamRequest, StreamResponse,
} from './protocol';
import { parameterNames, splitStatements, stripOuterTransaction, TxnControl, txnControl } from './sql';
import { isReadOnly, Preparer, runSequence, runStmt, toProtoError } from './statements';
import type { WriteGate } from './write-gate';

export type Consistency = 'local' | 'linearizable';

/** What streams share on one node. */
export interface StreamContext {
  readonly db: HADatabase;
  readonly gate: WriteGate;
  readonly opts: ResolvedServeOptions;
  /** Cached read-only classification of SQL texts (null: could not be prepared). */
  classify(sql: string): boolean | null;
}

type State =
  | { kind: 'idle' }
  | { kind: 'read'; conn: Database.Database }
  | { kind: 'write'; fence: number; release: () => void }
  | { kind: 'failed'; error: Error };

type Outcome = { ok: true; result: StmtResult } | { ok: false; error: ProtoError } | null;

const EMPTY: StmtResult = { cols: [], rows: [], affected_row_count: 0, last_insert_rowid: null };
const MAX_STORED_SQL = 1000;

/** Thrown inside db.write() to roll a one-request batch back after its ROLLBACK step ran. */
class RolledBack {
  constructor(readonly outcomes: Outcome[]) {}
}

export class Stream {
  private readonly sqls = new Map<number, string>();
  private state: State = { kind: 'idle' };
  lastUsedAt = Date.now();
  busy = false;

  constructor(private readonly ctx: StreamContext) {}

  /** True while a transaction (read, write, or a failed write) is open on this stream. */
  get inTransaction(): boolean {
    return this.state.kind !== 'idle';
  }

  /** True while this stream has an interactive write transaction on this node. */
  get writing(): boolean {
    return this.state.kind === 'write';
  }

  /** Stored SQL texts, for a forwarded stream to carry them to the holder. */
  storedSql(): [number, string][] {
    return [...this.sqls];
  }

  /** Runs one request; SQL errors become Hrana errors, everything else too (never a crash). */
  async execute(req: StreamRequest, consistency: Consistency): Promise<{ ok: true; response: StreamResponse } | { ok: false; error: ProtoError }> {
    try {
      return { ok: true, response: await this.dispatch(req, consistency) };
    } catch (err) {
      return { ok: false, error: toProtoError(err) };
    }
  }

  private async dispatch(req: StreamRequest, consistency: Consistency): Promise<StreamResponse> {
    switch (req.type) {
      case 'close':
        this.close();
        return { type: 'close' };
      case 'store_sql':
        if (this.sqls.has(req.sql_id)) throw new ServeError('HRANA_PROTO_ERROR', `sql_id ${req.sql_id} is already stored on this stream`);
        if (this.sqls.size >= MAX_STORED_SQL) throw new ServeError('HRANA_PROTO_ERROR', `a stream stores at most ${MAX_STORED_SQL} SQL texts`);
        this.sqls.set(req.sql_id, req.sql);
        return { type: 'store_sql' };
      case 'close_sql':
        this.sqls.delete(req.sql_id);
        return { type: 'close_sql' };
      case 'execute':
        return { type: 'execute', result: await this.runOne(req.stmt, consistency) };
      case 'batch':
        return { type: 'batch', result: await this.runBatch(req.batch.steps, consistency) };
      case 'sequence':
        await this.runSequenceReq(this.sqlOf(req), consistency);
        return { type: 'sequence' };
      case 'describe':
        return { type: 'describe', result: await this.describe(this.sqlOf(req)) };
      case 'get_autocommit':
        return { type: 'get_autocommit', is_autocommit: !this.inTransaction };
    }
  }

  private sqlOf(s: { sql?: string; sql_id?: number }): string {
    if (s.sql !== undefined) return s.sql;
    const sql = this.sqls.get(s.sql_id!);
    if (sql === undefined) throw new ServeError('HRANA_PROTO_ERROR', `sql_id ${s.sql_id} is not stored on this stream`);
    return sql;
  }

  // ---- single statements -----------------------------------------------------------------

  private async runOne(stmt: ProtoStmt, consistency: Consistency): Promise<StmtResult> {
    const sql = this.sqlOf(stmt);
    const ctl = txnControl(sql);
    const { db, opts } = this.ctx;
    const state = this.state;
    switch (state.kind) {
      case 'idle':
        if (ctl?.verb === 'begin') {
          await this.begin(ctl.mode, consistency);
          return EMPTY;
        }
        if (ctl) throw new ServeError('SQLITE_ERROR', `cannot ${ctl.verb} - no transaction is active`);
        if (this.ctx.classify(sql) === true) {
          return db.read((conn) => runStmt(conn as unknown as Preparer, sql, stmt, opts.maxRows), { consistency });
        }
        return this.autocommitWrite((conn) => runStmt(conn as unknown as Preparer, sql, stmt, opts.maxRows));
      case 'read':
        if (ctl?.verb === 'begin') throw new ServeError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
        if (ctl) {
          this.endRead(ctl.verb === 'commit' ? 'COMMIT' : 'ROLLBACK');
          return EMPTY;
        }
        return runStmt(state.conn as unknown as Preparer, sql, stmt, opts.maxRows);
      case 'write':
        return this.inWrite(state, ctl, () => runStmt(db as unknown as Preparer, sql, stmt, opts.maxRows));
      case 'failed':
        if (ctl?.verb === 'rollback') {
          this.state = { kind: 'idle' };
          return EMPTY;
        }
        throw state.error;
    }
  }

  /** An autocommit write: its own fenced transaction, awaited until its commit is published. */
  private async autocommitWrite<T>(fn: (conn: Database.Database) => T): Promise<T> {
    const release = await this.ctx.gate.acquire('shared');
    try {
      return await this.ctx.db.write(fn);
    } finally {
      release();
    }
  }

  private async begin(mode: (TxnControl & { verb: 'begin' })['mode'], consistency: Consistency): Promise<void> {
    const { db } = this.ctx;
    if (db.locks === 'none') {
      throw new ServeError(
        'SQLITE_HA_UNSUPPORTED',
        "transactions spanning several requests need locks 'trusted' (this node runs the lockless mode); " +
          'send the whole transaction in one batch (client.batch()) instead',
      );
    }
    if (mode === 'readonly') {
      // A linearizable read transaction starts on a view that includes every published commit.
      if (consistency === 'linearizable') await db.read(() => 0, { consistency });
      const conn = new Database(db.name, { readonly: true, fileMustExist: true });
      try {
        conn.exec('BEGIN');
        conn.prepare('SELECT count(*) FROM sqlite_master').get(); // take the snapshot now
      } catch (err) {
        conn.close();
        throw err;
      }
      this.state = { kind: 'read', conn };
      return;
    }
    const release = await this.ctx.gate.acquire('exclusive');
    try {
      await this.ensureLease();
      db.exec(mode === 'exclusive' ? 'BEGIN EXCLUSIVE' : 'BEGIN IMMEDIATE'); // fenced, same tick as the check
      this.state = { kind: 'write', fence: db.lease.fence!, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Holds the lease on return (checked synchronously by the caller's next statement). */
  private async ensureLease(): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.ctx.db.lease.held) return;
      await this.ctx.db.write(() => undefined); // takes the (sticky) lease; a no-op transaction
    }
    if (!this.ctx.db.lease.held) throw new LeaseLostError('the lease was lost right after it was acquired, three times');
  }

  /** A statement inside an interactive write transaction. */
  private inWrite<T>(state: State & { kind: 'write' }, ctl: TxnControl | null, run: () => T): T | StmtResult {
    const { db } = this.ctx;
    this.assertLeaseKept(state);
    if (ctl?.verb === 'begin') throw new ServeError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
    try {
      if (ctl) {
        db.exec(ctl.verb === 'commit' ? 'COMMIT' : 'ROLLBACK');
        this.endWrite();
        return EMPTY;
      }
      return run();
    } catch (err) {
      this.afterWriteError(state, err);
      throw err;
    }
  }

  private assertLeaseKept(state: State & { kind: 'write' }): void {
    const { db } = this.ctx;
    if (db.lease.held && db.lease.fence === state.fence) return;
    this.failWrite(new LeaseLostError('the lease ended during this transaction, which was rolled back'));
    throw (this.state as State & { kind: 'failed' }).error;
  }

  /** After an error inside a write transaction: did the transaction survive it? */
  private afterWriteError(state: State & { kind: 'write' }, err: unknown): void {
    const { db } = this.ctx;
    if (this.state !== state) return;
    if (!(db.lease.held && db.lease.fence === state.fence)) {
      this.failWrite(err instanceof CommitOutcomeUnknownError || err instanceof LeaseLostError ? err
        : new LeaseLostError('the lease ended during this transaction, which was rolled back'));
      // A COMMIT that failed has ended the transaction one way or the other: nothing to roll back.
      if (err instanceof CommitOutcomeUnknownError || err instanceof LeaseLostError) this.state = { kind: 'idle' };
    } else if (!db.inTransaction) {
      this.endWrite(); // SQLite ended it (e.g. a failed COMMIT that rolled back)
    }
  }

  /** The lease went away: the library rolled the transaction back; everything but ROLLBACK fails. */
  failWrite(error: Error): void {
    const state = this.state;
    if (state.kind !== 'write') return;
    state.release();
    this.state = { kind: 'failed', error };
  }

  private endWrite(): void {
    const state = this.state;
    if (state.kind !== 'write') return;
    state.release();
    this.state = { kind: 'idle' };
  }

  private endRead(verb: 'COMMIT' | 'ROLLBACK'): void {
    const state = this.state;
    if (state.kind !== 'read') return;
    try {
      if (state.conn.inTransaction) state.conn.exec(verb);
    } finally {
      state.conn.close();
      this.state = { kind: 'idle' };
    }
  }

  // ---- sequences and describe ------------------------------------------------------------

  /**
   * A `sequence`: its statements one by one on this stream, as if sent one at a time (an error
   * stops it; earlier autocommit statements stay, an open transaction stays open). A sequence
   * wrapped in BEGIN … COMMIT on an idle stream runs as one db.write() (any locks mode).
   */
  private async runSequenceReq(sql: string, consistency: Consistency): Promise<void> {
    if (this.state.kind === 'idle') {
      const { body, wrapped } = stripOuterTransaction(sql);
      if (wrapped && !splitStatements(body).some((t) => txnControl(t))) {
        await this.autocommitWrite((conn) => runSequence(conn, body));
        return;
      }
    }
    for (const text of splitStatements(sql)) {
      await this.runOne({ sql: text, args: [], named_args: [], want_rows: false }, consistency);
    }
  }

  private async describe(sql: string): Promise<Extract<StreamResponse, { type: 'describe' }>['result']> {
    return this.ctx.db.read((conn) => {
      const s = conn.prepare(sql);
      return {
        params: parameterNames(sql).map((name) => ({ name })),
        cols: s.reader ? s.columns().map((c) => ({ name: c.name, decltype: c.type })) : [],
        is_explain: /^\s*EXPLAIN\b/i.test(sql),
        is_readonly: s.readonly,
      };
    });
  }

  // ---- batches ---------------------------------------------------------------------------

  private async runBatch(steps: ProtoBatchStep[], consistency: Consistency): Promise<BatchResult> {
    const whole = this.state.kind === 'idle' ? this.wholeTransaction(steps) : null;
    if (whole === 'read') return toBatchResult(await this.wholeRead(steps, consistency));
    if (whole === 'write') return toBatchResult(await this.wholeWrite(steps));
    const outcomes: Outcome[] = [];
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (step.condition && !evalCond(step.condition, outcomes, i, !this.inTransaction)) {
        outcomes.push(null);
        continue;
      }
      try {
        outcomes.push({ ok: true, result: await this.runOne(step.stmt, consistency) });
      } catch (err) {
        outcomes.push({ ok: false, error: toProtoError(err) });
      }
    }
    return toBatchResult(outcomes);
  }

  /**
   * The shape client.batch() sends: BEGIN, statements, COMMIT, then ROLLBACK step(s) only. Such a
   * batch runs as one db.read() or db.write() call (works in every locks mode, holds no slot across
   * requests). 'read' for READONLY, and for DEFERRED when every statement only reads.
   */
  wholeTransaction(steps: ProtoBatchStep[]): 'read' | 'write' | null {
    if (steps.length < 3 || steps[0].condition) return null;
    const sqlOf = (s: ProtoBatchStep) => (s.stmt.sql ?? this.sqls.get(s.stmt.sql_id!)) ?? null;
    const texts = steps.map(sqlOf);
    if (texts.some((t) => t === null)) return null;
    const begin = txnControl(texts[0]!);
    if (begin?.verb !== 'begin') return null;
    let commitAt = -1;
    for (let i = 1; i < steps.length; i++) {
      const ctl = txnControl(texts[i]!);
      if (commitAt < 0) {
        if (ctl?.verb === 'commit') commitAt = i;
        else if (ctl) return null;
      } else if (ctl?.verb !== 'rollback') {
        return null;
      }
    }
    if (commitAt < 0 || commitAt === steps.length - 1) return null;
    if (begin.mode === 'readonly') return 'read';
    if (begin.mode === 'deferred' && texts.slice(1, commitAt).every((t) => this.ctx.classify(t!) === true)) return 'read';
    return 'write';
  }

  private async wholeRead(steps: ProtoBatchStep[], consistency: Consistency): Promise<Outcome[]> {
    const { db, opts } = this.ctx;
    return db.read((conn) => runSteps(steps, (stmt) => {
      const sql = this.sqlOf(stmt);
      return txnControl(sql) ? EMPTY : runStmt(conn as unknown as Preparer, sql, stmt, opts.maxRows);
    }), { consistency });
  }

  private async wholeWrite(steps: ProtoBatchStep[]): Promise<Outcome[]> {
    const { opts } = this.ctx;
    let ran: Outcome[] | null = null;
    try {
      return await this.autocommitWrite((conn) => {
        let committed = false;
        let rolledBack = false;
        const outcomes = runSteps(steps, (stmt) => {
          const sql = this.sqlOf(stmt);
          const ctl = txnControl(sql);
          if (ctl?.verb === 'commit') committed = true;
          else if (ctl?.verb === 'rollback') rolledBack = true;
          return ctl ? EMPTY : runStmt(conn as unknown as Preparer, sql, stmt, opts.maxRows);
        });
        ran = outcomes;
        if (rolledBack || !committed) throw new RolledBack(outcomes);
        return outcomes;
      });
    } catch (err) {
      if (err instanceof RolledBack) return err.outcomes;
      const error = toProtoError(err);
      const recorded = ran as Outcome[] | null;
      if (!recorded) {
        // Nothing ran (no lease, fenced, busy): BEGIN failed, and so does anything run anyway.
        return runSteps(steps, (stmt) => {
          if (txnControl(this.sqlOf(stmt))?.verb === 'rollback') return EMPTY;
          throw new ProtoErrorThrown(error);
        });
      }
      // The statements ran but COMMIT failed: report it there; a ROLLBACK step after it says
      // whether the transaction is known to be gone (lost lease) or its outcome is unknown.
      const unknown = err instanceof CommitOutcomeUnknownError;
      let i = -1;
      return runSteps(steps, (stmt) => {
        i++;
        const ctl = txnControl(this.sqlOf(stmt));
        if (ctl?.verb === 'commit') throw new ProtoErrorThrown(error);
        if (ctl?.verb === 'rollback') {
          if (unknown) throw new ProtoErrorThrown(error);
          return EMPTY;
        }
        const o = recorded[i];
        if (o && !o.ok) throw new ProtoErrorThrown(o.error);
        return o ? o.result : EMPTY;
      });
    }
  }

  /** Closes the stream: rolls back whatever transaction it has open. Idempotent. */
  close(): void {
    const state = this.state;
    if (state.kind === 'read') {
      this.endRead('ROLLBACK');
    } else if (state.kind === 'write') {
      try {
        if (this.ctx.db.lease.held && this.ctx.db.lease.fence === state.fence && this.ctx.db.inTransaction) {
          this.ctx.db.exec('ROLLBACK');
        }
      } catch {
        /* the library drops the connection on its own failures; nothing was committed */
      } finally {
        this.endWrite();
      }
    }
    this.state = { kind: 'idle' };
    this.sqls.clear();
  }
}

/** A Hrana error to record as a step's outcome (already converted). */
class ProtoErrorThrown {
  constructor(readonly error: ProtoError) {}
}

/** Runs batch steps synchronously, evaluating each condition on the outcomes so far. */
function runSteps(steps: ProtoBatchStep[], run: (stmt: ProtoStmt) => StmtResult): Outcome[] {
  const outcomes: Outcome[] = [];
  let inTxn = false;
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i];
    if (step.condition && !evalCond(step.condition, outcomes, i, !inTxn)) {
      outcomes.push(null);
      continue;
    }
    try {
      outcomes.push({ ok: true, result: run(step.stmt) });
      const ctl = step.stmt.sql !== undefined ? txnControl(step.stmt.sql) : null;
      if (ctl) inTxn = ctl.verb === 'begin';
    } catch (err) {
      outcomes.push({ ok: false, error: err instanceof ProtoErrorThrown ? err.error : toProtoError(err) });
    }
  }
  return outcomes;
}

/** Hrana batch conditions; a reference to a step that has not run yet is false. */
function evalCond(c: ProtoCond, outcomes: Outcome[], current: number, autocommit: boolean): boolean {
  switch (c.type) {
    case 'ok':
      return c.step >= 0 && c.step < current && outcomes[c.step]?.ok === true;
    case 'error':
      return c.step >= 0 && c.step < current && outcomes[c.step]?.ok === false;
    case 'not':
      return !evalCond(c.cond, outcomes, current, autocommit);
    case 'and':
      return c.conds.every((x) => evalCond(x, outcomes, current, autocommit));
    case 'or':
      return c.conds.some((x) => evalCond(x, outcomes, current, autocommit));
    case 'is_autocommit':
      return autocommit;
  }
}

function toBatchResult(outcomes: Outcome[]): BatchResult {
  return {
    step_results: outcomes.map((o) => (o?.ok ? o.result : null)),
    step_errors: outcomes.map((o) => (o && !o.ok ? o.error : null)),
  };
}

export { isReadOnly };
