/**
 * A better-sqlite3 Statement that survives connection switches: the handle reads on a read-only
 * connection until it holds the lease, then on the read-write one, and reopens either when its
 * cache is stale. The wrapper re-prepares on the current connection (replaying pluck/raw/bind...)
 * and sends every statement that writes through the fenced path.
 */
import type Database from 'better-sqlite3';
import { assertSafeSql } from '../storage/connection';

/** What a statement needs from its handle. */
export interface StatementHost {
  readonly generation: number;
  currentConnection(): Database.Database;
  /** Runs a writing call fenced (or inside the open fenced transaction); `what` names it in errors. */
  runWrite<T>(what: string, fn: () => T): T;
  /** Runs a reading call, mapping read-only failures of hidden writes to NotLeaseHolderError. */
  runRead<T>(fn: () => T): T;
  /** Transaction-control statements (BEGIN, COMMIT, ROLLBACK) go to the handle. */
  transactionControl(sql: string): Database.RunResult | null;
}

type Modifier = (s: Database.Statement) => void;

export class HAStatement {
  private stmt: Database.Statement | null = null;
  private generation = -1;
  private readonly modifiers: Modifier[] = [];

  constructor(private readonly host: StatementHost, readonly source: string, readonly database: unknown) {
    assertSafeSql(source);
    this.real(); // surface syntax errors at prepare() time, as better-sqlite3 does
  }

  private real(): Database.Statement {
    if (this.stmt === null || this.generation !== this.host.generation) {
      const s = this.host.currentConnection().prepare(this.source);
      for (const m of this.modifiers) m(s);
      this.stmt = s;
      this.generation = this.host.generation;
    }
    return this.stmt;
  }

  private modify(m: Modifier): this {
    m(this.real());
    this.modifiers.push(m);
    return this;
  }

  get reader(): boolean {
    return this.real().reader;
  }
  get readonly(): boolean {
    return this.real().readonly;
  }
  get busy(): boolean {
    return this.real().busy;
  }

  run(...params: unknown[]): Database.RunResult {
    const tc = this.host.transactionControl(this.source);
    if (tc) return tc;
    return this.call('run()', (s) => s.run(...params));
  }
  get(...params: unknown[]): unknown {
    return this.call('get()', (s) => s.get(...params));
  }
  all(...params: unknown[]): unknown[] {
    return this.call('all()', (s) => s.all(...params));
  }
  iterate(...params: unknown[]): IterableIterator<unknown> {
    const s = this.real();
    if (s.readonly) return this.host.runRead(() => s.iterate(...params));
    // A writing statement (RETURNING) must finish inside its fenced transaction.
    return this.host.runWrite('statement.iterate()', () => Array.from(this.real().iterate(...params)))[Symbol.iterator]();
  }
  columns(): Database.ColumnDefinition[] {
    return this.real().columns();
  }

  pluck(...toggle: [boolean?]): this {
    return this.modify((s) => (s.pluck as (...a: unknown[]) => unknown)(...toggle));
  }
  expand(...toggle: [boolean?]): this {
    return this.modify((s) => (s.expand as (...a: unknown[]) => unknown)(...toggle));
  }
  raw(...toggle: [boolean?]): this {
    return this.modify((s) => (s.raw as (...a: unknown[]) => unknown)(...toggle));
  }
  safeIntegers(...toggle: [boolean?]): this {
    return this.modify((s) => (s.safeIntegers as (...a: unknown[]) => unknown)(...toggle));
  }
  bind(...params: unknown[]): this {
    return this.modify((s) => s.bind(...params));
  }

  private call<T>(what: string, fn: (s: Database.Statement) => T): T {
    const s = this.real();
    if (s.readonly) return this.host.runRead(() => fn(s));
    return this.host.runWrite(`statement.${what}`, () => fn(this.real()));
  }
}
