/**
 * Promotion policy: which cached answers deserve a slot in the kernel's hot
 * map, where the XDP program answers them without waking userspace.
 *
 * Pure logic over cache slots (small integers handed out by the cache), with
 * no kernel dependency. It emits events so that a mirror of the BPF map
 * (and the map itself) can follow exactly:
 *   promote(answer)        put answer.key -> answer into the map
 *   replace(answer)        put answer.key -> answer over the entry the key has
 *   demote(key, reason)    delete key from the map
 * A key is hot between its promote and its demote. A new answer of a hot key (a
 * refresh, a prefetch) is a replace, so the map rewrites the entry in place: the
 * name is never out of it, and its kernel hit counter carries on. A new answer
 * the map cannot take demotes the key ('replaced').
 *
 * Heat: each slot carries an exponentially decaying hit score (half-life
 * `halfLifeNs`). It is kept as k = log2(score) + t / halfLife, which does not
 * change as time passes, so hot slots sit in a min-heap on k and the coldest
 * one is found in O(1). Userspace hits feed candidates (the cache calls
 * onHit); hits the XDP program served feed hot entries (noteKernelHits).
 * A candidate is promoted on its `threshold`-th hit if there is room, or
 * displaces the coldest hot entry if it is `displaceFactor` times hotter.
 *
 * Hits are counted per slot and folded into the heat in batches: at tick(),
 * and before any decision that compares heats (a promotion that must
 * displace, score(), kernel hits). Folding costs a log and a power and may
 * move the slot in the heap, too much to pay per hit on a hot set
 * (docs/BENCHMARKS.md), and merging the hits a slot gets between ticks
 * changes nothing that a 60-second half-life can see.
 */
import type { CachedAnswer } from '../dns/answer.js';
import { RCODE_SERVFAIL } from '../dns/constants.js';
import { type Clock, monotonicNs } from '../engine/clock.js';
import { hotSizeFor } from '../config.js';

export type DemoteReason = 'evicted' | 'expired' | 'displaced' | 'replaced';

export type PromotionEvent =
  | { kind: 'promote'; answer: CachedAnswer }
  | { kind: 'replace'; answer: CachedAnswer }
  | { kind: 'demote'; key: Uint8Array; reason: DemoteReason };

export interface PromotionOptions {
  /** Entries the cache holds; slots are 0 .. cacheCapacity - 1. */
  cacheCapacity: number;
  /** Hot-map capacity as a share of the cache (default: hotSizeFor, src/config.ts). */
  hotRatio?: number;
  /** Hot-map capacity as a number; overrides hotRatio. */
  capacity?: number;
  /** Hit count at which a key is promoted (default 3). */
  threshold?: number;
  /** Half-life of the heat score (default 60 s). */
  halfLifeNs?: number;
  /** How much hotter a candidate must be to displace the coldest hot entry (default 2). */
  displaceFactor?: number;
  /** Which answers the hot map can take (default: anything but SERVFAIL). */
  eligible?: (a: CachedAnswer) => boolean;
  /** Event sink; without one, events queue until drain(). */
  onEvent?: (e: PromotionEvent) => void;
  clock?: Clock;
}

/** What an observer may ask of the cache it is attached to. */
export interface CacheHandle {
  /** Counts `hits` hits on a slot served elsewhere (by XDP) as uses: refreshes its SLRU position. */
  touch(slot: number, hits: number): void;
  /** The slot holding a key, or -1: the one key -> slot table, which the policy does not copy. */
  find(key: Uint8Array): number;
}

/** Cache-side notifications the policy reacts to (the cache calls these). */
export interface CacheObserver {
  /** Called once by the cache the observer is attached to. */
  bindCache?(handle: CacheHandle): void;
  /** `asks`: how often the name was asked on every engine, counting the ask that fetched it. */
  onInsert(slot: number, answer: CachedAnswer, nowNs: number, asks: number): void;
  onHit(slot: number, answer: CachedAnswer, hits: number, nowNs: number): void;
  onReplace(slot: number, old: CachedAnswer, answer: CachedAnswer, nowNs: number): void;
  onRemove(slot: number, answer: CachedAnswer, reason: 'evicted' | 'expired'): void;
}

