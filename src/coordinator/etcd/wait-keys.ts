/** One etcd watch that waits for a set of keys to settle, bounded by a deadline. */
import type { Etcd3, Watcher } from 'etcd3';
import { monotonicNow } from '../../clock';
import { toCoordinatorError } from './client';

/**
 * Resolves true once every key in `keys` (under `prefix`) is settled by an event seen from
 * `startRevision`: its deletion, or a put whose value `putSettles` accepts; false at `deadline`
 * (monotonic ms). A failed watch rejects, as a coordinator error about `what`.
 */
export function waitKeysSettled(
  client: Etcd3, prefix: string, keys: string[], startRevision: number, deadline: number, what: string,
  putSettles?: (value: Buffer) => boolean,
): Promise<boolean> {
  const pending = new Set(keys);
  return new Promise((resolve, reject) => {
    let done = false;
    let watcher: Watcher | null = null;
    const finish = (v: boolean | Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void watcher?.cancel().catch(() => undefined);
      if (v instanceof Error) reject(toCoordinatorError(what, v));
      else resolve(v);
    };
    const settle = (key: string) => {
      pending.delete(key);
      if (pending.size === 0) finish(true);
    };
    const timer = setTimeout(() => finish(false), Math.max(0, deadline - monotonicNow()));
    client
      .watch()
      .prefix(prefix)
      .startRevision(String(startRevision))
      .create()
      .then((w) => {
        watcher = w;
        if (done) void w.cancel().catch(() => undefined);
        if (putSettles) {
          w.on('put', (kv) => {
            if (putSettles(kv.value)) settle(kv.key.toString());
          });
        }
        w.on('delete', (kv) => settle(kv.key.toString()));
        w.on('error', (err) => finish(err));
      })
      .catch((err) => finish(err));
  });
}
