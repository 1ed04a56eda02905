/**
 * Every counter a userspace engine host keeps, in one list, as bpf/heimdall.h keeps the
 * XDP program's: the names (and so the TypeScript type), the slots of the Float64Array
 * they live in, and the Prometheus metric each one is exported as all derive from
 * COUNTERS below. Nothing else numbers a slot or spells a counter's metric. (Each
 * upstream's figures, labelled by upstream, live in a region after these slots and have
 * their own table: src/engine/upstream-stats.ts.)
 *
 * A host's counters live in a StatsBlock: one Float64Array, over a SharedArrayBuffer when
 * the host runs on a worker thread. The owner writes its slots with plain stores (one
 * writer per block, no atomics on the query path); the main thread reads every block at
 * scrape time. An aligned 8-byte store is not torn on the machines this runs on, and a
 * counter read a moment early is only a moment early.
 */

import { UPSTREAM_REGION } from './upstream-stats.js';

/** Upper bounds (seconds) of the upstream latency histogram's buckets. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

/** Names of RCODEs 0..15 and BADVERS (16), the labels of the rcode counter. */
export const RCODE_NAMES = [
  'NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE',
  'DSOTYPENI', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15', 'BADVERS',
] as const;

/** Index of BADVERS among RCODE_NAMES (its header RCODE reads 0: it is extended). */
export const RCODE_BADVERS_SLOT = 16;

type Kind = 'counter' | 'gauge';

interface Scalar {
  kind: Kind;
  metric: string;
  help: string;
  /** The one label this counter sets on a metric several counters share. */
  label?: readonly [string, string];
}

interface Vector {
  kind: 'counter';
  metric: string;
  help: string;
  /** One slot per value of this label. */
  label: string;
  values: readonly string[];
}

interface HistogramPart {
  kind: 'histogram';
  metric: string;
  help: string;
}

const answers = 'heimdall_userspace_answers_total';
const answersHelp = 'Answers written in userspace, by where the data came from';
const errors = 'heimdall_userspace_errors_total';
const errorsHelp = 'Error replies written in userspace (malformed queries are in heimdall_malformed_total)';
const malformed = 'heimdall_malformed_total';
const malformedHelp = 'Queries that failed to parse or were answers: answered FORMERR or dropped';
const mismatched = 'heimdall_upstream_mismatched_total';
const mismatchedHelp = 'Datagrams from upstream ignored because they were not the answer to a query in flight, by reason';
const scrubbed = 'heimdall_upstream_scrubbed_total';
const scrubbedHelp = 'Records removed from upstream answers before caching or relaying: outside the query name, its chain, its zones or glue (src/dns/scrub.ts), by section';
const xskDrops = 'heimdall_af_xdp_drops_total';
const xskDropsHelp =
  'Queries through an AF_XDP socket left unanswered, by reason (kernel_*: dropped by the kernel before the worker saw them, from XDP_STATISTICS; worker_exit: waiting on the upstream when their worker exited)';
const xskEmpty = 'heimdall_af_xdp_ring_empty_total';
const xskEmptyHelp = 'Times the kernel found an AF_XDP ring empty (XDP_STATISTICS): fill (each one also a kernel_rx_dropped drop) or tx';
const tcp = 'heimdall_tcp_connections_total';
const tcpHelp = 'TCP connections of the kernel listener, by what happened to them';
const tcpMsgs = 'heimdall_tcp_messages_total';
const tcpMsgsHelp = 'DNS messages over TCP, by outcome';
const busy = 'heimdall_upstream_busy_total';
const busyHelp = 'Questions refused at once (SERVFAIL or stale) because a limit of work in flight upstream was reached, by limit (included in failures)';
const upTcp = 'heimdall_upstream_tcp_connections_total';
const upTcpHelp = 'Connections of the upstream TCP pools (after TC=1), by event';
const udp = 'heimdall_kernel_udp_datagrams_total';
const edgeDrops = 'heimdall_edge_drops_total';
const edgeDropsHelp = 'Queries userspace dropped by the edge policy (the XDP program counts its own in heimdall_xdp_packets_total), by reason';
const edgeReplies = 'heimdall_edge_replies_total';
const edgeRepliesHelp = 'Replies userspace wrote by the edge policy instead of an answer, by kind';
const udpHelp =
  'Datagrams of the kernel UDP listener, by direction (oversize: received, longer than any query may be, dropped; dropped: thrown away by the kernel before the listener read them, its receive buffer full)';
