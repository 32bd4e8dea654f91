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
import { duration } from './format';

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
    const before = await readClusterState(client, s);
    const d = before.databases.find((x) => x.name === db);
    if (!d) {
      const known = before.databases.map((x) => x.name).join(', ') || 'none';
      io.err.write(`sqlite-ha: no database named ${JSON.stringify(db)} under ${s.prefix} (known: ${known})\n`);
      return 1;
    }
    if (!d.holder) {
      io.out.write(`${db} has no holder; nothing to release.\n`);
      return 0;
    }
    const h = d.holder;
    if (h.lease === '0') {
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
    const now = await readClusterState(client, s);
    const still = now.databases.find((x) => x.name === db)?.holder;
    if (!still || still.key !== h.key || still.createRevision !== h.createRevision) {
      io.out.write(`The holder changed meanwhile (now ${still ? `${still.node}, fence ${still.createRevision}` : 'none'}); ` +
        'nothing was changed. Run release again if it is stuck.\n');
      return 1;
    }
    try {
      await withDeadline(s, `revoking lease ${h.leaseId}`, () => client.leaseClient.leaseRevoke({ ID: h.lease }));
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError || err instanceof GRPCNotFoundError || /lease not found/i.test(String(err))) {
        io.out.write(`Lease ${h.leaseId} was already gone (expired or released); nothing was changed.\n`);
        return 0;
      }
      throw err;
    }
    io.out.write(`Revoked lease ${h.leaseId} of ${h.node}: etcd deleted its lock key ${h.key} (fence ${h.createRevision}).\n`);

    const after = (await readClusterState(client, s)).databases.find((x) => x.name === db);
    if (after?.holder) {
      io.out.write(`${db} is now held by ${after.holder.node} (fence ${after.holder.createRevision}).\n`);
    } else {
      io.out.write(`Nobody was waiting: ${db} has no holder now; the next writer acquires it at once.\n`);
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
