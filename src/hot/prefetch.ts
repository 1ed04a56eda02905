/**
 * Prefetch: a hot entry that is still being asked is refreshed from upstream before it
 * expires, so a popular name never drops out of the XDP map at expiry (where every
 * queue would miss it once and the upstream would be asked again by each).
 *
 * Unbound refreshes a name when a query for it arrives in the last 10% of its TTL. Here
 * the queries for a hot name never reach userspace: the XDP program answers them and
 * counts them per hot-map slot. So the signal is those counters: the hits of an entry
 * are sampled when it is half-way through its life and again when its last `share`
 * (10%) begins; if the kernel served it in between, the name is still being asked and
 * it is refreshed now (the caller fetches it from upstream and stores the new answer,
 * which rewrites the hot map). An entry nobody asked in the second half of its life is
 * left to expire: a name that stopped being popular costs no upstream query.
 *
 * One refresh per entry per lifetime: a refreshed answer is tracked anew (track() from
 * its promotion or replacement), so a name asked all the time costs exactly one
 * upstream query per TTL period. Entries whose lifetime is under `minLifetimeSec` are
 * not refreshed (a 1 s TTL asks for a query a second whatever we do; the upstream
 * should not see that from us). Refreshes in flight are bounded; a refresh that cannot
 * start at its due time is retried at the next poll while the entry has life left.
 */
import { type Clock, monotonicNs } from '../engine/clock.js';
import { keyString } from '../dns/key.js';
import { NS_PER_SEC } from '../dns/answer.js';

export interface PrefetchOptions {
  /**
   * Refreshes one key: fetch it from upstream and store the answer (which re-tracks it
   * through the promotion's replace). Resolves true if a fresh answer was stored.
   */
  refresh: (key: Uint8Array) => Promise<boolean>;
  /** The kernel's running hit count for the key's hot-map entry, or undefined when it is not hot. */
  hits: (key: Uint8Array) => number | undefined;
  clock?: Clock;
  /** Share of the lifetime left when a refresh is due (default 0.1). */
  share?: number;
  /** Lifetimes below this are never refreshed, seconds (default 4). */
  minLifetimeSec?: number;
  /** Refreshes in flight at most (default 16). */
  maxInflight?: number;
}

export interface PrefetchCounters {
  /** Refreshes started. */
  issued: number;
  /** Refreshes that stored a fresh answer. */
  refreshed: number;
  /** Refreshes that failed (upstream error, uncacheable answer): the entry expires as it would have. */
  failed: number;
  /** Entries that reached their due time without kernel hits in the second half of their life. */
  cold: number;
  /** Entries whose due time passed while the in-flight bound was reached, and expired before a slot freed. */
  missed: number;
}

/** Where an entry is in its life, as seen by the prefetcher. */
const PHASE_MID = 0;
const PHASE_DUE = 1;

interface Tracked {
  key: Uint8Array;
  id: string;
  originNs: number;
  expiresNs: number;
  /** Next event: the mid-life sample, then the due time. */
  atNs: number;
  phase: number;
  /** Kernel hits at the mid-life sample. */
  baseline: number;
}

export class Prefetcher {
  readonly counters: PrefetchCounters = { issued: 0, refreshed: 0, failed: 0, cold: 0, missed: 0 };
  private readonly clock: Clock;
  private readonly share: number;
  private readonly minLifetimeNs: number;
  private readonly maxInflight: number;
  private readonly entries = new Map<string, Tracked>();
  /** Min-heap on atNs. An item whose entry is no longer the one tracked for its key is stale. */
  private heap: Tracked[] = [];
  /** Due entries waiting for an in-flight slot. */
  private waiting: Tracked[] = [];
  private inflightCount = 0;

  constructor(private readonly o: PrefetchOptions) {
    this.clock = o.clock ?? monotonicNs;
    this.share = o.share ?? 0.1;
    if (!(this.share > 0 && this.share < 0.5)) throw new RangeError(`prefetch share ${this.share}`);
    this.minLifetimeNs = (o.minLifetimeSec ?? 4) * NS_PER_SEC;
    this.maxInflight = o.maxInflight ?? 16;
  }

  /** Entries tracked now. */
  get size(): number {
    return this.entries.size;
  }

