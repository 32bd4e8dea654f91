/**
 * The handle's SQLite connections: the read-only one it always has, the per-connection settings
 * (functions, aggregates, connection pragmas...) that follow it onto every connection it opens,
 * and `generation`, which moves whenever the connection statements should run on changes, so they
 * re-prepare. The read-write connection belongs to the lease holder (it exists only under a lease,
 * docs/HAZARDS.md H2); it is opened here so it gets the same settings.
 */
import type Database from 'better-sqlite3';
import { ClosedError } from '../errors';
import type { ResolvedOptions } from '../options';
import { openReadOnly, openReadWrite } from '../storage/connection';

type Apply = (conn: Database.Database) => void;

export class Connections {
  private current: Database.Database;
  private readonly settings: Apply[] = [];
  private gen = 0;
  private closed = false;

  constructor(private readonly opts: ResolvedOptions, private readonly noCacheSpill: boolean) {
    this.current = openReadOnly(opts);
  }

  /** The read-only connection (reads always run here, also on the holder: H2). */
  get ro(): Database.Database {
    return this.current;
  }

  /** Moves whenever a statement's connection may have changed. */
  get generation(): number {
    return this.gen;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Every call on a closed handle throws ClosedError. */
  assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /** Statements prepared before now re-prepare on their next call. */
  bump(): void {
    this.gen++;
  }

  /** A read-write connection with every registered setting (only the lease holder calls this). */
  openReadWrite(): Database.Database {
    const rw = openReadWrite(this.opts, { noCacheSpill: this.noCacheSpill });
    try {
      for (const apply of this.settings) apply(rw);
    } catch (err) {
      rw.close();
      throw err;
    }
    return rw;
  }

  /** Close-to-open revalidation (H4): a new connection sees what the file holds now. */
  reopenReadOnly(): void {
    const fresh = openReadOnly(this.opts);
    for (const apply of this.settings) apply(fresh);
    this.current.close();
    this.current = fresh;
    this.gen++;
  }

  /** Applies a per-connection setting to `open` connections now and to every later one. */
  register(apply: Apply, open: Database.Database[]): void {
    for (const c of open) apply(c);
    this.settings.push(apply);
  }

  /** Closes the read-only connection; the handle is closed from here on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.gen++;
    this.current.close();
  }
}
