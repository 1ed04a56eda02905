/**
 * keyHash is keyed: names an outsider picks to share one bucket under one key do not
 * share a bucket under another, every thread viewing a shared table hashes with its
 * creator's key, and a thread cannot end up with two keys.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { hashKeyWords, keyHash, makeKey, setHashKeyForTest, useHashKey } from '../../src/dns/key.js';
import { SharedCache } from '../../src/engine/shared-cache.js';
import { FetchTable } from '../../src/upstream/fetch-table.js';

const hashOf = (name: string): number => {
  const k = makeKey(name, 1, 1, false);
  return keyHash(k, 0, k.length);
};

/** Most names of `names` in one of 2^bits buckets (the hash's low bits, as the tables index). */
function fullestBucket(names: string[], bits: number): number {
  const count = new Map<number, number>();
  for (const n of names) {
    const b = hashOf(n) & ((1 << bits) - 1);
    count.set(b, (count.get(b) ?? 0) + 1);
  }
  return Math.max(...count.values());
}

describe('keyHash', () => {
  it('depends on the key, in every bit position', () => {
    setHashKeyForTest(0x01234567, 0x89abcdef);
    const a = ['a.test', 'www.example.com', 'x'.repeat(63) + '.test'].map(hashOf);
    setHashKeyForTest(0x01234567, 0x89abcdee); // one bit of the key flipped
    const b = ['a.test', 'www.example.com', 'x'.repeat(63) + '.test'].map(hashOf);
    for (let i = 0; i < a.length; i++) {
      expect(a[i]).not.toBe(b[i]);
      const flipped = (a[i]! ^ b[i]!).toString(2).replace(/0/g, '').length;
      expect(flipped).toBeGreaterThan(5); // of 30: the change spreads, it is not a shift
      expect(flipped).toBeLessThan(25);
    }
    // Values stay small integers below 2^30 for any length, the tail bytes included.
    for (let len = 1; len <= 12; len++) {
      const h = hashOf('b'.repeat(len) + '.test');
      expect(Number.isInteger(h) && h >= 0 && h < 2 ** 30).toBe(true);
    }
  });

  it('names chosen to share one bucket under a known key spread out under another', () => {
    // The attack: with the key known (as an unkeyed hash is), search offline for names
    // that all land in one bucket of a 4,096-bucket table.
    setHashKeyForTest(0x11111111, 0x22222222);
    const target = hashOf('seed.attack.test') & 0xfff;
    const chosen: string[] = [];
    for (let i = 0; chosen.length < 200; i++) {
      const n = `a${i}.attack.test`;
      if ((hashOf(n) & 0xfff) === target) chosen.push(n);
    }
    expect(fullestBucket(chosen, 12)).toBe(200);
    // The process's key is not the attacker's: the same names scatter.
    setHashKeyForTest(0x7eadbeef, 0x0badf00d);
    expect(fullestBucket(chosen, 12)).toBeLessThanOrEqual(4);
  });

  it('a thread adopts the key of the tables it views, and refuses a second key', async () => {
    setHashKeyForTest(0x5a5a5a5a, 0x3c3c3c3c);
    const cache = SharedCache.create({ maxEntries: 64 });
    const fetches = new FetchTable({ capacity: 64 });
    const src = new URL('../../src/dns/key.ts', import.meta.url).href;
    const sc = new URL('../../src/engine/shared-cache.ts', import.meta.url).href;
    const ft = new URL('../../src/upstream/fetch-table.ts', import.meta.url).href;
    const body = `
      const { workerData, parentPort } = await import('node:worker_threads');
      const k = await import(${JSON.stringify(src)});
      const { SharedCache } = await import(${JSON.stringify(sc)});
      const { FetchTable } = await import(${JSON.stringify(ft)});
      const before = k.hashKeyWords();
      SharedCache.attach(workerData.layout);
      new FetchTable({ buffer: workerData.fetches });
      const key = k.makeKey('www.example.com', 1, 1, false);
      let refused = '';
      try { k.useHashKey(1, 2); } catch (e) { refused = String(e); }
      parentPort.postMessage({ before, after: k.hashKeyWords(), hash: k.keyHash(key, 0, key.length), refused });`;
    const boot = `import('tsx/esm/api').then(async (t) => { t.register(); ${body} })`;
    const w = new Worker(boot, { eval: true, workerData: { layout: cache.layout, fetches: fetches.buffer } });
    const got = await new Promise<{ before: number[]; after: number[]; hash: number; refused: string }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(got.before).not.toEqual([0x5a5a5a5a, 0x3c3c3c3c]); // its own random key at first
    expect(got.after).toEqual([...hashKeyWords()]);
    expect(got.hash).toBe(hashOf('www.example.com'));
    expect(got.refused).toMatch(/another table's key/);
    // The same in this thread: a thread that created a table under its key refuses to
    // view one made under another (adopting that key would move its own table's buckets).
    setHashKeyForTest(1, 2);
    const other = SharedCache.create({ maxEntries: 64 });
    setHashKeyForTest(3, 4);
    const mine = new FetchTable({ capacity: 64 });
    expect(() => SharedCache.attach(other.layout)).toThrow(/another table's key/);
    expect(hashKeyWords()).toEqual([3, 4]);
    expect(() => new FetchTable({ buffer: mine.buffer })).not.toThrow(); // its own key: fine
    useHashKey(3, 4);
  });
});
