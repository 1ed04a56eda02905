/**
 * FetchTable on one thread: who owns a fetch, who waits for it and with what outcome,
 * full buckets, hash collisions, the deadline and the stale-owner guard, reused entries
 * (generations and the outcome history), a dead thread's entries. Several threads are in
 * fetch-table-threads.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keyHash, makeKey } from '../../src/dns/index.js';
import { setHashKeyForTest } from '../../src/dns/key.js';
import { FetchTable, fetchTableCapacity, SOLO, WAYS, type FetchOutcome } from '../../src/upstream/fetch-table.js';

const key = (name: string, qtype = 1, dnssecOk = false): Uint8Array => makeKey(name, qtype, 1, dnssecOk);
const hashOf = (k: Uint8Array): number => keyHash(k, 0, k.length);

/** A manual clock (ms) for the tables of one test. */
function manualClock(start = 1_000_000): { now: () => number; set: (v: number) => void } {
  let t = start;
  return { now: () => t, set: (v) => (t = v) };
}

function claim(t: FetchTable, k: Uint8Array, now: number, hash = hashOf(k)): number | Promise<FetchOutcome> {
  return t.claim(k, k.length, hash, now);
}

function ticket(r: number | Promise<FetchOutcome>): number {
  if (typeof r !== 'number' || r < 0) throw new Error(`expected a ticket, got ${typeof r === 'number' ? r : 'a promise'}`);
  return r;
}

function waiting(r: number | Promise<FetchOutcome>): Promise<FetchOutcome> {
  if (typeof r === 'number') throw new Error(`expected a promise, got ${r}`);
  return r;
}

/**
 * p, which must settle within 1 s: waiters are woken by a notify, and every test table's
 * deadline is seconds away, so a wait that ends only at its deadline fails here.
 */
function woken<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('waiter not woken within 1 s')), 1000)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Settles after every pending promise continuation and task of this turn. */
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

/** Whether p settled within a few ms. */
async function settled<T>(p: Promise<T>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await tick();
  return done;
}

