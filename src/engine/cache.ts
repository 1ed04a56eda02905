/**
 * The answer cache: CachedAnswers indexed by key bytes, ordered by an SLRU,
 * bounded by entries and by bytes, TTL-aware, with optional serve-stale
 * (RFC 8767, off by default).
 *
 * Lookups take the key in a caller buffer (as MessageView.writeKey fills
 * it) and allocate nothing: the index is a chained hash table over slot
 * numbers in typed arrays, hashed with FNV-1a and compared byte by byte.
 * Expired entries are dropped when they are looked up or swept, or kept for
 * the stale window when serve-stale is on.
 */
import {
  type CachedAnswer,
  type TtlPolicy,
  NS_PER_SEC,
  answerFromResponse,
  answerPayloadBytes,
  resolveTtlPolicy,
} from '../dns/answer.js';
import { keyEquals, keyHash } from '../dns/key.js';
import { type Clock, monotonicNs } from './clock.js';
import type { CacheObserver } from '../hot/promotion.js';
import { SlruLists } from './slru.js';

/**
 * Memory one entry costs beyond its typed-array payload: the CachedAnswer
 * object (~100 B), its four typed-array views and their ArrayBuffer
 * (~530 B) and the cache's per-slot index arrays (~45 B), rounded up.
 * Measured by scripts/bench/core.ts (see docs/CORE.md).
 */
export const ENTRY_OVERHEAD_BYTES = 700;

/** Bytes an answer is charged against maxBytes. */
export function entryBytes(a: CachedAnswer): number {
  return answerPayloadBytes(a) + ENTRY_OVERHEAD_BYTES;
}

export interface CacheOptions {
  /** Most entries held. */
  maxEntries: number;
  /** Most bytes held, as counted by entryBytes (default: 1 KiB per entry). */
  maxBytes?: number;
  /** Share of entries for the protected segment (default 0.8; 0 makes a plain LRU). */
  protectedRatio?: number;
  /** TTL rules used by insertResponse. */
  ttl?: Partial<TtlPolicy>;
  /** Keep expired entries for getStale (RFC 8767); default false. */
  serveStale?: boolean;
  /** How long after expiry an entry may still be served stale, seconds (default 86400). */
  staleMaxSec?: number;
  clock?: Clock;
  /** Told about inserts, hits, replacements and removals (the promotion policy). */
  observer?: CacheObserver;
}

export interface CacheStats {
  hits: number;
  misses: number;
  staleHits: number;
  inserts: number;
  replacements: number;
  evictions: number;
  expirations: number;
  rejected: number;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export class DnsCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly serveStale: boolean;
  readonly staleMaxNs: number;
  readonly ttlPolicy: TtlPolicy;
  readonly clock: Clock;
  readonly lists: SlruLists;
  readonly observer: CacheObserver | undefined;

  private readonly mask: number;
  private readonly buckets: Int32Array;
  private readonly chain: Int32Array;
  private readonly hashes: Uint32Array;
  private readonly hitCounts: Uint32Array;
  private readonly sizes: Uint32Array;
  private readonly answers: (CachedAnswer | undefined)[];
  /** Per slot: the answer's expiresNs, Infinity when empty. The sweep reads this array
   *  instead of following 4,096 answer pointers (cache misses) every tick. */
  private readonly expires: Float64Array;
  private readonly free: Int32Array;
  private freeTop: number;
  private sweepCursor = 0;

  private count = 0;
  private byteCount = 0;
  readonly stats: CacheStats = {
    hits: 0,
    misses: 0,
    staleHits: 0,
    inserts: 0,
    replacements: 0,
    evictions: 0,
    expirations: 0,
    rejected: 0,
  };

  constructor(opts: CacheOptions) {
    const n = opts.maxEntries;
    if (!(Number.isInteger(n) && n > 0 && n < 2 ** 30)) throw new RangeError(`maxEntries ${n}`);
    this.maxEntries = n;
    this.maxBytes = opts.maxBytes ?? n * 1024;
    if (!(this.maxBytes > 0)) throw new RangeError(`maxBytes ${this.maxBytes}`);
    this.serveStale = opts.serveStale ?? false;
    this.staleMaxNs = (opts.staleMaxSec ?? 86_400) * NS_PER_SEC;
    this.ttlPolicy = resolveTtlPolicy(opts.ttl);
    this.clock = opts.clock ?? monotonicNs;
    this.observer = opts.observer;
    this.lists = new SlruLists(n, opts.protectedRatio ?? 0.8);
    const nb = nextPow2(n * 2);
    this.mask = nb - 1;
    this.buckets = new Int32Array(nb).fill(-1);
    this.chain = new Int32Array(n).fill(-1);
    this.hashes = new Uint32Array(n);
    this.hitCounts = new Uint32Array(n);
    this.sizes = new Uint32Array(n);
    this.answers = new Array<CachedAnswer | undefined>(n).fill(undefined);
    this.expires = new Float64Array(n).fill(Infinity);
    this.free = new Int32Array(n);
    for (let i = 0; i < n; i++) this.free[i] = n - 1 - i;
    this.freeTop = n;
    if (this.observer?.bindCache !== undefined) {
      this.observer.bindCache({ touch: (s, hits) => this.touchSlot(s, hits), find: (key) => this.find(key, key.length) });
    }
  }

