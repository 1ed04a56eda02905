/**
 * A buddy allocator over regions of a shared byte arena, with all of its state in
 * shared typed arrays so that every thread's view of the shared cache (shared-cache.ts)
 * allocates from the same blocks.
 *
 * The arena is cut into units of UNIT bytes. A block of order k is 2^k units, aligned
 * on its own size within its region; a region is a whole number of top-order blocks.
 * Freeing a block merges it with its buddy (the other half of the block of order k+1)
 * while that buddy is free and whole, so free space never stays cut into pieces that a
 * larger entry could use: fragmentation is bounded by the power-of-two rounding of each
 * entry (at most half a block wasted) and by the order of frees, never by history.
 *
 * State:
 *   unit state (one byte per unit): 0 inside a block, HEAD_USED|k or HEAD_FREE|k on the
 *     first unit of a block of order k;
 *   free lists (one per order and region): doubly linked through the first 8 bytes of
 *     each free block (next, prev unit numbers, -1 at the ends), heads in `heads`.
 *
 * Nothing here locks: the caller (one shard of the cache) holds the region's lock. A
 * thread killed halfway through an operation leaves the region inconsistent; the cache
 * then resets the whole region (reset()), which is why a region belongs to one shard.
 */

/** Bytes per unit: the smallest block. Holds the two free-list links. */
export const UNIT = 16;
export const UNIT_SHIFT = 4;
const WORDS_PER_UNIT = UNIT / 4;
/** Largest order any region uses: 2^13 units = 128 KiB, room for the largest answer. */
export const MAX_ORDER = 13;

const HEAD_USED = 0x40;
const HEAD_FREE = 0x80;
const ORDER_MASK = 0x1f;

/** Smallest order whose block holds `bytes` bytes. */
export function orderFor(bytes: number): number {
  const units = (bytes + UNIT - 1) >>> UNIT_SHIFT;
  let k = 0;
  while (1 << k < units) k++;
  return k;
}

export class BuddyRegions {
  /** unit -> 0 | HEAD_USED|order | HEAD_FREE|order */
  readonly state: Uint8Array;
  /** The arena as 32-bit words: a free block's links live at unit * UNIT / 4. */
  private readonly words: Int32Array;

  /**
   * @param arena  the shared arena (a multiple of UNIT bytes)
   * @param state  one byte per unit of the arena
   * @param heads  free-list heads: (topOrder + 1) words per region, from headsBase(region)
   * @param regionUnits units per region (a multiple of 2^topOrder)
   */
  constructor(
    arena: SharedArrayBuffer,
    state: Uint8Array,
    readonly heads: Int32Array,
    readonly regionUnits: number,
    readonly topOrder: number,
    private readonly headsBase: (region: number) => number,
  ) {
    this.words = new Int32Array(arena);
    this.state = state;
    if (topOrder < 0 || topOrder > MAX_ORDER) throw new RangeError(`buddy top order ${topOrder}`);
    if (regionUnits % (1 << topOrder) !== 0) throw new RangeError('region is not a whole number of top blocks');
  }

  /** Empties a region: every top block free, nothing else. */
  reset(region: number): void {
    const base = region * this.regionUnits;
    const hb = this.headsBase(region);
    for (let k = 0; k <= this.topOrder; k++) this.heads[hb + k] = -1;
    this.state.fill(0, base, base + this.regionUnits);
    const top = 1 << this.topOrder;
    for (let u = base + this.regionUnits - top; u >= base; u -= top) this.push(hb, u, this.topOrder);
  }

  /** A block of `order` in the region (its first unit), or -1 when none is free. */
  alloc(region: number, order: number): number {
    const hb = this.headsBase(region);
    let k = order;
    while (k <= this.topOrder && this.heads[hb + k]! < 0) k++;
    if (k > this.topOrder) return -1;
    const u = this.heads[hb + k]!;
    this.unlink(hb, u, k);
    while (k > order) {
      k--;
      this.push(hb, u + (1 << k), k);
    }
    this.state[u] = HEAD_USED | order;
    return u;
  }

