/**
 * Kysely's Driver over an HADatabase. Kysely's interface is async, so unlike better-sqlite3's
 * synchronous surface it can wait for the lease: beginTransaction and every writing statement
 * (`!stmt.readonly`) await it; reads outside a transaction run locally through db.read(). One
 * transaction at a time per handle (it has one read-write connection), in the order asked.
 */
import type { CompiledQuery, DatabaseConnection, Driver, QueryResult, TransactionSettings } from 'kysely';
import type { HADatabase } from '../handle/database';
import type { Consistency } from '../handle/database';
import { LeaseLostError } from '../errors';
import { WriteGate } from '../serve/write-gate';

/** Options of the sqlite-ha Kysely dialect. */
export interface SqliteHaDialectConfig {
  /** An open handle (from open()); the dialect never closes it unless closeDatabase is true. */
  database: HADatabase;
  /** Consistency of reads outside transactions. Default 'local'. */
  consistency?: Consistency;
  /** Longest wait for this handle's transaction slot, ms. Default 10000. */
  transactionWaitMs?: number;
  /** Close the handle when Kysely's destroy() is called. Default false. */
  closeDatabase?: boolean;
}

type Rows = { rows: unknown[]; changes?: number; lastInsertRowid?: number | bigint };

class HAConnection implements DatabaseConnection {
  /** Set while this connection runs a transaction: its fence, and how to free the slot. */
  txn: { fence: number; release: () => void } | null = null;

  constructor(private readonly driver: SqliteHaDriver) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const { sql, parameters } = compiled;
    const params = parameters as unknown[];
    const db = this.driver.db;
    let out: Rows;
    if (this.txn) {
      this.assertLease();
      const stmt = db.prepare(sql);
      out = stmt.reader ? { rows: stmt.all(...params) } : { rows: [], ...stmt.run(...params) };
    } else if (db.prepare(sql).readonly) {
      out = await db.read((conn) => run(conn.prepare(sql), params), { consistency: this.driver.consistency });
    } else {
      const release = await this.driver.gate.acquire('shared');
      try {
        out = await db.write((conn) => run(conn.prepare(sql), params));
      } finally {
        release();
      }
    }
    return {
      rows: out.rows as R[],
      ...(out.changes !== undefined ? { numAffectedRows: BigInt(out.changes) } : {}),
      ...(out.changes !== undefined && out.changes > 0 && out.lastInsertRowid !== undefined ? { insertId: BigInt(out.lastInsertRowid) } : {}),
    };
  }

  async *streamQuery<R>(compiled: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    const { rows } = await this.executeQuery<R>(compiled);
    for (const row of rows) yield { rows: [row] };
  }

  /** Inside a transaction: the lease this transaction began under must still be held. */
  assertLease(): void {
    const db = this.driver.db;
    if (this.txn && !(db.lease.held && db.lease.fence === this.txn.fence)) {
      throw new LeaseLostError('the lease ended during this Kysely transaction, which was rolled back');
    }
  }
}

function run(stmt: { reader: boolean; all(...p: unknown[]): unknown[]; run(...p: unknown[]): { changes: number; lastInsertRowid: number | bigint } }, params: unknown[]): Rows {
  return stmt.reader ? { rows: stmt.all(...params) } : { rows: [], ...stmt.run(...params) };
}

/** The Driver; see the file comment. */
export class SqliteHaDriver implements Driver {
  readonly db: HADatabase;
  readonly gate: WriteGate;
  readonly consistency: Consistency;

  constructor(private readonly config: SqliteHaDialectConfig) {
    this.db = config.database;
    this.gate = new WriteGate(config.transactionWaitMs ?? 10000);
    this.consistency = config.consistency ?? 'local';
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new HAConnection(this);
  }

  async beginTransaction(connection: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    const c = connection as HAConnection;
    const release = await this.gate.acquire('exclusive');
    try {
      for (let i = 0; i < 3 && !this.db.lease.held; i++) await this.db.write(() => undefined); // takes the lease
      if (!this.db.lease.held) throw new LeaseLostError('the lease was lost right after it was acquired, three times');
      this.db.exec('BEGIN IMMEDIATE'); // fenced, in the same tick as the check above
      c.txn = { fence: this.db.lease.fence!, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as HAConnection;
    try {
      c.assertLease();
      this.db.exec('COMMIT');
    } finally {
      this.endTransaction(c);
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as HAConnection;
    try {
      const t = c.txn;
      if (t && this.db.lease.held && this.db.lease.fence === t.fence && this.db.inTransaction) this.db.exec('ROLLBACK');
    } finally {
      this.endTransaction(c);
    }
  }

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    (connection as HAConnection).assertLease();
    this.db.exec(`SAVEPOINT "${name.replace(/"/g, '""')}"`);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    (connection as HAConnection).assertLease();
    this.db.exec(`ROLLBACK TO "${name.replace(/"/g, '""')}"`);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    (connection as HAConnection).assertLease();
    this.db.exec(`RELEASE "${name.replace(/"/g, '""')}"`);
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    const c = connection as HAConnection;
    if (c.txn) await this.rollbackTransaction(c); // a connection given back mid-transaction
  }

  async destroy(): Promise<void> {
    if (this.config.closeDatabase) await this.db.close();
  }

  private endTransaction(c: HAConnection): void {
    const t = c.txn;
    c.txn = null;
    t?.release();
  }
}