const defaultEligible = (a: CachedAnswer): boolean => a.rcode !== RCODE_SERVFAIL;

export class PromotionPolicy implements CacheObserver {
  readonly capacity: number;
  /** Hits before promotion; a reload may change it (setThreshold). */
  threshold: number;
  readonly halfLifeNs: number;
  private readonly displaceLog: number;
  private readonly eligible: (a: CachedAnswer) => boolean;
  private readonly sink: ((e: PromotionEvent) => void) | undefined;
  private readonly queue: PromotionEvent[] = [];
  private readonly clock: Clock;

  /** Per slot: heat as log2(score) + t / halfLife; -Infinity when cold. */
  private readonly heat: Float64Array;
  /** Per slot: index in the heap, or -1 when not hot. */
  private readonly heapPos: Int32Array;
  /** Per slot: the answer promoted for it (hot slots only), and its expiry. */
  private readonly hotAnswer: (CachedAnswer | undefined)[];
  private readonly hotExpires: Float64Array;
  /** No hot entry expires before this (a lower bound, exact after each scan). */
  private nextExpiry = Infinity;
  private readonly heap: Int32Array;
  private heapSize = 0;
  /** Per slot: hits not yet folded into heat; the slots that have some, in order. */
  private readonly pending: Float64Array;
  private readonly pendingAt: Float64Array;
  private touched: number[] = [];

  private cache: CacheHandle | undefined;

  promotions = 0;
  demotions = 0;
  /** New answers of hot keys written over their entries. */
  replacements = 0;
  /**
   * Promotions declined: a name at the threshold judged with an answer the hot map cannot
   * take (`eligible`). A name is judged at most once a tick while it stays popular, so
   * this counts decisions, about one a second per such name, not distinct names.
   */
  declined = 0;