describe('FetchTable on one thread', () => {
  it('gives the first claim a ticket and later claims of the key the owner outcome', async () => {
    const c = manualClock();
    const owner = new FetchTable({ capacity: 64 }, { tag: 1, clock: c.now });
    const other = new FetchTable({ buffer: owner.buffer }, { tag: 2, clock: c.now });
    const k = key('www.example.com');
    const t = ticket(claim(owner, k, c.now()));
    const w1 = waiting(claim(other, k, c.now()));
    const w2 = waiting(claim(owner, k, c.now())); // the owner's own thread waits like any other
    expect(await settled(w1)).toBe(false);
    expect(owner.release(t, 'cached')).toBe(true);
    expect(await woken(w1)).toBe('cached');
    expect(await woken(w2)).toBe('cached');
    expect(owner.release(t, 'cached')).toBe(false); // once
    expect(owner.stats()).toMatchObject({ owned: 1, joined: 1, lateReleases: 1 });
    expect(other.stats()).toMatchObject({ owned: 0, joined: 1 });
    expect(owner.inspect()).toMatchObject({ busy: 0, locked: 0 });
    // Free again: the next miss owns a new fetch.
    const t2 = ticket(claim(other, k, c.now()));
    expect(t2).not.toBe(t); // a new generation of the same entry
    other.release(t2, 'uncached');
  });

  it('passes each outcome through, and keys differing in type, class or DO apart', async () => {
    const c = manualClock();
    const t = new FetchTable({ capacity: 64 }, { tag: 1, clock: c.now });
    const outcomes = ['cached', 'uncached', 'failed'] as const;
    const keys = [key('a.test', 1), key('a.test', 28), key('a.test', 1, true)];
    const tickets = keys.map((k) => ticket(claim(t, k, c.now())));
    const waits = keys.map((k) => waiting(claim(t, k, c.now())));
    tickets.forEach((tk, i) => t.release(tk, outcomes[i]!));
    expect(await woken(Promise.all(waits))).toEqual(outcomes);
  });

  it('attaches to a buffer with the creator capacity and deadline, and refuses bad options', () => {
    const a = new FetchTable({ capacity: 128, deadlineMs: 777 }, { tag: 1 });
    const b = new FetchTable({ buffer: a.buffer }, { tag: 2 });
    expect([b.capacity, b.deadlineMs]).toEqual([128, 777]);
    expect(() => new FetchTable({ capacity: 100 })).toThrow(RangeError);
    expect(() => new FetchTable({ capacity: 4 })).toThrow(RangeError);
    expect(() => new FetchTable({ capacity: 1 << 17 })).toThrow(RangeError);
    expect(() => new FetchTable({ capacity: 64, deadlineMs: 0 })).toThrow(RangeError);
    expect(() => new FetchTable({ buffer: new SharedArrayBuffer(64) })).toThrow(/not a fetch table/);
    expect(() => new FetchTable({ capacity: 64 }, { tag: -1 })).toThrow(RangeError);
    expect(() => a.claim(new Uint8Array(300), 300, 0, 0)).toThrow(RangeError);
    expect(fetchTableCapacity(2048)).toBe(8192);
    expect(fetchTableCapacity(1)).toBe(64);
    expect(fetchTableCapacity(1_000_000)).toBe(1 << 16);
  });

  it('fetches on its own when the bucket is full, and takes the entry again once one is free', () => {
    const c = manualClock();
    const t = new FetchTable({ capacity: WAYS }, { tag: 1, clock: c.now }); // one bucket
    const tickets: number[] = [];
    for (let i = 0; i < WAYS; i++) tickets.push(ticket(claim(t, key(`n${i}.test`), c.now())));
    expect(claim(t, key('one-more.test'), c.now())).toBe(SOLO);
    expect(t.stats().full).toBe(1);
    t.release(tickets[3]!, 'cached');
    expect(typeof claim(t, key('one-more.test'), c.now())).toBe('number');
    expect(t.release(SOLO, 'cached')).toBe(false); // nothing to release after SOLO
    expect(t.stats().lateReleases).toBe(0);
  });

  it('keeps two keys with the same hash apart (a real keyHash collision, and a forced one)', async () => {
    setHashKeyForTest(0x2468ace0, 0x13579bdf); // a fixed key: the search below is then deterministic
    // Birthday search for two names of one 30-bit hash: deterministic, about 40k hashes.
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const name = `c${i}.collide.test`;
      const h = hashOf(key(name));
      const prev = seen.get(h);
      if (prev !== undefined) pair = [prev, name];
      else seen.set(h, name);
    }
    const [ka, kb] = [key(pair[0]), key(pair[1])];
    expect(hashOf(ka)).toBe(hashOf(kb));
    const c = manualClock();
    const t = new FetchTable({ capacity: 64 }, { tag: 1, clock: c.now });
    for (const [x, y, h] of [[ka, kb, hashOf(ka)], [key('p.test'), key('q.test'), 12345]] as const) {
      const tx = ticket(claim(t, x, c.now(), h));
      const ty = ticket(claim(t, y, c.now(), h)); // its own fetch, not x's
      const wx = waiting(claim(t, x, c.now(), h));
      const wy = waiting(claim(t, y, c.now(), h));
      t.release(tx, 'failed');
      expect(await woken(wx)).toBe('failed');
      expect(await settled(wy)).toBe(false); // y's waiter is not woken by x's end
      t.release(ty, 'cached');
      expect(await woken(wy)).toBe('cached');
    }
  });

  it('a waiter gives up at the owner deadline, takes the entry, and the late release is refused', async () => {
    const t = new FetchTable({ capacity: 64, deadlineMs: 40 }, { tag: 1 }); // the real clock
    const k = key('slow.test');
    const clock = (): number => performance.now();
    const owner = new FetchTable({ buffer: t.buffer }, { tag: 2, clock });
    const waiter = new FetchTable({ buffer: t.buffer }, { tag: 3, clock });
    const tk = ticket(owner.claim(k, k.length, hashOf(k), clock()));
    const t0 = performance.now();
    const out = await waiting(waiter.claim(k, k.length, hashOf(k), clock()));
    const waited = performance.now() - t0;
    expect(out).toBe('expired');
    expect(waited).toBeGreaterThanOrEqual(35);
    expect(waited).toBeLessThan(1000);
    expect(waiter.stats()).toMatchObject({ joined: 1, deadlineExpired: 1, staleReclaimed: 1 });
    expect(owner.release(tk, 'cached')).toBe(false);
    expect(owner.stats().lateReleases).toBe(1);
    expect(t.inspect().busy).toBe(0);
  });

  it('a claim past an owner deadline takes the entry (stale-owner guard) and wakes its waiters', async () => {
    const c = manualClock();
    const a = new FetchTable({ capacity: 64, deadlineMs: 4500 }, { tag: 1, clock: c.now });
    const b = new FetchTable({ buffer: a.buffer }, { tag: 2, clock: c.now });
    const k = key('stuck.test');
    const stuck = ticket(claim(a, k, c.now()));
    const w = waiting(claim(b, k, c.now() + 100));
    c.set(c.now() + 4500);
    const fresh = ticket(claim(b, k, c.now())); // b now owns a new fetch of the key
    expect(await woken(w)).toBe('expired');
    expect(b.stats()).toMatchObject({ staleReclaimed: 1, owned: 1 });
    // The stuck owner's late release touches nothing of the new fetch.
    expect(a.release(stuck, 'cached')).toBe(false);
    const w2 = waiting(claim(a, k, c.now()));
    expect(await settled(w2)).toBe(false);
    b.release(fresh, 'uncached');
    expect(await woken(w2)).toBe('uncached');
  });

  it('a waiter whose entry was reused before it looked still gets its owner outcome (history), up to 16 reuses', async () => {
    const c = manualClock();
    const t = new FetchTable({ capacity: WAYS }, { tag: 1, clock: c.now }); // one bucket
    // Hold all ways but one, so the entry freed is the one every later claim takes.
    for (let i = 0; i < WAYS - 1; i++) ticket(claim(t, key(`held${i}.test`), c.now()));
    const k = key('first.test');
    const tk = ticket(claim(t, k, c.now()));
    const w = waiting(claim(t, k, c.now()));
    t.release(tk, 'uncached');
    // Reuse the entry 16 times before w's continuation runs (all synchronous).
    for (let i = 0; i < 16; i++) t.release(ticket(claim(t, key(`reuse${i}.test`), c.now())), 'cached');
    expect(await woken(w)).toBe('uncached');

    const tk2 = ticket(claim(t, k, c.now()));
    const w2 = waiting(claim(t, k, c.now()));
    t.release(tk2, 'failed');
    for (let i = 0; i < 17; i++) t.release(ticket(claim(t, key(`reuse${i}.test`), c.now())), 'cached');
    expect(await woken(w2)).toBe('lost'); // the 17th reuse overwrote it: the waiter fetches on its own, counted
    expect(t.stats().lost).toBe(1);
  });

  it('reuses the free way claimed longest ago', () => {
    const c = manualClock();
    const t = new FetchTable({ capacity: WAYS }, { tag: 1, clock: c.now });
    const slots = new Set<number>();
    for (let i = 0; i < 3 * WAYS; i++) {
      c.set(c.now() + 1);
      const tk = ticket(claim(t, key('same.test'), c.now()));
      slots.add(tk & 0xffff);
      t.release(tk, 'cached');
    }
    expect(slots.size).toBe(WAYS); // every way in turn, not the first free one each time
  });

  it('reclaim(tag) ends a thread entries as ownerDied, wakes their waiters, and leaves the others alone', async () => {
    const c = manualClock();
    const dead = new FetchTable({ capacity: 256 }, { tag: 7, clock: c.now });
    const live = new FetchTable({ buffer: dead.buffer }, { tag: 8, clock: c.now });
    const main = new FetchTable({ buffer: dead.buffer }, { tag: 0, clock: c.now });
    const deadKeys = Array.from({ length: 20 }, (_, i) => key(`dead${i}.test`));
    const deadTickets = deadKeys.map((k) => ticket(claim(dead, k, c.now())));
    const liveTicket = ticket(claim(live, key('alive.test'), c.now()));
    const waits = deadKeys.map((k) => waiting(claim(live, k, c.now())));
    const liveWait = waiting(claim(main, key('alive.test'), c.now()));
    expect(main.reclaim(7)).toBe(20);
    expect(await woken(Promise.all(waits))).toEqual(deadKeys.map(() => 'ownerDied'));
    expect(main.stats().ownerDied).toBe(20);
    expect(await settled(liveWait)).toBe(false);
    expect(main.inspect().busyBy).toEqual(new Map([[8, 1]]));
    expect(dead.release(deadTickets[0]!, 'cached')).toBe(false);
    live.release(liveTicket, 'cached');
    expect(await woken(liveWait)).toBe('cached');
    expect(main.reclaim(7)).toBe(0);
  });
});

