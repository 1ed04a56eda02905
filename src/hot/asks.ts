/**
 * How often each name has been asked, across every worker: a table in shared memory,
 * indexed by the cache key's hash. Every worker answers from one shared cache, whose
 * per-slot uses count the hits on any queue; but two asks of a new name on two queues
 * may both miss before the first answer is stored, so "promote a name asked for the
 * third time" also counts asks here, and the insert carries them.
 *
 * A count must belong to its name: a plain table of counters indexed by hash lets
 * unrelated names add up, and a flood of names asked once each then promotes some of
 * them (two earlier names in the same counter make the third one's first ask read 3).
 * So each entry carries a fingerprint of its key, from a second hash independent of the
 * index, and a name's count is read only from an entry with its fingerprint:
 *
 *   entry (32 bits) = fingerprint (22 bits, never 0) << 10 | count (10 bits, saturating)
 *
 * Entries go in buckets of two (one cache line holds both). An ask finds its entry in
 * its bucket and adds one; a name not there takes the weaker entry if that one holds at
 * most one ask, else it ages that entry by one and reads 1 (HeavyKeeper's rule: a flood
 * of new names wears down what it collides with instead of taking it over, so a name
 * asked often keeps its count). For a name asked once to read 3, two other names must
 * share its bucket and its 22-bit fingerprint (about 2^-40 for a pair at the default
 * size): collisions no longer promote anything. A name whose entry was taken reads low,
 * which only delays its promotion; the cache slot's own use count still counts.
 *
 * Updates are compare-and-swap on one word; a lost race is retried a few times, then
 * the ask reads 1 (too low, never too high). Counts are halved periodically so that old
 * popularity fades.
 */
import { keyHash } from '../dns/key.js';

export const ASK_TABLE_BITS = 20;

const COUNT_BITS = 10;
const COUNT_MASK = (1 << COUNT_BITS) - 1;
const FP_BITS = 32 - COUNT_BITS;
const FP_MASK = (1 << FP_BITS) - 1;

/**
 * A 32-bit hash of key[0, len) independent of keyHash (another seed and mixing
 * constants, same four-bytes-a-step shape), for fingerprints.
 */
export function keyFingerprint(key: Uint8Array, len: number): number {
  let h = 0x9747b28c ^ Math.imul(len, 0x27d4eb2f);
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    let w = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    w = Math.imul(w, 0x85ebca77);
    w = (w << 13) | (w >>> 19);
    h ^= Math.imul(w, 0xc2b2ae3d);
    h = (h << 17) | (h >>> 15);
    h = (Math.imul(h, 9) + 0x165667b1) | 0;
  }
  let w = 0;
  for (let sh = 0; i < len; i++, sh += 8) w |= key[i]! << sh;
  w = Math.imul(w, 0x85ebca77);
  h ^= (w << 13) | (w >>> 19);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return h >>> 0;
}

/** Tries per ask before giving up on a contended entry. */
const CAS_TRIES = 4;

export class AskCounter {
  readonly buffer: SharedArrayBuffer;
  private readonly e: Uint32Array;
  /** Index of a bucket's first entry: hash & bucketMask. */
  private readonly bucketMask: number;

  constructor(buffer?: SharedArrayBuffer, bits = ASK_TABLE_BITS) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 << bits);
    this.e = new Uint32Array(this.buffer);
    const n = this.e.length;
    if (n < 2 || (n & (n - 1)) !== 0) throw new RangeError('ask table size must be a power of two, at least 2');
    this.bucketMask = (n - 1) & ~1;
  }

  /** Counts one ask of key[0, len) and returns how many there have been. */
  add(key: Uint8Array, len: number): number {
    return this.addHashed(keyHash(key, 0, len), key, len);
  }

  /** add() for a caller that already has the key's keyHash (the cache lookup needs it too). */
  addHashed(hash: number, key: Uint8Array, len: number): number {
    let fp = keyFingerprint(key, len) & FP_MASK;
    if (fp === 0) fp = 1; // 0 marks an empty entry
    const e = this.e;
    const b = hash & this.bucketMask;
    for (let t = 0; t < CAS_TRIES; t++) {
      const e0 = e[b]!;
      const e1 = e[b + 1]!;
      let at = -1;
      let old = 0;
      if (e0 >>> COUNT_BITS === fp && (e0 & COUNT_MASK) !== 0) {
        at = b;
        old = e0;
      } else if (e1 >>> COUNT_BITS === fp && (e1 & COUNT_MASK) !== 0) {
        at = b + 1;
        old = e1;
      }
      if (at >= 0) {
        const c = old & COUNT_MASK;
        if (c === COUNT_MASK) return c;
        if (Atomics.compareExchange(e, at, old, old + 1) === old) return c + 1;
        continue;
      }
      // Not in its bucket: the entry with fewer asks is the one to take or wear down.
      const weak = (e0 & COUNT_MASK) <= (e1 & COUNT_MASK) ? b : b + 1;
      const w = weak === b ? e0 : e1;
      const wc = w & COUNT_MASK;
      const next = wc <= 1 ? ((fp << COUNT_BITS) | 1) >>> 0 : w - 1;
      if (Atomics.compareExchange(e, weak, w, next) === w) return 1;
    }
    return 1;
  }

  /** Asks counted for key[0, len) so far, without counting one (0 if it has no entry). */
  peek(key: Uint8Array, len: number): number {
    let fp = keyFingerprint(key, len) & FP_MASK;
    if (fp === 0) fp = 1;
    const b = keyHash(key, 0, len) & this.bucketMask;
    for (const x of [this.e[b]!, this.e[b + 1]!]) if (x >>> COUNT_BITS === fp) return x & COUNT_MASK;
    return 0;
  }

  /** Halves every count (the main thread calls this now and then); an entry at 0 is free. */
  decay(): void {
    const e = this.e;
    for (let i = 0; i < e.length; i++) {
      const v = e[i]!;
      if (v === 0) continue;
      const c = (v & COUNT_MASK) >>> 1;
      Atomics.compareExchange(e, i, v, c === 0 ? 0 : (((v >>> COUNT_BITS) << COUNT_BITS) | c) >>> 0);
    }
  }
}
