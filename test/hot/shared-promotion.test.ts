/**
 * The one promotion policy over the shared cache: candidates reported from any view
 * promote at the threshold, a refresh of a hot key by another thread's view is
 * rewritten in place (replace), an eviction or delete demotes, kernel hits
 * reach the cache slot's hit count, and the hot set always equals the events applied.
 */
import { describe, expect, it } from 'vitest';
import { SharedCache } from '../../src/engine/shared-cache.js';
import { PROMOTE_NEVER, SharedPromotion } from '../../src/hot/shared-promotion.js';
import type { PromotionEvent } from '../../src/hot/promotion.js';
import { keyString } from '../../src/dns/key.js';
import { keyOf, synth, versionOf } from '../helpers/shared-cache-ops.js';
import { response } from '../helpers/dns.js';
import type { CachedAnswer } from '../../src/dns/answer.js';

const NOW = 1e12;

function setup(capacity = 4, eligible?: (a: CachedAnswer) => boolean) {
  const cache = SharedCache.create({ maxEntries: 64, threshold: 3 });
  const other = SharedCache.attach(cache.layout); // "a worker's" view
  const events: PromotionEvent[] = [];
  let now = NOW;
  const promo = new SharedPromotion(cache, { capacity, onEvent: (e) => events.push(e), clock: () => now, eligible });
  const candidates: [number, number][] = [];
  other.onThreshold = (slot, seq) => candidates.push([slot, seq]); // posted to the main thread
  cache.onThreshold = (slot, seq) => promo.candidate(slot, seq, now);
  const deliver = () => {
    for (const [slot, seq] of candidates.splice(0)) promo.candidate(slot, seq, now);
  };
  const map = new Map<string, number>(); // what HotSync would hold: key -> version
  const apply = () => {
    for (const e of events.splice(0)) {
      if (e.kind !== 'demote') map.set(keyString(e.answer.key), versionOf(Number(/k(\d+)/.exec(String.fromCharCode(...e.answer.key))![1]), e.answer));
      else map.delete(keyString(e.key));
    }
  };
  return { cache, other, promo, deliver, apply, map, tick: (dt: number) => (now += dt) };
}