/**
 * The table against a model, on one thread: random claims, releases, reclaims and clock
 * steps from three threads' views over one buffer. The model says what each claim must
 * return (ticket, SOLO for a full bucket, a wait), which release is refused, and with what
 * outcome every wait ends; waits settle only after the whole sequence, so waits whose
 * entry was reused meanwhile read the history.
 */
describe('FetchTable against a model', () => {
  const KEYS = 24; // keys 20..23 take the hashes of 0..3: collisions
  const hashFor = (k: number): number => (k >= 20 ? k - 20 : k);
  const keys = Array.from({ length: KEYS }, (_, k) => key(`m${k}.model.test`));
  const DEADLINE = 4500;
  type Op =
    | { op: 'claim'; v: number; k: number }
    | { op: 'release'; pick: number; outcome: 'cached' | 'uncached' | 'failed' }
    | { op: 'reclaim'; v: number }
    | { op: 'tick'; ms: number };
  const ops = fc.array(
    fc.oneof(
      { weight: 6, arbitrary: fc.record({ op: fc.constant('claim' as const), v: fc.nat(2), k: fc.nat(KEYS - 1) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat(40), outcome: fc.constantFrom('cached' as const, 'uncached' as const, 'failed' as const) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('reclaim' as const), v: fc.nat(2) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('tick' as const), ms: fc.constantFrom(10, 1000, 3000) }) },
    ) as fc.Arbitrary<Op>,
    { minLength: 30, maxLength: 120 },
  );

  it('claims, waits and outcomes follow the model', async () => {
    const tally: Record<string, number> = {};
    let solo = 0;
    await fc.assert(
      fc.asyncProperty(ops, async (seq) => {
        const c = manualClock();
        // Three threads' views (tags 1, 2, 3) of one table of two buckets.
        const first = new FetchTable({ capacity: 16, deadlineMs: DEADLINE }, { tag: 1, clock: c.now });
        const v = [first, ...[2, 3].map((tag) => new FetchTable({ buffer: first.buffer }, { tag, clock: c.now }))];
        // Model: entries held per key; every wait with the outcome it must end with.
        interface Held { k: number; owner: number; at: number; ticket: number; waits: { p: Promise<FetchOutcome>; expect?: FetchOutcome }[] }
        const held = new Map<number, Held>();
        const ended: { ticket: number; view: number }[] = [];
        const waits: { p: Promise<FetchOutcome>; expect?: FetchOutcome }[] = [];
        const end = (h: Held, outcome: FetchOutcome): void => {
          for (const w of h.waits) w.expect = outcome;
          held.delete(h.k);
          ended.push({ ticket: h.ticket, view: h.owner });
        };
        for (const o of seq) {
          if (o.op === 'tick') {
            c.set(c.now() + o.ms);
          } else if (o.op === 'claim') {
            const bucket = hashFor(o.k) & 1;
            // A claim first takes what is past its deadline in its bucket.
            for (const h of [...held.values()]) if ((hashFor(h.k) & 1) === bucket && h.at + DEADLINE <= c.now()) end(h, 'expired');
            const r = v[o.v]!.claim(keys[o.k]!, keys[o.k]!.length, hashFor(o.k), c.now());
            const h = held.get(o.k);
            const inBucket = [...held.values()].filter((x) => (hashFor(x.k) & 1) === bucket).length;
            if (h !== undefined) {
              expect(typeof r).not.toBe('number');
              const w = { p: r as Promise<FetchOutcome> };
              h.waits.push(w);
              waits.push(w);
            } else if (inBucket === WAYS) {
              expect(r).toBe(SOLO);
            } else {
              expect(typeof r === 'number' && r >= 0).toBe(true);
              held.set(o.k, { k: o.k, owner: o.v, at: c.now(), ticket: r as number, waits: [] });
            }
          } else if (o.op === 'release') {
            // Release something held, or (every other pick) something already ended: refused.
            const all = [...held.values()];
            if (o.pick % 2 === 0 && all.length > 0) {
              const h = all[o.pick % all.length]!;
              expect(v[h.owner]!.release(h.ticket, o.outcome)).toBe(true);
              end(h, o.outcome);
            } else if (ended.length > 0) {
              const e = ended[o.pick % ended.length]!;
              expect(v[e.view]!.release(e.ticket, o.outcome)).toBe(false);
            }
          } else {
            const mine = [...held.values()].filter((h) => h.owner === o.v);
            expect(v[0]!.reclaim(o.v + 1)).toBe(mine.length);
            for (const h of mine) end(h, 'ownerDied');
          }
        }
        for (const h of [...held.values()]) {
          expect(v[h.owner]!.release(h.ticket, 'cached')).toBe(true);
          end(h, 'cached');
        }
        const got = await woken(Promise.all(waits.map((w) => w.p)));
        expect(got).toEqual(waits.map((w) => w.expect));
        for (const w of waits) tally[w.expect!] = (tally[w.expect!] ?? 0) + 1;
        solo += v.reduce((n, t) => n + t.stats().full, 0);
        expect(v[0]!.inspect()).toMatchObject({ busy: 0, locked: 0 });
      }),
      { numRuns: 300 },
    );
    // The runs met every case: full buckets, and waits ending each way.
    expect(solo).toBeGreaterThan(0);
    for (const k of ['cached', 'uncached', 'failed', 'ownerDied', 'expired']) expect(tally[k]).toBeGreaterThan(0);
  });
});
