/**
 * open(): validate options once, check the storage (file format, mount), build the coordinator,
 * and return the handle. Nothing is acquired yet: the lease is taken on the first write.
 */
import { EtcdCoordinator } from './coordinator/etcd/coordinator';
import { LockfileCoordinator } from './coordinator/lockfile/coordinator';
import type { Coordinator } from './coordinator/types';
import { HADatabase, LocksInUse } from './handle/database';
import * as fs from 'fs';
import { dirname } from 'path';
import { CoordinatorUnavailableError, DatabaseIdentityError, InvalidOptionError, UnsafeStorageError } from './errors';
import type { CommitRecord } from './coordinator/etcd/keys';
import { checkMode, MountSummary, mountSummary, RecordedIdentity } from './storage/identity';
import { OpenOptions, resolveOptions, ResolvedOptions } from './options';
import { openReadOnly, openReadWrite, prepareFile } from './storage/connection';
import { readMeta } from './storage/meta';
import { lockVerdictFor } from './storage/mounts';
import { realPath } from './storage/paths';
import { isHotJournalReadOnly } from './storage/sqlite-errors';

/** Opens a sqlite-ha handle on `path`: validates the options, checks the file and mount, builds the coordinator. */
export async function open(path: string, options: OpenOptions): Promise<HADatabase> {
  const resolved = resolveOptions(path, options);
  // Once, here: a symlink must not make the mount check judge the link's directory (docs/HAZARDS.md H2).
  const opts: ResolvedOptions = Object.freeze({ ...resolved, path: realPath(resolved.path) });
  if (!fs.existsSync(dirname(opts.path))) {
    throw new InvalidOptionError('path', path, `a file in an existing directory (${dirname(opts.path)} does not exist)`);
  }
  const locks = decideLocks(opts);
  const mount = mountSummary(lockVerdictFor(opts.path).mount);
  const coordinator = makeCoordinator(opts, locks);
  try {
    await checkAgainstRecord(opts, locks, mount, coordinator);
    prepareFile(opts.path);
    return new HADatabase(opts, coordinator, locks, mount);
  } catch (err) {
    await coordinator.close();
    throw err;
  }
}

/**
 * Before creating anything (issue 10, defects 5 and 6): a node in another storage mode than the one
 * recorded for the database is refused, and a missing file is created only if etcd records no
 * database under this name (an NFS mount missing at boot leaves an empty mount point: creating the
 * file there would start a second, empty database). The first holder checks the file's identity
 * again before it writes.
 */
async function checkAgainstRecord(
  opts: ResolvedOptions, locks: LocksInUse, mount: MountSummary, coordinator: Coordinator,
): Promise<void> {
  if (coordinator.kind !== 'etcd') return;
  let identity: RecordedIdentity | null;
  let commit: CommitRecord | null;
  try {
    [identity, commit] = await Promise.all([coordinator.readIdentity(), coordinator.readCommit()]);
  } catch (err) {
    // etcd unreachable: an existing file still serves local reads; the holder checks before writing.
    if (fs.existsSync(opts.path)) return;
    throw new CoordinatorUnavailableError(
      `${opts.path} does not exist and etcd could not be asked whether database '${opts.name}' exists elsewhere ` +
        `(it is not created blindly: is the filesystem mounted?): ${(err as Error).message}`, { cause: err },
    );
  }
  const commits = commit?.txid ?? 0;
  // Looked at only now, after the record: a node that records a database created its file first
  // (in open()), so a file created while our read was on its way is seen here, not refused.
  const exists = fs.existsSync(opts.path);
  // First the missing file: an unmounted mount point is usually on another filesystem too.
  if (!exists && (identity !== null || commits > 0)) {
    const which = identity ? `database ${identity.id} (opened as ${identity.path} by ${identity.node})` : 'a database';
    throw new DatabaseIdentityError(
      `${opts.path} does not exist, but etcd records ${commits} commits of ${which} under the name '${opts.name}': ` +
        'is the filesystem mounted? Refusing to create a new, empty database in its place',
      { fileId: null, recordedId: identity?.id ?? null },
    );
  }
  checkMode({ recorded: identity, locks, mount, path: opts.path, name: opts.name, node: opts.nodeId });
}

/** 'auto' trusts SQLite's locks only where they cross hosts; elsewhere it picks the lockless mode. */
function decideLocks(opts: ResolvedOptions): LocksInUse {
  if (opts.locks !== 'auto') return opts.locks;
  const verdict = lockVerdictFor(opts.path);
  if (verdict.trusted) return 'trusted';
  if (opts.coordinator.kind !== 'etcd') {
    throw new UnsafeStorageError(
      `refusing ${opts.path}: ${verdict.reason}. Without cross-host locks a peer can roll back the ` +
        "writer's journal and readers can tear (docs/HAZARDS.md H2, H3); the lockless mode that handles this " +
        'needs the etcd coordinator.',
    );
  }
  return 'none';
}

function makeCoordinator(opts: ResolvedOptions, locks: LocksInUse): Coordinator {
  const c = opts.coordinator;
  if (c.kind === 'lockfile') {
    // Called under the lock: when a crashed holder left a hot journal the read-only read fails
    // (SQLITE_READONLY_ROLLBACK, H8), and this node, now the holder, recovers it read-write.
    return new LockfileCoordinator(opts.path, c.staleMs, opts.nodeId, () => {
      for (const open of [openReadOnly, openReadWrite]) {
        const conn = open(opts);
        try {
          return readMeta(conn).fence;
        } catch (err) {
          if (!isHotJournalReadOnly(err)) throw err;
        } finally {
          conn.close();
        }
      }
      throw new Error('unreachable: the read-write open recovers the journal');
    });
  }
  return new EtcdCoordinator({
    options: c,
    name: opts.name,
    nodeId: opts.nodeId,
    leaseTtlMs: opts.leaseTtlMs,
    safetyMarginMs: opts.safetyMarginMs,
    rpcTimeoutMs: opts.rpcTimeoutMs,
    info: { path: opts.path, locks, journalMode: opts.journalMode },
  });
}
