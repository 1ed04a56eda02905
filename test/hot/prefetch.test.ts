import { describe, expect, it } from 'vitest';
import { Prefetcher } from '../../src/hot/prefetch.js';
import { makeKey } from '../../src/dns/key.js';

const S = 1e9;

/** A hot map of running hit counts and a refresh that re-tracks like the promotion's replace would. */
function rig(opts: { ttlSec?: number; maxInflight?: number; fail?: boolean } = {}) {
  let now = 1000 * S;
  const hits = new Map<string, number>();
  const refreshed: string[] = [];
  const pending: (() => void)[] = [];
  const seen = { maxInflight: 0 };
  const ttl = (opts.ttlSec ?? 10) * S;
  const pf: Prefetcher = new Prefetcher({
    clock: () => now,
    maxInflight: opts.maxInflight,
    hits: (k) => hits.get(Buffer.from(k).toString('hex')),
    refresh: (k) =>
      new Promise<boolean>((resolve) => {
        seen.maxInflight = Math.max(seen.maxInflight, pf.inflight);
        pending.push(() => {
          refreshed.push(Buffer.from(k).toString('hex'));
          if (opts.fail) return resolve(false);
          pf.track(k, now, now + ttl);
          resolve(true);
        });
      }),
  });
  const key = (name: string) => makeKey(name, 1, 1, false);
  const hot = (name: string, n = 0) => hits.set(Buffer.from(key(name)).toString('hex'), n);
  const ask = (name: string, n = 1) => {
    const id = Buffer.from(key(name)).toString('hex');
    hits.set(id, (hits.get(id) ?? 0) + n);
  };
  /** Advances the clock in 100 ms polls, answering refreshes after `rttMs`. */
  const run = async (sec: number, each?: (t: number) => void) => {
    for (let t = 0; t < sec * 10; t++) {
      now += S / 10;
      each?.(t);
      pf.poll(now);
      while (pending.length > 0) pending.shift()!();
      await Promise.resolve();
      await Promise.resolve();
    }
  };
  return { pf, key, hot, ask, run, refreshed, seen, get now() { return now; }, ttl };
}

describe('Prefetcher', () => {
  it('refreshes a hot name asked all along exactly once per lifetime, in the last 10%', async () => {
    const r = rig({ ttlSec: 10 });
    r.hot('a.test');
    r.pf.track(r.key('a.test'), r.now, r.now + r.ttl);
    const times: number[] = [];
    const start = r.now;
    await r.run(60, () => {
      r.ask('a.test');
      if (r.refreshed.length > times.length) times.push((r.now - start) / S);
    });
    // A refresh at 9 s into each 10 s life: 9, 18, 27, 36, 45, 54 (each new life starts at the refresh).
    expect(r.pf.counters.refreshed).toBe(6);
    expect(r.pf.counters.issued).toBe(6);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeCloseTo(9, 0);
    expect(r.pf.counters.cold).toBe(0);
  });

  it('lets a name nobody asks in the second half of its life expire, and counts it cold', async () => {
    const r = rig({ ttlSec: 10 });
    r.hot('b.test');
    r.pf.track(r.key('b.test'), r.now, r.now + r.ttl);
    await r.run(3, () => r.ask('b.test')); // asked only in the first half
    await r.run(10);
    expect(r.refreshed).toHaveLength(0);
    expect(r.pf.counters.cold).toBe(1);
    expect(r.pf.size).toBe(0);
  });

  it('never refreshes short lifetimes, untracked keys or keys that left the hot map', async () => {
    const r = rig({ ttlSec: 2 });
    r.hot('short.test');
    r.pf.track(r.key('short.test'), r.now, r.now + 2 * S);
    r.hot('gone.test');
    r.pf.track(r.key('gone.test'), r.now, r.now + 10 * S);
    r.pf.untrack(r.key('gone.test'));
    r.pf.track(r.key('notinmap.test'), r.now, r.now + 10 * S); // hits() says: not hot
    await r.run(12, () => {
      r.ask('short.test');
      r.ask('gone.test');
    });
    expect(r.refreshed).toHaveLength(0);
    expect(r.pf.size).toBe(0);
  });

  it('bounds refreshes in flight and starts the waiting ones while they still have life', async () => {
    const r = rig({ ttlSec: 10, maxInflight: 2 });
    const names = ['c1.test', 'c2.test', 'c3.test', 'c4.test'];
    for (const n of names) {
      r.hot(n);
      r.pf.track(r.key(n), r.now, r.now + r.ttl);
    }
    await r.run(9.5, () => names.forEach((n) => r.ask(n)));
    // All four fell due at once; never more than two were asked upstream together.
    expect(r.pf.counters.issued).toBe(4);
    expect(r.pf.counters.refreshed).toBe(4);
    expect(r.pf.inflight).toBe(0);
    expect(r.seen.maxInflight).toBe(2);
  });

  it('counts a failed refresh and leaves the entry to expire', async () => {
    const r = rig({ ttlSec: 10, fail: true });
    r.hot('d.test');
    r.pf.track(r.key('d.test'), r.now, r.now + r.ttl);
    await r.run(12, () => r.ask('d.test'));
    expect(r.pf.counters).toMatchObject({ issued: 1, failed: 1, refreshed: 0 });
    expect(r.pf.size).toBe(0);
  });

  it('keeps its schedule bounded under a churning hot set of day-long TTLs, and still refreshes the live names', async () => {
    const r = rig({ ttlSec: 86_400 });
    // 200,000 promotions and demotions of names whose mid-life sample is half a day away
    // (a churning hot set, or names asked three times each on purpose); 50 stay hot.
    const kept = Array.from({ length: 50 }, (_, i) => `kept${i}.test`);
    for (const n of kept) {
      r.hot(n);
      r.pf.track(r.key(n), r.now, r.now + 3600 * S);
    }
    let most = 0;
    for (let i = 0; i < 200_000; i++) {
      const k = r.key(`churn${i % 5000}.test`);
      r.pf.track(k, r.now, r.now + r.ttl);
      if (i % 3 !== 0) r.pf.untrack(k);
      most = Math.max(most, r.pf.queued);
    }
    expect(r.pf.size).toBe(50 + Math.ceil(5000 / 3)); // every third churn name was left tracked
    expect(most).toBeLessThanOrEqual(2 * (50 + 5000) + 1024);
    // The kept names are still on the schedule: asked through their life, refreshed before expiry.
    await r.run(3600, () => kept.forEach((n) => r.ask(n)));
    expect(r.refreshed.length).toBeGreaterThanOrEqual(50);
  });
});
