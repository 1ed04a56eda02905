import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HEADER_WORDS, SharedCache } from '../../src/engine/shared-cache.js';
import { BuddyRegions, UNIT } from '../../src/engine/buddy.js';
import { MessageView, answerFromResponse, makeKey, writeReply } from '../../src/dns/index.js';
import { keyHash } from '../../src/dns/key.js';
import { MAX_KEY_LEN } from '../../src/dns/constants.js';
import { a, query, response, soa } from '../helpers/dns-gen.js';
import { keyOf, queryFor, synth, versionInReply, versionOf } from '../helpers/shared-cache-ops.js';

const NOW = 1e12;
const opts = { udpSize: 1232 };

describe('BuddyRegions', () => {
  it('splits, merges back to whole top blocks, and never hands out a block twice', () => {
    const arena = new SharedArrayBuffer(2 * 64 * UNIT);
    const state = new Uint8Array(2 * 64);
    const heads = new Int32Array(2 * 8);
    const b = new BuddyRegions(arena, state, heads, 64, 5, (r) => r * 8);
    b.reset(0);
    b.reset(1);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 5 }), fc.nat()), { maxLength: 200 }), (ops) => {
        b.reset(0);
        const held: number[] = [];
        for (const [alloc, order, pick] of ops) {
          if (alloc || held.length === 0) {
            const u = b.alloc(0, order);
            if (u >= 0) {
              expect(held).not.toContain(u);
              held.push(u);
            }
          } else {
            b.free(0, held.splice(pick % held.length, 1)[0]!);
          }
          const used = b.check(0);
          expect(new Set(used.keys())).toEqual(new Set(held));
        }
        for (const u of held) b.free(0, u);
        expect([...b.check(0).keys()]).toEqual([]);
        // Fully merged again: two free blocks of the top order, nothing smaller.
        expect(b.alloc(0, 5)).toBeGreaterThanOrEqual(0);
        expect(b.alloc(0, 5)).toBeGreaterThanOrEqual(0);
        expect(b.alloc(0, 0)).toBe(-1);
        expect(b.check(1).size).toBe(0); // the other region untouched
      }),
    );
  });
});