const prefetch = 'heimdall_prefetch_total';
const prefetchHelp =
  'Hot names refreshed before expiry: issued (asked upstream), refreshed (new answer stored and written to the hot map), failed, ' +
  'cold (not asked by clients in the second half of its life: left to expire), missed (in-flight bound reached until it expired)';
const fetches = 'heimdall_fetches_total';
const skippedHelp = 'Answers not cached, by reason: busy (the shard lock stayed taken), too_large (over what a shard can hold)';
const fetchesHelp =
  'Misses and the shared table of fetches in flight: owned (this miss asked upstream), joined (waited for another thread\'s fetch of the name), ' +
  'joined_served (answered from the cache after that wait), solo (table bucket full or contended: asked on its own), deadline_expired, owner_died, lost (waits that ended without an answer, then asked on their own)';

/**
 * The counters. Order is the slot order; scalars take one slot, a vector one per value,
 * the latency histogram one per bucket plus its sum and count.
 */
export const COUNTERS = {
  // The engine: every query handled in userspace, and what it became.
  queries: { kind: 'counter', metric: 'heimdall_userspace_queries_total', help: 'Queries handled in userspace (AF_XDP, kernel UDP and TCP)' },
  cacheHits: { kind: 'counter', metric: answers, help: answersHelp, label: ['source', 'cache'] },
  staleServed: { kind: 'counter', metric: answers, help: answersHelp, label: ['source', 'stale'] },
  upstreamAnswers: { kind: 'counter', metric: answers, help: answersHelp, label: ['source', 'upstream'] },
  relayed: { kind: 'counter', metric: answers, help: answersHelp, label: ['source', 'relayed'] },
  unrelayable: { kind: 'counter', metric: 'heimdall_upstream_unrelayable_total', help: 'Upstream answers the cache does not keep and that could not be passed on (truncated for a TCP client, an OPT not last, an extended RCODE for a client without EDNS): answered SERVFAIL, counted there too' },
  servfail: { kind: 'counter', metric: errors, help: errorsHelp, label: ['rcode', 'SERVFAIL'] },
  notimp: { kind: 'counter', metric: errors, help: errorsHelp, label: ['rcode', 'NOTIMP'] },
  badvers: { kind: 'counter', metric: errors, help: errorsHelp, label: ['rcode', 'BADVERS'] },
  notRecursive: { kind: 'counter', metric: 'heimdall_userspace_refused_total', help: "Queries refused in userspace for what they ask, by reason (the access lists' refusals are in heimdall_edge_replies_total)", label: ['reason', 'no_rd'] },
  formerr: { kind: 'counter', metric: malformed, help: malformedHelp, label: ['action', 'formerr'] },
  dropped: { kind: 'counter', metric: malformed, help: malformedHelp, label: ['action', 'dropped'] },
  rcodes: { kind: 'counter', metric: 'heimdall_userspace_rcode_total', help: 'Responses written in userspace, by RCODE', label: 'rcode', values: RCODE_NAMES },
  cacheEntries: { kind: 'gauge', metric: 'heimdall_cache_entries', help: 'Entries in the userspace cache (one, shared by every engine)' },
  cacheBytes: { kind: 'gauge', metric: 'heimdall_cache_bytes', help: 'Arena bytes the userspace cache holds in whole allocator blocks (the --cache-bytes bound counts these)' },
  cacheSkippedBusy: { kind: 'counter', metric: 'heimdall_cache_writes_skipped_total', help: skippedHelp, label: ['reason', 'busy'] },
  cacheSkippedLarge: { kind: 'counter', metric: 'heimdall_cache_writes_skipped_total', help: skippedHelp, label: ['reason', 'too_large'] },
  cacheResets: { kind: 'counter', metric: 'heimdall_cache_shard_resets_total', help: 'Cache shards emptied because the worker holding their lock died' },

  // The forwarder (copied from its own counters at each upkeep).
  upstreamSent: { kind: 'counter', metric: 'heimdall_upstream_queries_total', help: 'Queries sent to upstreams over UDP' },
  upstreamTimeouts: { kind: 'counter', metric: 'heimdall_upstream_timeouts_total', help: 'Upstream attempts that timed out' },
  upstreamFailures: { kind: 'counter', metric: 'heimdall_upstream_failures_total', help: 'Questions no upstream answered in time, or refused for capacity: each one a SERVFAIL or stale answer' },
  busyEngine: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'engine'] },
  busyClient: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'client'] },
  busyClientProcess: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'client_process'] },
  busyProcess: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'process'] },
  busyWaiting: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'waiting'] },
  busyClientWaiting: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'client_waiting'] },
  busyTcp: { kind: 'counter', metric: busy, help: busyHelp, label: ['limit', 'tcp'] },
  upstreamTcpConnects: { kind: 'counter', metric: upTcp, help: upTcpHelp, label: ['event', 'opened'] },
  upstreamTcpIdleClosed: { kind: 'counter', metric: upTcp, help: upTcpHelp, label: ['event', 'idle_closed'] },
  upstreamTcpLost: { kind: 'counter', metric: upTcp, help: upTcpHelp, label: ['event', 'lost'] },
  upstreamTcpReused: { kind: 'counter', metric: 'heimdall_upstream_tcp_reused_total', help: 'Upstream TCP queries sent on a connection that had already carried one' },
  upstreamTcpOpen: { kind: 'gauge', metric: 'heimdall_upstream_tcp_connections_open', help: 'Upstream TCP connections open now' },
  upstreamWaiting: { kind: 'gauge', metric: 'heimdall_upstream_waiting', help: 'Queries waiting for an upstream answer (coalesced ones each count)' },
  upstreamClients: { kind: 'gauge', metric: 'heimdall_upstream_client_networks', help: 'Client networks holding questions in flight upstream' },
  upstreamErrors: { kind: 'counter', metric: 'heimdall_upstream_errors_total', help: 'Send, bind and connect errors toward upstreams' },
  upstreamTcpRetries: { kind: 'counter', metric: 'heimdall_upstream_tcp_retries_total', help: 'Truncated upstream answers retried over TCP' },
  upstreamCoalesced: { kind: 'counter', metric: 'heimdall_upstream_coalesced_total', help: 'Questions served by a query already in flight' },
  // Hot names refreshed before they expire (src/hot/prefetch.ts; the main thread's block).
  prefetchIssued: { kind: 'counter', metric: prefetch, help: prefetchHelp, label: ['event', 'issued'] },
  prefetchRefreshed: { kind: 'counter', metric: prefetch, help: prefetchHelp, label: ['event', 'refreshed'] },
  prefetchFailed: { kind: 'counter', metric: prefetch, help: prefetchHelp, label: ['event', 'failed'] },
  prefetchCold: { kind: 'counter', metric: prefetch, help: prefetchHelp, label: ['event', 'cold'] },
  prefetchMissed: { kind: 'counter', metric: prefetch, help: prefetchHelp, label: ['event', 'missed'] },
  // One fetch per name across threads (src/upstream/fetch-table.ts).
  fetchOwned: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'owned'] },
  fetchJoined: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'joined'] },
  fetchJoinedServed: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'joined_served'] },
  fetchSolo: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'solo'] },
  fetchExpired: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'deadline_expired'] },
  fetchOwnerDied: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'owner_died'] },
  fetchLost: { kind: 'counter', metric: fetches, help: fetchesHelp, label: ['event', 'lost'] },
  mismatchSource: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'source'] },
  mismatchId: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'id'] },
  mismatchQuestion: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'question'] },
  mismatchMalformed: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'malformed'] },
  mismatchCase: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'case'] },
  mismatchCookie: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'cookie'] },
  mismatchCookieMissing: { kind: 'counter', metric: mismatched, help: mismatchedHelp, label: ['reason', 'cookie_missing'] },
  scrubbedAnswer: { kind: 'counter', metric: scrubbed, help: scrubbedHelp, label: ['section', 'answer'] },
  scrubbedAuthority: { kind: 'counter', metric: scrubbed, help: scrubbedHelp, label: ['section', 'authority'] },
  scrubbedAdditional: { kind: 'counter', metric: scrubbed, help: scrubbedHelp, label: ['section', 'additional'] },
  upstreamCapsFallbacks: { kind: 'counter', metric: 'heimdall_upstream_caps_fallbacks_total', help: 'Times an upstream that did not echo the query name\'s case was sent plain names (for 5 minutes)' },
  upstreamCookieResets: { kind: 'counter', metric: 'heimdall_upstream_cookie_resets_total', help: 'Times a server cookie was forgotten after an upstream answered without one repeatedly' },
  upstreamInflight: { kind: 'gauge', metric: 'heimdall_upstream_inflight', help: 'Distinct questions waiting for an upstream' },
  latency: { kind: 'histogram', metric: 'heimdall_upstream_latency_seconds', help: 'Time from sending a query upstream to its validated answer' },

  // AF_XDP workers.
  framesInUse: { kind: 'gauge', metric: 'heimdall_umem_frames_in_use', help: 'AF_XDP UMEM frames held by userspace (a batch being answered, tx not yet completed; never a miss waiting on the upstream)' },
  badFrames: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'bad_frame'] },
  txFull: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'tx_full'] },
  xskReceived: { kind: 'counter', metric: 'heimdall_af_xdp_received_total', help: 'Frames AF_XDP workers took from their RX rings' },
  noFrame: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'no_frame'] },
  xskHandlerErrors: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'handler_error'] },
  xskWaiting: { kind: 'gauge', metric: 'heimdall_af_xdp_waiting', help: 'Queries AF_XDP workers hold while the upstream answers (their frames already given back)' },
  xskAbandoned: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'worker_exit'] },
  xskKernelRxDropped: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'kernel_rx_dropped'] },
  xskKernelRxRingFull: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'kernel_rx_ring_full'] },
  xskKernelRxInvalid: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'kernel_rx_invalid'] },
  xskKernelTxInvalid: { kind: 'counter', metric: xskDrops, help: xskDropsHelp, label: ['reason', 'kernel_tx_invalid'] },
  xskFillRingEmpty: { kind: 'counter', metric: xskEmpty, help: xskEmptyHelp, label: ['ring', 'fill'] },
  xskTxRingEmpty: { kind: 'counter', metric: xskEmpty, help: xskEmptyHelp, label: ['ring', 'tx'] },
  xskTxRetries: { kind: 'counter', metric: 'heimdall_af_xdp_tx_retries_total', help: 'TX kicks made again soon after the kernel refused one without progress (copy mode: the device queue was full)' },

  // The main thread's kernel listeners.
  udpReceived: { kind: 'counter', metric: udp, help: udpHelp, label: ['direction', 'received'] },
  udpSent: { kind: 'counter', metric: udp, help: udpHelp, label: ['direction', 'sent'] },
  udpErrors: { kind: 'counter', metric: udp, help: udpHelp, label: ['direction', 'error'] },
  udpOversize: { kind: 'counter', metric: udp, help: udpHelp, label: ['direction', 'oversize'] },
  udpKernelDropped: { kind: 'counter', metric: udp, help: udpHelp, label: ['direction', 'dropped'] },
  tcpOpen: { kind: 'gauge', metric: 'heimdall_tcp_connections_open', help: 'TCP connections open now' },
  tcpAccepted: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'accepted'] },
  tcpRejected: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'rejected'] },
  tcpListenDropped: {
    kind: 'counter',
    metric: 'heimdall_tcp_listen_drops_total',
    help: "Handshake packets (SYN or final ACK) the kernel dropped at the TCP listener because its accept queue was full: the listening sockets' own count, so a client's retries count again",
  },
  tcpDenied: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'denied'] },
  tcpIdleClosed: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'idle_closed'] },
  tcpRejectedClient: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'rejected_client'] },
  tcpEvicted: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'evicted'] },
  tcpMessageTimeouts: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'message_timeout'] },
  tcpWriteTimeouts: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'write_timeout'] },
  tcpCloseTimeouts: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'close_timeout'] },
  tcpPressure: { kind: 'gauge', metric: 'heimdall_tcp_under_pressure', help: '1 while more than half the TCP connection limit is in use (shorter timeouts)' },
  tcpClients: { kind: 'gauge', metric: 'heimdall_tcp_client_networks', help: 'Client networks (/24, /56) with a TCP connection open' },
  tcpSocketErrors: { kind: 'counter', metric: tcp, help: tcpHelp, label: ['event', 'socket_error'] },
  tcpResponses: { kind: 'counter', metric: tcpMsgs, help: tcpMsgsHelp, label: ['outcome', 'answered'] },
  tcpDropped: { kind: 'counter', metric: tcpMsgs, help: tcpMsgsHelp, label: ['outcome', 'dropped'] },
  tcpBadFrames: { kind: 'counter', metric: tcpMsgs, help: tcpMsgsHelp, label: ['outcome', 'bad_frame'] },
  tcpOversize: { kind: 'counter', metric: tcpMsgs, help: tcpMsgsHelp, label: ['outcome', 'oversize'] },
  tcpHandlerErrors: { kind: 'counter', metric: tcpMsgs, help: tcpMsgsHelp, label: ['outcome', 'error'] },

  // The edge policy on every userspace path (src/edge/guard.ts).
  edgeDenied: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'denied'] },
  edgeBadSource: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'bad_source'] },
  edgeSourcePort: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'source_port'] },
  edgeResponse: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'response'] },
  edgeNotQuery: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'not_a_query'] },
  edgeRateLimited: { kind: 'counter', metric: edgeDrops, help: edgeDropsHelp, label: ['reason', 'rate_limited'] },
  edgeRefused: { kind: 'counter', metric: edgeReplies, help: edgeRepliesHelp, label: ['kind', 'refused'] },
  edgeSlipped: { kind: 'counter', metric: edgeReplies, help: edgeRepliesHelp, label: ['kind', 'slip'] },
} as const satisfies Record<string, Scalar | Vector | HistogramPart>;

