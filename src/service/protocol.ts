/**
 * The protocol between the main thread and the AF_XDP workers: the messages, in one
 * place, and the slots of the shared counter array each worker publishes.
 */
import type { CachedAnswer } from '../dns/answer.js';
import type { DemoteReason } from '../hot/promotion.js';
import type { UpstreamAddr } from '../upstream/upstream.js';

export interface WorkerEngineOptions {
  cacheSize: number;
  hotCapacity: number;
  promoteAfter: number;
  udpSize: number;
  serveStale: boolean;
}

/** workerData of a worker. */
export interface WorkerInit {
  id: number;
  iface: string;
  queue: number;
  xsksMapFd: number;
  upstreams: UpstreamAddr[];
  engine: WorkerEngineOptions;
  /** AskCounter.buffer: ask counts shared by every engine. */
  asks: SharedArrayBuffer;
  /** Float64Array over it, indexed by Slot. */
  counters: SharedArrayBuffer;
}

export type ToWorker =
  | { type: 'kernelHits'; items: { key: Uint8Array; hits: number }[] }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; mode: 'copy' | 'zerocopy' }
  | { type: 'promote'; answer: CachedAnswer }
  | { type: 'demote'; key: Uint8Array; reason: DemoteReason }
  | { type: 'fatal'; message: string }
  | { type: 'stopped' };

/** Slots of a worker's shared counters (engine counters, cache, frames, latency). */
export const Slot = {
  queries: 0,
  cacheHits: 1,
  upstreamAnswers: 2,
  servfail: 3,
  formerr: 4,
  dropped: 5,
  notimp: 6,
  badvers: 7,
  uncacheable: 8,
  staleServed: 9,
  cacheEntries: 10,
  framesInUse: 11,
  badFrames: 12,
  txFull: 13,
  latencySum: 14,
  latencyCount: 15,
  /** 17 slots: replies by RCODE (16 = BADVERS). */
  rcodes: 16,
  /** One slot per latency bucket (LATENCY_BUCKETS). */
  latencyBuckets: 33,
} as const;

export const COUNTER_SLOTS = 64;

export const ENGINE_COUNTER_NAMES = [
  'queries', 'cacheHits', 'upstreamAnswers', 'servfail', 'formerr', 'dropped', 'notimp', 'badvers', 'uncacheable', 'staleServed',
] as const;