describe('SharedCache', () => {
  it('answers byte for byte as writeReply does from the same answer', () => {
    const c = SharedCache.create({ maxEntries: 64 });
    const msg = response('www.example.com', 'A', [a('www.example.com', '192.0.2.7', 60), a('www.example.com', '192.0.2.8', 90)]);
    const ans = answerFromResponse(msg, NOW);
    expect(c.insert(ans, NOW)).toBeGreaterThanOrEqual(0);
    const v = new MessageView();
    const key = new Uint8Array(MAX_KEY_LEN);
    for (const [q, t] of [[query('WWW.Example.com', 'A', { id: 9, edns: false }), 2.5e9], [query('www.example.com', 'A', { id: 7, edns: { udp: 4096, do: false } }), 45e9]] as const) {
      v.parse(q, 0, q.length, key);
      const got = new Uint8Array(600);
      const want = new Uint8Array(600);
      const n = c.reply(v, key, v.keyLen, keyHash(key, 0, v.keyLen), NOW + t, got, 0, opts);
      const m = writeReply(v, ans, NOW + t, want, 0, opts);
      expect(n).toBe(m);
      expect(Buffer.from(got.subarray(0, n))).toEqual(Buffer.from(want.subarray(0, m)));
    }
    expect(c.reads.hits).toBe(2);
    c.check();
  });

  it('gives copies equal to what was inserted, for random cacheable responses', () => {
    const c = SharedCache.create({ maxEntries: 256, maxBytes: 1 << 20 });
    const ans = answerFromResponse(response('neg.example.com', 'A', [], { rcode: 3, authorities: [soa('example.com', 300, 60)] }), NOW);
    c.insert(ans, NOW);
    const got = c.peek(ans.key)!;
    expect(got).toEqual({ ...ans, key: got.key, records: got.records, ttlOffsets: got.ttlOffsets, ttls: got.ttls });
    expect(Buffer.from(got.key)).toEqual(Buffer.from(ans.key));
    expect(Buffer.from(got.records)).toEqual(Buffer.from(ans.records));
    expect([...got.ttls]).toEqual([...ans.ttls]);
    expect([...got.ttlOffsets]).toEqual([...ans.ttlOffsets]);
    expect(got.negative).toBe(true);
  });

  it('truncates through the cold path exactly as writeReply does', () => {
    const c = SharedCache.create({ maxEntries: 16, maxBytes: 1 << 20 });
    const big = synth(3, 1, 60, 300, NOW); // 960 bytes of records: over 512
    c.insert(big, NOW);
    const v = new MessageView();
    const key = new Uint8Array(MAX_KEY_LEN);
    queryFor(3, v, key);
    const got = new Uint8Array(2048);
    const want = new Uint8Array(2048);
    const n = c.reply(v, key, v.keyLen, keyHash(key, 0, v.keyLen), NOW, got, 0, opts);
    expect(n).toBe(writeReply(v, big, NOW, want, 0, opts));
    expect(n).toBeLessThanOrEqual(512);
    expect(Buffer.from(got.subarray(0, n))).toEqual(Buffer.from(want.subarray(0, n)));
  });

  it('serves expired entries only as stale, within the window, with capped TTLs', () => {
    const c = SharedCache.create({ maxEntries: 16, serveStale: true, staleMaxSec: 100 });
    c.insert(synth(1, 1, 2, 60, NOW), NOW);
    const v = new MessageView();
    const key = new Uint8Array(MAX_KEY_LEN);
    queryFor(1, v, key);
    const out = new Uint8Array(512);
    const h = keyHash(key, 0, v.keyLen);
    expect(c.reply(v, key, v.keyLen, h, NOW + 61e9, out, 0, opts)).toBe(0);
    const n = c.reply(v, key, v.keyLen, h, NOW + 61e9, out, 0, { ...opts, staleTtl: 30 }, true);
    expect(versionInReply(1, out, n)).toBe(1);
    expect((out[n - 16 + 6]! << 24) | (out[n - 16 + 7]! << 16) | (out[n - 16 + 8]! << 8) | out[n - 16 + 9]!).toBe(30);
    expect(c.reads.staleHits).toBe(1);
    expect(c.reply(v, key, v.keyLen, h, NOW + 161e9, out, 0, opts, true)).toBe(0);
    c.setServeStale(false);
    expect(c.reply(v, key, v.keyLen, h, NOW + 61e9, out, 0, opts, true)).toBe(0);
    // The sweep keeps it for the stale window when serve-stale is on, then drops it.
    c.setServeStale(true);
    expect(c.sweep(NOW + 100e9)).toBe(0);
    expect(c.sweep(NOW + 161e9)).toBe(1);
    expect(c.size).toBe(0);
    c.check();
  });

  it('serves a signed entry stale no later than its earliest RRSIG expiration', () => {
    const c = SharedCache.create({ maxEntries: 16, serveStale: true, staleMaxSec: 100 });
    // Entry 1: signatures good for 30 s past its 60 s lifetime. Entry 2: unsigned.
    c.insert({ ...synth(1, 1, 2, 60, NOW), signaturesExpireNs: NOW + 90e9 }, NOW);
    c.insert(synth(2, 1, 2, 60, NOW), NOW);
    const v = new MessageView();
    const key = new Uint8Array(MAX_KEY_LEN);
    const out = new Uint8Array(512);
    const staleAt = (i: number, t: number): number => {
      queryFor(i, v, key);
      return c.reply(v, key, v.keyLen, keyHash(key, 0, v.keyLen), t, out, 0, opts, true);
    };
    const lastTtl = (n: number): number => (out[n - 16 + 6]! << 24) | (out[n - 16 + 7]! << 16) | (out[n - 16 + 8]! << 8) | out[n - 16 + 9]!;
    // Served stale, its TTL is no more than its signatures have left (30 s otherwise).
    expect(lastTtl(staleAt(1, NOW + 61e9))).toBe(29);
    expect(lastTtl(staleAt(1, NOW + 89.5e9))).toBe(1);
    expect(lastTtl(staleAt(2, NOW + 89.5e9))).toBe(30);
    expect(staleAt(1, NOW + 90e9)).toBe(0);
    expect(staleAt(2, NOW + 90e9)).toBeGreaterThan(0);
    expect(c.peek(keyOf(1))?.signaturesExpireNs).toBe(NOW + 90e9);
    expect(c.peek(keyOf(2))?.signaturesExpireNs).toBe(Infinity);
    // The sweep drops the signed one once past its signatures, inside the stale window.
    expect(c.sweep(NOW + 91e9)).toBe(1);
    expect(c.peek(keyOf(1))).toBeUndefined();
    expect(c.peek(keyOf(2))).toBeDefined();
    c.check();
  });

  it('applies TTL bounds set at run time to the next answers', () => {
    const c = SharedCache.create({ maxEntries: 16, ttl: { maxTtl: 100 } });
    const msg = response('t.example.com', 'A', [a('t.example.com', '192.0.2.1', 3600)]);
    expect(c.insertResponse(msg, NOW).expiresNs).toBe(NOW + 100e9);
    c.setTtlPolicy({ maxTtl: 50, minTtl: 10 });
    expect(c.insertResponse(msg, NOW).expiresNs).toBe(NOW + 50e9);
    expect(c.times(makeKey('t.example.com.', 1, 1, false))!.expiresNs).toBe(NOW + 50e9);
    expect(c.stats.replacements).toBe(1);
    const other = SharedCache.attach(c.layout); // another thread's view sees the same bounds
    expect(other.ttlPolicy).toEqual({ minTtl: 10, maxTtl: 50, negativeMaxTtl: 3600, servfailTtl: 5 });
  });

  it('keeps entries that were hit over a scan of one-hit names (lazy SLRU)', () => {
    const c = SharedCache.create({ maxEntries: 100, maxBytes: 1 << 20, shards: 1 });
    for (let i = 0; i < 100; i++) c.insert(synth(i, 1, 1, 300, NOW), NOW);
    for (let i = 0; i < 20; i++) c.get(keyOf(i), keyOf(i).length, NOW); // 20 popular names
    for (let i = 1000; i < 1300; i++) c.insert(synth(i, 1, 1, 300, NOW), NOW); // a scan
    for (let i = 0; i < 20; i++) expect(c.has(keyOf(i), keyOf(i).length, NOW)).toBe(true);
    expect(c.segmentOf(keyOf(0))).toBe('protected');
    expect(c.has(keyOf(50), keyOf(50).length, NOW)).toBe(false);
    c.check();
    // With no protected share it is LRU-like: the hit names still get their second chance once.
    const l = SharedCache.create({ maxEntries: 10, maxBytes: 1 << 16, shards: 1, protectedRatio: 0 });
    for (let i = 0; i < 10; i++) l.insert(synth(i, 1, 1, 300, NOW), NOW);
    l.get(keyOf(0), keyOf(0).length, NOW);
    l.insert(synth(10, 1, 1, 300, NOW), NOW);
    expect(l.has(keyOf(0), keyOf(0).length, NOW)).toBe(true);
    expect(l.has(keyOf(1), keyOf(1).length, NOW)).toBe(false);
    l.check();
  });

  it('reports a slot when its uses reach the threshold, counting the asks before the insert', () => {
    const c = SharedCache.create({ maxEntries: 16, threshold: 3 });
    const seen: number[] = [];
    c.onThreshold = (slot) => seen.push(slot);
    const s = c.insert(synth(1, 1, 1, 300, NOW), NOW, 1);
    c.get(keyOf(1), keyOf(1).length, NOW);
    expect(seen).toEqual([]);
    c.get(keyOf(1), keyOf(1).length, NOW); // the third use
    expect(seen).toEqual([s]);
    c.get(keyOf(1), keyOf(1).length, NOW);
    expect(seen).toEqual([s]); // once
    const t = c.insert(synth(2, 1, 1, 300, NOW), NOW, 3); // asked three times across engines
    expect(seen).toEqual([s, t]);
    expect(c.usesOf(t)).toBe(3);
  });

  it('refuses an answer larger than a shard can hold and lowers its bounds at run time', () => {
    const c = SharedCache.create({ maxEntries: 64, maxBytes: 64 * 128, shards: 2 });
    expect(c.insert(synth(1, 1, 200, 300, NOW), NOW)).toBe(-1);
    expect(c.stats.rejected).toBe(1);
    for (let i = 0; i < 64; i++) c.insert(synth(i, 1, 3, 300, NOW), NOW);
    expect(c.bytes).toBeLessThanOrEqual(64 * 128);
    c.check();
    expect(c.setLimits(20, 64 * 128)).toBe(true);
    expect(c.size).toBeLessThanOrEqual(20);
    c.check();
    expect(() => c.setLimits(65, 64 * 128)).toThrow(RangeError);
    expect(() => c.setLimits(64, 64 * 256)).toThrow(RangeError);
    c.setLimits(64, 64 * 128);
    expect(c.limits).toEqual({ maxEntries: 64, maxBytes: 64 * 128 });
    const odd = SharedCache.create({ maxEntries: 100, maxBytes: 100_000 }); // arena rounded down to whole top blocks
    expect(odd.arenaBytes).toBeLessThan(100_000);
    expect(odd.setLimits(50, 100_000)).toBe(true); // the bytes as configured are still accepted
    expect(odd.limits.maxBytes).toBe(odd.arenaBytes);
  });

  it('reports new bounds it could not give a busy shard, which keeps its old ones until asked again', () => {
    const c = SharedCache.create({ maxEntries: 256, shards: 4 });
    for (let i = 0; i < 200; i++) c.insert(synth(i, 1, 2, 300, NOW), NOW);
    const h = new Int32Array(c.layout.meta, HEADER_WORDS.global * 4, 4 * HEADER_WORDS.shard);
    expect(Atomics.compareExchange(h, 1 * HEADER_WORDS.shard, 0, 42)).toBe(0); // another thread writes in shard 1
    expect(c.setLimits(40, c.arenaBytes)).toBe(false);
    expect(c.limits.maxEntries).toBe(3 * 10 + 64); // shards 0, 2, 3 at 10 each, shard 1 still at 64
    Atomics.store(h, 1 * HEADER_WORDS.shard, 0);
    expect(c.setLimits(40, c.arenaBytes)).toBe(true);
    expect(c.limits.maxEntries).toBe(40);
    expect(c.size).toBeLessThanOrEqual(40);
    c.check();
  });

  it('finds every entry of a name by its key bytes, of any type or of one', () => {
    const c = SharedCache.create({ maxEntries: 64 });
    const msg = (t: 'A' | 'AAAA', d: boolean) => response('n.example.com', t, [t === 'A' ? a('n.example.com', '192.0.2.1', 60) : { type: 'AAAA', name: 'n.example.com', ttl: 60, data: '2001:db8::1' }], { do: d });
    for (const [t, d] of [['A', false], ['A', true], ['AAAA', false]] as const) c.insert(answerFromResponse(msg(t, d), NOW, undefined, d), NOW);
    c.insert(answerFromResponse(response('m.example.com', 'A', [a('m.example.com', '192.0.2.2', 60)]), NOW), NOW);
    const wire = makeKey('n.example.com.', 1, 1, false).subarray(0, -5);
    expect(c.entriesWithName(wire).map((x) => `${x.qtype}/${x.dnssecOk}`).sort()).toEqual(['1/false', '1/true', '28/false']);
    expect(c.entriesWithName(wire, 28).length).toBe(1);
    expect(c.entriesWithName(wire.subarray(0, -1)).length).toBe(0); // a prefix of the name is not the name
  });

  it('recovers the shards a dead thread held and loses nothing else', () => {
    const c = SharedCache.create({ maxEntries: 256, shards: 4 });
    for (let i = 0; i < 100; i++) c.insert(synth(i, 1, 2, 300, NOW), NOW);
    const before = c.size;
    // Thread 41 "died" holding shard 2's lock, halfway through writing a slot.
    const G = HEADER_WORDS.global * 4;
    const S = HEADER_WORDS.shard;
    const h = new Int32Array(c.layout.meta, G, 4 * S);
    expect(Atomics.compareExchange(h, 2 * S, 0, 42)).toBe(0);
    const victim = [...Array(100).keys()].find((i) => (keyHash(keyOf(i), 0, keyOf(i).length) & 3) === 2)!;
    const slot = c.find(keyOf(victim), keyOf(victim).length);
    const seq = new Int32Array(c.layout.meta, G + 4 * S * 4, c.shards * c.per);
    Atomics.add(seq, slot, 1); // odd: mid-write
    expect(c.has(keyOf(victim), keyOf(victim).length, NOW)).toBe(false); // never read mid-write
    expect(c.insert(synth(victim, 2, 1, 300, NOW), NOW)).toBe(-2); // writers do not wait for it
    expect(c.heldLocks()).toEqual([{ shard: 2, threadId: 41 }]);
    expect(c.recover(7)).toBe(0);
    expect(c.recover(41)).toBe(1);
    expect(c.heldLocks()).toEqual([]);
    const left = c.check();
    const inShard2 = [...Array(100).keys()].filter((i) => (keyHash(keyOf(i), 0, keyOf(i).length) & 3) === 2).length;
    expect(left).toBe(before - inShard2);
    expect(c.stats.resets).toBe(1);
    expect(c.insert(synth(victim, 2, 1, 300, NOW), NOW)).toBeGreaterThanOrEqual(0);
    c.check();
  });

  it('behaves as a map with bounds against a reference model (random operations)', () => {
    fc.assert(
      fc.property(
        fc.record({ shards: fc.constantFrom(1, 2, 4), entries: fc.integer({ min: 8, max: 40 }), kb: fc.integer({ min: 2, max: 16 }), stale: fc.boolean() }),
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('insert' as const), i: fc.integer({ min: 0, max: 60 }), n: fc.integer({ min: 1, max: 30 }), ttl: fc.integer({ min: 1, max: 100 }) }),
            fc.record({ op: fc.constant('get' as const), i: fc.integer({ min: 0, max: 60 }) }),
            fc.record({ op: fc.constant('delete' as const), i: fc.integer({ min: 0, max: 60 }) }),
            fc.record({ op: fc.constant('time' as const), s: fc.integer({ min: 1, max: 50 }) }),
            fc.record({ op: fc.constant('sweep' as const), budget: fc.integer({ min: 1, max: 50 }) }),
            fc.constant({ op: 'clear' as const }),
          ),
          { maxLength: 300 },
        ),
        (cfg, ops) => {
          const c = SharedCache.create({ maxEntries: cfg.entries, maxBytes: cfg.kb * 1024, shards: cfg.shards, serveStale: cfg.stale, staleMaxSec: 20 });
          /** key -> the version inserted last and its expiry; absent = must not be found. */
          const model = new Map<number, { v: number; exp: number }>();
          let now = NOW;
          let version = 0;
          const v = new MessageView();
          const key = new Uint8Array(MAX_KEY_LEN);
          const out = new Uint8Array(1024);
          for (const o of ops) {
            switch (o.op) {
              case 'insert': {
                const ans = synth(o.i, ++version, o.n, o.ttl, now);
                const s = c.insert(ans, now);
                if (s >= 0) {
                  model.set(o.i, { v: version, exp: ans.expiresNs });
                  expect(c.find(keyOf(o.i), keyOf(o.i).length)).toBe(s);
                } else {
                  expect(s).toBe(-1); // single thread: never busy
                  model.delete(o.i); // a refused refresh drops the old entry
                  expect(c.has(keyOf(o.i), keyOf(o.i).length, now)).toBe(false);
                }
                break;
              }
              case 'get': {
                queryFor(o.i, v, key);
                const n = c.reply(v, key, v.keyLen, keyHash(key, 0, v.keyLen), now, out, 0, opts);
                const m = model.get(o.i);
                if (n > 0) {
                  // Found: exactly the version inserted last, and fresh.
                  expect(m).toBeDefined();
                  expect(versionInReply(o.i, out, n)).toBe(m!.v);
                  expect(now).toBeLessThan(m!.exp);
                } else if (m !== undefined && now < m.exp) {
                  // Missing but expected: only because it was evicted; it is gone for good.
                  expect(c.peek(keyOf(o.i))).toBeUndefined();
                  model.delete(o.i);
                }
                break;
              }
              case 'delete':
                {
                  const had = c.find(keyOf(o.i), keyOf(o.i).length) >= 0;
                  expect(c.delete(keyOf(o.i))).toBe(had);
                  expect(c.find(keyOf(o.i), keyOf(o.i).length)).toBe(-1);
                }
                model.delete(o.i);
                break;
              case 'time':
                now += o.s * 1e9;
                break;
              case 'sweep':
                c.sweep(now, o.budget);
                break;
              case 'clear':
                c.clear();
                model.clear();
                break;
            }
            // What the cache holds is a subset of the model, each at its model version.
            for (const e of c.entries()) {
              const i = Number(/^k(\d+)\./.exec(String.fromCharCode(...e.key.subarray(1, e.key[0]! + 1)) + '.')![1]);
              expect(model.get(i)?.v).toBe(versionOf(i, e));
            }
            expect(c.size).toBeLessThanOrEqual(cfg.entries);
            expect(c.bytes).toBeLessThanOrEqual(cfg.kb * 1024);
            c.check();
          }
          const st = c.stats;
          expect(st.inserts - st.evictions - st.expirations).toBe(c.size);
        },
      ),
      { numRuns: 60 },
    );
  });
});
