/**
 * SharedPromotion: the one promotion policy of the process, on the main thread, over
 * the slots of the one SharedCache (src/engine/shared-cache.ts). With one cache there
 * is one view of heat, so the hot map follows it directly: no per-engine hot sets to
 * merge.
 *
 * - Candidates: a thread whose hit (or insert, counting the asks before it) takes a
 *   slot's uses to the threshold reports (slot, sequence number); a worker posts it to
 *   the main thread. The policy reads a copy of the entry (if the slot still holds the
 *   same write) and promotes it if there is room or it is hot enough to displace the
 *   coldest hot entry (PromotionPolicy).
 * - Writes to hot slots: any thread may refresh or evict a hot entry. tick() (and
 *   noteWrite() for a write this thread just made) compares each hot slot's sequence
 *   number with the one promoted: a new answer for the same key is rewritten in the hot
 *   map in place (replace), a slot that now holds nothing or another key is
 *   demoted 'evicted'. Expired hot entries are demoted by the policy's own tick.
 * - Kernel hits (the XDP map's counters) heat hot entries and are credited to the
 *   cache slot's hit counter, so the lazy SLRU keeps what the kernel serves.
 */
import { answerFromResponse, type CachedAnswer } from '../dns/answer.js';
import { RCODE_SERVFAIL } from '../dns/constants.js';
import { keyEquals } from '../dns/key.js';
import type { SharedCache } from '../engine/shared-cache.js';
import { type Clock, monotonicNs } from '../engine/clock.js';
import { PromotionPolicy, type PromotionEvent } from './promotion.js';

export interface SharedPromotionOptions {
  /** Hot-map entries. */
  capacity: number;
  onEvent?: (e: PromotionEvent) => void;
  halfLifeNs?: number;
  displaceFactor?: number;
  /**
   * Which answers the hot map can take (default: anything but SERVFAIL). The service
   * passes the XDP map's own limits: an answer it cannot hold must not take a hot place,
   * where it would displace one the kernel could serve (and anyone can get large answers
   * asked three times).
   */
  eligible?: (a: CachedAnswer) => boolean;
  clock?: Clock;
}

/**
 * A threshold no entry's uses reach (the cache counts them in 32 bits): promotion off. The
 * service sets it while XDP answers nothing (src/service/service.ts promotionThreshold).
 */
export const PROMOTE_NEVER = 0x7fffffff;

export class SharedPromotion {
  readonly policy: PromotionPolicy;
  private readonly clock: Clock;
  /** Per slot: the sequence number of the write the policy last saw (promoted, or heated). */
  private readonly seen: Int32Array;
  private readonly known: Uint8Array;
  /** Slots reported since the last tick: their report mark is cleared then. */
  private reported: number[] = [];
  private ticks = 0;

  constructor(private readonly cache: SharedCache, o: SharedPromotionOptions) {
    const slots = cache.shards * cache.per;
    this.clock = o.clock ?? monotonicNs;
    this.policy = new PromotionPolicy({
      cacheCapacity: slots,
      capacity: Math.min(o.capacity, slots),
      threshold: cache.threshold,
      halfLifeNs: o.halfLifeNs,
      displaceFactor: o.displaceFactor,
      eligible: o.eligible,
      onEvent: (e) => {
        // A key can be hot in two slots for a moment: its old slot was emptied or reused
        // and, before the upkeep looked at it, the key came back in a new slot and was
        // promoted there (the map entry rewritten with the new answer). Demoting the old
        // slot then must not delete the key from the map nor clear the new slot's mark.
        if (e.kind === 'demote' && this.policy.isHot(e.key)) return;
        // The hot mark in the cache stops every thread from reporting a hot slot.
        const key = e.kind === 'demote' ? e.key : e.answer.key;
        const slot = cache.find(key, key.length);
        if (slot >= 0) cache.setHot(slot, e.kind !== 'demote');
        o.onEvent?.(e);
      },
      clock: this.clock,
    });
    this.policy.bindCache({ touch: (s, hits) => cache.touch(s, hits), find: (key) => cache.find(key, key.length) });
    this.seen = new Int32Array(slots);
    this.known = new Uint8Array(slots);
  }

  get size(): number {
    return this.policy.size;
  }

