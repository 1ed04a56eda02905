import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DnsCache, PromotionPolicy, type PromotionEvent } from '../../src/engine/index.js';
import { answerFromResponse, keyString, makeKey, type CachedAnswer } from '../../src/dns/index.js';
import { FakeClock, a, response } from '../helpers/dns-gen.js';

function answerFor(now: number, name: string, ttl = 300, rcode = 0): CachedAnswer {
  return answerFromResponse(response(name, 'A', rcode === 0 ? [a(name, '192.0.2.1', ttl)] : [], { rcode }), now);
}
const k = (name: string): Uint8Array => makeKey(name, 1, 1, false);

/** A cache with a policy attached and an event log. */
function setup(maxEntries: number, opts: Partial<ConstructorParameters<typeof PromotionPolicy>[0]> = {}) {
  const clock = new FakeClock();
  const events: PromotionEvent[] = [];
  const policy = new PromotionPolicy({ cacheCapacity: maxEntries, clock: clock.fn, onEvent: (e) => events.push(e), ...opts });
  const cache = new DnsCache({ maxEntries, clock: clock.fn, observer: policy });
  const hit = (name: string): CachedAnswer | undefined => cache.get(k(name), k(name).length);
  return { clock, events, policy, cache, hit };
}
const describeEvents = (ev: PromotionEvent[]): string[] =>
  ev.map((e) => (e.kind === 'promote' ? `+${keyName(e.answer.key)}` : e.kind === 'replace' ? `~${keyName(e.answer.key)}` : `-${keyName(e.key)}:${e.reason}`));
function keyName(key: Uint8Array): string {
  let s = '';
  for (let i = 1; i <= key[0]!; i++) s += String.fromCharCode(key[i]!);
  return s;
}

