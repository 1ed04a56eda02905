/**
 * A worker thread of fetch-table-threads.test.ts: its own FetchTable over the shared
 * buffer, running one scenario (workerData.scenario) and posting what it saw. Shared
 * control words (workerData.ctl) carry barriers, per-key owner counts and the fake
 * upstream's counters (fetch-table-shared.ts).
 */
import { parentPort, workerData, threadId } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { keyHash, makeKey } from '../../src/dns/index.js';
import { FetchTable, SOLO, WAYS, type FetchOutcome } from '../../src/upstream/fetch-table.js';
import { fastMonotonicNs } from '../../src/engine/clock.js';
import { mulberry32 } from '../../scripts/bench/rng.js';
import { Ctl, outcomeFor, randomKey, UPSTREAM, type AgentData } from './fetch-table-shared.js';

const d = workerData as AgentData;
const ctl = new Int32Array(d.ctl);
/** The table's default clock: CLOCK_MONOTONIC, the same on every thread. */
const now = (): number => fastMonotonicNs() / 1e6;
const table = new FetchTable({ buffer: d.table });
const rng = mulberry32(d.seed * 1000 + d.index);
const post = (m: Record<string, unknown>): void => parentPort!.postMessage({ ...m, tag: threadId, stats: table.stats() });

function barrier(target: number): void {
  Atomics.add(ctl, Ctl.ARRIVED, 1);
  Atomics.notify(ctl, Ctl.ARRIVED);
  for (let v = Atomics.load(ctl, Ctl.ARRIVED); v < target; v = Atomics.load(ctl, Ctl.ARRIVED)) Atomics.wait(ctl, Ctl.ARRIVED, v, 100);
}

/** A random short hold: the next turn, or 0-2 ms. */
function hold(): Promise<unknown> {
  const x = rng();
  if (x < 0.3) return new Promise((r) => setImmediate(r));
  return sleep(Math.floor(x * 3));
}

