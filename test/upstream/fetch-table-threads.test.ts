/**
 * FetchTable across worker_threads (test/upstream/fetch-table-agent.ts) and the main
 * thread: one owner per key at a time under random overlapping claims, every waiter
 * woken with its owner's outcome, nothing left held; a worker terminated while it owns
 * entries (and at random instructions while churning) is reclaimed and its waiters woken;
 * and the demo of the engine's miss path to come: four workers asking the same 100
 * names through a fake cache reach the fake upstream once per name.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { keyHash, makeKey } from '../../src/dns/index.js';
import { fastMonotonicNs } from '../../src/engine/clock.js';
import { FetchTable, CONTENDED, SOLO, type FetchOutcome, type FetchTableStats } from '../../src/upstream/fetch-table.js';
import { mulberry32 } from '../../scripts/bench/rng.js';
import { Ctl, CTL_WORDS, UPSTREAM, randomKey, type AgentData } from './fetch-table-shared.js';

const AGENT = new URL('./fetch-table-agent.ts', import.meta.url).href;
// Workers do not inherit tsx's loader hooks (Node 20): register them, then load the agent.
const BOOT = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(AGENT)}); })`;

interface Msg {
  type: string;
  tag: number;
  stats: FetchTableStats;
  [k: string]: unknown;
}

interface Agent {
  w: Worker;
  /** Its threadId, read at start (a Worker's threadId reads -1 after exit). */
  tag: number;
  next(type: string): Promise<Msg>;
  exited: Promise<number>;
}

function agent(data: Omit<AgentData, 'ctl' | 'table'>, table: FetchTable, ctl: Int32Array): Agent {
  const w = new Worker(BOOT, { eval: true, workerData: { ...data, table: table.buffer, ctl: ctl.buffer } });
  const queue: Msg[] = [];
  const wanted: { type: string; resolve: (m: Msg) => void; reject: (e: Error) => void }[] = [];
  let failure: Error | null = null;
  const deliver = (): void => {
    for (let i = 0; i < wanted.length; i++) {
      const at = queue.findIndex((m) => m.type === wanted[i]!.type);
      if (at >= 0) {
        wanted[i]!.resolve(queue.splice(at, 1)[0]!);
        wanted.splice(i--, 1);
      } else if (failure) {
        wanted[i]!.reject(failure);
        wanted.splice(i--, 1);
      }
    }
  };
  w.on('message', (m: Msg) => {
    if (m.type === 'error') failure = new Error(`agent ${data.scenario}: ${String(m.message)}`);
    else queue.push(m);
    deliver();
  });
  w.on('error', (e) => {
    failure = e;
    deliver();
  });
  const exited = new Promise<number>((resolve) =>
    w.on('exit', (code) => {
      failure ??= new Error(`agent ${data.scenario} exited (${code})`);
      deliver();
      resolve(code);
    }),
  );
  return {
    w,
    tag: w.threadId,
    exited,
    next: (type) =>
      new Promise<Msg>((resolve, reject) => {
        wanted.push({ type, resolve, reject });
        deliver();
      }),
  };
}

const newCtl = (): Int32Array => new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
const nowMs = (): number => fastMonotonicNs() / 1e6;
const keyOf = (name: string): Uint8Array => makeKey(name, 1, 1, false);