describe('SharedPromotion', () => {
  it('takes a prefetched answer into the cache, but never a SERVFAIL over an answer still valid', () => {
    const { cache, promo } = setup();
    const answer = (ip: string) => response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: ip }] });
    expect(promo.acceptRefresh(answer('198.18.1.1'), NOW, false, false)).toBe(true);
    const key = cache.insertResponse(answer('198.18.1.1'), NOW, false).key;
    const before = cache.times(key)!;
    expect(promo.acceptRefresh(response('www.example.com', 'A', {}, { rcode: 'SERVFAIL' }), NOW + 54e9, false, false)).toBe(false);
    expect(cache.times(key)).toEqual(before); // the good answer stays, with its TTL
    expect(cache.has(key, key.length, NOW + 54e9)).toBe(true);
    expect(promo.acceptRefresh(answer('198.18.1.2'), NOW + 54e9, false, false)).toBe(true);
    expect(cache.times(key)!.originNs).toBe(NOW + 54e9); // a real refresh is written
  });

  it('drops a prefetched answer asked before an operator\'s flush: the flushed name does not come back', () => {
    const { cache, promo } = setup();
    const answer = (ip: string) => response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: ip }] });
    const key = cache.insertResponse(answer('198.18.1.1'), NOW, false).key;
    // Asked now, answered after `flush www.example.com` (or flush --all).
    for (const flush of [() => cache.delete(key), () => cache.clearShards()]) {
      const since = cache.flushGeneration();
      flush();
      expect(promo.acceptRefresh(answer('198.18.1.1'), NOW + 54e9, false, false, since)).toBe(false);
      expect(cache.has(key, key.length, NOW + 54e9)).toBe(false);
    }
    // Without a flush in between it is taken.
    const since = cache.flushGeneration();
    expect(promo.acceptRefresh(answer('198.18.1.2'), NOW + 54e9, false, false, since)).toBe(true);
    expect(cache.has(key, key.length, NOW + 54e9)).toBe(true);
  });

  it('promotes nothing at PROMOTE_NEVER: no view reports, and a report from before the switch is dropped', () => {
    const { cache, other, promo, deliver, apply, map } = setup();
    other.insert(synth(1, 1, 1, 300, NOW), NOW);
    for (let k = 1; k < 3; k++) other.get(keyOf(1), keyOf(1).length, NOW); // reported at its third use
    promo.setThreshold(PROMOTE_NEVER); // switched off before the report is delivered
    deliver();
    other.insert(synth(2, 1, 1, 300, NOW), NOW);
    for (let k = 1; k < 20; k++) other.get(keyOf(2), keyOf(2).length, NOW);
    deliver();
    promo.tick(NOW);
    apply();
    expect(map.size).toBe(0);
    expect(promo.size).toBe(0);
    promo.setThreshold(3); // back on: the next use of a name past the threshold reports it
    other.get(keyOf(2), keyOf(2).length, NOW);
    deliver();
    apply();
    expect([...map.keys()]).toEqual([keyString(keyOf(2))]);
    expect(cache.threshold).toBe(3);
  });

  it('declines, and counts, names whose answer the hot map cannot hold: they never take a hot place', () => {
    // The map holds at most 4 records here; names 10.. have 8 (think answers too large for XDP).
    const { cache, other, promo, deliver, apply, map } = setup(3, (a) => a.ttls.length <= 4);
    const heat = (i: number, records: number, uses: number) => {
      other.insert(synth(i, 1, records, 300, NOW), NOW);
      for (let k = 1; k < uses; k++) other.get(keyOf(i), keyOf(i).length, NOW);
      deliver();
      promo.tick(NOW);
    };
    heat(1, 1, 3);
    heat(2, 1, 3);
    for (let i = 10; i < 30; i++) heat(i, 8, 20); // far hotter than any other name
    heat(3, 1, 3); // the third place is still free for a name the map can serve
    apply();
    expect([...map.keys()].sort()).toEqual([1, 2, 3].map((i) => keyString(keyOf(i))).sort());
    expect(promo.policy.declined).toBe(20);
    expect(cache.size).toBe(23); // the declined names are still cached, answered from the cache
  });

  it('promotes on the third use across views, and once', () => {
    const { cache, other, promo, deliver, apply, map } = setup();
    other.insert(synth(1, 1, 1, 300, NOW), NOW);
    cache.get(keyOf(1), keyOf(1).length, NOW); // use 2, main's view
    deliver();
    expect(promo.size).toBe(0);
    other.get(keyOf(1), keyOf(1).length, NOW); // use 3, the worker's view
    deliver();
    apply();
    expect([...map.values()]).toEqual([1]);
    other.get(keyOf(1), keyOf(1).length, NOW);
    deliver();
    apply();
    expect(promo.size).toBe(1);
  });

  it('keeps a hot key in the map when it comes back hot in another slot before the upkeep saw it leave', () => {
    const { cache, promo, apply, map } = setup();
    const k2 = keyOf(2);
    cache.insert(synth(2, 1, 1, 300, NOW), NOW, 3); // hot at once, in slot s1
    apply();
    const s1 = cache.find(k2, k2.length);
    cache.delete(k2); // evicted; before the next tick, its slot goes to another name
    let i = 10;
    for (; i < 200 && cache.find(keyOf(i - 1), keyOf(i - 1).length) !== s1; i++) cache.insert(synth(i, 1, 1, 300, NOW), NOW);
    expect(cache.find(keyOf(i - 1), keyOf(i - 1).length)).toBe(s1);
    // Asked again (by a path XDP does not answer), and hot again at once, in a new slot.
    cache.insert(synth(2, 2, 1, 300, NOW), NOW, 3);
    expect(cache.find(k2, k2.length)).not.toBe(s1);
    apply();
    promo.tick(); // s1 now holds another name: the old hot place of key 2 goes
    apply();
    expect(map.get(keyString(k2))).toBe(2); // still served from XDP, with the new answer
    expect(promo.policy.isHot(k2)).toBe(true);
    promo.tick();
    apply();
    expect(map.get(keyString(k2))).toBe(2);
  });

  it('rewrites a hot key refreshed by another view, and demotes it when it is evicted', () => {
    const { cache, other, promo, apply, map } = setup();
    cache.insert(synth(2, 1, 1, 300, NOW), NOW, 3); // asked three times already: hot at once
    apply();
    expect(map.get(keyString(keyOf(2)))).toBe(1);
    other.insert(synth(2, 7, 2, 300, NOW), NOW); // the worker stored a fresher answer
    promo.tick();
    apply();
    expect(map.get(keyString(keyOf(2)))).toBe(7);
    expect(promo.hotAnswers().map((a) => versionOf(2, a))).toEqual([7]);
    other.delete(keyOf(2));
    promo.tick();
    apply();
    expect(map.size).toBe(0);
    expect(promo.size).toBe(0);
  });

  it('judges a candidate by what its slot holds when it arrives, and promotes again after expiry', () => {
    const { cache, other, promo, deliver, apply, map, tick } = setup();
    other.insert(synth(3, 1, 1, 10, NOW), NOW, 2);
    other.get(keyOf(3), keyOf(3).length, NOW); // third use: a candidate is on its way...
    other.insert(synth(3, 2, 1, 10, NOW), NOW); // ...but the slot is refreshed first (uses kept)
    deliver();
    apply();
    expect(map.get(keyString(keyOf(3)))).toBe(2); // the answer held now is promoted
    // Hot: hits on it report nothing more.
    for (let i = 0; i < 5; i++) other.get(keyOf(3), keyOf(3).length, NOW);
    deliver();
    tick(11e9); // expired: demoted
    promo.tick();
    apply();
    expect(map.size).toBe(0);
    const t = NOW + 11e9;
    other.insert(synth(3, 3, 1, 10, t), t); // fetched again: uses kept, over the threshold
    deliver();
    apply();
    expect(map.get(keyString(keyOf(3)))).toBe(3); // earns its place back at once
  });

  it('reports a slot the policy did not promote at most once per tick', () => {
    const { cache, other, promo, deliver, apply, map } = setup(1);
    cache.insert(synth(10, 1, 1, 300, NOW), NOW, 3); // fills the one hot place
    for (let i = 0; i < 40; i++) promo.noteKernelHits(keyOf(10), 10, NOW); // and is very hot
    other.insert(synth(11, 1, 1, 300, NOW), NOW, 3);
    deliver(); // reported at its insert: not hot enough to displace
    let reports = 0;
    other.onThreshold = () => reports++;
    for (let i = 0; i < 10; i++) other.get(keyOf(11), keyOf(11).length, NOW);
    expect(reports).toBe(0); // reported at its insert already, not ticked since
    promo.tick();
    for (let i = 0; i < 10; i++) other.get(keyOf(11), keyOf(11).length, NOW);
    expect(reports).toBe(1);
    deliver();
    apply();
    expect([...map.keys()]).toEqual([keyString(keyOf(10))]);
  });

  it('credits kernel hits to the cache slot, so the lazy SLRU keeps what XDP serves', () => {
    const cache = SharedCache.create({ maxEntries: 20, shards: 1, threshold: 3 });
    const promo = new SharedPromotion(cache, { capacity: 4 });
    cache.onThreshold = (slot, seq) => promo.candidate(slot, seq, NOW);
    const s = cache.insert(synth(5, 1, 1, 300, NOW), NOW, 3);
    expect(promo.isHot(keyOf(5))).toBe(true);
    const before = cache.usesOf(s);
    expect(promo.noteKernelHits(keyOf(5), 40, NOW)).toBe(true);
    expect(cache.usesOf(s)).toBe(before + 40);
    for (let i = 100; i < 140; i++) cache.insert(synth(i, 1, 1, 300, NOW), NOW); // a scan of new names
    expect(cache.has(keyOf(5), keyOf(5).length, NOW)).toBe(true);
  });
});
