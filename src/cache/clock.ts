/**
 * Time source of the cache layer: CLOCK_MONOTONIC in nanoseconds, as a
 * number. On Linux process.hrtime is CLOCK_MONOTONIC, the clock behind the
 * BPF helper bpf_ktime_get_ns(), so expiry times computed here can be
 * compared directly by the XDP program. A double holds these values exactly
 * for the first 104 days of uptime and to within a few ns after that.
 *
 * Reading it allocates a BigInt, so per-packet code takes `nowNs` as an
 * argument and the caller reads the clock once per batch.
 */
export type Clock = () => number;

export const monotonicNs: Clock = () => Number(process.hrtime.bigint());
