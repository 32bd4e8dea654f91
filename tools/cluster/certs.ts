/**
 * Test certificates made with `openssl` at run time (never checked in): a CA, server certificates
 * for loopback etcd members and client certificates, optionally already expired. P-256 keys keep
 * generation fast on a loaded machine.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** Paths of one certificate and its unencrypted PEM key. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** A certificate authority in `dir` that can sign server and client certificates. */
export class TestCa {
  readonly cert: string;
  private readonly key: string;
  private serial = 1;

  private constructor(readonly dir: string, readonly name: string) {
    this.cert = path.join(dir, `${name}.crt`);
    this.key = path.join(dir, `${name}.key`);
  }

  /** Creates a self-signed CA valid for `days` (default 2). */
  static create(dir: string, name = 'ca', days = 2): TestCa {
    fs.mkdirSync(dir, { recursive: true });
    const ca = new TestCa(dir, name);
    openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', ca.key, '-out', ca.cert, '-days', String(days), '-subj', `/CN=sqlite-ha test ${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return ca;
  }

  /** A server certificate for 127.0.0.1 / localhost (plus `hosts`); `days: -1` makes it already expired. */
  server(name: string, opts: { days?: number; hosts?: string[] } = {}): CertFiles {
    const sans = ['IP:127.0.0.1', 'DNS:localhost', ...(opts.hosts ?? []).map((h) => (/^[\d.]+$/.test(h) ? `IP:${h}` : `DNS:${h}`))];
    return this.sign(name, `/CN=${name}`, [
      `subjectAltName=${sans.join(',')}`, 'extendedKeyUsage=serverAuth,clientAuth', 'keyUsage=critical,digitalSignature',
    ], opts.days ?? 2);
  }

  /** A client certificate whose CN is `commonName` (etcd maps it to a user when auth is on). */
  client(name: string, commonName: string, opts: { days?: number } = {}): CertFiles {
    return this.sign(name, `/CN=${commonName}`, ['extendedKeyUsage=clientAuth', 'keyUsage=critical,digitalSignature'], opts.days ?? 2);
  }

  private sign(name: string, subject: string, extensions: string[], days: number): CertFiles {
    const files = { cert: path.join(this.dir, `${name}.crt`), key: path.join(this.dir, `${name}.key`) };
    const csr = path.join(this.dir, `${name}.csr`);
    const ext = path.join(this.dir, `${name}.ext`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', files.key, '-out', csr, '-subj', subject]);
    fs.writeFileSync(ext, extensions.join('\n') + '\n');
    // A negative -days puts notAfter before now: an already expired certificate.
    openssl([
      'x509', '-req', '-in', csr, '-CA', this.cert, '-CAkey', this.key, '-set_serial', String(this.serial++),
      '-out', files.cert, '-days', String(days), '-extfile', ext,
    ]);
    fs.rmSync(csr);
    fs.rmSync(ext);
    return files;
  }
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
}