  /** A new promotion threshold (a reload); counts already gathered keep counting. */
  setThreshold(n: number): void {
    if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`threshold ${n}`);
    this.threshold = n;
  }

  constructor(opts: PromotionOptions) {
    const n = opts.cacheCapacity;
    if (!(Number.isInteger(n) && n > 0)) throw new RangeError(`cacheCapacity ${n}`);
    const cap = opts.capacity ?? (opts.hotRatio === undefined ? hotSizeFor(n) : Math.floor(n * opts.hotRatio));
    if (!(Number.isInteger(cap) && cap >= 0 && cap <= n)) throw new RangeError(`hot capacity ${cap}`);
    this.capacity = cap;
    this.threshold = opts.threshold ?? 3;
    if (!(Number.isInteger(this.threshold) && this.threshold >= 1)) throw new RangeError(`threshold ${this.threshold}`);
    this.halfLifeNs = opts.halfLifeNs ?? 60e9;
    if (!(this.halfLifeNs > 0)) throw new RangeError(`halfLifeNs ${this.halfLifeNs}`);
    const f = opts.displaceFactor ?? 2;
    if (!(f >= 1)) throw new RangeError(`displaceFactor ${f}`);
    this.displaceLog = Math.log2(f);
    this.eligible = opts.eligible ?? defaultEligible;
    this.sink = opts.onEvent;
    this.clock = opts.clock ?? monotonicNs;
    this.heat = new Float64Array(n).fill(-Infinity);
    this.heapPos = new Int32Array(n).fill(-1);
    this.hotAnswer = new Array<CachedAnswer | undefined>(n);
    this.hotExpires = new Float64Array(n);
    this.heap = new Int32Array(Math.max(cap, 1));
    this.pending = new Float64Array(n);
    this.pendingAt = new Float64Array(n);
  }

  /** Number of hot keys. */
  get size(): number {
    return this.heapSize;
  }

  isHotSlot(slot: number): boolean {
    return this.heapPos[slot]! >= 0;
  }

  isHot(key: Uint8Array): boolean {
    return this.hotSlotOf(key) >= 0;
  }

  /** The slot of a hot key, or -1 (looked up in the cache's own index). */
  private hotSlotOf(key: Uint8Array): number {
    const slot = this.cache?.find(key) ?? -1;
    return slot >= 0 && this.heapPos[slot]! >= 0 ? slot : -1;
  }

  /** Keys currently hot (the policy's view of the map). */
  hotKeys(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < this.heapSize; i++) out.push(this.hotAnswer[this.heap[i]!]!.key);
    return out;
  }

  /** Slots currently hot. */
  hotSlots(): number[] {
    return Array.from(this.heap.subarray(0, this.heapSize));
  }

  /** The answer promoted for a hot slot (undefined if the slot is not hot). */
  hotAnswerOf(slot: number): CachedAnswer | undefined {
    return this.heapPos[slot]! >= 0 ? this.hotAnswer[slot] : undefined;
  }

  /** Answers currently hot. */
  hotAnswers(): CachedAnswer[] {
    const out: CachedAnswer[] = [];
    for (let i = 0; i < this.heapSize; i++) out.push(this.hotAnswer[this.heap[i]!]!);
    return out;
  }

  /** Queued events (when no onEvent sink was given); clears the queue. */
  drain(): PromotionEvent[] {
    return this.queue.splice(0, this.queue.length);
  }

  /** Current decayed heat score of a slot (hits, decayed by age). */
  score(slot: number, nowNs: number = this.clock()): number {
    this.fold(slot);
    const k = this.heat[slot]!;
    return k === -Infinity ? 0 : 2 ** (k - nowNs / this.halfLifeNs);
  }

  // ---- cache notifications -------------------------------------------------

  bindCache(handle: CacheHandle): void {
    this.cache = handle;
  }

  onInsert(slot: number, answer: CachedAnswer, nowNs: number, asks = 0): void {
    this.heat[slot] = -Infinity;
    this.pending[slot] = 0;
    // The ask that fetched this answer may itself be the third one (the earlier asks
    // went to other workers): count it as a use, which promotes the name now.
    if (asks >= this.threshold) this.onHit(slot, answer, asks, nowNs);
  }

  onHit(slot: number, answer: CachedAnswer, hits: number, nowNs: number): void {
    if (this.pending[slot] === 0) this.touched.push(slot);
    this.pending[slot]! += 1;
    this.pendingAt[slot] = nowNs;
    if (this.heapPos[slot]! >= 0) return; // hot: its heat is folded at the next tick
    if (hits >= this.threshold && nowNs < answer.expiresNs) {
      if (this.eligible(answer)) this.tryPromote(slot, answer);
      else this.declined++;
    }
  }

  onReplace(slot: number, old: CachedAnswer, answer: CachedAnswer, nowNs: number): void {
    if (this.heapPos[slot]! < 0) return;
    if (nowNs < answer.expiresNs && this.eligible(answer)) {
      this.hotAnswer[slot] = answer;
      this.setHotExpiry(slot, answer.expiresNs);
      this.emit({ kind: 'replace', answer });
      this.replacements++;
    } else {
      this.emit({ kind: 'demote', key: old.key, reason: 'replaced' });
      this.demotions++;
      this.heapRemove(slot);
      this.hotAnswer[slot] = undefined;
    }
  }

  onRemove(slot: number, _answer: CachedAnswer, reason: 'evicted' | 'expired'): void {
    this.heat[slot] = -Infinity;
    this.pending[slot] = 0;
    if (this.heapPos[slot]! >= 0) this.demote(slot, reason);
  }

  // ---- kernel side ------------------------------------------------------------

  /**
   * Credits `hits` new hits that the XDP program served for a hot key (the
   * caller passes deltas of the map's per-entry counter). They raise the
   * key's heat, and, through the attached cache, count as uses there too:
   * otherwise the keys the kernel answers would never be touched in
   * userspace and would drift to the SLRU's eviction end. Returns false if
   * the key is not hot.
   */
  noteKernelHits(key: Uint8Array, hits: number, nowNs: number = this.clock()): boolean {
    const slot = this.hotSlotOf(key);
    if (slot < 0) return false;
    if (hits > 0) {
      this.fold(slot);
      this.addHeat(slot, hits, nowNs);
      this.siftDown(this.siftUp(this.heapPos[slot]!));
      if (this.cache !== undefined) this.cache.touch(slot, hits);
    }
    return true;
  }

  /**
   * Demotes hot entries whose answer has expired (the XDP program already
   * refuses to serve them; this frees their slots). Returns how many.
   */
  tick(nowNs: number = this.clock()): number {
    this.foldAll();
    // Nothing to scan until the earliest expiry: with 10,000 hot keys the scan is a
    // burst of work every tick on a core the clients share, and hot answers
    // mostly live for minutes.
    if (nowNs < this.nextExpiry) return 0;
    const heap = this.heap;
    const exp = this.hotExpires;
    let expired: number[] | undefined;
    let next = Infinity;
    for (let i = 0; i < this.heapSize; i++) {
      const slot = heap[i]!;
      const e = exp[slot]!;
      if (nowNs >= e) (expired ??= []).push(slot);
      else if (e < next) next = e;
    }
    this.nextExpiry = next;
    if (expired === undefined) return 0;
    for (const slot of expired) this.demote(slot, 'expired');
    return expired.length;
  }

  // ---- internals ---------------------------------------------------------------

  private emit(e: PromotionEvent): void {
    if (this.sink !== undefined) this.sink(e);
    else this.queue.push(e);
  }

  /** Folds a slot's pending hits into its heat (and its place in the heap). */
  private fold(slot: number): void {
    const n = this.pending[slot]!;
    if (n === 0) return;
    this.pending[slot] = 0;
    this.addHeat(slot, n, this.pendingAt[slot]!);
    if (this.heapPos[slot]! >= 0) this.siftDown(this.siftUp(this.heapPos[slot]!));
  }

  private setHotExpiry(slot: number, expiresNs: number): void {
    this.hotExpires[slot] = expiresNs;
    if (expiresNs < this.nextExpiry) this.nextExpiry = expiresNs;
  }

  private foldAll(): void {
    const list = this.touched;
    if (list.length === 0) return;
    this.touched = [];
    for (let i = 0; i < list.length; i++) this.fold(list[i]!);
  }

  private addHeat(slot: number, hits: number, nowNs: number): void {
    const t = nowNs / this.halfLifeNs;
    const k = this.heat[slot]!;
    const s = (k === -Infinity ? 0 : 2 ** (k - t)) + hits;
    this.heat[slot] = Math.log2(s) + t;
  }

  private tryPromote(slot: number, answer: CachedAnswer): void {
    if (this.capacity === 0) return;
    this.fold(slot);
    if (this.heapSize >= this.capacity) {
      this.foldAll(); // the coldest must be the coldest with every hit counted
      const coldest = this.heap[0]!;
      if (!(this.heat[slot]! > this.heat[coldest]! + this.displaceLog)) return;
      this.demote(coldest, 'displaced');
    }
    this.hotAnswer[slot] = answer;
    this.setHotExpiry(slot, answer.expiresNs);
    const i = this.heapSize++;
    this.heap[i] = slot;
    this.heapPos[slot] = i;
    this.siftUp(i);
    this.promotions++;
    this.emit({ kind: 'promote', answer });
  }

  private demote(slot: number, reason: DemoteReason): void {
    const a = this.hotAnswer[slot]!;
    this.heapRemove(slot);
    this.hotAnswer[slot] = undefined;
    this.demotions++;
    this.emit({ kind: 'demote', key: a.key, reason });
  }

  private heapRemove(slot: number): void {
    const i = this.heapPos[slot]!;
    const last = --this.heapSize;
    this.heapPos[slot] = -1;
    if (i !== last) {
      const moved = this.heap[last]!;
      this.heap[i] = moved;
      this.heapPos[moved] = i;
      this.siftDown(this.siftUp(i));
    }
  }

  private siftUp(i: number): number {
    const heap = this.heap;
    const heat = this.heat;
    const s = heap[i]!;
    const k = heat[s]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const ps = heap[p]!;
      if (heat[ps]! <= k) break;
      heap[i] = ps;
      this.heapPos[ps] = i;
      i = p;
    }
    heap[i] = s;
    this.heapPos[s] = i;
    return i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const heat = this.heat;
    const n = this.heapSize;
    const s = heap[i]!;
    const k = heat[s]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && heat[heap[r]!]! < heat[heap[l]!]!) c = r;
      const cs = heap[c]!;
      if (heat[cs]! >= k) break;
      heap[i] = cs;
      this.heapPos[cs] = i;
      i = c;
    }
    heap[i] = s;
    this.heapPos[s] = i;
  }
}
