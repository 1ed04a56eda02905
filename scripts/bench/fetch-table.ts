/**
 * The FetchTable's costs on one thread (src/upstream/fetch-table.ts):
 *   1. the owner path: claim + release of a name nobody else fetches (what every miss
 *      pays), ns per pair and heap growth / GCs over 1M pairs (it should allocate nothing);
 *   2. the waiter path: a second claim of a name in flight, the release, and the await
 *      of the waiter's promise, ns and bytes per waiter.
 * Run: node --expose-gc --import tsx scripts/bench/fetch-table.ts
 * Numbers depend on the machine and its load; they are printed, not kept here.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { keyHash, makeKey } from '../../src/dns/index.js';
import { FetchTable, fetchTableCapacity } from '../../src/upstream/fetch-table.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc --import tsx scripts/bench/fetch-table.ts');

let gcEvents = 0;
new PerformanceObserver((list) => void (gcEvents += list.getEntries().length)).observe({ entryTypes: ['gc'] });
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

const NAMES = 1000;
const keys = Array.from({ length: NAMES }, (_, i) => makeKey(`host${i}.bench.example`, 1, 1, false));
const hashes = keys.map((k) => keyHash(k, 0, k.length));
const table = new FetchTable({ capacity: fetchTableCapacity(2048) });
const now = 1_000_000;

function ownerPair(i: number): number {
  const k = keys[i % NAMES]!;
  const t = table.claim(k, k.length, hashes[i % NAMES]!, now) as number;
  table.release(t, 'cached');
  return t;
}

async function main(): Promise<void> {
  const ITER = 1_000_000;
  let sink = 0;
  for (let i = 0; i < 200_000; i++) sink ^= ownerPair(i);
  gc!();
  await settle();
  const g0 = gcEvents;
  const h0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  for (let i = 0; i < ITER; i++) sink ^= ownerPair(i);
  const ms = performance.now() - t0;
  const h1 = process.memoryUsage().heapUsed;
  await settle();
  console.log(`owner path (claim + release): ${((ms * 1e6) / ITER).toFixed(0)} ns per pair, heap growth ${h1 - h0} B over ${ITER} (${((h1 - h0) / ITER).toFixed(3)} B/pair), ${gcEvents - g0} GCs`);

  const WAITERS = 100_000;
  gc!();
  await settle();
  const w0 = process.memoryUsage().heapUsed;
  const t1 = performance.now();
  const batch = 1000;
  for (let b = 0; b < WAITERS / batch; b++) {
    const waits: Promise<unknown>[] = [];
    const tickets: number[] = [];
    for (let i = 0; i < batch; i++) {
      const k = keys[i % NAMES]!;
      tickets.push(table.claim(k, k.length, hashes[i % NAMES]!, now) as number);
      waits.push(table.claim(k, k.length, hashes[i % NAMES]!, now) as Promise<unknown>);
    }
    for (const t of tickets) table.release(t, 'cached');
    await Promise.all(waits);
  }
  const ms2 = performance.now() - t1;
  const w1 = process.memoryUsage().heapUsed;
  console.log(`waiter path (claim, release, await; owner claims included): ${((ms2 * 1e6) / WAITERS).toFixed(0)} ns per waiter, heap ${(w1 - w0) / WAITERS >= 0 ? ((w1 - w0) / WAITERS).toFixed(0) : '<0'} B per waiter kept after the loop (no GC forced)`);
  console.log(table.stats());
  if (sink === 0.5) console.log('');
}

void main();
