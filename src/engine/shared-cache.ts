/**
 * SharedCache: one answer cache for every thread of the process, in SharedArrayBuffers.
 * The main thread creates it (SharedCache.create) and hands `layout` to each AF_XDP
 * worker in its workerData; every thread builds a view over the same memory
 * (SharedCache.attach). docs/CORE.md ("Shared cache") gives the reasons; in short:
 *
 * - Entries: metadata in per-slot typed arrays; the DNS bytes (key, records, TTL
 *   offsets, TTLs) in one block of a byte arena, handed out by a buddy allocator
 *   (buddy.ts). The arena is the byte bound.
 * - Shards by key hash: each shard owns a range of slots, a range of hash buckets, an
 *   SLRU, a region of the arena and its share of the entry and byte bounds, behind one
 *   lock word. A writer takes one shard's lock, for a few microseconds.
 * - Reads take no lock: a per-slot sequence number (seqlock) is even when the slot is
 *   stable and odd while a writer changes it; a reader copies the reply into its frame
 *   and keeps it only if the number did not change meanwhile. A hit is an Atomics.add
 *   on the slot's counter and nothing else; the SLRU move from probation to protected
 *   happens lazily, when the writer meets the slot at the LRU end of a segment (a slot
 *   hit since it was last looked at gets a second chance instead of being evicted).
 * - Kill safety: a lock word holds its owner's thread id. A thread can be terminated at
 *   any instruction; when the pool sees a worker exit, recover(threadId) resets every
 *   shard that thread held (its entries are dropped, its region emptied, its lock
 *   freed). A reset bumps every slot's sequence number, so no reader keeps a reply
 *   copied from a half-written entry. Writers never wait for a lock without bound: a
 *   write that cannot get its shard's lock soon is skipped and counted (`busy`).
 *
 * Limits: entries and bytes are split evenly over the shards, so a shard that hashing
 * fills first evicts a little before the global bound is reached.
 */
import { threadId } from 'node:worker_threads';
import { type CachedAnswer, type TtlPolicy, NS_PER_SEC, answerFromResponse, resolveTtlPolicy } from '../dns/answer.js';
import { HEADER_LEN, KEY_DO, OPT_RR_LEN } from '../dns/constants.js';
import { DnsError, DnsErrorCode } from '../dns/errors.js';
import { keyHash, recordHashKey, useHashKey } from '../dns/key.js';
import { writeOpt } from '../dns/opt.js';
import { type ReplyOptions, replyLimit, writeAnswerHead, writeReply } from '../dns/reply.js';
import type { MessageView } from '../dns/view.js';
import { BuddyRegions, MAX_ORDER, UNIT, orderFor } from './buddy.js';
import { monotonicNs } from './clock.js';

// ---- layout ---------------------------------------------------------------------------

/** What a thread needs to attach: structured-clonable, for workerData. */
export interface SharedCacheLayout {
  meta: SharedArrayBuffer;
  arena: SharedArrayBuffer;
}

export interface SharedCacheOptions {
  /** Most entries held (slots are allocated for exactly this many). */
  maxEntries: number;
  /** Arena bytes: the DNS data of every entry (default 512 per entry). */
  maxBytes?: number;
  /** Shards (a power of two); default from maxEntries, 1 to 64. */
  shards?: number;
  /** Share of each shard's entries for the protected segment (default 0.8; 0 = LRU). */
  protectedRatio?: number;
  ttl?: Partial<TtlPolicy>;
  serveStale?: boolean;
  /** How long after expiry an entry may still be served stale, seconds (default 86400). */
  staleMaxSec?: number;
  /** Uses (the insert and its hits) at which a slot is reported to onThreshold (default 3). */
  threshold?: number;
}

const MAGIC = 0x53484331; // "SHC1"

// Global header words.
const G_MAGIC = 0;
const G_ENTRIES = 1;
const G_SHARDS = 2;
const G_PER = 3; // slots per shard
const G_BPS = 4; // buckets per shard
const G_TOP = 5; // buddy top order
const G_REGION = 6; // arena units per shard
const G_MIN_TTL = 7;
const G_MAX_TTL = 8;
const G_NEG_MAX_TTL = 9;
const G_SERVFAIL_TTL = 10;
const G_SERVE_STALE = 11;
const G_STALE_MAX = 12;
const G_THRESHOLD = 13;
const G_PROT_PERMILLE = 14;
const G_BYTES_LO = 15; // maxBytes as configured (the arena is that, rounded down per shard)
const G_BYTES_HI = 16;
const G_HASH_K0 = 17; // the creator's keyHash key, adopted by every view (src/dns/key.ts)
const G_HASH_K1 = 18;
/**
 * Bumped by every removal an operator asks for (delete, clearShards) before it removes
 * anything. A fetch notes it when it asks the upstream and hands it to insert(), which
 * drops the answer under the shard's lock if a flush came in between: an answer asked for
 * before `flush NAME` must not put the flushed data back, into the cache or, through a
 * promotion or a prefetch's rewrite, into the XDP map.
 */
const G_FLUSH_GEN = 19;
const G_WORDS = 20;

// Shard header words (48 words = 3 cache lines, so shards do not share a line).
const S_LOCK = 0;
const S_COUNT = 1;
const S_UNITS = 2; // arena units in use
const S_PROB_HEAD = 3;
const S_PROB_TAIL = 4;
const S_PROT_HEAD = 5;
const S_PROT_TAIL = 6;
const S_PROB_COUNT = 7;
const S_PROT_COUNT = 8;
const S_FREE = 9; // first free slot (linked through chain)
const S_LIMIT_ENTRIES = 11;
const S_LIMIT_UNITS = 12;
const S_PROT_CAP = 13;
const S_INSERTS = 14;
const S_REPLACEMENTS = 15;
const S_EVICTIONS = 16;
const S_EXPIRATIONS = 17;
const S_REJECTED = 18;
const S_BUSY = 19;
const S_RESETS = 20;
const S_HEADS = 24; // MAX_ORDER + 1 free-list heads
const S_WORDS = 48;

/** Header sizes in 32-bit words: the global header, then one per shard, then the slots' seq array (tests reach into them). */
export const HEADER_WORDS = { global: G_WORDS, shard: S_WORDS } as const;

const SEG_NONE = 0;
const SEG_PROBATION = 1;
const SEG_PROTECTED = 2;

const F_AD = 0x10;
const F_NEGATIVE = 0x20;
const F_RCODE = 0x0f;

/** Promotion marks (per slot, `mark`): the policy holds it hot; a thread reported it since the policy's last tick. */
const M_HOT = 1;
const M_REPORTED = 2;

/** Chain steps a lock-free lookup takes before it calls the key absent. */
const MAX_CHAIN = 64;
/** Tries of a lock-free read whose slot changed under it. */
const READ_TRIES = 3;
/** Compare-and-swap attempts for a shard lock before a write is skipped. */
const LOCK_SPINS = 2048;

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function defaultShards(entries: number): number {
  let s = 1;
  while (s < 64 && s * 2 * 256 <= entries) s *= 2;
  return s;
}

/** The lock word of this thread: its threadId + 1 (0 is a free lock). */
const ME = threadId + 1;

export interface SharedCacheStats {
  inserts: number;
  replacements: number;
  evictions: number;
  expirations: number;
  rejected: number;
  /** Writes skipped because the shard's lock stayed taken. */
  busy: number;
  /** Shards reset after their lock holder died. */
  resets: number;
}

/** This thread's own counts of lookups (each thread publishes its own). */
export interface SharedCacheReads {
  hits: number;
  misses: number;
  staleHits: number;
  /** Lookups whose slot a writer changed under them and were read again. */
  retries: number;
}

export class SharedCache {
  readonly layout: SharedCacheLayout;
  readonly maxEntries: number;
  readonly shards: number;
  /** Slots per shard. */
  readonly per: number;
  private readonly shardMask: number;
  private readonly shardBits: number;
  private readonly bps: number;
  private readonly bucketMask: number;

