/**
 * Cross-host lock probe, run in two client VMs at once on the same database over NFS, with plain
 * better-sqlite3 (what SQLite's own locks do, without the library):
 *
 *   hold: BEGIN EXCLUSIVE, write "held" to the marker file, keep the lock until the other VM has
 *         written "tried", ROLLBACK, write "released".
 *   try:  wait for "held", BEGIN EXCLUSIVE with busy_timeout 0 (expected: SQLITE_BUSY when the
 *         locks cross hosts), write "tried", wait for "released", BEGIN EXCLUSIVE again (expected:
 *         acquired, so the first refusal was the other host's lock).
 *
 * The marker file lives in the run directory, which every guest mounts read-write (not NFS).
 * Prints one JSON line; every wait is bounded.
 *
 *   node build/tools/lab/guest-lock.js hold|try <db> <marker> <timeoutMs>
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function waitFor(marker: string, word: string, deadline: number): boolean {
  for (;;) {
    try {
      if (fs.readFileSync(marker, 'utf8').includes(word)) return true;
    } catch {
      /* not written yet */
    }
    if (Date.now() > deadline) return false;
    sleepSync(100);
  }
}

function attempt(db: Database.Database): string {
  try {
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
    return 'acquired';
  } catch (err) {
    return String((err as { code?: string }).code ?? (err as Error).message);
  }
}

function main(): void {
  const [mode, file, marker, timeout] = process.argv.slice(2);
  const deadline = Date.now() + Number(timeout);
  const db = new Database(file, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
  if (mode === 'hold') {
    db.exec('BEGIN EXCLUSIVE');
    fs.appendFileSync(marker, 'held\n');
    const tried = waitFor(marker, 'tried', deadline);
    db.exec('ROLLBACK');
    fs.appendFileSync(marker, 'released\n');
    process.stdout.write(JSON.stringify({ mode, held: true, otherTried: tried }) + '\n');
  } else {
    if (!waitFor(marker, 'held', deadline)) throw new Error('the holder never took its lock');
    const whileHeld = attempt(db);
    fs.appendFileSync(marker, 'tried\n');
    const released = waitFor(marker, 'released', deadline);
    const afterRelease = released ? attempt(db) : 'holder never released';
    process.stdout.write(JSON.stringify({ mode, whileHeld, afterRelease }) + '\n');
  }
  db.close();
}

main();
