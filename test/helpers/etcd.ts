/** One real etcd per test file, started from PATH on free loopback ports. */
import { EtcdCluster } from '../../tools/cluster/etcd-process';

export function useEtcd(members = 1): { cluster: () => EtcdCluster } {
  let c: EtcdCluster | null = null;
  beforeAll(async () => {
    c = await EtcdCluster.start({ members });
  }, 30000);
  afterAll(async () => {
    await c?.stop();
  });
  return {
    cluster: () => {
      if (!c) throw new Error('etcd not started');
      return c;
    },
  };
}
