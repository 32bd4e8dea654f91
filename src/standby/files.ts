/** Durable file steps the standby is built from: fsync a path, write-then-rename atomically. */
import * as fs from 'fs';
import * as path from 'path';

/** fsyncs a file or directory (directories: some filesystems refuse, the rename is still ordered). */
export function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    if (!isDirFsyncRefusal(err)) throw err;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `file` through a temporary name, fsyncs, renames, fsyncs the directory. */
export function writeFileDurable(file: string, write: (fd: number) => void): void {
  const tmp = tmpName(file);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(path.dirname(file));
}

/** The asynchronous twin of writeFileDurable for an in-memory buffer (off the commit path). */
export async function writeBufferDurableAsync(file: string, data: Buffer): Promise<void> {
  await writeFileDurableAsync(file, async (fh) => {
    await fh.writeFile(data);
  });
}

/** The asynchronous twin of writeFileDurable: `write` streams into the handle (large snapshots). */
export async function writeFileDurableAsync(file: string, write: (fh: fs.promises.FileHandle) => Promise<void>): Promise<void> {
  const tmp = tmpName(file);
  try {
    const fh = await fs.promises.open(tmp, 'w');
    try {
      await write(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  await fsyncPathAsync(path.dirname(file));
}

/** fsyncPath off the event loop. */
async function fsyncPathAsync(p: string): Promise<void> {
  const fh = await fs.promises.open(p, 'r');
  try {
    await fh.sync().catch((err) => {
      if (!isDirFsyncRefusal(err)) throw err;
    });
  } finally {
    await fh.close();
  }
}

/** Writes a small JSON file durably. */
export function writeJsonDurable(file: string, value: unknown): void {
  const data = Buffer.from(JSON.stringify(value, null, 1) + '\n');
  writeFileDurable(file, (fd) => fs.writeSync(fd, data));
}

export function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

function tmpName(file: string): string {
  return `${file}.tmp-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;
}

function isDirFsyncRefusal(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EINVAL' || code === 'EISDIR' || code === 'EBADF' || code === 'ENOTSUP';
}
