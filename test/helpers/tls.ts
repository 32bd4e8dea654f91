/**
 * TLS fixtures for one test file: a CA, a second (wrong) CA, server and client certificates made
 * with openssl at run time, and a real etcd serving clients over TLS with --client-cert-auth.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CertFiles, TestCa } from '../../tools/cluster/certs';
import { EtcdCluster, EtcdClusterOptions } from '../../tools/cluster/etcd-process';

export interface TlsFixtures {
  dir: string;
  ca: TestCa;
  /** A CA that signed nothing the server presents. */
  wrongCa: TestCa;
  server: CertFiles;
  client: CertFiles;
  /** Signed by `ca` but already expired. */
  expiredClient: CertFiles;
}

/** Makes every certificate the TLS tests use in a fresh directory. */
export function makeTlsFixtures(): TlsFixtures {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-tls-'));
  const ca = TestCa.create(dir, 'ca');
  const wrongCa = TestCa.create(dir, 'wrong-ca');
  return {
    dir,
    ca,
    wrongCa,
    server: ca.server('server'),
    client: ca.client('client', 'sqlite-ha-node'),
    expiredClient: ca.client('expired-client', 'sqlite-ha-node', { days: -1 }),
  };
}

/** Registers beforeAll/afterAll: certificates plus one TLS etcd requiring client certificates. */
export function useTlsEtcd(extra: Partial<EtcdClusterOptions> = {}): { cluster: () => EtcdCluster; tls: () => TlsFixtures } {
  let fx: TlsFixtures | null = null;
  let c: EtcdCluster | null = null;
  beforeAll(async () => {
    fx = makeTlsFixtures();
    c = await EtcdCluster.start({
      members: 1,
      tls: { ca: fx.ca.cert, cert: fx.server.cert, key: fx.server.key, clientCertAuth: true, client: fx.client },
      extraArgs: ['--auto-compaction-retention', '1'],
      ...extra,
    });
  }, 60000);
  afterAll(async () => {
    await c?.stop();
    if (fx) fs.rmSync(fx.dir, { recursive: true, force: true });
  });
  return {
    cluster: () => {
      if (!c) throw new Error('etcd not started');
      return c;
    },
    tls: () => {
      if (!fx) throw new Error('TLS fixtures not made');
      return fx;
    },
  };
}
