/**
 * What the SQL guard (src/storage/sql-guard.ts) lets through at each place the handle runs SQL.
 */
import type { GuardPolicy } from '../storage/sql-guard';

/** Inside db.write(fn): the handle owns the transaction, so no transaction control. */
export const IN_WRITE: GuardPolicy = Object.freeze({ transactionControl: false, where: 'db.write(fn)' });
/** The body of an exec() script that writes. */
export const IN_EXEC: GuardPolicy = Object.freeze({
  transactionControl: false,
  where: 'an exec() script (issue BEGIN and COMMIT as their own exec() calls, or use db.write)',
});
/** Reads and pragma(): transaction control is the caller's (a read transaction). */
export const READ_ONLY: GuardPolicy = Object.freeze({ transactionControl: true, where: 'a read' });
/** prepare(): BEGIN/COMMIT as statements go through the handle's own transaction control (run()). */
export const IN_PREPARE: GuardPolicy = Object.freeze({ transactionControl: true, where: 'prepare()' });
