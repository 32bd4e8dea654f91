/**
 * A better-sqlite3 Statement that survives connection switches: the handle reads on a read-only
 * connection until it holds the lease, then on the read-write one, and reopens either when its
 * cache is stale. The wrapper re-prepares on the current connection (replaying pluck/raw/bind...)
 * and sends every statement that writes through the fenced path. It presents itself as
 * better-sqlite3's: the class is named Statement, and its own properties are those of
 * better-sqlite3's (busy, reader, readonly, source, database); its state is in private fields.
 */
import type Database from 'better-sqlite3';
import { assertAllowed } from '../storage/sql-guard';
import { IN_PREPARE } from './sql-policy';

/** What a statement needs from its handle (the handle's private adapter implements it). */
export interface StatementHost {
  readonly generation: number;
  currentConnection(): Database.Database;
  /** Prepares on the current connection (a crashed holder's hot journal gets its typed error). */
  prepareOnCurrent(sql: string): Database.Statement;
  /** Runs a writing call fenced (or inside the open fenced transaction); `what` names it in errors. */
  runWrite<T>(what: string, fn: () => T): T;
  /** Runs a reading call, mapping read-only failures of hidden writes to NotLeaseHolderError. */
  runRead<T>(fn: () => T): T;
  /** Transaction-control statements (BEGIN, COMMIT, ROLLBACK) go to the handle. */
  transactionControl(sql: string): Database.RunResult | null;
}

type Modifier = (s: Database.Statement) => void;

/** A prepared statement of an HADatabase, with better-sqlite3's Statement API. */
export class Statement {
  readonly busy!: boolean;
  readonly reader!: boolean;
  readonly readonly!: boolean;
  /** The SQL text it was prepared from. */
  readonly source: string;
  /** The handle that prepared it. */
  readonly database: unknown;
  #stmt: Database.Statement | null = null;
  #generation = -1;
  readonly #modifiers: Modifier[] = [];
  readonly #host: StatementHost;

  /** @internal use db.prepare() */
  constructor(host: StatementHost, source: string, database: unknown) {
    // Own properties in better-sqlite3's order; busy/reader/readonly read the live statement.
    Object.defineProperties(this, {
      busy: { get: () => this.#real().busy, enumerable: true },
      reader: { get: () => this.#real().reader, enumerable: true },
      readonly: { get: () => this.#real().readonly, enumerable: true },
    });
    this.source = source;
    this.database = database;
    this.#host = host;
    if (typeof source === 'string') assertAllowed(source, IN_PREPARE);
    this.#real(); // surface syntax errors at prepare() time, as better-sqlite3 does
  }

  #real(): Database.Statement {
    if (this.#stmt === null || this.#generation !== this.#host.generation) {
      const s = this.#host.prepareOnCurrent(this.source);
      for (const m of this.#modifiers) m(s);
      this.#stmt = s;
      this.#generation = this.#host.generation;
    }
    return this.#stmt;
  }

  #modify(m: Modifier): this {
    m(this.#real());
    this.#modifiers.push(m);
    return this;
  }

  run(...params: unknown[]): Database.RunResult {
    const tc = this.#host.transactionControl(this.source);
    if (tc) return tc;
    return this.#call('run()', (s) => s.run(...params));
  }
  get(...params: unknown[]): unknown {
    return this.#call('get()', (s) => s.get(...params));
  }
  all(...params: unknown[]): unknown[] {
    return this.#call('all()', (s) => s.all(...params));
  }
  iterate(...params: unknown[]): IterableIterator<unknown> {
    const s = this.#real();
    if (s.readonly) return this.#host.runRead(() => s.iterate(...params));
    // A writing statement (RETURNING) must finish inside its fenced transaction.
    return this.#host.runWrite('statement.iterate()', () => Array.from(this.#real().iterate(...params)))[Symbol.iterator]();
  }
  columns(): Database.ColumnDefinition[] {
    return this.#real().columns();
  }

  pluck(...toggle: [boolean?]): this {
    return this.#modify((s) => (s.pluck as (...a: unknown[]) => unknown)(...toggle));
  }
  expand(...toggle: [boolean?]): this {
    return this.#modify((s) => (s.expand as (...a: unknown[]) => unknown)(...toggle));
  }
  raw(...toggle: [boolean?]): this {
    return this.#modify((s) => (s.raw as (...a: unknown[]) => unknown)(...toggle));
  }
  safeIntegers(...toggle: [boolean?]): this {
    return this.#modify((s) => (s.safeIntegers as (...a: unknown[]) => unknown)(...toggle));
  }
  bind(...params: unknown[]): this {
    return this.#modify((s) => s.bind(...params));
  }

  #call<T>(what: string, fn: (s: Database.Statement) => T): T {
    const s = this.#real();
    if (s.readonly) return this.#host.runRead(() => fn(s));
    return this.#host.runWrite(`statement.${what}`, () => fn(this.#real()));
  }
}

/** The statement type db.prepare() returns (the name sqlite-ha used before it matched better-sqlite3's). */
export type HAStatement = Statement;
