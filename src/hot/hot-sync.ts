/**
 * HotSync keeps the kernel's hot map equal to what the one promotion policy holds hot
 * (src/hot/shared-promotion.ts, on the main thread over the shared cache): it applies
 * the policy's events to the map, and reads the per-entry XDP hit counters back so the
 * policy can credit the hits the kernel served (entries earning their place keep it).
 */
import type { CachedAnswer } from '../dns/answer.js';
import type { PromotionEvent } from './promotion.js';
import { HeimdallError, isNativeError } from '../errors.js';
import type { FastPath } from '../xdp/fastpath.js';
import { keyString } from '../dns/key.js';

export interface HotSyncCounters {
  promotions: number;
  demotions: number;
  /** Entries rewritten in place with a new answer of their key. */
  replacements: number;
  /** Promotions refused: map full, or an answer the map cannot hold. */
  refused: number;
  /**
   * Map writes and deletes the kernel failed (a bpf() error). A failed removal is tried
   * again at every collectKernelHits() until it takes; a failed write is tried again at
   * the key's next promotion or replace.
   */
  failed: number;
}

export class HotSync {
  /** key -> the answer written to the map. */
  private readonly written = new Map<string, CachedAnswer>();
  /** hit slot -> key written there; hit slot -> counter value last read. */
  private readonly bySlot: (string | undefined)[] = [];
  private readonly lastHits: Float64Array;
  readonly counters: HotSyncCounters = { promotions: 0, demotions: 0, replacements: 0, refused: 0, failed: 0 };
  /**
   * Keys whose removal the kernel failed: still in the map, so still in `written` (and
   * served by XDP), and removed again at the next collectKernelHits(). A demoted or flushed
   * answer must not stay in the map because one delete failed: the policy has let it go
   * and would never ask again.
   */
  private readonly stuck = new Map<string, Uint8Array>();

  constructor(private readonly fp: FastPath) {
    this.lastHits = new Float64Array(fp.capacity);
  }

  get size(): number {
    return this.written.size;
  }

  /** Applies one promotion event. */
  apply(e: PromotionEvent): void {
    if (e.kind === 'demote') this.remove(keyString(e.key), e.key);
    else this.write(keyString(e.answer.key), e.answer);
  }

  /** Whether the key is in the XDP map now. */
  isHot(key: Uint8Array): boolean {
    return this.written.has(keyString(key));
  }

  /** Takes a key out of the map now (a cache flush). */
  drop(key: Uint8Array): boolean {
    const id = keyString(key);
    const had = this.written.has(id);
    this.remove(id, key);
    return had;
  }

  /** Empties the map (a flush of everything); returns how many entries it had. */
  dropAll(): number {
    const all = [...this.written.values()];
    for (const a of all) this.remove(keyString(a.key), a.key);
    return all.length;
  }

  /**
   * Hits the kernel served per hot key since the last call. The counters are read from
   * mapped memory, then compared in plain arrays; only keys whose counter moved cost
   * more than that.
   */
  collectKernelHits(): { key: Uint8Array; hits: number }[] {
    if (this.stuck.size > 0) this.retryRemovals();
    const out: { key: Uint8Array; hits: number }[] = [];
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
      out.push({ key: a.key, hits: delta });
    }
    return out;
  }

  private write(id: string, answer: CachedAnswer): void {
    if (this.written.get(id) === answer) return;
    try {
      const fresh = !this.written.has(id);
      const slot = this.fp.put(answer);
      this.written.set(id, answer);
      this.stuck.delete(id); // promoted again: the entry is wanted after all
      if (!fresh) this.counters.replacements++;
      else {
        this.counters.promotions++;
        this.bySlot[slot] = id;
        this.lastHits[slot] = 0; // put() zeroed the counter of a fresh slot
      }
    } catch (e) {
      if (e instanceof HeimdallError) this.counters.refused++;
      else if (isNativeError(e)) this.counters.failed++;
      else throw e;
    }
  }

  private remove(id: string, key: Uint8Array): void {
    if (!this.written.has(id)) return;
    const slot = this.fp.slotOf(key);
    try {
      this.fp.delete(key);
    } catch (e) {
      if (!isNativeError(e)) throw e;
      this.counters.failed++;
      this.stuck.set(id, key);
      return;
    }
    this.written.delete(id);
    this.stuck.delete(id);
    if (slot !== undefined) this.bySlot[slot] = undefined;
    this.counters.demotions++;
  }

  /** Removals the kernel failed, tried again (see `stuck`). */
  private retryRemovals(): void {
    for (const [id, key] of [...this.stuck]) this.remove(id, key);
  }
}