  private readonly g: Int32Array;
  private readonly h: Int32Array;
  private readonly seq: Int32Array;
  private readonly hash: Int32Array;
  private readonly chain: Int32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly block: Int32Array;
  private readonly hits: Int32Array;
  private readonly seen: Int32Array;
  private readonly buckets: Int32Array;
  private readonly origin: Float64Array;
  private readonly expires: Float64Array;
  /** Per slot: when its earliest RRSIG expires (CachedAnswer.signaturesExpireNs), Infinity for none or empty. */
  private readonly sigEnd: Float64Array;
  private readonly keyLen: Uint16Array;
  private readonly recLen: Uint16Array;
  private readonly nrec: Uint16Array;
  private readonly an: Uint16Array;
  private readonly ns: Uint16Array;
  private readonly ar: Uint16Array;
  private readonly seg: Uint8Array;
  private readonly flags: Uint8Array;
  /** Per slot: M_HOT | M_REPORTED, so a slot past the threshold is reported at most once per policy tick. */
  private readonly mark: Uint8Array;
  private readonly arena: Uint8Array;
  /** The arena as a DataView: the hit path copies and reads it four bytes at a time. */
  private readonly arenaDv: DataView;
  /** A DataView over the buffer of the last `out` a reply was written to (a UMEM area is one buffer: made once). */
  private outBuf: ArrayBufferLike | undefined;
  private outDv: DataView = new DataView(new ArrayBuffer(0));
  private readonly buddy: BuddyRegions;
  private readonly regionUnits: number;
  readonly topOrder: number;

  /** Told when a slot's uses (insert + hits) reach the threshold: the promotion policy. */
  onThreshold: ((slot: number, seq: number) => void) | undefined;
  readonly reads: SharedCacheReads = { hits: 0, misses: 0, staleHits: 0, retries: 0 };
  /** Set by the last successful find(): the slot's sequence number then. */
  private foundSeq = 0;
  /** Where the next sweep starts (one thread sweeps: the main thread). */
  private sweepCursor = 0;