type Defs = typeof COUNTERS;
/** Counters of one slot. */
export type CounterName = { [K in keyof Defs]: Defs[K] extends Scalar ? K : never }[keyof Defs];
/** Counters of several slots (vectors and the histogram's buckets). */
export type VectorName = { [K in keyof Defs]: Defs[K] extends Vector ? K : never }[keyof Defs];

function width(d: Scalar | Vector | HistogramPart): number {
  if (d.kind === 'histogram') return LATENCY_BUCKETS.length + 2;
  return 'values' in d ? d.values.length : 1;
}

/** Slot of each counter: the first of its slots for vectors and the histogram. */
export const Slot = (() => {
  const out: Record<string, number> = {};
  let next = 0;
  for (const [name, d] of Object.entries(COUNTERS)) {
    out[name] = next;
    next += width(d);
  }
  out.size = next;
  return out as { readonly [K in keyof Defs]: number } & { readonly size: number };
})();

/** Slots of a block. */
export const STATS_SLOTS = Slot.size;

/** Bytes of a block: the counters, then the per-upstream region (src/engine/upstream-stats.ts). */
const BLOCK_BYTES = (STATS_SLOTS + UPSTREAM_REGION) * 8;

/** Offsets inside the latency histogram's slots. */
const LAT_SUM = LATENCY_BUCKETS.length;
const LAT_COUNT = LATENCY_BUCKETS.length + 1;