  /** Uses of a slot that were served elsewhere (the XDP hot map). */
  private touchSlot(s: number, hits: number): void {
    if (this.answers[s] === undefined) return;
    this.hitCounts[s] = this.hitCounts[s]! + hits;
    this.lists.touch(s);
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.byteCount;
  }

  /** Slot of a key, or -1. */
  find(key: Uint8Array, len: number, hash: number = keyHash(key, 0, len)): number {
    for (let s = this.buckets[hash & this.mask]!; s >= 0; s = this.chain[s]!) {
      if (this.hashes[s] === hash && keyEquals(this.answers[s]!.key, key, 0, len)) return s;
    }
    return -1;
  }

  /**
   * Fresh answer for the key in key[0, len), or undefined. Counts a hit
   * (SLRU, hit count, observer) or a miss. An expired entry is dropped here
   * unless serve-stale keeps it for getStale. `asks`: how often the name has been
   * asked on every engine (src/hot/asks.ts); the observer sees the larger of that and
   * this cache's own hit count, so "asked for the third time" holds however queries
   * were spread over the workers.
   */
  get(key: Uint8Array, len: number, nowNs: number = this.clock(), hash: number = keyHash(key, 0, len), asks = 0): CachedAnswer | undefined {
    const s = this.find(key, len, hash);
    if (s < 0) {
      this.stats.misses++;
      return undefined;
    }
    const a = this.answers[s]!;
    if (nowNs >= a.expiresNs) {
      if (!this.serveStale || nowNs >= a.expiresNs + this.staleMaxNs || nowNs >= (a.signaturesExpireNs ?? Infinity)) this.removeSlot(s, 'expired');
      this.stats.misses++;
      return undefined;
    }
    const hits = this.hitCounts[s]! + 1;
    this.hitCounts[s] = hits;
    this.stats.hits++;
    this.lists.touch(s);
    if (this.observer !== undefined) this.observer.onHit(s, a, hits > asks ? hits : asks, nowNs);
    return a;
  }

  /**
   * An answer that may be past its expiry, within the stale window, for use
   * when the upstream cannot be reached (RFC 8767). Undefined when
   * serve-stale is off or nothing usable is held. Fresh entries are returned too.
   */
  getStale(key: Uint8Array, len: number, nowNs: number = this.clock()): CachedAnswer | undefined {
    if (!this.serveStale) return undefined;
    const s = this.find(key, len);
    if (s < 0) return undefined;
    const a = this.answers[s]!;
    if (nowNs >= a.expiresNs + this.staleMaxNs || (nowNs >= a.expiresNs && nowNs >= (a.signaturesExpireNs ?? Infinity))) {
      this.removeSlot(s, 'expired');
      return undefined;
    }
    if (nowNs >= a.expiresNs) this.stats.staleHits++;
    return a;
  }

  /** The entry for a key without counting a hit or checking expiry. */
  peek(key: Uint8Array, len: number = key.length): CachedAnswer | undefined {
    const s = this.find(key, len);
    return s < 0 ? undefined : this.answers[s];
  }

  /** Hits counted on the key's current entry (0 when absent). */
  hitCount(key: Uint8Array, len: number = key.length): number {
    const s = this.find(key, len);
    return s < 0 ? 0 : this.hitCounts[s]!;
  }

