/**
 * `sqlite-ha release --force <db>`: revokes the current holder's etcd lease, which deletes its lock
 * key (and every other key on that lease) at once, so the next waiter in the queue holds the lock.
 * An sqlite-ha holder that is still running is fenced: its next write sees a higher fence token in
 * the database and is refused. A foreign holder (etcdctl lock, a Go client) is not fenced by us.
 */
import * as readline from 'readline';
import { EtcdLeaseInvalidError, GRPCNotFoundError } from 'etcd3';
import { DatabaseView, QueueEntry, readClusterState } from './cluster-state';
import { ConnectionSettings, UsageError, createClient, withDeadline } from './connection';
import { duration, printable, printableCopy } from './format';

export interface ReleaseOptions {
  force?: boolean;
  yes?: boolean;
}

export interface ReleaseIo {
  input: NodeJS.ReadableStream;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

export async function runRelease(s: ConnectionSettings, db: string, opts: ReleaseOptions, io: ReleaseIo): Promise<number> {
  if (!opts.force) {
    throw new UsageError(
      "release revokes another process's lease; pass --force to say you mean it (and --yes to skip the prompt)",
    );
  }
  const client = createClient(s);
  try {
    // Only <prefix>/<db>/ is read and revoked: a role granted on this database is enough.
    const before = await readClusterState(client, s, db);
    const raw = before.databases.find((x) => x.name === db);
    if (!raw) {
      const known = await readClusterState(client, s).then(
        (all) => all.databases.map((x) => printable(x.name)).join(', ') || 'none',
        () => 'not readable with these credentials',
      );
      io.err.write(`sqlite-ha: no database named ${printable(JSON.stringify(db))} under ${s.prefix} (known: ${known})\n`);
      return 1;
    }
    // What is shown comes from etcd: escaped; what is compared and revoked stays raw.
    const d = printableCopy(raw);
    if (!raw.holder || !d.holder) {
      io.out.write(`${d.name} has no holder; nothing to release.\n`);
      return 0;
    }
    const h = d.holder;
    const rawHolder = raw.holder;
    if (rawHolder.lease === '0') {
      io.err.write(`sqlite-ha: the holder key ${h.key} has no lease, so it cannot be revoked; delete it with etcdctl if it is stale\n`);
      return 1;
    }
    io.out.write(describeHolder(d, h));
    if (!opts.yes) {
      const answer = await ask(io, `Revoke lease ${h.leaseId}? [y/N] `);
      if (answer === null || !/^(y|yes)$/i.test(answer.trim())) {
        io.out.write('Not confirmed; nothing was changed.\n');
        return 1;
      }
    }

    // The queue may have moved while the prompt was open: revoke only the lease we showed.
    const now = await readClusterState(client, s, db);
    const still = now.databases.find((x) => x.name === db)?.holder;
    if (!still || still.key !== rawHolder.key || still.createRevision !== rawHolder.createRevision) {
      io.out.write(`The holder changed meanwhile (now ${still ? `${printable(still.node)}, fence ${still.createRevision}` : 'none'}); ` +
        'nothing was changed. Run release again if it is stuck.\n');
      return 1;
    }
    try {
      await withDeadline(s, `revoking lease ${h.leaseId}`, () => client.leaseClient.leaseRevoke({ ID: rawHolder.lease }));
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError || err instanceof GRPCNotFoundError || /lease not found/i.test(String(err))) {
        io.out.write(`Lease ${h.leaseId} was already gone (expired or released); nothing was changed.\n`);
        return 0;
      }
      throw err;
    }
    io.out.write(`Revoked lease ${h.leaseId} of ${h.node}: etcd deleted its lock key ${h.key} (fence ${h.createRevision}).\n`);

    const after = (await readClusterState(client, s, db)).databases.find((x) => x.name === db);
    if (after?.holder) {
      io.out.write(`${d.name} is now held by ${printable(after.holder.node)} (fence ${after.holder.createRevision}).\n`);
    } else {
      io.out.write(`Nobody was waiting: ${d.name} has no holder now; the next writer acquires it at once.\n`);
    }
    io.out.write(h.foreign
      ? 'The old holder is not an sqlite-ha node: sqlite-ha cannot fence it, so make sure that process stops writing.\n'
      : 'If the old holder is still running, its next write is refused by the fence in the database (FencedError or LeaseLostError).\n');
    return 0;
  } finally {
    client.close();
  }
}

function describeHolder(d: DatabaseView, h: QueueEntry): string {
  const who = h.pid !== null ? `${h.node} (pid ${h.pid})` : h.node;
  const ttl = h.ttlLeftMs === null ? 'lease already expiring' : `${duration(h.ttlLeftMs)} of ${duration(h.leaseTtlMs)} left`;
  const next = d.waiters[0] ? `${d.waiters[0].node} (next in queue, ${d.waiters.length} waiting)` : 'nobody (no waiters)';
  return `${d.name} is held by ${who}, fence ${h.createRevision}, lease ${h.leaseId}, ${ttl}.\n` +
    `Revoking the lease deletes its lock key at once; the lock goes to ${next}.\n`;
}

/** One line from input, or null at end of input. */
function ask(io: ReleaseIo, prompt: string): Promise<string | null> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: io.input, output: io.out, terminal: false });
    let answered = false;
    io.out.write(prompt);
    rl.once('line', (line) => {
      answered = true;
      // A terminal echoes the answer itself; a pipe does not.
      if (!(io.input as NodeJS.ReadStream).isTTY) io.out.write(line + '\n');
      rl.close();
      resolve(line);
    });
    rl.once('close', () => {
      if (!answered) {
        io.out.write('\n');
        resolve(null);
      }
    });
  });
}
