/**
 * How often each name has been asked, across every worker: a table of counters in
 * shared memory indexed by the cache key's hash. Each worker has its own cache (no lock
 * on the query path), but "promote a name asked for the third time" must count the
 * asks that landed on every worker's queue, so the counting is shared.
 *
 * Collisions only make a name look hotter than it is (an earlier promotion, which the
 * policy's capacity and heat still bound); counts are halved periodically so that old
 * popularity fades.
 */
import { keyHash } from '../dns/key.js';

export const ASK_TABLE_BITS = 20;

export class AskCounter {
  readonly buffer: SharedArrayBuffer;
  private readonly counts: Int32Array;
  private readonly mask: number;

  constructor(buffer?: SharedArrayBuffer, bits = ASK_TABLE_BITS) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 << bits);
    this.counts = new Int32Array(this.buffer);
    if ((this.counts.length & (this.counts.length - 1)) !== 0) throw new RangeError('ask table size must be a power of two');
    this.mask = this.counts.length - 1;
  }

  /** Counts one ask of key[0, len) and returns how many there have been. */
  add(key: Uint8Array, len: number): number {
    return this.addHashed(keyHash(key, 0, len));
  }

  /** add() for a caller that already has the key's keyHash (the cache lookup needs it too). */
  addHashed(hash: number): number {
    return Atomics.add(this.counts, hash & this.mask, 1) + 1;
  }

  /** Halves every count (the main thread calls this now and then). */
  decay(): void {
    const c = this.counts;
    for (let i = 0; i < c.length; i++) {
      const v = c[i]!;
      if (v !== 0) Atomics.store(c, i, v >> 1);
    }
  }
}
