/** Answer cache (SLRU, TTL-aware), its promotion policy into the XDP hot map, and the clock. */
export { type Clock, monotonicNs } from './clock.js';
export { SlruLists, SEG_NONE, SEG_PROBATION, SEG_PROTECTED } from './slru.js';
export { DnsCache, ENTRY_OVERHEAD_BYTES, entryBytes, type CacheOptions, type CacheStats } from './cache.js';
export {
  PromotionPolicy,
  type CacheHandle,
  type CacheObserver,
  type DemoteReason,
  type PromotionEvent,
  type PromotionOptions,
} from '../hot/promotion.js';
