/**
 * The private adapter between statements and the handle's parts: what a Statement needs (the
 * connection to prepare on and when it changed, the fenced write path, the read guard, transaction
 * control), kept off the public HADatabase.
 */
import type Database from 'better-sqlite3';
import type { Connections } from './connections';
import type { LeaseHolder } from './lease-holder';
import type { StorageMode } from './modes/mode';
import type { Reads } from './reads';
import type { StatementHost } from './statement';
import type { WritePath } from './write-path';

export class HandleStatementHost implements StatementHost {
  constructor(
    private readonly mode: StorageMode,
    private readonly conns: Connections,
    private readonly holder: LeaseHolder,
    private readonly reads: Reads,
    private readonly writes: WritePath,
  ) {}

  get generation(): number {
    return this.conns.generation;
  }
  currentConnection(): Database.Database {
    this.conns.assertOpen();
    return this.mode.connectionFor(this.holder.usable, this.conns.ro);
  }
  prepareOnCurrent(sql: string): Database.Statement {
    try {
      return this.currentConnection().prepare(sql);
    } catch (err) {
      throw this.reads.hotJournalError(err);
    }
  }
  runWrite<T>(what: string, fn: () => T): T {
    return this.writes.runSync(what, fn);
  }
  runRead<T>(fn: () => T): T {
    return this.reads.run(fn);
  }
  transactionControl(sql: string): Database.RunResult | null {
    return this.writes.control(sql);
  }
}