  /**
   * Stores an answer under answer.key, replacing any entry for that key
   * (the hit count is kept). Evicts from the SLRU until the entry and byte
   * bounds hold. Returns the slot, or -1 if the answer alone is over maxBytes.
   * `asks`: as for get(), the asks of the query that fetched this answer.
   */
  insert(answer: CachedAnswer, nowNs: number = this.clock(), asks = 0): number {
    const key = answer.key;
    const len = key.length;
    const hash = keyHash(key, 0, len);
    const size = entryBytes(answer);
    if (size > this.maxBytes) {
      this.stats.rejected++;
      return -1;
    }
    let s = this.find(key, len, hash);
    if (s >= 0) {
      const old = this.answers[s]!;
      this.byteCount += size - this.sizes[s]!;
      this.sizes[s] = size;
      this.answers[s] = answer;
      this.expires[s] = answer.expiresNs;
      this.lists.refresh(s);
      this.stats.replacements++;
      if (this.observer !== undefined) this.observer.onReplace(s, old, answer, nowNs);
      while (this.byteCount > this.maxBytes) {
        const v = this.victimExcept(s);
        if (v < 0) break;
        this.removeSlot(v, 'evicted');
      }
      return s;
    }
    while (this.count >= this.maxEntries || this.byteCount + size > this.maxBytes) {
      const v = this.lists.victim();
      if (v < 0) break;
      this.removeSlot(v, 'evicted');
    }
    s = this.free[--this.freeTop]!;
    const b = hash & this.mask;
    this.chain[s] = this.buckets[b]!;
    this.buckets[b] = s;
    this.hashes[s] = hash;
    this.answers[s] = answer;
    this.expires[s] = answer.expiresNs;
    this.sizes[s] = size;
    this.hitCounts[s] = 0;
    this.count++;
    this.byteCount += size;
    this.lists.insert(s);
    this.stats.inserts++;
    if (this.observer !== undefined) this.observer.onInsert(s, answer, nowNs, asks);
    return s;
  }

  /** answerFromResponse with this cache's TTL policy, then insert. Throws DnsError. */
  insertResponse(msg: Uint8Array, nowNs: number = this.clock(), dnssecOk?: boolean, asks = 0): CachedAnswer {
    const a = answerFromResponse(msg, nowNs, this.ttlPolicy, dnssecOk);
    this.insert(a, nowNs, asks);
    return a;
  }

  /** Removes the key's entry; true if there was one. Reported to the observer as an eviction. */
  delete(key: Uint8Array, len: number = key.length): boolean {
    const s = this.find(key, len);
    if (s < 0) return false;
    this.removeSlot(s, 'evicted');
    return true;
  }

  clear(): void {
    for (let s = 0; s < this.maxEntries; s++) if (this.answers[s] !== undefined) this.removeSlot(s, 'evicted');
  }

  /**
   * Drops up to `budget` slots' worth of entries that are past expiry (and
   * past the stale window when serve-stale is on), resuming where the last
   * sweep stopped. Returns how many were removed.
   */
  sweep(nowNs: number = this.clock(), budget: number = this.maxEntries): number {
    let removed = 0;
    const limit = nowNs - (this.serveStale ? this.staleMaxNs : 0);
    const exp = this.expires;
    for (let i = 0; i < budget && i < this.maxEntries; i++) {
      const s = this.sweepCursor;
      this.sweepCursor = s + 1 === this.maxEntries ? 0 : s + 1;
      // Past its signatures too, an expired entry is of no use even stale.
      if (limit >= exp[s]! || (nowNs >= exp[s]! && nowNs >= (this.answers[s]?.signaturesExpireNs ?? Infinity))) {
        this.removeSlot(s, 'expired');
        removed++;
      }
    }
    return removed;
  }

  /** Entries from the next victim to the most protected (tests and tools). */
  entriesInEvictionOrder(): CachedAnswer[] {
    return this.lists.order().map((s) => this.answers[s]!);
  }

  /** Segment of a key's entry: 'probation', 'protected', or undefined. */
  segmentOf(key: Uint8Array): 'probation' | 'protected' | undefined {
    const s = this.find(key, key.length);
    if (s < 0) return undefined;
    return this.lists.seg[s] === 2 ? 'protected' : 'probation';
  }

  private victimExcept(keep: number): number {
    for (let s = this.lists.probTail; s >= 0; s = this.lists.prev[s]!) if (s !== keep) return s;
    for (let s = this.lists.protTail; s >= 0; s = this.lists.prev[s]!) if (s !== keep) return s;
    return -1;
  }

  private removeSlot(s: number, reason: 'evicted' | 'expired'): void {
    const a = this.answers[s]!;
    const b = this.hashes[s]! & this.mask;
    let p = this.buckets[b]!;
    if (p === s) {
      this.buckets[b] = this.chain[s]!;
    } else {
      while (this.chain[p]! !== s) p = this.chain[p]!;
      this.chain[p] = this.chain[s]!;
    }
    this.chain[s] = -1;
    this.lists.remove(s);
    this.answers[s] = undefined;
    this.expires[s] = Infinity;
    this.byteCount -= this.sizes[s]!;
    this.sizes[s] = 0;
    this.hitCounts[s] = 0;
    this.count--;
    this.free[this.freeTop++] = s;
    if (reason === 'evicted') this.stats.evictions++;
    else this.stats.expirations++;
    if (this.observer !== undefined) this.observer.onRemove(s, a, reason);
  }
}
