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
import { InvalidOptionError, UnsafeStorageError } from './errors';
import { OpenOptions, resolveOptions, ResolvedOptions } from './options';
import { openReadOnly, prepareFile } from './storage/connection';
import { readMeta } from './storage/meta';
import { lockVerdictFor } from './storage/mounts';

/** Opens a sqlite-ha handle on `path`: validates the options, checks the file and mount, builds the coordinator. */
export async function open(path: string, options: OpenOptions): Promise<HADatabase> {
  const opts = resolveOptions(path, options);
  if (!fs.existsSync(dirname(opts.path))) {
    throw new InvalidOptionError('path', path, `a file in an existing directory (${dirname(opts.path)} does not exist)`);
  }
  const locks = decideLocks(opts);
  prepareFile(opts.path);
  const coordinator = makeCoordinator(opts, locks);
  try {
    return new HADatabase(opts, coordinator, locks);
  } catch (err) {
    await coordinator.close();
    throw err;
  }
}

/** 'auto' trusts SQLite's locks only where they cross hosts; elsewhere it picks the lockless mode. */
function decideLocks(opts: ResolvedOptions): LocksInUse {
  if (opts.locks !== 'auto') return opts.locks;
  const verdict = lockVerdictFor(opts.path);
  if (verdict.trusted) return 'trusted';
  if (opts.coordinator.kind !== 'etcd') {
    throw new UnsafeStorageError(
      `refusing ${opts.path}: ${verdict.reason}. Without cross-host locks a peer can roll back the ` +
        "writer's journal and readers can tear (HAZARDS H2, H3); the lockless mode that handles this " +
        'needs the etcd coordinator.',
    );
  }
  return 'none';
}

function makeCoordinator(opts: ResolvedOptions, locks: LocksInUse): Coordinator {
  const c = opts.coordinator;
  if (c.kind === 'lockfile') {
    return new LockfileCoordinator(opts.path, c.staleMs, opts.nodeId, () => {
      const conn = openReadOnly(opts);
      try {
        return readMeta(conn).fence;
      } finally {
        conn.close();
      }
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