  /** Frees the block at unit `u` (its order is in the state map); merges buddies. */
  free(region: number, u: number): void {
    const hb = this.headsBase(region);
    const base = region * this.regionUnits;
    let order = this.state[u]! & ORDER_MASK;
    this.state[u] = 0;
    while (order < this.topOrder) {
      const buddy = base + ((u - base) ^ (1 << order));
      if (this.state[buddy] !== (HEAD_FREE | order)) break;
      this.unlink(hb, buddy, order);
      this.state[buddy] = 0;
      if (buddy < u) u = buddy;
      order++;
    }
    this.push(hb, u, order);
  }

  /** Order of the used block at `u`, or -1 if `u` is not the head of a used block. */
  usedOrder(u: number): number {
    const s = this.state[u]!;
    return (s & HEAD_USED) !== 0 ? s & ORDER_MASK : -1;
  }

  /**
   * Checks a region: blocks tile it exactly, aligned; every free block is on the free
   * list of its order and nothing else is; no two free buddies are left unmerged.
   * Returns the used blocks (unit -> order); throws on the first violation.
   */
  check(region: number): Map<number, number> {
    const base = region * this.regionUnits;
    const hb = this.headsBase(region);
    const used = new Map<number, number>();
    const free = new Map<number, number>();
    for (let u = base; u < base + this.regionUnits; ) {
      const s = this.state[u]!;
      if ((s & (HEAD_USED | HEAD_FREE)) === 0) throw new Error(`buddy: unit ${u} is not a block head`);
      const k = s & ORDER_MASK;
      if (k > this.topOrder || (u - base) % (1 << k) !== 0) throw new Error(`buddy: block ${u} order ${k} misaligned`);
      for (let i = 1; i < 1 << k; i++) if (this.state[u + i] !== 0) throw new Error(`buddy: unit ${u + i} inside block ${u} is marked`);
      if ((s & HEAD_FREE) !== 0) {
        free.set(u, k);
        if (k < this.topOrder) {
          const buddy = base + ((u - base) ^ (1 << k));
          if (this.state[buddy] === (HEAD_FREE | k)) throw new Error(`buddy: free buddies ${u} and ${buddy} not merged`);
        }
      } else {
        used.set(u, k);
      }
      u += 1 << k;
    }
    let listed = 0;
    for (let k = 0; k <= this.topOrder; k++) {
      let prev = -1;
      for (let u = this.heads[hb + k]!, n = 0; u >= 0; u = this.words[u * WORDS_PER_UNIT]!, n++) {
        if (n > this.regionUnits) throw new Error(`buddy: free list ${k} loops`);
        if (free.get(u) !== k) throw new Error(`buddy: unit ${u} on free list ${k} is not a free block of that order`);
        if (this.words[(u * WORDS_PER_UNIT) + 1] !== prev) throw new Error(`buddy: bad back link at ${u}`);
        prev = u;
        listed++;
      }
    }
    if (listed !== free.size) throw new Error(`buddy: ${free.size} free blocks, ${listed} listed`);
    return used;
  }

  private push(hb: number, u: number, k: number): void {
    const w = u * WORDS_PER_UNIT;
    const h = this.heads[hb + k]!;
    this.words[w] = h;
    this.words[w + 1] = -1;
    if (h >= 0) this.words[(h * WORDS_PER_UNIT) + 1] = u;
    this.heads[hb + k] = u;
    this.state[u] = HEAD_FREE | k;
  }

  private unlink(hb: number, u: number, k: number): void {
    const w = u * WORDS_PER_UNIT;
    const next = this.words[w]!;
    const prev = this.words[w + 1]!;
    if (prev >= 0) this.words[prev * WORDS_PER_UNIT] = next;
    else this.heads[hb + k] = next;
    if (next >= 0) this.words[(next * WORDS_PER_UNIT) + 1] = prev;
  }
}
