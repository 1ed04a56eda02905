/**
 * What counting asks (src/hot/asks.ts) costs a cache hit in DnsEngine.handle, with the
 * service's table (2^20 entries, 4 MiB) and the bench's Zipf mix over 10,000 cached names:
 * rounds alternate between a threshold nothing reaches but asks are counted under, and
 * promotion off (PROMOTE_NEVER: the engine counts no asks). Every query is a hit; no
 * promotion is reported in either. Prints ns per handle() and the per-round ratio.
 *
 * Run: npx tsx scripts/bench/ask-count.ts [--quick]
 */
import dnsPacket from 'dns-packet';
import { DnsEngine } from '../../src/engine/engine.js';
import { ASK_TABLE_BITS, AskCounter } from '../../src/hot/asks.js';
import { PROMOTE_NEVER } from '../../src/hot/shared-promotion.js';
import { mulberry32, zipfSampler } from './rng.js';

const QUICK = process.argv.includes('--quick');
const NAMES = 10_000;
const QUERIES = QUICK ? 50_000 : 200_000;
const ROUNDS = QUICK ? 4 : 12;

const names = Array.from({ length: NAMES }, (_, i) => `h${i}.lab.example`);
const engine = new DnsEngine({
  resolver: { resolve: () => Promise.reject(new Error('every query here is a hit')) },
  cacheSize: 30_000,
  asks: new AskCounter(undefined, ASK_TABLE_BITS),
  onPromotion: () => {},
});
for (const name of names) {
  engine.cache.insertResponse(
    dnsPacket.encode({ type: 'response', id: 1, flags: 0x8180, questions: [{ type: 'A', name }], answers: [{ type: 'A', name, ttl: 86_400, data: '198.18.10.1' }] }),
  );
}
const queries = names.map((name, i) => dnsPacket.encode({ type: 'query', id: i & 0xffff, flags: 0x0100, questions: [{ type: 'A', name }] }));
const draw = zipfSampler(NAMES, 1, mulberry32(16));
const trace = Array.from({ length: QUERIES }, () => queries[draw()]!);
const out = Buffer.alloc(4096);

function round(threshold: number): number {
  engine.cache.setThreshold(threshold);
  const t0 = process.hrtime.bigint();
  for (const q of trace) {
    const n = engine.handle(q, 0, q.length, out, 0, false, 1232);
    if (typeof n !== 'number' || n <= 0) throw new Error('a query missed the cache');
  }
  return Number(process.hrtime.bigint() - t0) / trace.length;
}

const COUNTED = 1_000_000; // asks counted, never reached
for (let w = 0; w < 3; w++) {
  round(COUNTED);
  round(PROMOTE_NEVER);
}
const counted: number[] = [];
const off: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Each pair in the other order from the last, so neither case always runs first.
  if (r % 2 === 0) {
    counted.push(round(COUNTED));
    off.push(round(PROMOTE_NEVER));
  } else {
    off.push(round(PROMOTE_NEVER));
    counted.push(round(COUNTED));
  }
}
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const ratios = off.map((v, i) => v / counted[i]!);
console.log(`handle() of a hit, Zipf over ${NAMES} names, ${ROUNDS} rounds of ${QUERIES} (medians):`);
console.log(`  asks counted        ${median(counted).toFixed(0)} ns`);
console.log(`  promotion off       ${median(off).toFixed(0)} ns`);
console.log(`  off ÷ counted       ${median(ratios).toFixed(2)} (per round ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`);
