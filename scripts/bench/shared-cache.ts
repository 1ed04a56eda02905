/**
 * The shared cache (src/engine/shared-cache.ts) against the per-engine DnsCache it
 * replaces, side by side in one run:
 *   1. the userspace hit path: parse + key + lookup + reply written in place, both
 *      caches over the same 4,096 queries and the same harness;
 *   2. memory per cached entry beyond its DNS data: metadata arrays, allocator rounding,
 *      JS heap, for 200,000 answers of 1-3 A/AAAA records (not RSS: see below).
 * `npx tsx scripts/bench/shared-cache.ts [--quick]`. Compare ratios, not absolute times.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { Bench } from 'tinybench';
import { DnsCache } from '../../src/engine/cache.js';
import { SharedCache } from '../../src/engine/shared-cache.js';
import { MessageView, answerFromResponse, answerPayloadBytes, writeReply } from '../../src/dns/index.js';
import { keyHash } from '../../src/dns/key.js';
import { buildSamples } from './samples.js';
import { median } from './stats.js';

const QUICK = process.argv.includes('--quick');
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const fmt = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
const BATCH = 256;

async function hitPath(): Promise<void> {
  const samples = buildSamples(4096);
  const now = Number(process.hrtime.bigint());
  const old = new DnsCache({ maxEntries: 1 << 16 });
  const shared = SharedCache.create({ maxEntries: 1 << 16 });
  for (const s of samples) {
    old.insert(answerFromResponse(s.response, now));
    shared.insert(answerFromResponse(s.response, now), now);
  }
  const raws = samples.map((s) => s.raw);
  const view = new MessageView();
  const key = new Uint8Array(300);
  const frame = new Uint8Array(2048);
  const opts = { udpSize: 1232 };
  const mask = raws.length - 1;
  let i = 0;
  let sink = 0;
  const bench = new Bench({ time: QUICK ? 300 : 2000, warmupTime: QUICK ? 100 : 500 });
  bench
    .add('DnsCache: parse + key + get + writeReply in place', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const q = raws[j]!;
        j = (j + 1) & mask;
        frame.set(q, 0);
        view.parse(frame, 0, q.length, key);
        const a = old.get(key, view.keyLen, now);
        if (a !== undefined) x ^= writeReply(view, a, now, frame, 0, opts);
      }
      i = j;
      sink ^= x;
    })
    .add('SharedCache: parse + key + reply in place', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const q = raws[j]!;
        j = (j + 1) & mask;
        frame.set(q, 0);
        view.parse(frame, 0, q.length, key);
        x ^= shared.reply(view, key, view.keyLen, keyHash(key, 0, view.keyLen), now, frame, 0, opts);
      }
      i = j;
      sink ^= x;
    });
  // Alternate the two a few times: the machine is shared, and drift hits both alike.
  const rates = new Map<string, number[]>();
  for (let round = 0; round < (QUICK ? 1 : 3); round++) {
    await bench.run();
    for (const t of bench.tasks) {
      const hz = (t.result!.throughput?.mean ?? (t.result as unknown as { hz: number }).hz) * BATCH;
      rates.set(t.name, [...(rates.get(t.name) ?? []), hz]);
    }
  }
  if (shared.reads.misses !== 0 || old.stats.misses !== 0) throw new Error('a lookup missed');
  console.log('### Hit path (single thread, batches of 256, 4,096 distinct queries)\n');
  console.log('| path | ops/s (median of runs) | ns/op |');
  console.log('|---|---:|---:|');
  for (const [name, xs] of rates) console.log(`| ${name} | ${fmt(median(xs))} | ${fmt(1e9 / median(xs), 1)} |`);
  const [a, b] = [...rates.values()].map(median);
  console.log(`\nSharedCache / DnsCache hit path: ${fmt(b! / a!, 2)}x (runs: ${[...rates.values()].map((xs) => xs.map((x) => fmt(x / 1e6, 2)).join(', ')).join(' | ')} M/s)\n`);
  if (sink === 0.5) console.log(sink);
}

async function memory(): Promise<void> {
  const N = QUICK ? 50_000 : 200_000;
  const samples = buildSamples(N, 'm');
  const now = Number(process.hrtime.bigint());
  const answers = samples.map((s) => answerFromResponse(s.response, now));
  let payload = 0;
  for (const a of answers) payload += answerPayloadBytes(a);
  samples.length = 0; // only the answers stay alive across the measure
  gc();
  await settle();
  const m0 = process.memoryUsage();
  const cache = SharedCache.create({ maxEntries: N, maxBytes: N * 512 });
  for (const a of answers) if (cache.insert(a, now) < 0) throw new Error('insert refused');
  gc();
  await settle();
  const m1 = process.memoryUsage();
  // Each shard holds its share of the entries: with N keys hashed into 64 shards of N/64,
  // the fuller shards evicted a little (the occupancy below).
  const held = cache.size;
  let heldDns = 0;
  for (const a of cache.entries()) heldDns += answerPayloadBytes(a);
  const meta = cache.layout.meta.byteLength / held;
  const blocks = cache.bytes / held;
  const dns = heldDns / held;
  const arena = cache.layout.arena.byteLength / held;
  console.log(`### Memory per cached entry (${fmt(N)} answers of 1-3 A/AAAA records into --cache-size ${fmt(N)}, --cache-bytes 512 per entry; ${fmt(held)} held = ${fmt((100 * held) / N, 1)}% occupancy)\n`);
  console.log('| measure | bytes/entry |');
  console.log('|---|---:|');
  console.log(`| DNS data (key + records + TTL tables, as stored) | ${fmt(dns, 1)} |`);
  console.log(`| metadata: slot arrays, buckets, shard headers, allocator map | ${fmt(meta, 1)} |`);
  console.log(`| arena blocks held (DNS data rounded up to a power of two) | ${fmt(blocks, 1)} |`);
  console.log(`| beyond the DNS data: metadata + block rounding | ${fmt(meta + blocks - dns, 1)} |`);
  console.log(`| arena reserved (cache-bytes) | ${fmt(arena, 1)} |`);
  // (RSS is not shown: the samples freed just before the measure return pages meanwhile.)
  console.log(`| JS heap growth (the cache lives outside the heap) | ${fmt((m1.heapUsed - m0.heapUsed) / held, 1)} |`);
  // `answers` is used here so it stays alive across the measure (the cache holds copies).
  console.log(`\n(Per held entry. ${fmt(payload / answers.length, 1)} B of DNS data per answer offered; the ${fmt(answers.length)} answers stay alive across the measure, the cache holds copies.)`);
  cache.check();
}

console.log(`## Shared cache benchmark: node ${process.version}, ${process.arch}, ${new Date().toISOString().slice(0, 10)}${QUICK ? ' (quick)' : ''}\n`);
await hitPath();
await memory();
