/**
 * coordinator.tls, .auth and .endpoints validation (src/options.ts, issue #10 defect 7): every
 * mistake is an InvalidOptionError naming the option, and no key, certificate or password material
 * ever appears in a message. Certificates that need openssl are covered in test/integration/60.tls.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError } from '../../src/errors';
import { resolveOptions } from '../../src/options';

const HTTPS = { kind: 'etcd', endpoints: ['https://127.0.0.1:2379'] };
const SECRET_PEM = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS3CR3Tk3Y\n-----END PRIVATE KEY-----\n';

function invalid(options: unknown): InvalidOptionError {
  let caught: unknown = null;
  try {
    resolveOptions('/tmp/a.db', options);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidOptionError);
  const e = caught as InvalidOptionError;
  expect(e.code).toBe('SQLITE_HA_INVALID_OPTION');
  expect(e.message).not.toContain('S3CR3Tk3Y');
  expect(e.message).not.toContain('MIGHAgEAMBMG');
  expect(e.message).not.toContain('hunter2');
  return e;
}

describe('coordinator.tls', () => {
  test('a PEM string where an object is expected is refused without echoing the key', () => {
    const e = invalid({ coordinator: { ...HTTPS, tls: SECRET_PEM } });
    expect(e.option).toBe('coordinator.tls');
  });

  test.each([[123], [true], [{}], [['a']], ['']])('ca %p is a typed error, not a raw TypeError', (ca) => {
    const e = invalid({ coordinator: { ...HTTPS, tls: { ca } } });
    expect(e.option).toBe('coordinator.tls.ca');
    expect(e.message).toMatch(/PEM/);
  });

  test('an unknown tls key (caFile) is refused, naming the known keys', () => {
    const e = invalid({ coordinator: { ...HTTPS, tls: { caFile: '/etc/ssl/ca.pem' } } });
    expect(e.option).toBe('coordinator.tls.caFile');
    expect(e.message).toContain('ca, cert, key');
  });

  test('a key given as PEM text that is not a usable key is refused without echoing it', () => {
    const e = invalid({ coordinator: { ...HTTPS, tls: { cert: SECRET_PEM, key: SECRET_PEM } } });
    expect(e.option).toBe('coordinator.tls.cert');
    expect(e.message).toContain('contents not shown');
  });

  test('a Buffer that is not a certificate is refused, showing only its length', () => {
    const e = invalid({ coordinator: { ...HTTPS, tls: { ca: Buffer.from(SECRET_PEM) } } });
    expect(e.option).toBe('coordinator.tls.ca');
    expect(e.message).toContain(`${Buffer.byteLength(SECRET_PEM)} bytes`);
  });

  test('a path that cannot be read names the path and the system error', () => {
    const missing = path.join(os.tmpdir(), 'sqlite-ha-no-such-dir', 'ca.pem');
    const e = invalid({ coordinator: { ...HTTPS, tls: { ca: missing } } });
    expect(e.option).toBe('coordinator.tls.ca');
    expect(e.message).toContain(missing);
    expect(e.message).toContain('ENOENT');
  });

  test('a multi-line string that is not PEM is never echoed (it may be a key without its header)', () => {
    const e = invalid({ coordinator: { ...HTTPS, tls: { ca: 'MIGHAgEAMBMG\nS3CR3Tk3Y' } } });
    expect(e.message).toContain('value not shown');
  });

  test('a path to a file that is not PEM is refused', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-ha-unit-'));
    try {
      const f = path.join(dir, 'ca.pem');
      fs.writeFileSync(f, 'not a certificate');
      expect(invalid({ coordinator: { ...HTTPS, tls: { ca: f } } }).option).toBe('coordinator.tls.ca');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('cert without key (and key without cert) is refused', () => {
    expect(invalid({ coordinator: { ...HTTPS, tls: { cert: SECRET_PEM } } }).option).toBe('coordinator.tls.key');
    expect(invalid({ coordinator: { ...HTTPS, tls: { key: SECRET_PEM } } }).option).toBe('coordinator.tls.cert');
  });

  test('tls with an http:// endpoint is refused (every endpoint would use TLS anyway)', () => {
    const e = invalid({ coordinator: { kind: 'etcd', endpoints: ['https://a:2379', 'http://b:2379'], tls: {} } });
    expect(e.option).toBe('coordinator.endpoints');
    expect(e.message).toContain('http://b:2379');
  });

  test('tls: {} is accepted and resolves every part to null (the system roots are used)', () => {
    const r = resolveOptions('/tmp/a.db', { coordinator: { ...HTTPS, tls: {} } });
    expect(r.coordinator).toMatchObject({ tls: { ca: null, cert: null, key: null }, auth: null });
  });
});

describe('coordinator.auth and credentials in endpoints', () => {
  test('an endpoint with user:password in the URL is refused without echoing the password', () => {
    const e = invalid({ coordinator: { kind: 'etcd', endpoints: ['https://root:hunter2@etcd.example:2379'] } });
    expect(e.option).toBe('coordinator.endpoints');
    expect(e.message).toContain('coordinator.auth');
    expect(e.message).toContain('etcd.example:2379');
  });

  test('an unknown auth key is refused without echoing any value', () => {
    const e = invalid({ coordinator: { ...HTTPS, auth: { username: 'u', password: 'hunter2', token: 'hunter2x' } } });
    expect(e.option).toBe('coordinator.auth');
    expect(e.message).toContain('"token"');
  });

  test.each([[{ username: '', password: 'hunter2' }], [{ username: 'u', password: '' }]])('auth %p (empty) is refused', (auth) => {
    expect(invalid({ coordinator: { ...HTTPS, auth } }).option).toBe('coordinator.auth');
  });

  test('a valid auth is kept as given', () => {
    const r = resolveOptions('/tmp/a.db', { coordinator: { ...HTTPS, auth: { username: 'u', password: 'p' } } });
    expect(r.coordinator).toMatchObject({ auth: { username: 'u', password: 'p' } });
  });
});