  get inflight(): number {
    return this.inflightCount;
  }

  /** Items in the schedule (heap and waiting), stale ones included: at most about twice `size`. */
  get queued(): number {
    return this.heap.length + this.waiting.length;
  }

  /** An answer was written to the hot map (a promotion or a replacement): schedule its refresh. */
  track(key: Uint8Array, originNs: number, expiresNs: number): void {
    const id = keyString(key);
    const life = expiresNs - originNs;
    if (!(life >= this.minLifetimeNs)) {
      this.untrackId(id);
      return;
    }
    const e: Tracked = { key, id, originNs, expiresNs, atNs: originNs + life / 2, phase: PHASE_MID, baseline: 0 };
    this.entries.set(id, e);
    this.push(e);
  }

  /** The key left the hot map. */
  untrack(key: Uint8Array): void {
    this.untrackId(keyString(key));
  }

  /** Forgets everything (the hot map was emptied). */
  clear(): void {
    this.entries.clear();
    this.heap = [];
    this.waiting = [];
  }

  /** Runs what is due; call it often (every 100 ms) so a 10% window of a short TTL is not missed. */
  poll(nowNs: number = this.clock()): void {
    this.drainWaiting(nowNs);
    while (this.heap.length > 0 && this.heap[0]!.atNs <= nowNs) {
      const e = this.pop();
      if (this.entries.get(e.id) !== e) continue; // re-tracked or untracked since
      const hits = this.o.hits(e.key);
      if (hits === undefined) {
        this.entries.delete(e.id);
        continue;
      }
      if (e.phase === PHASE_MID) {
        e.baseline = hits;
        e.phase = PHASE_DUE;
        e.atNs = e.expiresNs - (e.expiresNs - e.originNs) * this.share;
        this.push(e);
        continue;
      }
      if (hits <= e.baseline) {
        this.counters.cold++;
        this.entries.delete(e.id);
        continue;
      }
      if (this.inflightCount >= this.maxInflight) this.waiting.push(e);
      else this.start(e);
    }
  }

  private drainWaiting(nowNs: number): void {
    while (this.waiting.length > 0 && this.inflightCount < this.maxInflight) {
      const e = this.waiting.shift()!;
      if (this.entries.get(e.id) !== e) continue;
      if (nowNs >= e.expiresNs) {
        this.counters.missed++;
        this.entries.delete(e.id);
        continue;
      }
      this.start(e);
    }
  }

  private start(e: Tracked): void {
    this.counters.issued++;
    this.inflightCount++;
    // The entry stays in `entries` until the refresh re-tracks its key (a new entry) or ends.
    this.o.refresh(e.key).then(
      (ok) => this.done(e, ok),
      () => this.done(e, false),
    );
  }

  private done(e: Tracked, ok: boolean): void {
    this.inflightCount--;
    if (ok) this.counters.refreshed++;
    else this.counters.failed++;
    if (this.entries.get(e.id) === e) this.entries.delete(e.id); // not re-tracked: nothing more to do for this life
  }

  private untrackId(id: string): void {
    this.entries.delete(id);
  }

  /**
   * A key untracked or re-tracked leaves its old item in the heap until that item's time
   * comes, which for a day-long TTL is half a day away: names promoted and demoted
   * without end (a churning hot set, or names asked three times each on purpose) would
   * pile up items faster than they fall due. So when the schedule holds more than twice
   * the live entries, it is rebuilt from the live ones: a linear pass, paid for by the
   * pushes that made it twice as large.
   */
  private compact(): void {
    const live = (e: Tracked): boolean => this.entries.get(e.id) === e;
    const keep = this.heap.filter(live);
    keep.sort((a, b) => a.atNs - b.atNs); // a sorted array is a valid min-heap
    this.heap = keep;
    this.waiting = this.waiting.filter(live);
  }

  private push(e: Tracked): void {
    if (this.heap.length + this.waiting.length >= 2 * this.entries.size + 1024) this.compact();
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.atNs <= h[i]!.atNs) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private pop(): Tracked {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.atNs < h[m]!.atNs) m = l;
        if (r < h.length && h[r]!.atNs < h[m]!.atNs) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}