describe('FetchTable across threads', () => {
  it.each([
    { capacity: 8, keys: 24, seed: 1 }, // one bucket: every claim contends for one lock, and it is often full
    { capacity: 64, keys: 24, seed: 2 },
  ])('random overlapping claims from 4 workers: one owner per key, every waiter gets its owner outcome (capacity $capacity)', async ({ capacity, keys, seed }) => {
    const table = new FetchTable({ capacity });
    const ctl = newCtl();
    const rounds = 12;
    const clients = 6;
    const ops = 10;
    const workers = Array.from({ length: 4 }, (_, index) => agent({ scenario: 'random', index, workers: 4, seed, rounds, clients, ops, keys }, table, ctl));
    const done = await Promise.all(workers.map((a) => a.next('done')));
    await Promise.all(workers.map((a) => a.exited));
    const sum = (f: (m: Msg) => number): number => done.reduce((n, m) => n + f(m), 0);
    expect(done.flatMap((m) => m.mismatches as string[])).toEqual([]);
    expect(sum((m) => m.violations as number)).toBe(0);
    expect(sum((m) => m.slowWaits as number)).toBe(0);
    for (const m of done) {
      expect((m.owned as number) + (m.joined as number) + (m.solo as number)).toBe(rounds * clients * ops);
      expect(m.stats).toMatchObject({ owned: m.owned, joined: m.joined, deadlineExpired: 0, staleReclaimed: 0, ownerDied: 0, lost: 0, lateReleases: 0 });
      expect(m.stats.full + m.stats.contended).toBe(m.solo);
    }
    // The run exercised what it claims to: owners and waiters on every thread.
    for (const m of done) expect(Math.min(m.owned as number, m.joined as number)).toBeGreaterThan(0);
    if (capacity === 8) expect(sum((m) => m.stats.full)).toBeGreaterThan(0);
    expect(table.inspect()).toMatchObject({ busy: 0, locked: 0 });
  });

  it('a worker terminated while it owns entries: reclaim from its exit wakes the waiters of other threads with ownerDied', async () => {
    const table = new FetchTable({ capacity: 256 }); // the main thread's view (tag 0)
    const ctl = newCtl();
    const names = Array.from({ length: 30 }, (_, i) => `held${i}.test`);
    const owner = agent({ scenario: 'hold', index: 0, workers: 2, seed: 3, names }, table, ctl);
    expect((await owner.next('owned')).owned).toBe(30);
    const joiner = agent({ scenario: 'join', index: 1, workers: 2, seed: 3, names }, table, ctl);
    expect((await joiner.next('joined')).joined).toBe(30);
    const mainWaits = names.slice(0, 5).map((n) => {
      const k = keyOf(n);
      return table.claim(k, k.length, keyHash(k, 0, k.length), nowMs()) as Promise<FetchOutcome>;
    });
    expect(mainWaits.every((w) => typeof w !== 'number')).toBe(true);
    expect(table.inspect().busyBy).toEqual(new Map([[owner.tag, 30]]));

    // The pool's part: from the exit event, reclaim with the tag read at start.
    let reclaimed = -1;
    owner.w.on('exit', () => (reclaimed = table.reclaim(owner.tag)));
    await owner.w.terminate();
    await owner.exited;
    expect(reclaimed).toBe(30);
    const done = await joiner.next('done');
    expect(done.outcomes).toEqual(names.map(() => 'ownerDied'));
    expect(done.ms as number).toBeLessThan(3500); // woken by reclaim, not by the 4.5 s deadline
    expect(await Promise.all(mainWaits)).toEqual(mainWaits.map(() => 'ownerDied'));
    expect(table.stats().ownerDied).toBe(30);
    expect(table.inspect()).toMatchObject({ busy: 0, locked: 0 });
    await joiner.exited;
  });

  it('a worker terminated while it holds a bucket lock: claims there fetch on their own after lockWaitMs, reclaim opens it', async () => {
    const table = new FetchTable({ capacity: 64 }, { lockWaitMs: 30 });
    const ctl = newCtl();
    const holder = agent({ scenario: 'lock', index: 0, workers: 1, seed: 5 }, table, ctl);
    await holder.next('locked');
    const { key, hash } = randomKey(0);
    const t0 = performance.now();
    expect(table.claim(key, key.length, hash, nowMs())).toBe(SOLO);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(29);
    expect(table.stats()).toMatchObject({ contended: 1, lockSleeps: 1, owned: 0 });
    expect(table.inspect().lockedBy).toEqual(new Map([[holder.tag, 1]]));
    // Without wait (the engine's miss path), the claim returns at once and blocks nothing;
    // giving up is counted as contended.
    const t1 = performance.now();
    expect(table.claim(key, key.length, hash, nowMs(), false)).toBe(CONTENDED);
    expect(performance.now() - t1).toBeLessThan(10);
    expect(table.stats()).toMatchObject({ contended: 1, lockSleeps: 1 });
    table.giveUp();
    expect(table.stats()).toMatchObject({ contended: 2, lockSleeps: 1 });
    holder.w.on('exit', () => table.reclaim(holder.tag));
    await holder.w.terminate();
    await holder.exited;
    expect(table.inspect()).toMatchObject({ busy: 0, locked: 0 });
    // The bucket works again, the half-written entry included.
    const t = table.claim(key, key.length, hash, nowMs()) as number;
    expect(t).toBeGreaterThanOrEqual(0);
    const w = table.claim(key, key.length, hash, nowMs());
    expect(typeof w).not.toBe('number');
    table.release(t, 'cached');
    expect(await w).toBe('cached');
  });

  it('a worker terminated at random instructions while churning: its entries and locks come back, waiters never hang', async () => {
    const rng = mulberry32(15);
    let reclaimedTotal = 0;
    for (let run = 0; run < 4; run++) {
      // A deadline far beyond the test: an entry left held would show as a hang, not expire quietly.
      const table = new FetchTable({ capacity: 64, deadlineMs: 60_000 });
      const ctl = newCtl();
      const churn = agent({ scenario: 'churn', index: 0, workers: 2, seed: 100 + run, keys: 12 }, table, ctl);
      const survivor = agent({ scenario: 'churn', index: 1, workers: 2, seed: 200 + run, keys: 12, ops: 3000 }, table, ctl);
      // Terminate after a random amount of work.
      const after = 200 + Math.floor(rng() * 3000);
      while (Atomics.load(ctl, Ctl.PROGRESS) < after) await new Promise((r) => setTimeout(r, 1));
      let reclaimed = -1;
      churn.w.on('exit', () => {
        reclaimed = table.reclaim(churn.tag);
        // Nothing of the dead thread is left the moment reclaim returns.
        const after = table.inspect();
        expect([after.busyBy.get(churn.tag), after.lockedBy.get(churn.tag)]).toEqual([undefined, undefined]);
      });
      await churn.w.terminate();
      await churn.exited;
      expect(reclaimed).toBeGreaterThanOrEqual(0);
      reclaimedTotal += reclaimed;
      const done = await survivor.next('done');
      await survivor.exited;
      const outcomes = done.outcomes as Record<string, number>;
      // 'lost' is allowed here: the churn claims and releases one entry every few µs,
      // so a waiter descheduled for a moment may see its entry reused past the history.
      expect(Object.keys(outcomes).filter((o) => !['cached', 'uncached', 'ownerDied', 'lost'].includes(o))).toEqual([]);
      expect(done.stats.deadlineExpired).toBe(0);
      const left = table.inspect();
      expect(left).toMatchObject({ busy: 0, locked: 0 });
      // Every key can be owned again.
      for (let k = 0; k < 12; k++) {
        const { key, hash } = randomKey(k);
        const t = table.claim(key, key.length, hash, nowMs());
        expect(typeof t === 'number' && t >= 0).toBe(true);
        table.release(t as number, 'cached');
      }
    }
    // The terminations landed while the churner owned entries (it holds half of them across a wait).
    expect(reclaimedTotal).toBeGreaterThan(0);
  });

  it('demo: 4 workers asking the same 100 names at once reach the upstream once per name (without the table: more)', async () => {
    const names = Array.from({ length: 100 }, (_, i) => `name${i}.demo.test`);
    const run = async (useTable: boolean): Promise<{ upstream: number[]; done: Msg[] }> => {
      const table = new FetchTable({ capacity: 512 });
      const ctl = newCtl();
      const workers = Array.from({ length: 4 }, (_, index) => agent({ scenario: 'demo', index, workers: 4, seed: 4, names, useTable }, table, ctl));
      while (Atomics.load(ctl, Ctl.ARRIVED) < 4) await new Promise((r) => setTimeout(r, 1));
      Atomics.store(ctl, Ctl.START, 1);
      Atomics.notify(ctl, Ctl.START);
      const done = await Promise.all(workers.map((a) => a.next('done')));
      await Promise.all(workers.map((a) => a.exited));
      expect(table.inspect()).toMatchObject({ busy: 0, locked: 0 });
      return { upstream: names.map((_, i) => ctl[UPSTREAM + i]!), done };
    };
    const shared = await run(true);
    expect(shared.upstream).toEqual(names.map(() => 1));
    const sum = (k: string): number => shared.done.reduce((n, m) => n + (m[k] as number), 0);
    expect(sum('fetched')).toBe(100);
    expect(sum('served') + sum('hits')).toBe(300); // the other three asks of each name: from the cache
    expect(sum('solo') + sum('refetched')).toBe(0);
    // The control run: every worker fetches what it misses, and names are fetched several times.
    const alone = await run(false);
    expect(alone.upstream.reduce((a, b) => a + b, 0)).toBeGreaterThan(100);
  });
});
