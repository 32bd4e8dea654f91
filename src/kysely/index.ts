/**
 * `sqlite-ha/kysely`: a Kysely dialect for an HADatabase. Kysely's SQLite adapter, introspector
 * and query compiler; sqlite-ha's driver (driver.ts), which waits for the write lease where
 * Kysely's own SQLite driver would write at once. Kysely is a peer dependency.
 */
import { Dialect, Driver, Kysely, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler } from 'kysely';
import type { DatabaseIntrospector, DialectAdapter, QueryCompiler } from 'kysely';
import { SqliteHaDialectConfig, SqliteHaDriver } from './driver';

export type { SqliteHaDialectConfig } from './driver';
export { SqliteHaDriver } from './driver';

/** Kysely dialect: `new Kysely<DB>({ dialect: new SqliteHaDialect({ database: db }) })`. */
export class SqliteHaDialect implements Dialect {
  constructor(private readonly config: SqliteHaDialectConfig) {}

  createDriver(): Driver {
    return new SqliteHaDriver(this.config);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}