describe('PromotionPolicy', () => {
  it('capacity is 10% of the cache by default, threshold 3', () => {
    const p = new PromotionPolicy({ cacheCapacity: 1000 });
    expect(p.capacity).toBe(100);
    expect(p.threshold).toBe(3);
    expect(new PromotionPolicy({ cacheCapacity: 1000, hotRatio: 0.25 }).capacity).toBe(250);
    expect(new PromotionPolicy({ cacheCapacity: 19 }).capacity).toBe(1);
  });

  it('promotes on the third hit', () => {
    const { cache, clock, events, hit, policy } = setup(100);
    cache.insert(answerFor(clock.now, 'hot.test'));
    hit('hot.test');
    hit('hot.test');
    expect(events).toHaveLength(0);
    hit('hot.test');
    expect(describeEvents(events)).toEqual(['+hot']);
    expect(policy.isHot(k('hot.test'))).toBe(true);
    hit('hot.test');
    expect(events).toHaveLength(1);
  });

  it('a configurable threshold', () => {
    const { cache, clock, events, hit } = setup(100, { threshold: 1 });
    cache.insert(answerFor(clock.now, 'one.test'));
    hit('one.test');
    expect(describeEvents(events)).toEqual(['+one']);
  });

  it('never promotes SERVFAIL or expired answers by default', () => {
    const { cache, clock, events, hit } = setup(100, { threshold: 1 });
    cache.insert(answerFor(clock.now, 'fail.test', 0, 2));
    hit('fail.test');
    expect(events).toHaveLength(0);
  });

  it('tick demotes each hot entry at its expiry, the earliest first, also after a replacement shortens one', () => {
    const { cache, clock, events, hit, policy } = setup(10, { threshold: 1, capacity: 5 });
    cache.insert(answerFor(clock.now, 'long.test', 100));
    cache.insert(answerFor(clock.now, 'short.test', 20));
    cache.insert(answerFor(clock.now, 'later.test', 60));
    for (const n of ['long.test', 'short.test', 'later.test']) hit(n);
    expect(policy.size).toBe(3);
    clock.advance(19);
    expect(policy.tick()).toBe(0);
    clock.advance(1);
    expect(policy.tick()).toBe(1); // short, at exactly 20 s
    // A replacement with an earlier expiry than any left must still be caught on time.
    cache.insert(answerFor(clock.now, 'long.test', 5));
    clock.advance(4);
    expect(policy.tick()).toBe(0);
    clock.advance(1);
    expect(policy.tick()).toBe(1); // long, replaced to expire at 25 s
    clock.advance(34);
    expect(policy.tick()).toBe(0);
    clock.advance(1);
    expect(policy.tick()).toBe(1); // later, at 60 s
    expect(policy.size).toBe(0);
    expect(describeEvents(events.filter((e) => e.kind !== 'promote'))).toEqual(['-short:expired', '~long', '-long:expired', '-later:expired']);
  });

  it('demotes on eviction, expiry and replacement', () => {
    const { cache, clock, events, hit, policy } = setup(10, { threshold: 2, capacity: 3 });
    cache.insert(answerFor(clock.now, 'e.test', 100));
    cache.insert(answerFor(clock.now, 'x.test', 10));
    cache.insert(answerFor(clock.now, 'r.test', 100));
    for (const n of ['e.test', 'x.test', 'r.test']) {
      hit(n);
      hit(n);
    }
    expect(policy.size).toBe(3);
    cache.insert(answerFor(clock.now, 'r.test', 100));
    clock.advance(10);
    expect(policy.tick()).toBe(1);
    cache.delete(k('e.test'));
    expect(describeEvents(events.slice(3))).toEqual(['~r', '-x:expired', '-e:evicted']); // r rewritten in place
    expect(policy.hotKeys().map(keyName)).toEqual(['r']);
    expect(policy.hotAnswers()[0]).toBe(cache.peek(k('r.test')));
  });

  it('a hotter key displaces the coldest; kernel hits keep a key in place', () => {
    const { cache, clock, events, hit, policy } = setup(100, { capacity: 2, threshold: 3 });
    for (const n of ['a.test', 'b.test', 'c.test']) cache.insert(answerFor(clock.now, n, 3600));
    for (let i = 0; i < 3; i++) hit('a.test');
    for (let i = 0; i < 3; i++) hit('b.test');
    expect(policy.size).toBe(2);
    // the kernel serves a lot of a.test
    clock.advance(1);
    expect(policy.noteKernelHits(k('a.test'), 1000)).toBe(true);
    expect(policy.noteKernelHits(k('c.test'), 5)).toBe(false);
    // c.test needs to be twice as hot as b.test (the coldest) to take its slot
    for (let i = 0; i < 5; i++) hit('c.test');
    expect(policy.isHot(k('c.test'))).toBe(false);
    for (let i = 0; i < 3; i++) hit('c.test');
    expect(policy.isHot(k('c.test'))).toBe(true);
    expect(policy.isHot(k('a.test'))).toBe(true);
    expect(describeEvents(events)).toEqual(['+a', '+b', '-b:displaced', '+c']);
  });

  it('kernel hits keep a hot key cached; without them it drifts out and is demoted', () => {
    for (const report of [true, false]) {
      const { cache, clock, events, hit, policy } = setup(10, { capacity: 1 });
      cache.insert(answerFor(clock.now, 'hot.test', 3600));
      for (let i = 0; i < 3; i++) hit('hot.test');
      expect(policy.isHot(k('hot.test'))).toBe(true);
      // userspace now only sees one-off names; the kernel answers hot.test
      for (let i = 0; i < 200; i++) {
        cache.insert(answerFor(clock.now, `once${i}.test`));
        hit(`once${i}.test`);
        if (report && i % 5 === 0) policy.noteKernelHits(k('hot.test'), 10);
      }
      expect(policy.isHot(k('hot.test'))).toBe(report);
      expect(cache.peek(k('hot.test')) !== undefined).toBe(report);
      if (!report) expect(describeEvents(events)).toContain('-hot:evicted');
    }
  });

  it('heat decays with the half-life', () => {
    const clock = new FakeClock();
    const p = new PromotionPolicy({ cacheCapacity: 10, halfLifeNs: 10e9, clock: clock.fn });
    const ans = answerFor(clock.now, 'd.test', 3600);
    p.onInsert(0, ans, clock.now);
    for (let i = 0; i < 8; i++) p.onHit(0, ans, i + 1, clock.now);
    expect(p.score(0)).toBeCloseTo(8, 9);
    clock.advance(10);
    expect(p.score(0)).toBeCloseTo(4, 9);
    clock.advance(20);
    expect(p.score(0)).toBeCloseTo(1, 9);
  });

  it('queues events for drain() when no sink is given', () => {
    const clock = new FakeClock();
    const p = new PromotionPolicy({ cacheCapacity: 10, threshold: 1, clock: clock.fn });
    const ans = answerFor(clock.now, 'q.test');
    p.onHit(3, ans, 1, clock.now);
    expect(p.drain().map((e) => e.kind)).toEqual(['promote']);
    expect(p.drain()).toEqual([]);
  });

  it('a mirror fed by the events stays exactly in sync over a long random run', () => {
    type Op =
      | { op: 'insert'; name: number; ttl: number }
      | { op: 'get'; name: number }
      | { op: 'kernel'; name: number; hits: number }
      | { op: 'advance'; sec: number }
      | { op: 'tick' }
      | { op: 'delete'; name: number }
      | { op: 'sweep' };
    const arbOp: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ op: fc.constant('insert' as const), name: fc.nat(59), ttl: fc.integer({ min: 1, max: 120 }) }) },
      { weight: 20, arbitrary: fc.record({ op: fc.constant('get' as const), name: fc.nat(59).map((n) => Math.floor((n * n) / 60)) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('kernel' as const), name: fc.nat(59), hits: fc.nat(500) }) },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('advance' as const), sec: fc.double({ min: 0, max: 20, noNaN: true }) }) },
      { weight: 1, arbitrary: fc.constant({ op: 'tick' as const }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), name: fc.nat(59) }) },
      { weight: 1, arbitrary: fc.constant({ op: 'sweep' as const }) },
    );
    const seen = new Set<string>();
    fc.assert(
      fc.property(fc.array(arbOp, { minLength: 200, maxLength: 2000 }), fc.integer({ min: 1, max: 4 }), (ops, threshold) => {
        const clock = new FakeClock();
        const mirror = new Map<string, CachedAnswer>();
        let bad = '';
        const policy = new PromotionPolicy({
          cacheCapacity: 40,
          threshold,
          clock: clock.fn,
          // Answers of TTL 7 are ones the map "cannot hold": declined, and a hot key's new
          // answer of TTL 7 demotes it ('replaced') instead of being written over it.
          eligible: (a) => a.ttls[0] !== 7,
          onEvent: (e) => {
            seen.add(e.kind === 'demote' ? e.reason : e.kind);
            if (e.kind === 'promote') {
              const key = keyString(e.answer.key);
              if (mirror.has(key)) bad = `double promote ${key}`;
              mirror.set(key, e.answer);
            } else if (e.kind === 'replace') {
              const key = keyString(e.answer.key);
              if (!mirror.has(key)) bad = `replace of a cold key ${key}`;
              mirror.set(key, e.answer);
            } else {
              if (!mirror.delete(keyString(e.key))) bad = `demote of a cold key`;
            }
          },
        });
        const cache = new DnsCache({ maxEntries: 40, clock: clock.fn, observer: policy });
        for (const o of ops) {
          const name = 'name' in o ? `n${o.name}.test` : '';
          switch (o.op) {
            case 'insert':
              cache.insert(answerFor(clock.now, name, o.ttl));
              break;
            case 'get':
              cache.get(k(name), k(name).length);
              break;
            case 'kernel':
              policy.noteKernelHits(k(name), o.hits);
              break;
            case 'advance':
              clock.now += Math.round(o.sec * 1e9);
              break;
            case 'tick':
              policy.tick();
              break;
            case 'delete':
              cache.delete(k(name));
              break;
            case 'sweep':
              cache.sweep();
              break;
          }
          expect(bad).toBe('');
          expect(policy.size).toBeLessThanOrEqual(policy.capacity);
        }
        const view = new Map(policy.hotAnswers().map((x) => [keyString(x.key), x]));
        expect([...mirror.keys()].sort()).toEqual([...view.keys()].sort());
        for (const [key, ans] of mirror) {
          expect(view.get(key)).toBe(ans);
          // every hot answer is the one the cache holds for that key
          expect(cache.peek(ans.key)).toBe(ans);
        }
      }),
      { numRuns: 60 },
    );
    expect([...seen].sort()).toEqual(['displaced', 'evicted', 'expired', 'promote', 'replace', 'replaced']);
  });
});
