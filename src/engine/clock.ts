/**
 * Time source of the cache layer: CLOCK_MONOTONIC in nanoseconds, as a
 * number. On Linux process.hrtime is CLOCK_MONOTONIC, the clock behind the
 * BPF helpers bpf_ktime_get_ns() and bpf_ktime_get_coarse_ns() (the latter as
 * of the last tick: the XDP program reads it and retires entries early by a
 * margin), so expiry times computed here can be compared directly by the XDP
 * program. A double holds these values exactly
 * for the first 104 days of uptime and to within a few ns after that.
 *
 * Reading it allocates a BigInt, so per-packet code takes `nowNs` as an
 * argument and the caller reads the clock once per batch.
 */
export type Clock = () => number;

export const monotonicNs: Clock = () => Number(process.hrtime.bigint());

/**
 * The same clock without the BigInt: performance.now() is read from the same monotonic
 * source (uv_hrtime) as a double, so one offset taken at start-up turns it into
 * CLOCK_MONOTONIC nanoseconds. Allocation-free; both read one source, so they differ
 * only by the rounding of a double (well under a millisecond), far below the one-second
 * resolution of TTLs: what the query path reads.
 */
const perfBase = ((): number => {
  performance.now(); // the first call initialises the timer: keep it out of the sample
  let best = Infinity;
  let base = 0;
  for (let i = 0; i < 5; i++) {
    const p0 = performance.now();
    const h = Number(process.hrtime.bigint());
    const p1 = performance.now();
    if (p1 - p0 < best) {
      best = p1 - p0;
      base = h - ((p0 + p1) / 2) * 1e6;
    }
  }
  return base;
})();
export const fastMonotonicNs: Clock = () => perfBase + performance.now() * 1e6;