  /** A new threshold for every thread (a reload). */
  setThreshold(n: number): void {
    this.cache.setThreshold(n);
    this.policy.setThreshold(n);
  }

  isHot(key: Uint8Array): boolean {
    return this.policy.isHot(key);
  }

  hotAnswers(): CachedAnswer[] {
    return this.policy.hotAnswers();
  }

  /** A slot's uses reached the threshold as of write `seq` (reported by any thread). */
  candidate(slot: number, seq: number, nowNs: number = this.clock()): void {
    this.reported.push(slot);
    // Reported before promotion was switched off, and delivered after: dropped.
    if (this.cache.threshold >= PROMOTE_NEVER) return;
    let a = this.cache.answerAt(slot, seq);
    if (a === undefined) {
      // Rewritten since (a refresh keeps its uses): judge what the slot holds now.
      seq = this.cache.seqOf(slot);
      a = this.cache.answerAt(slot, seq);
      if (a === undefined || this.cache.usesOf(slot) < this.cache.threshold) return;
    }
    if (this.policy.isHotSlot(slot)) {
      this.noteWrite(slot, nowNs);
      if (this.policy.isHotSlot(slot)) return;
    }
    if (this.known[slot] === 0 || this.seen[slot] !== seq) {
      this.policy.onInsert(slot, a, nowNs, 0); // another entry than the one last heated here
      this.known[slot] = 1;
      this.seen[slot] = seq;
    }
    const uses = this.cache.usesOf(slot);
    this.policy.onHit(slot, a, Math.max(uses, this.cache.threshold), nowNs);
  }

  /** Hits the XDP program served for a hot key since the last call. */
  noteKernelHits(key: Uint8Array, hits: number, nowNs: number = this.clock()): boolean {
    return this.policy.noteKernelHits(key, hits, nowNs);
  }

  /**
   * A prefetched answer for a hot name (src/hot/prefetch.ts): written to the cache, and the
   * hot map rewritten at once. A SERVFAIL is not written: it would replace an answer that
   * is still valid (a refresh comes in the last tenth of its life) and demote the name. True
   * when the cache took the answer (not when its shard stayed busy: the old entry stays).
   * `sinceFlush`: the cache's flush generation when the refresh was asked; an operator's
   * flush since then drops the answer (it would bring the flushed name back, hot).
   */
  acceptRefresh(msg: Uint8Array, nowNs: number, dnssecOk: boolean, checkingDisabled: boolean, sinceFlush?: number): boolean {
    const a = answerFromResponse(msg, nowNs, this.cache.ttlPolicy, dnssecOk, checkingDisabled);
    if (a.rcode === RCODE_SERVFAIL) return false;
    const slot = this.cache.insert(a, nowNs, 0, true, sinceFlush);
    if (slot < 0) return false;
    this.noteWrite(slot, nowNs);
    return true;
  }

  /**
   * Looks at a hot slot after a write (a refresh or an eviction by any thread): the
   * hot map is rewritten with the new answer of the same key, or the key demoted.
   */
  noteWrite(slot: number, nowNs: number = this.clock()): void {
    const old = this.policy.hotAnswerOf(slot);
    if (old === undefined) return;
    const seq = this.cache.seqOf(slot);
    if (seq === this.seen[slot] || (seq & 1) !== 0) return;
    const a = this.cache.answerAt(slot, seq);
    if (a !== undefined && a.key.length === old.key.length && keyEquals(a.key, old.key, 0, old.key.length)) {
      this.seen[slot] = seq;
      this.policy.onReplace(slot, old, a, nowNs);
    } else {
      this.known[slot] = 0;
      this.policy.onRemove(slot, old, 'evicted');
    }
  }

  /** Upkeep (about once a second): writes to hot slots followed, expired hot entries demoted. */
  tick(nowNs: number = this.clock()): void {
    for (const slot of this.policy.hotSlots()) this.noteWrite(slot, nowNs);
    this.policy.tick(nowNs);
    // Slots reported and not promoted may be reported again (at most once a tick each).
    const r = this.reported;
    this.reported = [];
    for (let i = 0; i < r.length; i++) this.cache.clearReported(r[i]!);
    // A report posted by a worker that died before it was delivered left its mark: every
    // 30 ticks all marks are cleared (a scan of one byte per slot).
    if (++this.ticks % 30 === 0) this.cache.clearAllReported();
  }
}
