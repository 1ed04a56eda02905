/**
 * The hot key's name hash computed on 32-bit halves (src/xdp/hot-entry.ts) against the
 * definition in bpf/heimdall.h written plainly with BigInt: equal for every name length
 * the key allows, any bytes, any seed. The privileged tests in fastpath.test.ts show the
 * XDP program finds entries keyed this way; this one covers what they cannot enumerate.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hotKeyFromCacheKey, hotNameHash } from '../../src/xdp/hot-entry.js';
import type { Layout } from '../../src/native/addon.js';

const MASK = (1n << 64n) - 1n;
const MUL1 = 0x9e3779b97f4a7c15n;
const MUL2 = 0xff51afd7ed558ccdn;

/** bpf/heimdall.h: h = seed; per little-endian word w: h = (h ^ w) * MUL1; h ^= h >> 29; then h ^= len; h *= MUL2; h ^= h >> 32. */
function reference(name: Uint8Array, seed: bigint): bigint {
  let h = seed & MASK;
  for (let o = 0; o < name.length; o += 8) {
    let w = 0n;
    for (let i = 0; i < 8 && o + i < name.length; i++) w |= BigInt(name[o + i]!) << BigInt(8 * i);
    h = ((h ^ w) * MUL1) & MASK;
    h ^= h >> 29n;
  }
  h ^= BigInt(name.length);
  h = (h * MUL2) & MASK;
  return h ^ (h >> 32n);
}

const layout = {
  HOT_HASH_MUL1: MUL1,
  HOT_HASH_MUL2: MUL2,
  HOT_NAME_MAX: 255,
  HOT_KEY_DO: 1,
  HOT_KEY_CD: 2,
  key: { size: 16, name_hash: 0, qtype: 8, qclass: 10, flags: 12, name_len: 13 },
} as unknown as Layout;

describe('hot name hash', () => {
  it('equals the BigInt definition for every length 1-255, all-ones bytes and seed', () => {
    const seed = MASK;
    for (let n = 1; n <= 255; n++) {
      const name = new Uint8Array(n).fill(0xff);
      expect(hotNameHash(name, seed, layout)).toBe(reference(name, seed));
    }
  });

  it('equals the BigInt definition for random names and seeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 255 }), fc.bigInt({ min: 0n, max: MASK }), (name, seed) => {
        expect(hotNameHash(name, seed, layout)).toBe(reference(name, seed));
      }),
      { numRuns: 2000 },
    );
  });

  it('writes it into the hot key, with the question after it', () => {
    const name = Buffer.from([7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0]);
    const cacheKey = Buffer.concat([name, Buffer.from([0, 1, 0, 1, 1])]);
    const seed = 0x0123456789abcdefn;
    const key = hotKeyFromCacheKey(cacheKey, layout, seed);
    expect(key.readBigUInt64LE(0)).toBe(reference(name, seed));
    expect([...key.subarray(8)]).toEqual([0, 1, 0, 1, 1, name.length, 0, 0]);
    // The key's flags byte: DO and CD each to their own hot-key flag.
    for (const [flags, hot] of [[0, 0], [1, 1], [2, 2], [3, 3]] as const) {
      const k = hotKeyFromCacheKey(Buffer.concat([name, Buffer.from([0, 1, 0, 1, flags])]), layout, seed);
      expect(k[12]).toBe(hot);
    }
  });
});