async function randomScenario(): Promise<void> {
  const rounds = d.rounds ?? 10;
  const clients = d.clients ?? 4;
  const ops = d.ops ?? 10;
  const nkeys = d.keys ?? 24;
  const keys = Array.from({ length: nkeys }, (_, k) => randomKey(k));
  // slowWaits: waits over 1 s, when owners hold 2 ms at most; a waiter not notified would wait out the 4.5 s deadline.
  const seen = { owned: 0, joined: 0, solo: 0, violations: 0, slowWaits: 0, mismatches: [] as string[] };
  for (let r = 0; r < rounds; r++) {
    const client = async (): Promise<void> => {
      for (let i = 0; i < ops; i++) {
        const k = Math.floor(rng() * nkeys);
        const { key, hash } = keys[k]!;
        const got = table.claim(key, key.length, hash, now());
        if (typeof got === 'number') {
          if (got === SOLO) {
            seen.solo++;
            await hold();
            continue;
          }
          seen.owned++;
          if (Atomics.add(ctl, Ctl.PER_KEY + k, 1) !== 0) seen.violations++;
          await hold();
          Atomics.sub(ctl, Ctl.PER_KEY + k, 1);
          table.release(got, outcomeFor(k, r));
        } else {
          seen.joined++;
          const t0 = now();
          const out = await got;
          if (now() - t0 > 1000) seen.slowWaits++;
          if (out !== outcomeFor(k, r)) seen.mismatches.push(`round ${r} key ${k}: ${out}, owner gave ${outcomeFor(k, r)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    // Every wait of this round has ended on every thread before the next round's outcomes start.
    barrier(d.workers * (r + 1));
  }
  post({ type: 'done', ...seen });
}

function keysOf(names: string[]): Uint8Array[] {
  return names.map((n) => makeKey(n, 1, 1, false));
}

async function holdScenario(): Promise<void> {
  const keys = keysOf(d.names!);
  const tickets = keys.map((k) => table.claim(k, k.length, keyHash(k, 0, k.length), now()));
  post({ type: 'owned', owned: tickets.filter((t) => typeof t === 'number' && t >= 0).length });
  setInterval(() => {}, 1000); // held until terminated
}

async function joinScenario(): Promise<void> {
  const keys = keysOf(d.names!);
  const waits = keys.map((k) => table.claim(k, k.length, keyHash(k, 0, k.length), now()));
  // Nothing else keeps this thread alive while it waits: the table does (its keep-alive timer).
  post({ type: 'joined', joined: waits.filter((w) => typeof w !== 'number').length });
  const t0 = now();
  const outcomes = await Promise.all(waits.map((w) => (typeof w === 'number' ? Promise.resolve(`ticket ${w}` as const) : w)));
  post({ type: 'done', outcomes, ms: now() - t0 });
}

/**
 * Claims and releases as fast as it can (mostly synchronously, so a terminate lands
 * anywhere, inside claim and release included), waiting now and then; runs until
 * terminated, or for `ops` operations when given (the survivor next to it).
 */
async function churnScenario(): Promise<void> {
  const nkeys = d.keys ?? 16;
  const keys = Array.from({ length: nkeys }, (_, k) => randomKey(k));
  const limit = d.ops ?? Infinity;
  const outcomes: Record<string, number> = {};
  const pending: Promise<void>[] = [];
  const keep = setInterval(() => {}, 1000);
  for (let i = 0; i < limit; i++) {
    const k = Math.floor(rng() * nkeys);
    const { key, hash } = keys[k]!;
    const got = table.claim(key, key.length, hash, now());
    if (typeof got === 'number') {
      if (got >= 0) {
        if (rng() < 0.5) table.release(got, 'cached');
        else pending.push(hold().then(() => void table.release(got, 'uncached')));
      }
    } else {
      pending.push(got.then((o: FetchOutcome) => void (outcomes[o] = (outcomes[o] ?? 0) + 1)));
    }
    Atomics.add(ctl, Ctl.PROGRESS + d.index, 1);
    if (i % 16 === 15) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(pending);
  clearInterval(keep);
  post({ type: 'done', outcomes });
}

/** The demo: every worker asks the same names at once, through a fake cache and a fake upstream in shared memory. */
async function demoScenario(): Promise<void> {
  const names = d.names!;
  const keys = keysOf(names);
  const cached = (i: number): boolean => Atomics.load(ctl, Ctl.PER_KEY + i) === 1;
  const fetch = async (i: number): Promise<void> => {
    Atomics.add(ctl, UPSTREAM + i, 1);
    await sleep(1 + Math.floor(rng() * 4));
    Atomics.store(ctl, Ctl.PER_KEY + i, 1);
  };
  const seen = { hits: 0, fetched: 0, solo: 0, served: 0, refetched: 0 };
  const ask = async (i: number): Promise<void> => {
    if (cached(i)) return void seen.hits++;
    const k = keys[i]!;
    if (!d.useTable) return void (await fetch(i), seen.fetched++);
    const got = table.claim(k, k.length, keyHash(k, 0, k.length), now());
    if (typeof got !== 'number') {
      const out = await got;
      if (out === 'cached' && cached(i)) return void seen.served++;
      seen.refetched++;
      return fetch(i);
    }
    if (got === SOLO) return void (await fetch(i), seen.solo++);
    // Owner: look again first, a fetch may have ended between the lookup and the claim.
    if (cached(i)) {
      table.release(got, 'cached');
      return void seen.hits++;
    }
    try {
      await fetch(i);
      seen.fetched++;
    } finally {
      table.release(got, cached(i) ? 'cached' : 'failed');
    }
  };
  const order = names.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  Atomics.add(ctl, Ctl.ARRIVED, 1);
  while (Atomics.load(ctl, Ctl.START) === 0) Atomics.wait(ctl, Ctl.START, 0, 100);
  await Promise.all(order.map(ask));
  post({ type: 'done', ...seen });
}

/**
 * Dies inside claim's critical section, as a thread terminated between taking a bucket
 * lock and opening it would: takes the lock of key 0's bucket (the private lock(), the
 * one white-box step of these tests), half-writes a free entry, and blocks until terminated.
 */
async function lockScenario(): Promise<void> {
  const { hash } = randomKey(0);
  const inside = table as unknown as { lock(b: number): boolean; w: Int32Array; HASH: number };
  const bucket = hash & (table.capacity / WAYS - 1);
  if (!inside.lock(bucket)) throw new Error('bucket lock not had');
  inside.w[inside.HASH + bucket * WAYS] = 0x5a5a5a; // a claim's first write, never finished
  post({ type: 'locked', bucket });
  for (;;) Atomics.wait(ctl, Ctl.START, 0, 50);
}

const run = { random: randomScenario, hold: holdScenario, join: joinScenario, churn: churnScenario, demo: demoScenario, lock: lockScenario }[d.scenario];
run().catch((e: Error) => parentPort!.postMessage({ type: 'error', message: e.stack ?? e.message }));