  /** Creates the memory and the first view (the main thread). */
  static create(o: SharedCacheOptions): SharedCache {
    const n = o.maxEntries;
    if (!(Number.isInteger(n) && n > 0 && n < 2 ** 30)) throw new RangeError(`maxEntries ${n}`);
    const shards = o.shards ?? defaultShards(n);
    if (!(Number.isInteger(shards) && shards >= 1 && (shards & (shards - 1)) === 0 && shards <= n)) throw new RangeError(`shards ${shards}`);
    const maxBytes = o.maxBytes ?? n * 512;
    const unitsPerShard = Math.floor(maxBytes / shards / UNIT);
    if (!(unitsPerShard >= 1)) throw new RangeError(`maxBytes ${maxBytes}: under ${UNIT} bytes per shard`);
    let top = 0;
    while (top < MAX_ORDER && 2 ** (top + 1) <= unitsPerShard) top++;
    const regionUnits = Math.floor(unitsPerShard / 2 ** top) * 2 ** top;
    const per = Math.ceil(n / shards);
    const bps = pow2AtLeast(per * 2);
    const sizes = metaSizes(shards, per, bps, regionUnits);
    const layout: SharedCacheLayout = {
      meta: new SharedArrayBuffer(sizes.total),
      arena: new SharedArrayBuffer(shards * regionUnits * UNIT),
    };
    const g = new Int32Array(layout.meta, 0, G_WORDS);
    g[G_ENTRIES] = n;
    g[G_SHARDS] = shards;
    g[G_PER] = per;
    g[G_BPS] = bps;
    g[G_TOP] = top;
    g[G_REGION] = regionUnits;
    g[G_STALE_MAX] = o.staleMaxSec ?? 86_400;
    g[G_THRESHOLD] = o.threshold ?? 3;
    const ratio = o.protectedRatio ?? 0.8;
    if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`protected ratio ${ratio}`);
    g[G_PROT_PERMILLE] = Math.round(ratio * 1000);
    g[G_BYTES_LO] = maxBytes % 2 ** 31;
    g[G_BYTES_HI] = Math.floor(maxBytes / 2 ** 31);
    [g[G_HASH_K0], g[G_HASH_K1]] = recordHashKey();
    const c = new SharedCache(layout, g);
    c.setTtlPolicy(o.ttl);
    c.setServeStale(o.serveStale ?? false);
    for (let s = 0; s < shards; s++) {
      c.h[s * S_WORDS + S_LIMIT_ENTRIES] = Math.floor(n / shards) + (s < n % shards ? 1 : 0);
      c.h[s * S_WORDS + S_LIMIT_UNITS] = regionUnits;
      c.resetShard(s);
    }
    c.setProtectedCaps();
    Atomics.store(g, G_MAGIC, MAGIC);
    return c;
  }

  /** A view of a cache another thread created. */
  static attach(layout: SharedCacheLayout): SharedCache {
    const g = new Int32Array(layout.meta, 0, G_WORDS);
    if (Atomics.load(g, G_MAGIC) !== MAGIC) throw new Error('shared cache memory is not initialised');
    useHashKey(g[G_HASH_K0]!, g[G_HASH_K1]!); // its buckets are where the creator's hashes put them
    return new SharedCache(layout, g);
  }

  private constructor(layout: SharedCacheLayout, g: Int32Array) {
    this.layout = layout;
    this.g = g;
    this.maxEntries = g[G_ENTRIES]!;
    this.shards = g[G_SHARDS]!;
    this.per = g[G_PER]!;
    this.bps = g[G_BPS]!;
    this.topOrder = g[G_TOP]!;
    this.regionUnits = g[G_REGION]!;
    this.shardMask = this.shards - 1;
    this.shardBits = Math.log2(this.shards);
    this.bucketMask = this.bps - 1;
    const m = layout.meta;
    const z = metaSizes(this.shards, this.per, this.bps, this.regionUnits);
    const slots = this.shards * this.per;
    this.h = new Int32Array(m, z.shardHeaders, this.shards * S_WORDS);
    const i32 = (k: number): Int32Array => new Int32Array(m, z.int32 + k * slots * 4, slots);
    this.seq = i32(0);
    this.hash = i32(1);
    this.chain = i32(2);
    this.prev = i32(3);
    this.next = i32(4);
    this.block = i32(5);
    this.hits = i32(6);
    this.seen = i32(7);
    this.buckets = new Int32Array(m, z.buckets, this.shards * this.bps);
    this.origin = new Float64Array(m, z.f64, slots);
    this.expires = new Float64Array(m, z.f64 + slots * 8, slots);
    this.sigEnd = new Float64Array(m, z.f64 + 2 * slots * 8, slots);
    const u16 = (k: number): Uint16Array => new Uint16Array(m, z.u16 + k * slots * 2, slots);
    this.keyLen = u16(0);
    this.recLen = u16(1);
    this.nrec = u16(2);
    this.an = u16(3);
    this.ns = u16(4);
    this.ar = u16(5);
    this.seg = new Uint8Array(m, z.u8, slots);
    this.flags = new Uint8Array(m, z.u8 + slots, slots);
    this.mark = new Uint8Array(m, z.u8 + 2 * slots, slots);
    const state = new Uint8Array(m, z.units, this.shards * this.regionUnits);
    this.arena = new Uint8Array(layout.arena);
    this.arenaDv = new DataView(layout.arena);
    this.buddy = new BuddyRegions(layout.arena, state, this.h, this.regionUnits, this.topOrder, (s) => s * S_WORDS + S_HEADS);
  }

  // ---- settings (any thread; the main thread's reload) ---------------------------------

  get ttlPolicy(): TtlPolicy {
    const g = this.g;
    return { minTtl: g[G_MIN_TTL]!, maxTtl: g[G_MAX_TTL]!, negativeMaxTtl: g[G_NEG_MAX_TTL]!, servfailTtl: g[G_SERVFAIL_TTL]! };
  }

  /** New TTL bounds: the next answers inserted follow them (entries held keep theirs). */
  setTtlPolicy(p?: Partial<TtlPolicy>): void {
    const r = resolveTtlPolicy(p);
    Atomics.store(this.g, G_MIN_TTL, r.minTtl);
    Atomics.store(this.g, G_MAX_TTL, r.maxTtl);
    Atomics.store(this.g, G_NEG_MAX_TTL, r.negativeMaxTtl);
    Atomics.store(this.g, G_SERVFAIL_TTL, r.servfailTtl);
  }

  get serveStale(): boolean {
    return this.g[G_SERVE_STALE] === 1;
  }

  setServeStale(on: boolean): void {
    Atomics.store(this.g, G_SERVE_STALE, on ? 1 : 0);
  }

  get staleMaxNs(): number {
    return this.g[G_STALE_MAX]! * NS_PER_SEC;
  }

  get threshold(): number {
    return this.g[G_THRESHOLD]!;
  }

  setThreshold(n: number): void {
    if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`threshold ${n}`);
    Atomics.store(this.g, G_THRESHOLD, n);
  }

  /** The byte bound configured at creation (the arena holds at most this). */
  get maxBytes(): number {
    return this.g[G_BYTES_HI]! * 2 ** 31 + this.g[G_BYTES_LO]!;
  }

  /** Arena bytes allocated at creation: the most maxBytes can be raised to without a restart. */
  get arenaBytes(): number {
    return this.shards * this.regionUnits * UNIT;
  }

  /** Entry and byte bounds now (at most what was allocated at creation). */
  get limits(): { maxEntries: number; maxBytes: number } {
    let e = 0;
    let u = 0;
    for (let s = 0; s < this.shards; s++) {
      e += this.h[s * S_WORDS + S_LIMIT_ENTRIES]!;
      u += this.h[s * S_WORDS + S_LIMIT_UNITS]!;
    }
    return { maxEntries: e, maxBytes: u * UNIT };
  }

  /**
   * New entry and byte bounds within what was allocated at creation (a reload): lower
   * ones evict down to them now. Throws RangeError beyond the allocation (that needs a
   * restart). Returns false if some shard stayed busy (locked past the
   * patient wait): that shard keeps its old bounds until a later call (the service tries
   * again at each upkeep until one returns true).
   */
  setLimits(maxEntries: number, maxBytes: number): boolean {
    if (!(Number.isInteger(maxEntries) && maxEntries >= this.shards && maxEntries <= this.maxEntries)) {
      throw new RangeError(`cache entries ${maxEntries}: between ${this.shards} and the ${this.maxEntries} allocated at start`);
    }
    if (!(maxBytes <= this.maxBytes)) throw new RangeError(`cache bytes ${maxBytes}: at most the ${this.maxBytes} allocated at start`);
    const units = Math.min(Math.floor(maxBytes / this.shards / UNIT), this.regionUnits);
    if (!(units >= 1)) throw new RangeError(`cache bytes ${maxBytes}: under ${UNIT} bytes per shard`);
    let all = true;
    for (let s = 0; s < this.shards; s++) {
      const o = s * S_WORDS;
      if (!this.lock(s, true)) {
        all = false;
        continue;
      }
      try {
        this.h[o + S_LIMIT_ENTRIES] = Math.floor(maxEntries / this.shards) + (s < maxEntries % this.shards ? 1 : 0);
        this.h[o + S_LIMIT_UNITS] = units;
        this.h[o + S_PROT_CAP] = Math.floor((this.h[o + S_LIMIT_ENTRIES]! * this.g[G_PROT_PERMILLE]!) / 1000);
        while (this.h[o + S_COUNT]! > this.h[o + S_LIMIT_ENTRIES]! || this.h[o + S_UNITS]! > units) {
          const v = this.victim(s);
          if (v < 0) break;
          this.removeSlot(s, v, S_EVICTIONS);
        }
      } catch (e) {
        this.resetShard(s);
        throw e;
      } finally {
        this.unlock(s);
      }
    }
    return all;
  }

  private setProtectedCaps(): void {
    for (let s = 0; s < this.shards; s++) {
      const o = s * S_WORDS;
      this.h[o + S_PROT_CAP] = Math.floor((this.h[o + S_LIMIT_ENTRIES]! * this.g[G_PROT_PERMILLE]!) / 1000);
    }
  }

  // ---- counts -----------------------------------------------------------------------

  get size(): number {
    let n = 0;
    for (let s = 0; s < this.shards; s++) n += this.h[s * S_WORDS + S_COUNT]!;
    return n;
  }

  /** Arena bytes held by entries (whole blocks). */
  get bytes(): number {
    let n = 0;
    for (let s = 0; s < this.shards; s++) n += this.h[s * S_WORDS + S_UNITS]!;
    return n * UNIT;
  }

  get stats(): SharedCacheStats {
    const sum = (w: number): number => {
      let n = 0;
      for (let s = 0; s < this.shards; s++) n += this.h[s * S_WORDS + w]!;
      return n;
    };
    return {
      inserts: sum(S_INSERTS),
      replacements: sum(S_REPLACEMENTS),
      evictions: sum(S_EVICTIONS),
      expirations: sum(S_EXPIRATIONS),
      rejected: sum(S_REJECTED),
      busy: sum(S_BUSY),
      resets: sum(S_RESETS),
    };
  }

  // ---- lock-free reads ----------------------------------------------------------------

  /**
   * The slot holding key[0, len), or -1. Takes no lock: the result may be stale by the
   * time it is used; callers that read the slot validate with seqOf(slot) === foundSeq.
   */
  find(key: Uint8Array, len: number, hash: number = keyHash(key, 0, len), revalidate = true): number {
    const sh = hash & this.shardMask;
    const seq = this.seq;
    const arena = this.arena;
    let s = this.buckets[sh * this.bps + ((hash >>> this.shardBits) & this.bucketMask)]!;
    for (let steps = 0; s >= 0 && steps < MAX_CHAIN; steps++) {
      if (this.hash[s] === hash) {
        const q = Atomics.load(seq, s);
        if ((q & 1) === 0 && this.keyLen[s] === len) {
          const b = this.block[s]! * UNIT;
          let i = 0;
          for (; i + 4 <= len; i += 4) {
            if (arena[b + i] !== key[i] || arena[b + i + 1] !== key[i + 1] || arena[b + i + 2] !== key[i + 2] || arena[b + i + 3] !== key[i + 3]) break;
          }
          while (i < len && arena[b + i] === key[i]) i++;
          // The reply path validates after its copy instead (revalidate false).
          if (i === len && (!revalidate || Atomics.load(seq, s) === q)) {
            this.foundSeq = q;
            return s;
          }
        }
      }
      s = this.chain[s]!;
    }
    return -1;
  }

  /** The slot's sequence number: changes whenever the slot is written. */
  seqOf(slot: number): number {
    return Atomics.load(this.seq, slot);
  }

  /** Uses so far of the entry in a slot: the insert (with the asks before it) and hits. */
  usesOf(slot: number): number {
    return Atomics.load(this.hits, slot) + 1;
  }

  /**
   * Claims the right to report a slot past the threshold: false when the policy holds it
   * hot or some thread reported it since the policy's last tick. One byte load on the
   * hit path of entries past the threshold, a compare-and-swap once per tick.
   */
  private claimReport(s: number): boolean {
    return Atomics.load(this.mark, s) === 0 && Atomics.compareExchange(this.mark, s, 0, M_REPORTED) === 0;
  }

  /** The policy's view (main thread): whether a slot is hot, so no thread reports it. */
  setHot(slot: number, hot: boolean): void {
    if (hot) Atomics.or(this.mark, slot, M_HOT);
    else Atomics.and(this.mark, slot, ~M_HOT & 0xff);
  }

  /** The policy's tick: a slot it did not promote may be reported again. */
  clearReported(slot: number): void {
    Atomics.and(this.mark, slot, ~M_REPORTED & 0xff);
  }

  /** Clears every report mark (the policy, now and then: a report lost with a dead worker is not lost for good). */
  clearAllReported(): void {
    const m = this.mark;
    for (let s = 0; s < m.length; s++) if ((m[s]! & M_REPORTED) !== 0) Atomics.and(m, s, ~M_REPORTED & 0xff);
  }

  /** Whether key[0, len) is held and fresh at nowNs (no hit counted). */
  has(key: Uint8Array, len: number, nowNs: number): boolean {
    for (let t = 0; t < READ_TRIES; t++) {
      const s = this.find(key, len);
      if (s < 0) return false;
      const q = this.foundSeq;
      const fresh = nowNs < this.expires[s]!;
      if (Atomics.load(this.seq, s) === q) return fresh;
    }
    return false;
  }

  /** When the entry for key[0, len) was answered and when it expires (monotonic ns), or undefined. */
  times(key: Uint8Array, len: number = key.length): { originNs: number; expiresNs: number; slot: number; seq: number } | undefined {
    for (let t = 0; t < READ_TRIES; t++) {
      const s = this.find(key, len);
      if (s < 0) return undefined;
      const q = this.foundSeq;
      const originNs = this.origin[s]!;
      const expiresNs = this.expires[s]!;
      if (Atomics.load(this.seq, s) === q) return { originNs, expiresNs, slot: s, seq: q };
    }
    return undefined;
  }

  /**
   * The hit path: writes the reply to `q` (whose key is key[0, len), hash `hash`) from
   * the cached entry into out at outOff and returns its length, or 0 on a miss (absent,
   * expired, or changed under every try before anything was written). -1: the entry
   * changed while its reply was being written and no later try found it: out holds a
   * partial reply, so a caller whose out is its query buffer has lost the query (it
   * answers SERVFAIL, which needs only the parsed view). Counts the hit on the slot. Allocates nothing
   * unless the reply must be truncated (then the entry is copied out first).
   * `stale`: also serve an expired entry within the stale window (RFC 8767), with TTLs
   * of at most opts.staleTtl (30 s). `asks`: as for insert().
   */
  reply(q: MessageView, key: Uint8Array, len: number, hash: number, nowNs: number, out: Uint8Array, outOff: number, opts: ReplyOptions, stale = false, asks = 0): number {
    let wrote = false;
    for (let t = 0; t < READ_TRIES; t++) {
      const s = this.find(key, len, hash, false);
      if (s < 0) break;
      const sq = this.foundSeq;
      const exp = this.expires[s]!;
      if (nowNs >= exp && (!stale || !this.serveStale || nowNs >= exp + this.staleMaxNs || nowNs >= this.sigEnd[s]!)) break;
      const n = this.writeFrom(s, sq, q, nowNs, out, outOff, opts);
      if (n > 0) {
        const uses = Atomics.add(this.hits, s, 1) + 2;
        if (stale) {
          if (nowNs >= exp) this.reads.staleHits++;
        } else {
          this.reads.hits++;
        }
        // The threshold counts uses of this entry, or asks of the name on every engine
        // (src/hot/asks.ts) when they were more: "asked for the third time" either way.
        const th = this.g[G_THRESHOLD]!;
        if ((uses >= th || asks >= th) && !stale && this.onThreshold !== undefined && this.claimReport(s)) this.onThreshold(s, sq);
        return n;
      }
      if (n < 0) wrote = true;
      this.reads.retries++;
    }
    if (!stale) this.reads.misses++;
    return wrote ? -1 : 0;
  }

  /**
   * Writes the reply from slot s as of sequence sq; 0 when the slot changed before
   * anything was written, -1 when it changed after (out holds a partial reply).
   */
  private writeFrom(s: number, sq: number, q: MessageView, nowNs: number, out: Uint8Array, outOff: number, opts: ReplyOptions): number {
    // Doubles are read here, not passed in: a double argument of a call that is not
    // inlined is boxed (a 16-byte allocation per hit, measured).
    const exp = this.expires[s]!;
    const klen = this.keyLen[s]!;
    const qlen = klen - 5;
    if (q.qnameLen !== qlen) return 0;
    let limit = replyLimit(q, opts);
    const room = out.length - outOff;
    if (room < limit) limit = room;
    const hasOpt = q.optPos >= 0;
    const fixed = HEADER_LEN + qlen + 4 + (hasOpt ? OPT_RR_LEN : 0);
    if (fixed > limit) throw new DnsError(DnsErrorCode.BUFFER_TOO_SMALL, -1, `need ${fixed}, have ${limit}`);
    const rl = this.recLen[s]!;
    if (fixed + rl > limit) {
      // Cut to whole RRsets: the cold path, over a copy of the entry.
      const a = this.answerAt(s, sq);
      if (a === undefined) return 0;
      return writeReply(q, a, nowNs, out, outOff, opts);
    }
    const n = this.nrec[s]!;
    const f = this.flags[s]!;
    const origin = this.origin[s]!;
    let p = writeAnswerHead(q, out, outOff, f & F_RCODE, (f & F_AD) !== 0, false, this.an[s]!, this.ns[s]!, this.ar[s]! + (hasOpt ? 1 : 0));
    if (out.buffer !== this.outBuf) {
      this.outBuf = out.buffer;
      this.outDv = new DataView(out.buffer);
    }
    const odv = this.outDv;
    const adv = this.arenaDv;
    const rec = this.block[s]! * UNIT + klen;
    if (rec + rl + 6 * n > this.arena.length) return -1; // torn: lengths of another entry (DataView reads would throw)
    const base = out.byteOffset + p;
    let i = 0;
    for (; i + 4 <= rl; i += 4) odv.setUint32(base + i, adv.getUint32(rec + i));
    for (; i < rl; i++) out[p + i] = this.arena[rec + i]!;
    const offs = rec + rl;
    const ttls = offs + 2 * n;
    const expired = nowNs >= exp;
    let staleTtl = opts.staleTtl ?? 30;
    // Served stale, a signed answer says no more than its signatures have left, or a
    // cache downstream would keep it past them.
    if (expired) {
      const sigLeft = Math.ceil((this.sigEnd[s]! - nowNs) / NS_PER_SEC);
      if (sigLeft < staleTtl) staleTtl = sigLeft > 0 ? sigLeft : 0;
    }
    const elapsed = nowNs > origin ? Math.floor((nowNs - origin) / NS_PER_SEC) : 0;
    for (let k = 0; k < n; k++) {
      const o = adv.getUint16(offs + 2 * k);
      if (o + 4 > rl) return -1; // torn: the slot changed under us
      const ttl = adv.getUint32(ttls + 4 * k);
      let v: number;
      if (expired) v = ttl < staleTtl ? ttl : staleTtl;
      else {
        const left = ttl - elapsed;
        v = left > 0 ? left : 0;
      }
      odv.setUint32(base + o, v);
    }
    p += rl;
    if (hasOpt) p += writeOpt(out, p, opts.udpSize, 0, q.dnssecOk);
    if (Atomics.load(this.seq, s) !== sq) return -1;
    return p - outOff;
  }

  /** A copy of the entry in slot s as of sequence sq, or undefined if it changed. Allocates. */
  answerAt(s: number, sq: number = Atomics.load(this.seq, s)): CachedAnswer | undefined {
    if ((sq & 1) !== 0 || this.hash[s]! < 0) return undefined;
    const klen = this.keyLen[s]!;
    const rl = this.recLen[s]!;
    const n = this.nrec[s]!;
    const f = this.flags[s]!;
    const b = this.block[s]! * UNIT;
    const bytes = this.arena.slice(b, b + klen + rl + 6 * n);
    const an = this.an[s]!;
    const ns = this.ns[s]!;
    const ar = this.ar[s]!;
    const originNs = this.origin[s]!;
    const expiresNs = this.expires[s]!;
    const signaturesExpireNs = this.sigEnd[s]!;
    if (Atomics.load(this.seq, s) !== sq) return undefined;
    const key = bytes.subarray(0, klen);
    const records = bytes.slice(klen, klen + rl);
    const ttlOffsets = new Uint16Array(n);
    const ttls = new Uint32Array(n);
    const o = klen + rl;
    for (let i = 0; i < n; i++) {
      ttlOffsets[i] = (bytes[o + 2 * i]! << 8) | bytes[o + 2 * i + 1]!;
      const j = o + 2 * n + 4 * i;
      ttls[i] = ((bytes[j]! << 24) | (bytes[j + 1]! << 16) | (bytes[j + 2]! << 8) | bytes[j + 3]!) >>> 0;
    }
    return {
      key: key.slice(),
      qnameLen: klen - 5,
      qtype: (key[klen - 5]! << 8) | key[klen - 4]!,
      qclass: (key[klen - 3]! << 8) | key[klen - 2]!,
      dnssecOk: (key[klen - 1]! & KEY_DO) !== 0,
      rcode: f & F_RCODE,
      authenticData: (f & F_AD) !== 0,
      ancount: an,
      nscount: ns,
      arcount: ar,
      records,
      ttlOffsets,
      ttls,
      originNs,
      expiresNs,
      negative: (f & F_NEGATIVE) !== 0,
      signaturesExpireNs,
    };
  }

  /**
   * A copy of the entry for a key (expiry not checked, no hit counted), or undefined.
   * For tools, the control socket and the promotion policy: it allocates.
   */
  peek(key: Uint8Array, len: number = key.length): CachedAnswer | undefined {
    for (let t = 0; t < READ_TRIES; t++) {
      const s = this.find(key, len);
      if (s < 0) return undefined;
      const a = this.answerAt(s, this.foundSeq);
      if (a !== undefined) return a;
    }
    return undefined;
  }

  /** A fresh copy of the entry and a hit counted (tests and tools; the hit path is reply()). */
  get(key: Uint8Array, len: number, nowNs: number): CachedAnswer | undefined {
    for (let t = 0; t < READ_TRIES; t++) {
      const s = this.find(key, len);
      if (s < 0) break;
      const sq = this.foundSeq;
      const a = this.answerAt(s, sq);
      if (a === undefined) continue;
      if (nowNs >= a.expiresNs) break;
      const uses = Atomics.add(this.hits, s, 1) + 2;
      this.reads.hits++;
      if (uses >= this.g[G_THRESHOLD]! && this.onThreshold !== undefined && this.claimReport(s)) this.onThreshold(s, sq);
      return a;
    }
    this.reads.misses++;
    return undefined;
  }

  /** Every entry held now (copies; tools and the control socket). */
  entries(): CachedAnswer[] {
    const out: CachedAnswer[] = [];
    for (let s = 0; s < this.shards * this.per; s++) {
      if (this.hash[s]! < 0) continue;
      const a = this.answerAt(s);
      if (a !== undefined) out.push(a);
    }
    return out;
  }

  /**
   * Copies of the entries whose key starts with `prefix` (a lowercased wire name: every
   * type and DO bit of that name), found by comparing key bytes in the arena: only the
   * matches are copied (the control socket's lookup and flush).
   */
  entriesWithName(prefix: Uint8Array, qtype?: number): CachedAnswer[] {
    const out: CachedAnswer[] = [];
    const n = prefix.length;
    const arena = this.arena;
    for (let s = 0; s < this.shards * this.per; s++) {
      if (this.hash[s]! < 0 || this.keyLen[s] !== n + 5) continue;
      const b = this.block[s]! * UNIT;
      let i = 0;
      while (i < n && arena[b + i] === prefix[i]) i++;
      if (i !== n) continue;
      if (qtype !== undefined && ((arena[b + n]! << 8) | arena[b + n + 1]!) !== qtype) continue;
      const a = this.answerAt(s);
      if (a !== undefined) out.push(a);
    }
    return out;
  }

  /** Credits hits served elsewhere (the XDP hot map) to a slot, for the SLRU (any thread). */
  touch(slot: number, hits: number): void {
    if (hits > 0) Atomics.add(this.hits, slot, hits);
  }

  // ---- writes (one shard's lock) -------------------------------------------------------

  /**
   * Stores an answer, replacing the key's entry if there is one (its hit count is kept:
   * a refresh). Evicts from the shard's SLRU until its bounds hold. Returns the slot, -1
   * if the answer is larger than a shard can hold, -2 if the shard's lock stayed taken
   * (the write is skipped, counted as busy unless `countBusy` is false: a caller that will
   * try again). `asks`: how often the name was asked on every engine, counting the ask
   * that fetched this answer (src/hot/asks.ts).
   */
  /** The flush generation (G_FLUSH_GEN): note it before asking the upstream, give it to insert(). */
  flushGeneration(): number {
    return Atomics.load(this.g, G_FLUSH_GEN);
  }

  /**
   * Stores an answer; returns its slot, or -1 (too large, or no room), -2 (the shard
   * stayed busy), -3 (`sinceFlush` given and a flush came after it: not stored).
   */
  insert(a: CachedAnswer, _nowNs = 0, asks = 0, countBusy = true, sinceFlush?: number): number {
    const key = a.key;
    const klen = key.length;
    const n = a.ttls.length;
    const rl = a.records.length;
    const hash = keyHash(key, 0, klen);
    const sh = hash & this.shardMask;
    const o = sh * S_WORDS;
    const order = orderFor(klen + rl + 6 * n);
    if (order > this.topOrder || 2 ** order > this.h[o + S_LIMIT_UNITS]! || klen < 6 || n !== a.ttlOffsets.length) {
      Atomics.add(this.h, o + S_REJECTED, 1); // outside the lock
      return -1;
    }
    if (!this.lock(sh, false)) {
      if (countBusy) Atomics.add(this.h, o + S_BUSY, 1);
      return -2;
    }
    let s = -1;
    let fresh = false;
    try {
      // Checked under the lock: a flush bumps the generation before it takes this lock to
      // delete, so either it sees this entry and deletes it, or this sees its bump.
      if (sinceFlush !== undefined && Atomics.load(this.g, G_FLUSH_GEN) !== sinceFlush) return -3;
      s = this.findLocked(sh, key, klen, hash);
      if (s >= 0) {
        // A refresh: the new bytes go to a new block, then the slot flips to them.
        this.listRemove(sh, s);
        const blk = this.allocEvicting(sh, order);
        if (blk < 0) {
          this.listPushProbation(sh, s);
          this.removeSlot(sh, s, S_EVICTIONS);
          Atomics.add(this.h, o + S_REJECTED, 1);
          return -1;
        }
        const seq = this.seq;
        Atomics.add(seq, s, 1);
        const old = this.block[s]!;
        const oldUnits = 2 ** this.buddy.usedOrder(old);
        this.writeSlot(s, blk, a, n, rl);
        this.buddy.free(sh, old);
        this.h[o + S_UNITS] = this.h[o + S_UNITS]! - oldUnits + 2 ** order;
        Atomics.add(seq, s, 1);
        this.listPushProbation(sh, s);
        this.h[o + S_REPLACEMENTS]!++;
      } else {
        while (this.h[o + S_COUNT]! >= this.h[o + S_LIMIT_ENTRIES]!) {
          const v = this.victim(sh);
          if (v < 0) break;
          this.removeSlot(sh, v, S_EVICTIONS);
        }
        const blk = this.allocEvicting(sh, order);
        s = this.h[o + S_FREE]!;
        if (blk < 0 || s < 0) {
          if (blk >= 0) this.buddy.free(sh, blk);
          Atomics.add(this.h, o + S_REJECTED, 1);
          return -1;
        }
        this.h[o + S_FREE] = this.chain[s]!;
        const seq = this.seq;
        Atomics.add(seq, s, 1);
        this.writeSlot(s, blk, a, n, rl);
        this.hash[s] = hash;
        const h0 = asks > 1 ? asks - 1 : 0;
        Atomics.store(this.hits, s, h0);
        this.seen[s] = h0;
        this.h[o + S_UNITS] = this.h[o + S_UNITS]! + 2 ** order;
        Atomics.add(seq, s, 1);
        // Published last: a reader that reaches the slot through its bucket sees it whole.
        const b = sh * this.bps + ((hash >>> this.shardBits) & this.bucketMask);
        this.chain[s] = this.buckets[b]!;
        this.buckets[b] = s;
        this.listPushProbation(sh, s);
        this.h[o + S_COUNT]!++;
        this.h[o + S_INSERTS]!++;
        fresh = true;
      }
    } catch (e) {
      this.resetShard(sh);
      throw e;
    } finally {
      this.unlock(sh);
    }
    // A new entry asked often enough already, or a refresh of a popular name not hot (its
    // earlier report may have been for the write this one replaced).
    const th = this.g[G_THRESHOLD]!;
    if (this.onThreshold !== undefined && (fresh ? asks >= th : this.usesOf(s) >= th) && this.claimReport(s)) this.onThreshold(s, Atomics.load(this.seq, s));
    return s;
  }

  /** answerFromResponse under the cache's TTL bounds now, then insert. Throws DnsError. */
  insertResponse(msg: Uint8Array, nowNs: number = monotonicNs(), dnssecOk?: boolean, asks = 0): CachedAnswer {
    const a = answerFromResponse(msg, nowNs, this.ttlPolicy, dnssecOk);
    this.insert(a, nowNs, asks);
    return a;
  }

  /** Removes the key's entry; true if there was one (false also when its shard stayed busy). */
  delete(key: Uint8Array, len: number = key.length): boolean {
    Atomics.add(this.g, G_FLUSH_GEN, 1);
    const hash = keyHash(key, 0, len);
    const sh = hash & this.shardMask;
    if (!this.lock(sh, true)) return false;
    try {
      const s = this.findLocked(sh, key, len, hash);
      if (s < 0) return false;
      this.removeSlot(sh, s, S_EVICTIONS);
      return true;
    } catch (e) {
      this.resetShard(sh);
      throw e;
    } finally {
      this.unlock(sh);
    }
  }

  /** Empties every shard; returns how many entries there were (a shard left busy keeps its). */
  clear(): number {
    return this.clearShards().removed;
  }

  /** clear(), also saying how many shards stayed busy past the patient wait (and kept their entries). */
  clearShards(): { removed: number; busy: number } {
    Atomics.add(this.g, G_FLUSH_GEN, 1);
    let removed = 0;
    let busy = 0;
    for (let sh = 0; sh < this.shards; sh++) {
      if (!this.lock(sh, true)) {
        busy++;
        continue;
      }
      const o = sh * S_WORDS;
      const c = this.h[o + S_COUNT]!;
      removed += c;
      this.resetShard(sh);
      this.h[o + S_EVICTIONS] = this.h[o + S_EVICTIONS]! + c;
      this.unlock(sh);
    }
    return { removed, busy };
  }

  /**
   * Drops entries past expiry (and past the stale window when serve-stale is on),
   * looking at up to `budget` slots, shard after shard, resuming where the last sweep
   * stopped. One thread sweeps (the main thread). Returns how many were removed.
   */
  sweep(nowNs: number, budget: number = this.shards * this.per): number {
    const limit = nowNs - (this.serveStale ? this.staleMaxNs : 0);
    const total = this.shards * this.per;
    let removed = 0;
    let left = Math.min(budget, total);
    while (left > 0) {
      const from = this.sweepCursor;
      const sh = Math.floor(from / this.per);
      const to = Math.min((sh + 1) * this.per, from + left);
      if (this.lock(sh, false)) {
        try {
          for (let s = from; s < to; s++) {
            // Past its signatures, an expired entry is of no use even stale.
            if (this.hash[s]! >= 0 && (limit >= this.expires[s]! || (nowNs >= this.expires[s]! && nowNs >= this.sigEnd[s]!))) {
              this.removeSlot(sh, s, S_EXPIRATIONS);
              removed++;
            }
          }
        } catch (e) {
          this.resetShard(sh);
          throw e;
        } finally {
          this.unlock(sh);
        }
      }
      left -= to - from;
      this.sweepCursor = to === total ? 0 : to;
    }
    return removed;
  }

  /**
   * A thread died (Worker 'exit'): resets every shard whose lock it held, so nothing it
   * was writing can be read and no lock stays taken. Call on the main thread with the
   * worker's threadId. Returns how many shards were reset.
   */
  recover(deadThreadId: number): number {
    const owner = deadThreadId + 1;
    let n = 0;
    for (let sh = 0; sh < this.shards; sh++) {
      const o = sh * S_WORDS;
      if (Atomics.load(this.h, o + S_LOCK) !== owner) continue;
      this.resetShard(sh);
      this.h[o + S_RESETS]!++;
      Atomics.store(this.h, o + S_LOCK, 0);
      n++;
    }
    return n;
  }

  /** Shards whose lock is taken now, with the owner's thread id (tests and tools). */
  heldLocks(): { shard: number; threadId: number }[] {
    const out: { shard: number; threadId: number }[] = [];
    for (let sh = 0; sh < this.shards; sh++) {
      const v = Atomics.load(this.h, sh * S_WORDS + S_LOCK);
      if (v !== 0) out.push({ shard: sh, threadId: v - 1 });
    }
    return out;
  }

  /** Segment of a key's entry (tests): the lazy SLRU's view now. */
  segmentOf(key: Uint8Array): 'probation' | 'protected' | undefined {
    const s = this.find(key, key.length);
    if (s < 0) return undefined;
    return this.seg[s] === SEG_PROTECTED ? 'protected' : 'probation';
  }

  // ---- internals (the shard's lock held) ------------------------------------------------

  private lock(sh: number, patient: boolean): boolean {
    const h = this.h;
    const w = sh * S_WORDS + S_LOCK;
    for (let i = 0; i < LOCK_SPINS; i++) {
      if (Atomics.compareExchange(h, w, 0, ME) === 0) return true;
    }
    if (!patient) return false;
    // Control requests and the sweep may wait a little, never without bound: a lock held
    // by a dead thread is freed only when this (main) thread handles the worker's exit.
    const until = performance.now() + 20;
    while (performance.now() < until) {
      const v = Atomics.load(h, w);
      if (v === 0 && Atomics.compareExchange(h, w, 0, ME) === 0) return true;
      Atomics.wait(h, w, v === 0 ? 1 : v, 0.2);
    }
    return false;
  }

  private unlock(sh: number): void {
    Atomics.store(this.h, sh * S_WORDS + S_LOCK, 0);
  }

  private findLocked(sh: number, key: Uint8Array, len: number, hash: number): number {
    const arena = this.arena;
    for (let s = this.buckets[sh * this.bps + ((hash >>> this.shardBits) & this.bucketMask)]!; s >= 0; s = this.chain[s]!) {
      if (this.hash[s] !== hash || this.keyLen[s] !== len) continue;
      const b = this.block[s]! * UNIT;
      let i = 0;
      while (i < len && arena[b + i] === key[i]) i++;
      if (i === len) return s;
    }
    return -1;
  }

  private writeSlot(s: number, blk: number, a: CachedAnswer, n: number, rl: number): void {
    const arena = this.arena;
    const key = a.key;
    const klen = key.length;
    let p = blk * UNIT;
    arena.set(key, p);
    p += klen;
    arena.set(a.records, p);
    p += rl;
    for (let i = 0; i < n; i++) {
      const v = a.ttlOffsets[i]!;
      arena[p++] = v >>> 8;
      arena[p++] = v & 0xff;
    }
    for (let i = 0; i < n; i++) {
      const v = a.ttls[i]!;
      arena[p++] = v >>> 24;
      arena[p++] = (v >>> 16) & 0xff;
      arena[p++] = (v >>> 8) & 0xff;
      arena[p++] = v & 0xff;
    }
    this.block[s] = blk;
    this.keyLen[s] = klen;
    this.recLen[s] = rl;
    this.nrec[s] = n;
    this.an[s] = a.ancount;
    this.ns[s] = a.nscount;
    this.ar[s] = a.arcount;
    this.flags[s] = (a.rcode & F_RCODE) | (a.authenticData ? F_AD : 0) | (a.negative ? F_NEGATIVE : 0);
    this.origin[s] = a.originNs;
    this.expires[s] = a.expiresNs;
    this.sigEnd[s] = a.signaturesExpireNs ?? Infinity;
  }

  /** A block of `order` in the shard's region, evicting until it fits the byte bound and the allocator has one. */
  private allocEvicting(sh: number, order: number): number {
    const o = sh * S_WORDS;
    const size = 2 ** order;
    for (;;) {
      if (this.h[o + S_UNITS]! + size <= this.h[o + S_LIMIT_UNITS]!) {
        const blk = this.buddy.alloc(sh, order);
        if (blk >= 0) return blk;
      }
      const v = this.victim(sh);
      if (v < 0) return -1;
      this.removeSlot(sh, v, S_EVICTIONS);
    }
  }

  /**
   * The next entry to evict, after the lazy SLRU moves: a probationary slot at the LRU
   * end that was hit since it was last looked at moves to the protected MRU end instead
   * (its hits are then "seen"); the protected segment's overflow gets the same second
   * chance at its LRU end before it falls back to the probationary MRU end. Each move
   * consumes a slot's unseen hits, so the loop ends. -1 when the shard is empty.
   */
  private victim(sh: number): number {
    const h = this.h;
    const o = sh * S_WORDS;
    for (;;) {
      let v = h[o + S_PROB_TAIL]!;
      if (v < 0) {
        v = h[o + S_PROT_TAIL]!;
        if (v < 0) return -1;
        const hv = Atomics.load(this.hits, v);
        if (hv !== this.seen[v]) {
          this.seen[v] = hv;
          this.listUnlink(sh, v);
          this.listPushProtected(sh, v);
          this.rebalance(sh);
          continue;
        }
        return v;
      }
      const hv = Atomics.load(this.hits, v);
      if (hv === this.seen[v]) return v;
      this.seen[v] = hv;
      this.listUnlink(sh, v);
      this.listPushProtected(sh, v);
      this.rebalance(sh);
    }
  }

  /** Protected segment over its share: its LRU end falls back to probation (or gets a second chance if hit). */
  private rebalance(sh: number): void {
    const h = this.h;
    const o = sh * S_WORDS;
    let guard = h[o + S_PROT_COUNT]! + 1;
    while (h[o + S_PROT_COUNT]! > h[o + S_PROT_CAP]! && guard-- > 0) {
      const t = h[o + S_PROT_TAIL]!;
      const ht = Atomics.load(this.hits, t);
      this.listUnlink(sh, t);
      if (ht !== this.seen[t]) {
        this.seen[t] = ht;
        this.listPushProtected(sh, t);
      } else {
        this.listPushProbation(sh, t);
      }
    }
    while (h[o + S_PROT_COUNT]! > h[o + S_PROT_CAP]!) {
      const t = h[o + S_PROT_TAIL]!;
      this.listUnlink(sh, t);
      this.listPushProbation(sh, t);
    }
  }

  private removeSlot(sh: number, s: number, counter: number): void {
    const o = sh * S_WORDS;
    const seq = this.seq;
    Atomics.add(seq, s, 1);
    const b = sh * this.bps + ((this.hash[s]! >>> this.shardBits) & this.bucketMask);
    let p = this.buckets[b]!;
    if (p === s) {
      this.buckets[b] = this.chain[s]!;
    } else {
      while (this.chain[p]! !== s) p = this.chain[p]!;
      this.chain[p] = this.chain[s]!;
    }
    this.listRemove(sh, s);
    const units = 2 ** this.buddy.usedOrder(this.block[s]!);
    this.buddy.free(sh, this.block[s]!);
    this.h[o + S_UNITS] = this.h[o + S_UNITS]! - units;
    this.hash[s] = -1;
    this.keyLen[s] = 0;
    this.expires[s] = Infinity;
    this.sigEnd[s] = Infinity;
    Atomics.store(this.hits, s, 0);
    Atomics.store(this.mark, s, 0);
    this.seen[s] = 0;
    this.chain[s] = this.h[o + S_FREE]!;
    this.h[o + S_FREE] = s;
    this.h[o + S_COUNT]!--;
    this.h[o + counter]!++;
    Atomics.add(seq, s, 1);
  }

  private listUnlink(sh: number, s: number): void {
    const h = this.h;
    const o = sh * S_WORDS;
    const p = this.prev[s]!;
    const n = this.next[s]!;
    const prot = this.seg[s] === SEG_PROTECTED;
    if (p >= 0) this.next[p] = n;
    else h[o + (prot ? S_PROT_HEAD : S_PROB_HEAD)] = n;
    if (n >= 0) this.prev[n] = p;
    else h[o + (prot ? S_PROT_TAIL : S_PROB_TAIL)] = p;
    h[o + (prot ? S_PROT_COUNT : S_PROB_COUNT)]!--;
    this.prev[s] = -1;
    this.next[s] = -1;
    this.seg[s] = SEG_NONE;
  }

  private listRemove(sh: number, s: number): void {
    if (this.seg[s] !== SEG_NONE) this.listUnlink(sh, s);
  }

  private listPush(sh: number, s: number, prot: boolean): void {
    const h = this.h;
    const o = sh * S_WORDS;
    const head = h[o + (prot ? S_PROT_HEAD : S_PROB_HEAD)]!;
    this.prev[s] = -1;
    this.next[s] = head;
    if (head >= 0) this.prev[head] = s;
    else h[o + (prot ? S_PROT_TAIL : S_PROB_TAIL)] = s;
    h[o + (prot ? S_PROT_HEAD : S_PROB_HEAD)] = s;
    h[o + (prot ? S_PROT_COUNT : S_PROB_COUNT)]!++;
    this.seg[s] = prot ? SEG_PROTECTED : SEG_PROBATION;
  }

  private listPushProbation(sh: number, s: number): void {
    this.listPush(sh, s, false);
  }

  private listPushProtected(sh: number, s: number): void {
    this.listPush(sh, s, true);
  }

  /**
   * Empties a shard: every slot's sequence number made odd first (a reader copying from
   * it will not keep its copy), everything re-initialised, the numbers made even again.
   * The caller holds the lock or recovers it from a dead owner.
   */
  private resetShard(sh: number): void {
    const seq = this.seq;
    const lo = sh * this.per;
    const hi = lo + this.per;
    for (let s = lo; s < hi; s++) {
      Atomics.store(seq, s, Atomics.load(seq, s) | 1); // odd (a dead writer's may be odd already)
    }
    const o = sh * S_WORDS;
    const h = this.h;
    this.buckets.fill(-1, sh * this.bps, (sh + 1) * this.bps);
    for (let s = lo; s < hi; s++) {
      this.hash[s] = -1;
      this.chain[s] = s + 1 < hi ? s + 1 : -1;
      this.prev[s] = -1;
      this.next[s] = -1;
      this.seg[s] = SEG_NONE;
      this.keyLen[s] = 0;
      this.expires[s] = Infinity;
      this.sigEnd[s] = Infinity;
      Atomics.store(this.hits, s, 0);
      Atomics.store(this.mark, s, 0);
      this.seen[s] = 0;
    }
    h[o + S_FREE] = lo;
    h[o + S_COUNT] = 0;
    h[o + S_UNITS] = 0;
    h[o + S_PROB_HEAD] = -1;
    h[o + S_PROB_TAIL] = -1;
    h[o + S_PROT_HEAD] = -1;
    h[o + S_PROT_TAIL] = -1;
    h[o + S_PROB_COUNT] = 0;
    h[o + S_PROT_COUNT] = 0;
    this.buddy.reset(sh);
    for (let s = lo; s < hi; s++) Atomics.add(seq, s, 1);
  }

  // ---- invariants (tests) ---------------------------------------------------------------

  /**
   * Checks every invariant of every shard; throws on the first violation. Call when no
   * thread is writing (tests: after the workers stopped, or between operations).
   * Returns the number of entries.
   */
  check(): number {
    let total = 0;
    for (let sh = 0; sh < this.shards; sh++) total += this.checkShard(sh);
    return total;
  }

  private checkShard(sh: number): number {
    const h = this.h;
    const o = sh * S_WORDS;
    const lo = sh * this.per;
    const hi = lo + this.per;
    const fail = (m: string): never => {
      throw new Error(`shared cache shard ${sh}: ${m}`);
    };
    if (h[o + S_LOCK] !== 0) fail(`lock held by thread ${h[o + S_LOCK]! - 1}`);
    const used = this.buddy.check(sh);
    let occupied = 0;
    let units = 0;
    const blocks = new Set<number>();
    for (let s = lo; s < hi; s++) {
      if ((this.seq[s]! & 1) !== 0) fail(`slot ${s} sequence odd`);
      if (this.hash[s]! < 0) {
        if (this.seg[s] !== SEG_NONE) fail(`free slot ${s} is listed`);
        continue;
      }
      occupied++;
      const klen = this.keyLen[s]!;
      const b = this.block[s]!;
      const order = orderFor(klen + this.recLen[s]! + 6 * this.nrec[s]!);
      if (used.get(b) !== order) fail(`slot ${s} block ${b}: allocator says order ${used.get(b)}, entry needs ${order}`);
      if (blocks.has(b)) fail(`block ${b} used twice`);
      blocks.add(b);
      units += 2 ** order;
      const key = this.arena.subarray(b * UNIT, b * UNIT + klen);
      if (keyHash(key, 0, klen) !== this.hash[s]) fail(`slot ${s} hash does not match its key bytes`);
      if ((this.hash[s]! & this.shardMask) !== sh) fail(`slot ${s} in the wrong shard`);
      if (this.findLocked(sh, key, klen, this.hash[s]!) !== s) fail(`slot ${s} not found through its bucket`);
      const rl = this.recLen[s]!;
      const n = this.nrec[s]!;
      if (this.an[s]! + this.ns[s]! + this.ar[s]! !== n) fail(`slot ${s} counts do not add up to its records`);
      const offs = b * UNIT + klen + rl;
      for (let i = 0; i < n; i++) {
        const t = (this.arena[offs + 2 * i]! << 8) | this.arena[offs + 2 * i + 1]!;
        if (t + 4 > rl) fail(`slot ${s} TTL offset ${t} outside its records`);
      }
      if (this.seg[s] === SEG_NONE) fail(`slot ${s} is in no SLRU segment`);
    }
    if (used.size !== blocks.size) fail(`${used.size} used blocks, ${blocks.size} held by entries`);
    if (occupied !== h[o + S_COUNT]) fail(`count ${h[o + S_COUNT]} but ${occupied} occupied slots`);
    if (units !== h[o + S_UNITS]) fail(`units ${h[o + S_UNITS]} but entries hold ${units}`);
    // Chains: every linked slot is occupied, in its bucket, and the chains hold all.
    let chained = 0;
    for (let b = sh * this.bps; b < (sh + 1) * this.bps; b++) {
      for (let s = this.buckets[b]!, k = 0; s >= 0; s = this.chain[s]!, k++) {
        if (k > this.per) fail(`bucket ${b} loops`);
        if (s < lo || s >= hi || this.hash[s]! < 0) fail(`bucket ${b} links free or foreign slot ${s}`);
        if (sh * this.bps + ((this.hash[s]! >>> this.shardBits) & this.bucketMask) !== b) fail(`slot ${s} in bucket ${b}, hash says otherwise`);
        chained++;
      }
    }
    if (chained !== occupied) fail(`${chained} chained, ${occupied} occupied`);
    // Free slot list: exactly the free slots.
    let free = 0;
    for (let s = h[o + S_FREE]!, k = 0; s >= 0; s = this.chain[s]!, k++) {
      if (k > this.per) fail('free list loops');
      if (s < lo || s >= hi || this.hash[s]! >= 0) fail(`free list holds slot ${s}`);
      free++;
    }
    if (free + occupied !== this.per) fail(`${free} free + ${occupied} occupied != ${this.per}`);
    // SLRU lists.
    const walk = (headW: number, tailW: number, countW: number, segv: number): number => {
      let n = 0;
      let prev = -1;
      for (let s = h[o + headW]!; s >= 0; s = this.next[s]!) {
        if (n > this.per) fail('list loops');
        if (this.seg[s] !== segv || this.hash[s]! < 0) fail(`slot ${s} wrongly listed in segment ${segv}`);
        if (this.prev[s] !== prev) fail(`slot ${s} bad prev link`);
        prev = s;
        n++;
      }
      if (h[o + tailW] !== prev) fail(`segment ${segv} tail ${h[o + tailW]} != ${prev}`);
      if (h[o + countW] !== n) fail(`segment ${segv} count ${h[o + countW]} != ${n}`);
      return n;
    };
    const listed = walk(S_PROB_HEAD, S_PROB_TAIL, S_PROB_COUNT, SEG_PROBATION) + walk(S_PROT_HEAD, S_PROT_TAIL, S_PROT_COUNT, SEG_PROTECTED);
    if (listed !== occupied) fail(`${listed} listed, ${occupied} occupied`);
    if (h[o + S_PROT_COUNT]! > h[o + S_PROT_CAP]!) fail('protected segment over its share');
    if (occupied > h[o + S_LIMIT_ENTRIES]!) fail('over its entry bound');
    if (units > h[o + S_LIMIT_UNITS]!) fail('over its byte bound');
    return occupied;
  }
}

