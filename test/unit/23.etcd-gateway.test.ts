/**
 * The JSON gateway client's encoding and error mapping, without a network (the calls themselves
 * are tested against a real etcd in test/integration/63.commit-gateway.test.ts).
 */
import {
  EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdPermissionDeniedError, GRPCDeadlineExceededError, GRPCUnavailableError,
} from 'etcd3';
import { CoordinatorUnavailableError } from '../../src/errors';
import { isCredentialsRefusal, toCoordinatorError } from '../../src/coordinator/etcd/client';
import { decodeTxn, encodeTxn, gatewayError } from '../../src/coordinator/etcd/gateway';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test("the commit publish's txn: the own-key compare, the put and the gate delete, as etcd's JSON", () => {
  const doc = encodeTxn({
    compare: [{ key: Buffer.from('/p/db/lock/7'), target: 'Create', result: 'Equal', create_revision: 42 }],
    success: [
      { request_put: { key: Buffer.from('/p/db/commit'), value: Buffer.from('{"txid":3}') } },
      { request_delete_range: { key: Buffer.from('/p/db/gate') } },
    ],
    failure: [],
  });
  expect(doc).toEqual({
    compare: [{ key: b64('/p/db/lock/7'), target: 'CREATE', result: 'EQUAL', create_revision: '42' }],
    success: [
      { request_put: { key: b64('/p/db/commit'), value: b64('{"txid":3}') } },
      { request_delete_range: { key: b64('/p/db/gate') } },
    ],
    failure: [],
  });
});

test('enum numbers, other targets, a lease, a range end and 64-bit revisions as strings', () => {
  const doc = encodeTxn({
    compare: [
      { key: Buffer.from('k'), target: 2, result: 3, mod_revision: '9007199254740993' },
      { key: Buffer.from('k'), target: 'Version', result: 'Greater', version: -1, range_end: Buffer.from('l') },
    ],
    success: [{ request_put: { key: Buffer.from('k'), value: Buffer.alloc(0), lease: '7587' } }],
  });
  expect(doc.compare).toEqual([
    { key: b64('k'), target: 'MOD', result: 'NOT_EQUAL', mod_revision: '9007199254740993' },
    { key: b64('k'), target: 'VERSION', result: 'GREATER', version: '-1', range_end: b64('l') },
  ]);
  expect(doc.success).toEqual([{ request_put: { key: b64('k'), value: '', lease: '7587' } }]);
  expect(doc.failure).toEqual([]);
});

test('operations whose replies the client does not decode are refused, not sent', () => {
  expect(() => encodeTxn({ success: [{ request_range: { key: Buffer.from('k') } }] })).toThrow(/only put and delete-range/);
  expect(() => encodeTxn({ compare: [{ key: Buffer.from('k'), target: 9 as never }] })).toThrow(/unsupported compare target/);
});

test('a reply: succeeded is left out when false (proto3 JSON), the revision is kept as a string', () => {
  expect(decodeTxn({ header: { revision: '12' }, succeeded: true, responses: [{ response_put: { header: {} } }] }))
    .toEqual({ succeeded: true, revision: '12' });
  // The compare failed (lease lost): the gateway omits `succeeded`.
  expect(decodeTxn({ header: { cluster_id: '1', revision: '13' } })).toEqual({ succeeded: false, revision: '13' });
  expect(() => decodeTxn({ error: 'x' })).toThrow(GRPCUnavailableError);
  expect(() => decodeTxn(null)).toThrow(GRPCUnavailableError);
});

test("error replies become the gRPC client's typed errors, and the same CoordinatorUnavailable advice", () => {
  const denied = gatewayError(403, JSON.stringify({ error: 'etcdserver: permission denied', code: 7, message: 'etcdserver: permission denied' }));
  expect(denied).toBeInstanceOf(EtcdPermissionDeniedError);
  const mapped = toCoordinatorError('commit publish', denied);
  expect(mapped).toBeInstanceOf(CoordinatorUnavailableError);
  expect(mapped.message).toMatch(/commit publish failed: .*permission denied.*role must grant readwrite/);
  expect(isCredentialsRefusal(mapped)).toBe(true);

  const badPassword = gatewayError(400, JSON.stringify({
    error: 'etcdserver: authentication failed, invalid user ID or password', code: 3,
    message: 'etcdserver: authentication failed, invalid user ID or password',
  }));
  expect(badPassword).toBeInstanceOf(EtcdAuthenticationFailedError);
  expect(toCoordinatorError('commit publish', badPassword).message).toMatch(/Check coordinator\.auth/);

  const expired = gatewayError(401, JSON.stringify({ error: 'etcdserver: invalid auth token', code: 16, message: 'etcdserver: invalid auth token' }));
  expect(expired).toBeInstanceOf(EtcdInvalidAuthTokenError);
  expect(isCredentialsRefusal(expired)).toBe(false); // replaced once by re-authenticating, not a refusal

  const noLeader = gatewayError(503, JSON.stringify({ error: 'etcdserver: no leader', code: 14, message: 'etcdserver: no leader' }));
  expect(noLeader).toBeInstanceOf(GRPCUnavailableError);
  expect(gatewayError(503, 'upstream gone')).toBeInstanceOf(GRPCUnavailableError);
  expect(gatewayError(504, JSON.stringify({ error: 'context deadline exceeded', code: 4 }))).toBeInstanceOf(GRPCDeadlineExceededError);
  const plain = gatewayError(500, '<html>oops</html>');
  expect(plain.message).toBe('etcd gateway: HTTP 500: <html>oops</html>');
  expect(toCoordinatorError('commit publish', plain)).toBeInstanceOf(CoordinatorUnavailableError);
});
