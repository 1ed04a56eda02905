import { describe, expect, it } from 'vitest';
import { DnsCache, SlruLists, entryBytes } from '../../src/engine/index.js';
import { MessageView, answerFromResponse, keyString, makeKey, writeReply, type CachedAnswer } from '../../src/dns/index.js';
import { FakeClock, a, decode, query, response, soa } from '../helpers/dns-gen.js';

function answerFor(clock: FakeClock, name: string, ttl = 300, dnssecOk = false): CachedAnswer {
  return answerFromResponse(response(name, 'A', [a(name, '192.0.2.1', ttl)], { do: dnssecOk }), clock.now);
}
const k = (name: string, dnssecOk = false): Uint8Array => makeKey(name, 1, 1, dnssecOk);
const names = (c: DnsCache): string[] =>
  c.entriesInEvictionOrder().map((x) => {
    let s = '';
    for (let i = 1; i < x.key[0]! + 1; i++) s += String.fromCharCode(x.key[i]!);
    return s;
  });

describe('SlruLists', () => {
  it('moves a probationary slot to protected on a hit and demotes protected overflow', () => {
    const l = new SlruLists(5, 0.4); // protected holds 2
    for (let s = 0; s < 5; s++) l.insert(s);
    expect(l.order()).toEqual([0, 1, 2, 3, 4]);
    l.touch(0);
    l.touch(1);
    expect(l.order()).toEqual([2, 3, 4, 0, 1]);
    l.touch(2); // protected full: its LRU (0) falls back to probation MRU
    expect(l.order()).toEqual([3, 4, 0, 1, 2]);
    expect(l.victim()).toBe(3);
    expect(l.protCount).toBe(2);
  });

  it('with no protected share it is plain LRU', () => {
    const l = new SlruLists(4, 0);
    for (let s = 0; s < 4; s++) l.insert(s);
    l.touch(1);
    l.touch(0);
    expect(l.order()).toEqual([2, 3, 1, 0]);
  });
});