export interface LatencySnapshot {
  buckets: readonly number[];
  /** Per bucket, not cumulative; samples above the last bound are only in count. */
  counts: number[];
  sum: number;
  count: number;
}

/** One host's counters. */
export class StatsBlock {
  readonly v: Float64Array;
  /** This host's per-upstream figures, after the counters (src/engine/upstream-stats.ts). */
  readonly upstreams: Float64Array;

  /** Over `buffer` (a worker's, shared with the main thread), or a fresh private one. */
  constructor(buffer?: SharedArrayBuffer | ArrayBuffer) {
    const b = buffer ?? new SharedArrayBuffer(BLOCK_BYTES);
    this.v = new Float64Array(b, 0, STATS_SLOTS);
    this.upstreams = new Float64Array(b, STATS_SLOTS * 8, UPSTREAM_REGION);
  }

  get buffer(): SharedArrayBuffer | ArrayBuffer {
    return this.v.buffer;
  }

  get(name: CounterName): number {
    return this.v[Slot[name]]!;
  }

  set(name: CounterName, value: number): void {
    this.v[Slot[name]] = value;
  }

  add(name: CounterName, n = 1): void {
    this.v[Slot[name]]! += n;
  }

  /** The values of a vector counter, by index. */
  vector(name: VectorName): number[] {
    const s = Slot[name];
    return Array.from(this.v.subarray(s, s + COUNTERS[name].values.length));
  }

  /** Counts one reply by the RCODE index (0..15, RCODE_BADVERS_SLOT). */
  countRcode(i: number): void {
    this.v[Slot.rcodes + i]! += 1;
  }

  observeLatency(sec: number): void {
    const v = this.v;
    const s = Slot.latency;
    v[s + LAT_SUM]! += sec;
    v[s + LAT_COUNT]! += 1;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
      if (sec <= LATENCY_BUCKETS[i]!) {
        v[s + i]! += 1;
        return;
      }
    }
  }

  latency(): LatencySnapshot {
    const s = Slot.latency;
    return {
      buckets: LATENCY_BUCKETS,
      counts: Array.from(this.v.subarray(s, s + LATENCY_BUCKETS.length)),
      sum: this.v[s + LAT_SUM]!,
      count: this.v[s + LAT_COUNT]!,
    };
  }

  /** Slot-wise sum of several blocks (every engine host of the process). */
  static sum(blocks: readonly StatsBlock[]): StatsBlock {
    const out = new StatsBlock(new ArrayBuffer(BLOCK_BYTES));
    for (const b of blocks) for (let i = 0; i < STATS_SLOTS; i++) out.v[i]! += b.v[i]!;
    return out;
  }
}
