/**
 * The clock for lease intervals. A commit deadline is "last acknowledged keep-alive + TTL −
 * margin"; measured with the wall clock, a backward step (NTP, an operator) would extend it past
 * etcd's own expiry. Every lease interval, commit deadline and timeout is therefore measured on
 * this monotonic clock; the wall clock (Date.now()) only goes into records other hosts read.
 */
/** Monotonic milliseconds (arbitrary origin, never steps): compare only with other monotonicNow() values. */
export function monotonicNow(): number {
  return performance.now();
}
