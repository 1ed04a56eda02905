/**
 * The benchmark's query files, deterministic (seeded), one "name type" per line as both
 * kxdpgun and dnsperf read them:
 *   hot.txt        the hot set: h0..h99, in order (100 names)
 *   warm.txt       h0..h9999 once each: asked three times before a zipf round, so every
 *                  contender starts it with the 10,000 names cached (and promoted)
 *   zipf-kx.txt    the Zipf-like mix for kxdpgun: i.i.d. draws of rank k in 1..10,000
 *                  with P(k) ∝ 1/k^s (name h(k-1)), and every 20th query (5%) a miss:
 *                  a name of the zone beyond the first 10,000 (h10000, h10001, ...),
 *                  each once in the file, so no cache has it when the run starts. Load
 *                  generators loop over the file: on the second pass the misses are hits.
 *   zipf-dp.txt    the same mix for dnsperf, with its own miss names, so the misses of
 *                  the latency run were not already asked by the throughput run
 *
 * Misses are names that exist: NSD's response rate limiting (on by default, 200/s per
 * /24) drops most NXDOMAIN answers to one resolver address, which would make the upstream,
 * not the contender, the bottleneck. The lab's zone must hold h0..h(zoneSize-1); the
 * size needed is printed as "zoneSize".
 *
 *   tsx scripts/bench/queries.ts OUTDIR [--lines-kx N] [--lines-dp N] [--s S] [--miss F]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, zipfSampler } from './rng.js';

const NAMES = 10_000;
const HOT = 100;
const ZONE = 'lab.example';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} needs a positive number`);
  return v;
}


/** Every period-th query is a miss (an exact share); the others are Zipf draws. */
function zipfFile(lines: number, s: number, period: number, seed: number, firstMiss: number): { text: string; misses: number; distinct: number } {
  const rnd = mulberry32(seed);
  const draw = zipfSampler(NAMES, s, rnd);
  const out: string[] = new Array(lines);
  const seen = new Uint8Array(NAMES);
  let misses = 0;
  let distinct = 0;
  for (let i = 0; i < lines; i++) {
    if (i % period === period - 1) {
      out[i] = `h${firstMiss + misses++}.${ZONE} A`;
    } else {
      const k = draw();
      if (!seen[k]) (seen[k] = 1), distinct++;
      out[i] = `h${k}.${ZONE} A`;
    }
  }
  return { text: out.join('\n') + '\n', misses, distinct };
}

const dir = process.argv[2];
if (!dir || dir.startsWith('--')) {
  console.error('usage: queries.ts OUTDIR [--lines-kx N] [--lines-dp N] [--s S] [--miss F]');
  process.exit(2);
}
const linesKx = arg('--lines-kx', 400_000);
const linesDp = arg('--lines-dp', 180_000);
const s = arg('--s', 1.0);
const miss = arg('--miss', 0.05);
const period = Math.round(1 / miss);
// scripts/lab/zone.sh numbers h<i> as 198.18.(100 + i/250).(1 + i%250): 39,000 names at most.
const ZONE_MAX = 39_000;
mkdirSync(dir, { recursive: true });

writeFileSync(join(dir, 'hot.txt'), Array.from({ length: HOT }, (_, i) => `h${i}.${ZONE} A`).join('\n') + '\n');
writeFileSync(join(dir, 'warm.txt'), Array.from({ length: NAMES }, (_, i) => `h${i}.${ZONE} A`).join('\n') + '\n');
const kx = zipfFile(linesKx, s, period, 1, NAMES);
writeFileSync(join(dir, 'zipf-kx.txt'), kx.text);
const dp = zipfFile(linesDp, s, period, 2, NAMES + kx.misses);
if (NAMES + kx.misses + dp.misses > ZONE_MAX) {
  console.error(`queries: ${NAMES + kx.misses + dp.misses} names needed, the lab's zone holds at most ${ZONE_MAX}: fewer lines or a smaller miss share`);
  process.exit(2);
}
writeFileSync(join(dir, 'zipf-dp.txt'), dp.text);
const top100 = Array.from({ length: HOT }, (_, k) => 1 / (k + 1) ** s).reduce((a, b) => a + b);
const all = Array.from({ length: NAMES }, (_, k) => 1 / (k + 1) ** s).reduce((a, b) => a + b);
console.log(
  JSON.stringify({
    names: NAMES,
    hot: HOT,
    zipfS: s,
    missShare: 1 / period,
    top100Share: +((top100 / all) * (1 - miss)).toFixed(3),
    kx: { lines: linesKx, misses: kx.misses, distinctNames: kx.distinct },
    dp: { lines: linesDp, misses: dp.misses, distinctNames: dp.distinct },
    zoneSize: NAMES + kx.misses + dp.misses,
  }),
);
