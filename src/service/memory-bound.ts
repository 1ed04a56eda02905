/**
 * The memory the configured limits allow: the formula of docs/LIMITS.md as code, so the
 * lab flood test checks the measured peak RSS against the bound of the very
 * configuration it runs. Constants are measured on this project's machine (Node 20,
 * x86-64); docs/LIMITS.md says how.
 *
 *   RSS <= PROCESS_BASE + isolates × ISOLATE_SLACK + workers × UMEM
 *          + the shared cache (metadata + arena: SharedArrayBuffers, no GC factor)
 *          + the promotion policy's per-slot arrays + the ask and fetch tables
 *          + the in-flight budget with its per-network counters (one row per engine)
 *          + GC_FACTOR × HOT_ENTRY × hot-size (the main thread's copy of each hot answer)
 *          + GC_FACTOR × Σ_engines (TCP pool)
 *          + GC_FACTOR × (FLIGHT × questions in flight + WAITER × queries waiting)
 *          + kernel TCP clients × TCP_CLIENT + GC_FACTOR × TCP queries in flight × TCP_QUERY
 *          + GC_FACTOR × (TCP replies written and not taken by the kernel, one reply over)
 */
import type { HeimdallConfig } from '../config.js';
import { sharedCacheBytes } from '../engine/shared-cache.js';
import { ASK_TABLE_BITS } from '../hot/asks.js';
import { fetchTableBytes, fetchTableCapacity } from '../upstream/fetch-table.js';
import { sharedInflightBytes } from '../upstream/budget.js';
import { TCP_MAX_INFLIGHT, TCP_MAX_UNSENT } from '../io/tcp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Node, the addon, libbpf and the main isolate at rest (idle RSS with 2 workers: 121 MiB). */
export const PROCESS_BASE = 64 * MiB;
/** Per isolate (main thread and each worker): its base heap plus the young generation
 *  (up to 3 × 16 MiB semi-spaces) and old-space growth headroom under load. */
export const ISOLATE_SLACK = 64 * MiB;
/** Live heap is at most this share of the heap the isolate keeps between major GCs. */
export const GC_FACTOR = 2;
/** A question in flight: the flight, two UDP sockets (JS objects and libuv handles),
 *  timers, the query copy (measured 24.3 KiB RSS, 10.6 KiB heap, with 4 waiters). */
export const FLIGHT_BYTES = 24 * KiB;
/**
 * A query waiting on a question (on the forwarder's, or on another thread's fetch): its
 * promise and closure, and its reply buffer: a frame's 2 KiB on the AF_XDP path, the
 * longest UDP reply (4 KiB, src/io/udp.ts) on the kernel's.
 */
export const WAITER_BYTES = 6 * KiB;
/**
 * Queries the kernel TCP listener lets wait at once (src/io/tcp.ts maxInflight), each with a
 * 64 KiB reply buffer; a reply held for want of write room is still one of them.
 */
export const TCP_QUERY_BYTES = 64 * KiB;
/**
 * Replies the kernel TCP listener has written and the kernel not yet taken, over all
 * connections (src/io/tcp.ts maxUnsentBytes), passed by one reply at most. The kernel's own
 * socket buffers are not in RSS (docs/LIMITS.md).
 */
export const TCP_UNSENT_BYTES = TCP_MAX_UNSENT + 64 * KiB;
/** An upstream TCP connection: a read buffer of one message at most, and pipelined queries. */
export const UPSTREAM_TCP_CONN_BYTES = 64 * KiB;
export const UPSTREAM_TCP_QUERY_BYTES = 1 * KiB;
/** A kernel TCP client connection: socket objects and its read buffer (the listener's own bounds); its unsent replies are TCP_UNSENT_BYTES's. */
export const TCP_CLIENT_BYTES = 64 * KiB;
/**
 * The promotion policy's arrays, per cache slot (src/hot/promotion.ts, shared-promotion.ts):
 * heat, pending, pendingAt and hot expiry (Float64), heap position and last seen write
 * (Int32), the hot answer's reference (8) and a known flag (1).
 */
export const POLICY_SLOT_BYTES = 49;
/**
 * A hot entry on the main thread: the policy's copy of its answer, HotSync's and FastPath's
 * map entries, the prefetcher's schedule item. Measured 1,547-1,577 B of heap per entry
 * (20,000 and 80,000 hot two-record answers, after a full GC); taken as 2 KiB.
 */
export const HOT_ENTRY_BYTES = 2 * KiB;
/** AF_XDP UMEM per worker: frameCount × frameSize of src/service/worker.ts. */
export const UMEM_BYTES = 4096 * 2048;

export interface MemoryBound {
  total: number;
  parts: Record<'base' | 'isolates' | 'umem' | 'caches' | 'policy' | 'hot' | 'upstreamTcp' | 'inflight' | 'waiting' | 'tcpClients' | 'tcpQueries', number>;
}

/** The bound, in bytes, for `cfg` with `tcpClients` kernel TCP connections at most. */
export function memoryBound(cfg: HeimdallConfig, tcpClients = 1000): MemoryBound {
  const workers = cfg.afXdp ? cfg.queues : 0;
  const engines = 1 + workers;
  const e = cfg.workerEngine;
  const inflight = Math.min(cfg.upstreamInflightTotal, engines * e.upstreamInflight);
  // The forwarder's maxWaiting default (4 × in-flight), and as many again waiting on another
  // thread's fetch of the name (src/engine/host.ts maxTableWaiting).
  const waiting = engines * 2 * 4 * e.upstreamInflight;
  const tcpPool = cfg.upstreams.length * e.upstreamTcpConns * (UPSTREAM_TCP_CONN_BYTES + e.upstreamTcpPipeline * UPSTREAM_TCP_QUERY_BYTES);
  const parts = {
    base: PROCESS_BASE,
    isolates: engines * ISOLATE_SLACK,
    umem: workers * UMEM_BYTES,
    caches: sharedCacheBytes(cfg.cacheSize, cfg.cacheBytes),
    // Slots are the cache's entries rounded up to whole shards: cacheSize is close enough.
    policy: cfg.cacheSize * POLICY_SLOT_BYTES + (4 << ASK_TABLE_BITS) + fetchTableBytes(fetchTableCapacity(cfg.upstreamInflightTotal)) + sharedInflightBytes(cfg.upstreamInflightTotal, engines),
    hot: GC_FACTOR * cfg.hotSize * HOT_ENTRY_BYTES,
    upstreamTcp: GC_FACTOR * engines * tcpPool,
    inflight: GC_FACTOR * inflight * FLIGHT_BYTES,
    waiting: GC_FACTOR * waiting * WAITER_BYTES,
    tcpClients: tcpClients * TCP_CLIENT_BYTES,
    tcpQueries: GC_FACTOR * (TCP_MAX_INFLIGHT * TCP_QUERY_BYTES + TCP_UNSENT_BYTES),
  };
  return { total: Object.values(parts).reduce((a, b) => a + b, 0), parts };
}
