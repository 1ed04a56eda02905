/**
 * The answer cache every thread shares (SharedCache), the per-engine DnsCache it replaced
 * (kept as the benchmarks' reference), the promotion policy into the XDP hot map, and the clock.
 */
export { type Clock, monotonicNs } from './clock.js';
export { SlruLists, SEG_NONE, SEG_PROBATION, SEG_PROTECTED } from './slru.js';
export { DnsCache, ENTRY_OVERHEAD_BYTES, entryBytes, type CacheOptions, type CacheStats } from './cache.js';
export { SharedCache, sharedCacheBytes, type SharedCacheLayout, type SharedCacheOptions, type SharedCacheStats } from './shared-cache.js';
export {
  PromotionPolicy,
  type CacheHandle,
  type CacheObserver,
  type DemoteReason,
  type PromotionEvent,
  type PromotionOptions,
} from '../hot/promotion.js';
