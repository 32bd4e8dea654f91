/**
 * The keep-alive session's commit deadline (issue 10, defect 3; docs/HAZARDS.md H6). The session talks to
 * a keep-alive stream the test controls (what a stalled etcd member looks like from here: a stream
 * that stops answering and answers late), on fake timers, so each case is exact:
 * - a late ack on a replaced stream must be credited with its own request's send time, never with
 *   the newer stream's (that over-estimated the deadline by a keep-alive interval in the field);
 * - a backward wall-clock step must not extend the lease (intervals are monotonic).
 */
import { EventEmitter } from 'events';
import type { Etcd3 } from 'etcd3';
import { monotonicNow } from '../../src/clock';
import { Session } from '../../src/coordinator/etcd/session';

class ControlledStream extends EventEmitter {
  readonly writes: number[] = [];
  ended = false;
  write(): void {
    this.writes.push(monotonicNow());
  }
  end(): void {
    this.ended = true;
  }
  /** etcd answers the oldest unanswered request on this stream. */
  ack(ttlS = 6): void {
    this.emit('data', { ID: '1', TTL: String(ttlS) });
  }
}

function controlledClient() {
  const streams: ControlledStream[] = [];
  const client = {
    leaseClient: {
      leaseGrant: async (req: { TTL: number }) => ({ ID: '1', TTL: String(req.TTL) }),
      leaseKeepAlive: async () => {
        const s = new ControlledStream();
        streams.push(s);
        return s;
      },
      leaseRevoke: async () => ({}),
    },
  } as unknown as Etcd3;
  return { client, streams };
}

beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
afterEach(() => jest.useRealTimers());

const TTL_MS = 6000;
const MARGIN_MS = 1000;
const EVERY_MS = TTL_MS / 3;

test("a late ack on a replaced, stalled stream is credited with its own send time, not the new stream's", async () => {
  const { client, streams } = controlledClient();
  const session = await Session.grant(client, TTL_MS, MARGIN_MS);
  const t0 = monotonicNow();
  await jest.advanceTimersByTimeAsync(EVERY_MS); // first keep-alive, answered at once
  expect(streams).toHaveLength(1);
  streams[0].ack();
  expect(session.commitDeadline).toBe(t0 + EVERY_MS + TTL_MS - MARGIN_MS);
  await jest.advanceTimersByTimeAsync(EVERY_MS); // second keep-alive: the member stalls
  const stalledSentAt = streams[0].writes[1];
  expect(stalledSentAt).toBe(t0 + 2 * EVERY_MS);
  await jest.advanceTimersByTimeAsync(EVERY_MS); // unanswered for an interval: a new stream
  expect(streams).toHaveLength(2);
  expect(streams[0].ended).toBe(true);
  const newSentAt = streams[1].writes[0];
  expect(newSentAt).toBeGreaterThan(stalledSentAt);
  // The stalled member finally answers the old request, on the old stream.
  streams[0].ack();
  // etcd restarted the TTL no later than... it may have done so as early as the old request: the
  // deadline may not move past stalledSentAt + TTL - margin.
  expect(session.commitDeadline).toBeLessThanOrEqual(stalledSentAt + TTL_MS - MARGIN_MS);
  // The new stream's own ack does move it.
  streams[1].ack();
  expect(session.commitDeadline).toBe(newSentAt + TTL_MS - MARGIN_MS);
  await session.revoke();
});

test('a backward step of the wall clock does not extend the lease', async () => {
  const { client, streams } = controlledClient();
  const session = await Session.grant(client, TTL_MS, MARGIN_MS);
  const lost = new Promise<Error>((resolve) => session.once('lost', resolve));
  let lostSeen = false;
  void lost.then(() => (lostSeen = true));
  await jest.advanceTimersByTimeAsync(EVERY_MS);
  streams[0].ack();
  const deadline = session.commitDeadline;
  // NTP (or an operator) steps the wall clock back by a minute; etcd keeps its own time.
  jest.setSystemTime(Date.now() - 60_000);
  expect(session.commitDeadline).toBe(deadline);
  // No keep-alive answered from now on: the lease is gone one TTL after the last answered send.
  await jest.advanceTimersByTimeAsync(TTL_MS + EVERY_MS);
  expect(lostSeen).toBe(true);
  expect((await lost).message).toMatch(/no keep-alive acknowledged within the 6000 ms TTL/);
  expect(session.alive).toBe(false);
});
