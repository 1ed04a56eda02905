/**
 * The protocol between the main thread and the AF_XDP workers: what a worker is started
 * with and the messages both ways, in one place. Counters do not travel as messages: a
 * worker's EngineHost writes them into its StatsBlock, over a SharedArrayBuffer the main
 * thread reads at scrape time (src/engine/stats.ts).
 */
import type { EngineConfig } from '../config.js';
import type { EdgeSetup } from '../edge/policy.js';
import type { SharedCacheLayout } from '../engine/shared-cache.js';
import type { UpstreamAddr } from '../upstream/upstream.js';
import type { EngineRequest } from './cache-control.js';

/** workerData of a worker. */
export interface WorkerInit {
  /** Engine id: 1..queues (0 is the main thread's engine). */
  id: number;
  iface: string;
  queue: number;
  xsksMapFd: number;
  /** The edge policy: access lists and the shared rate-limit buckets. */
  edge: EdgeSetup;
  upstreams: readonly UpstreamAddr[];
  engine: EngineConfig;
  /** AskCounter.buffer: ask counts shared by every engine. */
  asks: SharedArrayBuffer;
  /** StatsBlock.buffer: this worker's counters. */
  stats: SharedArrayBuffer;
  /** SharedInflight.buffer: the process-wide budget of questions in flight upstream. */
  inflight: SharedArrayBuffer;
  /** SharedCache.layout: the one cache of the process. */
  cache: SharedCacheLayout;
  /** FetchTable.buffer: the fetches in flight of every engine. */
  fetches: SharedArrayBuffer;
}

export type ToWorker =
  /** A reload: what may change while running (src/service/reload.ts). Answered with 'reloaded'. */
  | { type: 'reload'; seq: number; change: LiveChange }
  /** A control request for the engine (src/service/cache-control.ts). Answered with 'controlReply'. */
  | { type: 'control'; seq: number; req: EngineRequest }
  | { type: 'stop' };

/** The settings a reload changes in a running engine thread. */
export interface LiveChange {
  edge: EdgeSetup;
  upstreams: readonly UpstreamAddr[];
  promoteAfter: number;
}

export type FromWorker =
  | { type: 'ready'; mode: 'copy' | 'zerocopy' }
  /**
   * Cache slots whose uses reached the promotion threshold, as (slot, write seq) pairs
   * (src/hot/shared-promotion.ts): those of one batch of queries in one message.
   */
  | { type: 'candidates'; pairs: number[] }
  | { type: 'reloaded'; seq: number }
  | { type: 'controlReply'; seq: number; value: unknown }
  /** The upstreams this worker's forwarder now holds down (sent when that changes). */
  | { type: 'health'; down: string[] }
  | { type: 'fatal'; message: string }
  | { type: 'stopped' };
