/**
 * HotSync keeps the kernel's hot map equal to the union of what every engine's
 * promotion policy holds hot. Each engine (one per worker, one in the main thread)
 * promotes and demotes on its own; a key stays in the map while any engine holds it,
 * with the freshest of their answers. It also reads the per-entry XDP hit counters
 * back, so engines can credit the hits the kernel served (entries earning their place
 * keep it).
 */
import type { CachedAnswer } from '../dns/answer.js';
import type { PromotionEvent } from './promotion.js';
import { HeimdallError, isNativeError } from '../errors.js';
import type { FastPath } from '../xdp/fastpath.js';
import { keyString } from '../dns/key.js';

export interface HotSyncCounters {
  promotions: number;
  demotions: number;
  /** Promotions refused: map full, or an answer the map cannot hold. */
  refused: number;
}

export class HotSync {
  /** key -> engine id -> that engine's answer. */
  private readonly holders = new Map<string, Map<number, CachedAnswer>>();
  /** key -> the answer written to the map. */
  private readonly written = new Map<string, CachedAnswer>();
  /** hit slot -> key written there; hit slot -> counter value last read. */
  private readonly bySlot: (string | undefined)[] = [];
  private readonly lastHits: Float64Array;
  readonly counters: HotSyncCounters = { promotions: 0, demotions: 0, refused: 0 };

  constructor(private readonly fp: FastPath) {
    this.lastHits = new Float64Array(fp.capacity);
  }

  get size(): number {
    return this.written.size;
  }

  /** Applies one engine's promotion event. */
  apply(engine: number, e: PromotionEvent): void {
    if (e.kind === 'promote') {
      const id = keyString(e.answer.key);
      let h = this.holders.get(id);
      if (!h) this.holders.set(id, (h = new Map()));
      h.set(engine, e.answer);
      this.write(id);
    } else {
      const id = keyString(e.key);
      const h = this.holders.get(id);
      if (!h || !h.delete(engine)) return;
      if (h.size === 0) {
        this.holders.delete(id);
        this.remove(id, e.key);
      } else {
        this.write(id);
      }
    }
  }

  /** Whether the key is in the XDP map now. */
  isHot(key: Uint8Array): boolean {
    return this.written.has(keyString(key));
  }

  /** Takes a key out of the map now, whichever engines hold it (a cache flush). */
  drop(key: Uint8Array): boolean {
    const id = keyString(key);
    this.holders.delete(id);
    const had = this.written.has(id);
    this.remove(id, key);
    return had;
  }

  /** Empties the map (a flush of everything); returns how many entries it had. */
  dropAll(): number {
    const all = [...this.written.values()];
    this.holders.clear();
    for (const a of all) this.remove(keyString(a.key), a.key);
    return all.length;
  }

  /** Drops everything an engine held (its worker stopped or died). */
  forgetEngine(engine: number): void {
    for (const [id, h] of this.holders) {
      if (!h.delete(engine)) continue;
      if (h.size === 0) {
        this.holders.delete(id);
        const a = this.written.get(id);
        if (a) this.remove(id, a.key);
      } else {
        this.write(id);
      }
    }
  }

  /**
   * Hits the kernel served per hot key since the last call, for the engines that hold
   * each key: [engine ids, key, new hits]. The counters are read from mapped memory,
   * then compared in plain arrays; only keys whose counter moved cost more than that.
   */
  collectKernelHits(): { engines: number[]; key: Uint8Array; hits: number }[] {
    const out: { engines: number[]; key: Uint8Array; hits: number }[] = [];
    if (this.written.size === 0) return out;
    const all = this.fp.allHits();
    const last = this.lastHits;
    for (let slot = 0; slot < all.length; slot++) {
      const now = all[slot]!;
      if (now === last[slot]) continue;
      const delta = now - last[slot]!;
      last[slot] = now;
      const id = this.bySlot[slot];
      const a = id === undefined ? undefined : this.written.get(id);
      if (a === undefined || delta <= 0) continue;
      out.push({ engines: [...(this.holders.get(id!)?.keys() ?? [])], key: a.key, hits: delta });
    }
    return out;
  }

  /**
   * The kernel hits since the last call, grouped by the engine that holds each key: what
   * each engine's policy is to be told (one message per worker, not per key).
   */
  kernelHitsByEngine(): Map<number, { key: Uint8Array; hits: number }[]> {
    const out = new Map<number, { key: Uint8Array; hits: number }[]>();
    for (const k of this.collectKernelHits()) {
      for (const id of k.engines) {
        let list = out.get(id);
        if (!list) out.set(id, (list = []));
        list.push({ key: k.key, hits: k.hits });
      }
    }
    return out;
  }

  private write(id: string): void {
    const h = this.holders.get(id);
    if (!h) return;
    let best: CachedAnswer | undefined;
    for (const a of h.values()) if (!best || a.expiresNs > best.expiresNs) best = a;
    if (!best || this.written.get(id) === best) return;
    try {
      const fresh = !this.written.has(id);
      const slot = this.fp.put(best);
      this.written.set(id, best);
      if (fresh) {
        this.counters.promotions++;
        this.bySlot[slot] = id;
        this.lastHits[slot] = 0; // put() zeroed the counter of a fresh slot
      }
    } catch (e) {
      if (e instanceof HeimdallError || isNativeError(e)) {
        this.counters.refused++;
        return;
      }
      throw e;
    }
  }

  private remove(id: string, key: Uint8Array): void {
    if (!this.written.delete(id)) return;
    const slot = this.fp.slotOf(key);
    if (slot !== undefined) this.bySlot[slot] = undefined;
    this.fp.delete(key);
    this.counters.demotions++;
  }
}