/**
 * Bytes of shared memory a cache of these bounds allocates (metadata and arena), as
 * create() lays them out: the memory bound (src/service/memory-bound.ts) counts this.
 */
export function sharedCacheBytes(maxEntries: number, maxBytes: number = maxEntries * 512, shards: number = defaultShards(maxEntries)): number {
  const unitsPerShard = Math.floor(maxBytes / shards / UNIT);
  let top = 0;
  while (top < MAX_ORDER && 2 ** (top + 1) <= unitsPerShard) top++;
  const regionUnits = Math.floor(unitsPerShard / 2 ** top) * 2 ** top;
  const per = Math.ceil(maxEntries / shards);
  return metaSizes(shards, per, pow2AtLeast(per * 2), regionUnits).total + shards * regionUnits * UNIT;
}

/** Byte offsets of the sections of the meta buffer. */
function metaSizes(shards: number, per: number, bps: number, regionUnits: number): { shardHeaders: number; int32: number; buckets: number; f64: number; u16: number; u8: number; units: number; total: number } {
  const slots = shards * per;
  const align8 = (x: number): number => (x + 7) & ~7;
  const shardHeaders = G_WORDS * 4;
  const int32 = shardHeaders + shards * S_WORDS * 4;
  const buckets = int32 + 8 * slots * 4;
  const f64 = align8(buckets + shards * bps * 4);
  const u16 = f64 + 3 * slots * 8;
  const u8 = u16 + 6 * slots * 2;
  const units = u8 + 3 * slots;
  const total = align8(units + shards * regionUnits);
  return { shardHeaders, int32, buckets, f64, u16, u8, units, total };
}
