/**
 * Building a new primary from the standby (the file side of `sqlite-ha promote`; the etcd side is
 * in src/cli/promote.ts): the chain is verified and applied into a temporary file next to the new
 * path, its whole-database checksum compared with the chain's, `integrity_check` run, and the meta
 * row's fence and epoch raised to the promotion's epoch, so that no lease granted before the
 * promotion can write it (its fence is lower: FencedError). Then the file is renamed into place.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import { StandbyCorruptError, StandbyTargetError } from '../errors';
import { raiseFenceAndEpoch } from '../storage/meta';
import { ApplyTarget, AppliedState, materialise } from './apply';
import { Chain } from './chain';
import { fsyncPath } from './files';

/** Reads the database name the chain was written for (standby.json). */
export function chainName(dir: string): string {
  let manifest: { name?: unknown };
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'standby.json'), 'utf8'));
  } catch {
    throw new StandbyTargetError(`${dir} holds no standby chain (no readable standby.json)`);
  }
  if (typeof manifest.name !== 'string') throw new StandbyTargetError(`${dir}/standby.json names no database`);
  return manifest.name;
}

/**
 * Materialises the chain (optionally to a point) into `out`, verified; refuses to overwrite.
 * Returns the state reached and the integrity_check result.
 */
export function buildFromChain(dir: string, out: string, target?: ApplyTarget): AppliedState {
  if (fs.existsSync(out)) throw new StandbyTargetError(`${out} already exists; choose a new path (nothing was changed)`);
  const chain = new Chain(dir, chainName(dir));
  const tmp = `${out}.sqlite-ha-build`;
  fs.rmSync(tmp, { force: true });
  fs.rmSync(`${tmp}.applied.json`, { force: true });
  try {
    const state = materialise(chain, { out: tmp, target, verifyChecksum: true });
    const db = new Database(tmp, { readonly: true });
    try {
      const check = db.pragma('integrity_check', { simple: true });
      if (check !== 'ok') throw new StandbyCorruptError(tmp, `integrity_check: ${String(check)}`);
    } finally {
      db.close();
    }
    fs.renameSync(tmp, out);
    fsyncPath(path.dirname(out));
    return state;
  } finally {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(`${tmp}.applied.json`, { force: true });
  }
}

/** Raises a built file's fence and epoch to `epoch` (one transaction, synchronous=FULL). */
export function fenceFile(file: string, epoch: number): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('journal_mode = TRUNCATE');
    db.pragma('synchronous = FULL');
    raiseFenceAndEpoch(db, epoch);
  } finally {
    db.close();
  }
}
