/**
 * AskCounter: counts that belong to their name. A flood of names asked once each must
 * never make one of them read as asked three times (the bug of a plain counter table:
 * unrelated names added up in one counter and got promoted), through the counter alone
 * and through the real engine and promotion policy.
 */
import { describe, expect, it } from 'vitest';
import { AskCounter, keyFingerprint } from '../../src/hot/asks.js';
import { keyHash, makeKey } from '../../src/dns/index.js';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import type { PromotionEvent } from '../../src/hot/promotion.js';

const key = (name: string): Uint8Array => makeKey(name, 1, 1, false);
const ask = (c: AskCounter, name: string): number => {
  const k = key(name);
  return c.add(k, k.length);
};

describe('AskCounter', () => {
  it('counts the asks of one name, and names apart', () => {
    const c = new AskCounter(undefined, 12);
    expect([ask(c, 'a.test'), ask(c, 'a.test'), ask(c, 'a.test')]).toEqual([1, 2, 3]);
    expect(ask(c, 'b.test')).toBe(1);
    expect(ask(c, 'a.test')).toBe(4);
    expect(c.peek(key('b.test'), key('b.test').length)).toBe(1);
  });

  it('shares counts between counters over one buffer (one per worker)', () => {
    const a = new AskCounter(undefined, 12);
    const b = new AskCounter(a.buffer, 12);
    ask(a, 'www.test');
    ask(b, 'www.test');
    expect(ask(a, 'www.test')).toBe(3);
  });

  it('halves counts on decay and frees entries that reach 0', () => {
    const c = new AskCounter(undefined, 12);
    for (let i = 0; i < 6; i++) ask(c, 'x.test');
    ask(c, 'y.test');
    c.decay();
    expect(c.peek(key('x.test'), key('x.test').length)).toBe(3);
    expect(c.peek(key('y.test'), key('y.test').length)).toBe(0);
    expect(ask(c, 'x.test')).toBe(4);
  });

  it('saturates instead of wrapping', () => {
    const c = new AskCounter(undefined, 4);
    let last = 0;
    for (let i = 0; i < 1100; i++) last = ask(c, 'many.test');
    expect(last).toBe(1023);
  });

  it('the fingerprint hash is not the index hash', () => {
    // Keys that share their bucket (low bits of keyHash) still differ in fingerprint.
    const bucket = new Map<number, Uint8Array[]>();
    for (let i = 0; i < 5000; i++) {
      const k = key(`n${i}.test`);
      const b = keyHash(k, 0, k.length) & 0x3fe;
      bucket.set(b, [...(bucket.get(b) ?? []), k]);
    }
    let pairs = 0;
    let same = 0;
    for (const ks of bucket.values())
      for (let i = 1; i < ks.length; i++) {
        pairs++;
        if ((keyFingerprint(ks[0]!, ks[0]!.length) & 0x3fffff) === (keyFingerprint(ks[i]!, ks[i]!.length) & 0x3fffff)) same++;
      }
    expect(pairs).toBeGreaterThan(1000);
    expect(same).toBe(0);
  });

  it('no name asked once reads 3, in a flood of 1,000,000 unique names over 65,536 entries', () => {
    // 15 names per entry: a plain counter table reads 3 or more for most of them.
    const c = new AskCounter(undefined, 16);
    const k = new Uint8Array(64);
    let over2 = 0;
    let over3 = 0;
    for (let i = 0; i < 1_000_000; i++) {
      const s = `u${i}.flood.test`;
      k[0] = s.length;
      for (let j = 0; j < s.length; j++) k[1 + j] = s.charCodeAt(j);
      const len = s.length + 2;
      k[len - 1] = 0;
      const n = c.add(k, len);
      if (n >= 2) over2++;
      if (n >= 3) over3++;
    }
    expect(over3).toBe(0);
    expect(over2).toBeLessThanOrEqual(5); // a shared bucket and 22-bit fingerprint: about one in 2^21 asks
  });

  it('a name asked often keeps its count through a flood of names asked once', () => {
    const c = new AskCounter(undefined, 12);
    for (let i = 0; i < 50; i++) ask(c, 'popular.test');
    for (let i = 0; i < 20_000; i++) ask(c, `f${i}.flood.test`); // about 5 per entry
    expect(ask(c, 'popular.test')).toBeGreaterThanOrEqual(3);
  });
});

/** A query for `name` A, written by hand (the flood needs many, fast). */
function queryFor(name: string, id: number): Uint8Array {
  const labels = name.split('.');
  const q = new Uint8Array(12 + name.length + 2 + 4);
  q[0] = id >> 8;
  q[1] = id & 0xff;
  q[2] = 0x01; // RD
  q[5] = 1; // QDCOUNT
  let p = 12;
  for (const l of labels) {
    q[p++] = l.length;
    for (let i = 0; i < l.length; i++) q[p++] = l.charCodeAt(i);
  }
  q[p++] = 0;
  q[p + 1] = 1; // A
  q[p + 3] = 1; // IN
  return q;
}

/** An upstream that answers any A question with one record. */
const anyA: Resolver = {
  resolve(q) {
    const nameLen = q.name.length;
    const m = new Uint8Array(12 + nameLen + 4 + 16);
    m[2] = 0x81; // QR RD
    m[3] = 0x80; // RA
    m[5] = 1;
    m[7] = 1;
    m.set(q.name, 12);
    let p = 12 + nameLen;
    m[p + 1] = 1;
    m[p + 3] = 1;
    p += 4;
    m.set([0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 198, 18, 0, 1], p);
    return Promise.resolve(m);
  },
};

describe('promotion under a unique-name flood (engine, policy and a shared AskCounter)', () => {
  it('promotes no name asked once among 100,000, and still promotes a name asked three times', async () => {
    const events: PromotionEvent[] = [];
    const asks = new AskCounter(undefined, 16); // the size an engine uses on its own
    const engine = new DnsEngine({ resolver: anyA, cacheSize: 100_000, hotCapacity: 10_000, asks, onPromotion: (e) => events.push(e) });
    const out = new Uint8Array(512);
    const run = async (name: string, id: number): Promise<void> => {
      const q = queryFor(name, id);
      const r = engine.handle(q, 0, q.length, out, 0, false);
      if (typeof r !== 'number') await r;
    };
    for (let i = 0; i < 100_000; i++) await run(`u${i}.flood.test`, i & 0xffff);
    expect(engine.stats.get('upstreamAnswers')).toBe(100_000);
    expect(events.filter((e) => e.kind === 'promote').length).toBe(0);
    for (let i = 0; i < 3; i++) await run('www.real.test', 1);
    expect(events.map((e) => e.kind)).toEqual(['promote']);
  }, 60_000);
});
