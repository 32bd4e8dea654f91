/**
 * Database identity and storage mode (issue 10, defects 5 and 6). Each database gets an id, created
 * once by its first holder and kept in two places: the meta row of the file and etcd's info record.
 * A new holder compares them before it writes anything, so it never raises the fence in (or adds a
 * meta row to) a file that is not the database etcd knows: a restored or swapped file, two files
 * with one basename under one prefix, an empty file created under a mount point whose filesystem
 * was not mounted. The record also fixes the storage mode (trusted / lockless): a node that would
 * run another mode is refused, with the mount options that differ.
 *
 * Pure decisions here; the reads and writes are the caller's (meta row: storage/meta.ts, record:
 * the coordinator).
 */
import { randomUUID } from 'crypto';
import { DatabaseIdentityError, MixedModesError } from '../errors';
import type { MountInfo } from './mounts';

export type LocksMode = 'trusted' | 'none';

/** Where the creator of the record ran the database from, for the error that names the differences. */
export interface MountSummary {
  fsType: string;
  mountPoint: string;
  options: string[];
}

/** The identity part of etcd's info record. */
export interface RecordedIdentity {
  id: string;
  locks: LocksMode;
  path: string;
  node: string;
  mount: MountSummary | null;
}

/** What the file itself says, read before anything is written. */
export interface FileIdentity {
  /** False when the file has no meta row (empty file, or never written through sqlite-ha). */
  hasMeta: boolean;
  dbid: string | null;
  txid: number;
}

export interface IdentityDecision {
  id: string;
  /** The meta row must get this id (in the holder's first transaction). */
  writeFile: boolean;
  /** etcd's record must be created with this id (before the file is written). */
  writeRecord: boolean;
}

/** A fresh database id. */
function newDatabaseId(): string {
  return randomUUID();
}

export function mountSummary(m: MountInfo): MountSummary {
  return { fsType: m.fsType, mountPoint: m.mountPoint, options: m.options };
}

/**
 * Decides whether this holder may write the file, and what identity bookkeeping goes with it.
 * Throws DatabaseIdentityError when the file is not the recorded database.
 */
export function decideIdentity(input: {
  file: FileIdentity;
  recorded: RecordedIdentity | null;
  publishedTxid: number;
  path: string;
  name: string;
  newId?: () => string;
}): IdentityDecision {
  const { file, recorded, publishedTxid, path, name } = input;
  const ids = { fileId: file.dbid, recordedId: recorded?.id ?? null };
  if (recorded) {
    if (file.dbid !== null) {
      if (file.dbid !== recorded.id) {
        throw new DatabaseIdentityError(
          `${path} is database ${file.dbid}, but etcd records database ${recorded.id} under the name '${name}' ` +
            `(opened as ${recorded.path} by ${recorded.node})`, ids,
        );
      }
      return { id: recorded.id, writeFile: false, writeRecord: false };
    }
    // The first holder recorded the id but did not get to write it into the file: adopt it, unless
    // the file is not the one that was committed to.
    if (publishedTxid > 0 && !file.hasMeta) throw emptyFile(path, name, publishedTxid, recorded, ids);
    return { id: recorded.id, writeFile: true, writeRecord: false };
  }
  if (publishedTxid > 0 && !file.hasMeta) throw emptyFile(path, name, publishedTxid, null, ids);
  // First holder (or a cluster from before identities): the file's id if it has one, else a new one.
  const id = file.dbid ?? (input.newId ?? newDatabaseId)();
  return { id, writeFile: file.dbid === null, writeRecord: true };
}

function emptyFile(
  path: string, name: string, txid: number, recorded: RecordedIdentity | null, ids: { fileId: string | null; recordedId: string | null },
): DatabaseIdentityError {
  const which = recorded ? `database ${recorded.id} (opened as ${recorded.path} by ${recorded.node})` : 'a database';
  return new DatabaseIdentityError(
    `${path} has no sqlite-ha meta row (an empty or foreign file), but etcd records ${txid} commits of ${which} ` +
      `under the name '${name}'; refusing to create a new database in its place`, ids,
  );
}

/** Refuses a node whose storage mode differs from the recorded one, naming the mount differences. */
export function checkMode(input: {
  recorded: RecordedIdentity | null; locks: LocksMode; mount: MountSummary; path: string; name: string; node: string;
}): void {
  const { recorded, locks, mount, path, name, node } = input;
  if (!recorded || recorded.locks === locks) return;
  const theirs = recorded.mount;
  let diff = '';
  if (theirs) {
    const mine = new Set(mount.options);
    const other = new Set(theirs.options);
    const onlyMine = mount.options.filter((o) => !other.has(o));
    const onlyTheirs = theirs.options.filter((o) => !mine.has(o));
    const parts: string[] = [];
    if (mount.fsType !== theirs.fsType) parts.push(`filesystem ${mount.fsType} here, ${theirs.fsType} there`);
    if (onlyMine.length) parts.push(`only here: ${onlyMine.join(',')}`);
    if (onlyTheirs.length) parts.push(`only there: ${onlyTheirs.join(',')}`);
    diff = `; mount options that differ: ${parts.length ? parts.join('; ') : 'none (the locks option was set explicitly)'}`;
  }
  const describe = (m: MountSummary | null) => (m ? `${m.fsType} at ${m.mountPoint} (${m.options.join(',')})` : 'an unknown mount');
  throw new MixedModesError(
    `node ${node} would open ${path} with locks: '${locks}' (${describe(mount)}), but etcd records locks: ` +
      `'${recorded.locks}' for '${name}' (set by ${recorded.node}, ${recorded.path} on ${describe(theirs)})${diff}`,
  );
}