describe('DnsCache', () => {
  it('finds entries by key bytes in a larger reusable buffer', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 16, clock: clock.fn });
    const ans = answerFor(clock, 'www.example.com');
    c.insert(ans);
    const buf = new Uint8Array(300).fill(7);
    const key = k('www.example.com');
    buf.set(key);
    expect(c.get(buf, key.length)).toBe(ans);
    expect(c.get(k('www.example.org'), key.length)).toBeUndefined();
    expect(c.stats.hits).toBe(1);
    expect(c.stats.misses).toBe(1);
  });

  it('serves end to end: view -> key -> cache -> reply', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 16, clock: clock.fn });
    c.insertResponse(response('www.example.com', 'A', [a('www.example.com', '192.0.2.7', 60)]));
    const v = new MessageView().parseOrThrow(query('WWW.example.com', 'A', { id: 4242 }));
    const key = new Uint8Array(300);
    const hit = c.get(key, v.writeKey(key), clock.now + 1e9);
    expect(hit).toBeDefined();
    const out = new Uint8Array(512);
    const n = writeReply(v, hit!, clock.now + 2e9, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect(d.id).toBe(4242);
    expect(d.questions[0]!.name).toBe('WWW.example.com');
    expect(d.answers[0]).toMatchObject({ data: '192.0.2.7', ttl: 58 });
  });

  it('promotes on a second touch and evicts one-hit wonders first', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 10, clock: clock.fn }); // 8 protected, 2 probationary
    for (let i = 0; i < 10; i++) c.insert(answerFor(clock, `h${i}.test`));
    for (let i = 0; i < 8; i++) expect(c.get(k(`h${i}.test`), k(`h${i}.test`).length)).toBeDefined();
    expect(c.segmentOf(k('h0.test'))).toBe('protected');
    expect(c.segmentOf(k('h9.test'))).toBe('probation');
    // a flood of one-off names only churns the probationary share
    for (let i = 0; i < 100; i++) c.insert(answerFor(clock, `once${i}.test`));
    for (let i = 0; i < 8; i++) expect(c.peek(k(`h${i}.test`))).toBeDefined();
    expect(c.peek(k('h9.test'))).toBeUndefined();
    expect(c.size).toBe(10);
    expect(c.stats.evictions).toBe(100);
    expect(names(c).slice(0, 2)).toEqual(['once98', 'once99']);
  });

  it('evicts in LRU order among probationary entries', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 5, protectedRatio: 0, clock: clock.fn });
    for (let i = 0; i < 5; i++) c.insert(answerFor(clock, `n${i}.test`));
    c.get(k('n0.test'), k('n0.test').length);
    c.insert(answerFor(clock, 'n5.test'));
    expect(c.peek(k('n1.test'))).toBeUndefined();
    expect(names(c)).toEqual(['n2', 'n3', 'n4', 'n0', 'n5']);
  });

  it('expires entries on the injected clock', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 8, clock: clock.fn });
    c.insert(answerFor(clock, 'short.test', 10));
    c.insert(answerFor(clock, 'long.test', 100));
    clock.advance(9.999);
    expect(c.get(k('short.test'), k('short.test').length)).toBeDefined();
    clock.advance(0.001);
    expect(c.get(k('short.test'), k('short.test').length)).toBeUndefined();
    expect(c.stats.expirations).toBe(1);
    expect(c.size).toBe(1);
    clock.advance(100);
    expect(c.sweep()).toBe(1);
    expect(c.size).toBe(0);
  });

  it('sweep removes exactly the expired entries: replacements, reused slots and the stale window', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 4, clock: clock.fn });
    c.insert(answerFor(clock, 'a.test', 10));
    c.insert(answerFor(clock, 'b.test', 50));
    c.insert(answerFor(clock, 'c.test', 10));
    c.insert(answerFor(clock, 'c.test', 100)); // replaced: lives longer now
    clock.advance(20);
    expect(c.sweep()).toBe(1);
    expect(c.peek(k('a.test'))).toBeUndefined();
    expect(c.peek(k('c.test'))).toBeDefined();
    c.insert(answerFor(clock, 'd.test', 5)); // takes the freed slot
    clock.advance(5);
    expect(c.sweep()).toBe(1);
    expect(c.peek(k('d.test'))).toBeUndefined();
    clock.advance(25); // t = 50
    expect(c.sweep()).toBe(1);
    expect(c.sweep()).toBe(0);
    expect(c.size).toBe(1);

    const stale = new DnsCache({ maxEntries: 4, clock: clock.fn, serveStale: true, staleMaxSec: 30 });
    stale.insert(answerFor(clock, 'e.test', 10));
    clock.advance(39);
    expect(stale.sweep()).toBe(0); // expired, still inside the stale window
    clock.advance(1);
    expect(stale.sweep()).toBe(1);
  });

  it('caches negative answers for the SOA minimum', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 8, clock: clock.fn });
    const nx = c.insertResponse(response('gone.example.com', 'A', [], { rcode: 3, authorities: [soa('example.com', 3600, 30)] }));
    expect(nx.negative).toBe(true);
    const key = makeKey('gone.example.com', 1, 1, false);
    clock.advance(29);
    expect(c.get(key, key.length)?.rcode).toBe(3);
    clock.advance(1);
    expect(c.get(key, key.length)).toBeUndefined();
  });

  it('keeps DO=0 and DO=1 answers apart', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 8, clock: clock.fn });
    const plain = answerFor(clock, 'sec.test', 300, false);
    const signed = answerFor(clock, 'sec.test', 300, true);
    c.insert(plain);
    c.insert(signed);
    expect(c.size).toBe(2);
    expect(c.get(k('sec.test', false), k('sec.test').length)).toBe(plain);
    expect(c.get(k('sec.test', true), k('sec.test').length)).toBe(signed);
  });

  it('stays within its byte bound and rejects an entry larger than it', () => {
    const clock = new FakeClock();
    const one = entryBytes(answerFor(clock, 'x00.test'));
    const c = new DnsCache({ maxEntries: 100, maxBytes: one * 5 + 10, clock: clock.fn });
    for (let i = 0; i < 20; i++) {
      c.insert(answerFor(clock, `x${String(i).padStart(2, '0')}.test`));
      expect(c.bytes).toBeLessThanOrEqual(c.maxBytes);
    }
    expect(c.size).toBe(5);
    const big = answerFromResponse(
      response('big.test', 'A', Array.from({ length: 200 }, (_, i) => a('big.test', `10.0.${i >> 8}.${i & 255}`))),
      clock.now,
    );
    expect(c.insert(big)).toBe(-1);
    expect(c.stats.rejected).toBe(1);
  });

  it('replaces an entry in place, keeping its hit count', () => {
    const clock = new FakeClock();
    const c = new DnsCache({ maxEntries: 8, clock: clock.fn });
    c.insert(answerFor(clock, 'r.test', 10));
    c.get(k('r.test'), k('r.test').length);
    c.get(k('r.test'), k('r.test').length);
    clock.advance(5);
    const fresh = answerFor(clock, 'r.test', 10);
    c.insert(fresh);
    expect(c.size).toBe(1);
    expect(c.hitCount(k('r.test'))).toBe(2);
    expect(c.peek(k('r.test'))).toBe(fresh);
    expect(c.stats.replacements).toBe(1);
  });

  it('serve-stale is off by default and bounded when on', () => {
    const clock = new FakeClock();
    const off = new DnsCache({ maxEntries: 8, clock: clock.fn });
    const on = new DnsCache({ maxEntries: 8, clock: clock.fn, serveStale: true, staleMaxSec: 60 });
    off.insert(answerFor(clock, 's.test', 10));
    on.insert(answerFor(clock, 's.test', 10));
    const key = k('s.test');
    clock.advance(11);
    expect(off.getStale(key, key.length)).toBeUndefined();
    expect(on.get(key, key.length)).toBeUndefined();
    const stale = on.getStale(key, key.length);
    expect(stale).toBeDefined();
    const v = new MessageView().parseOrThrow(query('s.test'));
    const out = new Uint8Array(512);
    const n = writeReply(v, stale!, clock.now, out, 0, { udpSize: 1232 });
    expect((decode(out.subarray(0, n)).answers[0] as { ttl: number }).ttl).toBe(10);
    clock.advance(60);
    expect(on.getStale(key, key.length)).toBeUndefined();
    expect(on.size).toBe(0);
    expect(keyString(key).length).toBe(key.length);
  });
});
