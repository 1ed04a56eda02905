/**
 * Benchmarks of the DNS core (issue 3), all figures from one run on one
 * machine, reported as ratios where there is a baseline:
 *   1. query parse + cache key (MessageView) vs dnsPacket.decode
 *   2. the userspace hit path: parse, key, lookup, reply in place
 *   3. answerFromResponse vs dnsPacket.decode of upstream responses
 *   4. cache lookup and insert rates
 *   5. allocation check: heap growth and GC count over 1M iterations
 *   6. memory per cached entry
 *   7. SLRU vs LRU hit rate on a Zipf trace with one-hit wonders, and the
 *      share of queries a hot map of 10% of the cache would absorb
 *
 * Run: npx tsx scripts/bench/core.ts [--quick]
 */
import { Buffer } from 'node:buffer';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import dnsPacket from 'dns-packet';
import { Bench } from 'tinybench';
import { DnsCache, PromotionPolicy } from '../../src/engine/index.js';
import {
  MessageView,
  answerFromResponse,
  answerPayloadBytes,
  keyString,
  writeReply,
  type CachedAnswer,
} from '../../src/dns/index.js';
import { buildSamples, type Sample } from './samples.js';
import { mulberry32 } from './rng.js';

const QUICK = process.argv.includes('--quick');
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

// Deterministic inputs: scripts/bench/samples.ts.

// ---- reporting ----------------------------------------------------------------------

const lines: string[] = [];
function out(s = ''): void {
  lines.push(s);
  console.log(s);
}
const fmt = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

// ---- 1..4: throughput ----------------------------------------------------------------

const BATCH = 256;

async function throughput(samples: Sample[]): Promise<void> {
  const view = new MessageView();
  const key = new Uint8Array(300);
  const frame = new Uint8Array(2048);
  const cache = new DnsCache({ maxEntries: 1 << 16 });
  const now = Number(process.hrtime.bigint());
  for (const s of samples) cache.insert(answerFromResponse(s.response, now));
  const answers = samples.map((s) => answerFromResponse(s.response, now));
  const keys = answers.map((a) => a.key);
  const replyOpts = { udpSize: 1232 };
  const missKeys = buildSamples(samples.length, 'miss').map((s) => answerFromResponse(s.response, now).key);
  const insertCache = new DnsCache({ maxEntries: samples.length >> 1 });
  const n = samples.length;
  let sink = 0;

  // Inputs as plain arrays indexed by a power-of-two mask, the same for
  // every task, so the harness costs each side the same few nanoseconds.
  const mask = n - 1;
  if ((n & mask) !== 0) throw new Error('sample count must be a power of two');
  const raws = samples.map((s) => s.raw);
  const bufs = samples.map((s) => s.query);
  const resps = samples.map((s) => s.response);
  let i = 0;
  const bench = new Bench({ time: QUICK ? 300 : 1500, warmupTime: QUICK ? 100 : 300, throws: true });
  bench
    .add('parse + key (MessageView)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const q = raws[j]!;
        j = (j + 1) & mask;
        x ^= view.parse(q, 0, q.length, key) ^ view.keyLen;
      }
      i = j;
      sink ^= x;
    })
    .add('parse, then writeKey', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const q = raws[j]!;
        j = (j + 1) & mask;
        view.parse(q, 0, q.length);
        x ^= view.writeKey(key, 0);
      }
      i = j;
      sink ^= x;
    })
    .add('dnsPacket.decode', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        x ^= dnsPacket.decode(bufs[j]!).id!;
        j = (j + 1) & mask;
      }
      i = j;
      sink ^= x;
    })
    .add('dnsPacket.decode + key string', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const d = dnsPacket.decode(bufs[j]!);
        j = (j + 1) & mask;
        const q = d.questions![0]!;
        const opt = d.additionals?.find((r) => r.type === 'OPT') as { flag_do?: boolean } | undefined;
        x ^= `${q.name.toLowerCase()}/${q.type}/${q.class}/${opt?.flag_do === true ? 1 : 0}`.length;
      }
      i = j;
      sink ^= x;
    })
    .add('hit path: parse + key + get + writeReply in place', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const q = raws[j]!;
        j = (j + 1) & mask;
        frame.set(q, 0);
        view.parse(frame, 0, q.length, key);
        const a = cache.get(key, view.keyLen, now);
        if (a !== undefined) x ^= writeReply(view, a, now, frame, 0, replyOpts);
      }
      i = j;
      sink ^= x;
    })
    .add('answerFromResponse (upstream response)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        x ^= answerFromResponse(resps[j]!, now).records.length;
        j = (j + 1) & mask;
      }
      i = j;
      sink ^= x;
    })
    .add('dnsPacket.decode (upstream response)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        x ^= dnsPacket.decode(resps[j]!).id!;
        j = (j + 1) & mask;
      }
      i = j;
      sink ^= x;
    })
    .add('cache.get (hit)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const k = keys[j]!;
        j = (j + 1) & mask;
        if (cache.get(k, k.length, now) !== undefined) x ^= 1;
      }
      i = j;
      sink ^= x;
    })
    .add('cache.get (miss)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        const k = missKeys[j]!;
        j = (j + 1) & mask;
        if (cache.get(k, k.length, now) === undefined) x ^= 1;
      }
      i = j;
      sink ^= x;
    })
    .add('cache.insert (full cache, evicting)', () => {
      let j = i;
      let x = 0;
      for (let b = 0; b < BATCH; b++) {
        x ^= insertCache.insert(answers[j]!, now);
        j = (j + 1) & mask;
      }
      i = j;
      sink ^= x;
    });
  await bench.run();
  const rate = new Map<string, number>();
  for (const t of bench.tasks) rate.set(t.name, t.result!.throughput.mean * BATCH);
  const r = (name: string): number => rate.get(name)!;

  out('### Throughput (single thread, one run, batches of 256)');
  out();
  out('| operation | ops/s | ns/op |');
  out('|---|---:|---:|');
  for (const [name, ops] of rate) out(`| ${name} | ${fmt(ops)} | ${fmt(1e9 / ops, 1)} |`);
  out();
  out('| ratio | value |');
  out('|---|---:|');
  out(`| parse + key vs dnsPacket.decode | ${fmt(r('parse + key (MessageView)') / r('dnsPacket.decode'), 1)}x |`);
  out(`| parse + key vs dnsPacket.decode + key string | ${fmt(r('parse + key (MessageView)') / r('dnsPacket.decode + key string'), 1)}x |`);
  out(`| parse, then writeKey vs dnsPacket.decode | ${fmt(r('parse, then writeKey') / r('dnsPacket.decode'), 1)}x |`);
  out(`| whole hit path vs dnsPacket.decode alone | ${fmt(r('hit path: parse + key + get + writeReply in place') / r('dnsPacket.decode'), 1)}x |`);
  out(`| answerFromResponse vs dnsPacket.decode (responses) | ${fmt(r('answerFromResponse (upstream response)') / r('dnsPacket.decode (upstream response)'), 1)}x |`);
  out();
  if (sink === 0.5) console.log('');
}

// ---- 5: allocation ---------------------------------------------------------------------

let gcEvents = 0;
const obs = new PerformanceObserver((list) => {
  gcEvents += list.getEntries().length;
});
obs.observe({ entryTypes: ['gc'] });
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

async function allocation(samples: Sample[]): Promise<void> {
  const view = new MessageView();
  const key = new Uint8Array(300);
  const frame = new Uint8Array(2048);
  const now = Number(process.hrtime.bigint());
  const cache = new DnsCache({ maxEntries: 1 << 16 });
  for (const s of samples) cache.insert(answerFromResponse(s.response, now));
  const n = samples.length;
  const ITER = 1_000_000;
  const replyOpts = { udpSize: 1232 };
  let sink = 0;

  const loops: [string, (i: number) => void, number][] = [
    [
      'parse + key',
      (i) => {
        const q = samples[i % n]!.raw;
        sink ^= view.parse(q, 0, q.length, key) ^ view.keyLen;
      },
      ITER,
    ],
    [
      'parse + key + get + writeReply in place',
      (i) => {
        const q = samples[i % n]!.raw;
        frame.set(q, 0);
        view.parse(frame, 0, q.length, key);
        const a = cache.get(key, view.keyLen, now);
        if (a !== undefined) sink ^= writeReply(view, a, now, frame, 0, replyOpts);
      },
      ITER,
    ],
    ['dnsPacket.decode (for contrast)', (i) => void (sink ^= dnsPacket.decode(samples[i % n]!.query).id!), ITER / 10],
  ];
  out('### Allocation check (heap growth and GC count during the loop, no GC forced inside)');
  out();
  out('| loop | iterations | heapUsed growth | bytes/iter | GCs during loop |');
  out('|---|---:|---:|---:|---:|');
  for (const [name, fn, iters] of loops) {
    for (let i = 0; i < 200_000; i++) fn(i);
    gc();
    await settle();
    const g0 = gcEvents;
    const h0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < iters; i++) fn(i);
    const h1 = process.memoryUsage().heapUsed;
    await settle();
    const gcs = gcEvents - g0;
    out(`| ${name} | ${fmt(iters)} | ${fmt(h1 - h0)} B | ${fmt((h1 - h0) / iters, 3)} | ${gcs} |`);
  }
  out();
  if (sink === 0.5) console.log('');
}

// ---- 6: memory per entry --------------------------------------------------------------------

async function memory(): Promise<void> {
  const N = QUICK ? 50_000 : 200_000;
  const samples = buildSamples(N, 'm');
  const now = Number(process.hrtime.bigint());
  const cache = new DnsCache({ maxEntries: N, maxBytes: 2 ** 40 });
  gc();
  await settle();
  const m0 = process.memoryUsage();
  let payload = 0;
  for (const s of samples) {
    const a = answerFromResponse(s.response, now);
    payload += answerPayloadBytes(a);
    cache.insert(a, now);
  }
  gc();
  await settle();
  const m1 = process.memoryUsage();
  const heap = (m1.heapUsed - m0.heapUsed) / N;
  const ab = (m1.arrayBuffers - m0.arrayBuffers) / N;
  const rss = (m1.rss - m0.rss) / N;
  // per-slot index arrays, allocated up front by the cache: hash buckets
  // (a power of two >= 2 per slot), chain, hash, hits, size, answer ref,
  // free list, SLRU prev/next (4 bytes each) and the segment byte
  let buckets = 1;
  while (buckets < 2 * N) buckets *= 2;
  const perSlot = (buckets * 4) / N + 9 * 4 + 1;
  out(`### Memory per cached entry (${fmt(N)} answers of 1-3 A/AAAA records)`);
  out();
  out('| measure | bytes/entry |');
  out('|---|---:|');
  out(`| wire payload (key + records + TTL tables) | ${fmt(payload / N, 1)} |`);
  out(`| JS heap (answer object, views, ArrayBuffer objects) | ${fmt(heap, 1)} |`);
  out(`| ArrayBuffer backing stores | ${fmt(ab, 1)} |`);
  out(`| heap + backing stores | ${fmt(heap + ab, 1)} |`);
  out(`| index arrays per slot (preallocated) | ${fmt(perSlot, 1)} |`);
  out(`| RSS growth | ${fmt(rss, 1)} |`);
  out(`| entryBytes() charged against maxBytes | ${fmt(cache.bytes / N, 1)} |`);
  out();
  if (cache.size !== N || samples.length !== N) throw new Error('cache lost entries');
}

// ---- 7: SLRU vs LRU ---------------------------------------------------------------------

interface Workload {
  name: string;
  universe: number;
  s: number;
  oneHit: number;
  length: number;
}

function makeTrace(w: Workload, seed: number): Int32Array {
  const r = mulberry32(seed);
  const cdf = new Float64Array(w.universe);
  let sum = 0;
  for (let k = 0; k < w.universe; k++) {
    sum += 1 / Math.pow(k + 1, w.s);
    cdf[k] = sum;
  }
  const trace = new Int32Array(w.length);
  let fresh = w.universe;
  for (let i = 0; i < w.length; i++) {
    if (r() < w.oneHit) {
      trace[i] = fresh++;
      continue;
    }
    const x = r() * sum;
    let lo = 0;
    let hi = w.universe - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    trace[i] = lo;
  }
  return trace;
}

/** Key bytes for a synthetic id: "k<id>.test", type A, class IN, DO 0. */
function writeSimKey(id: number, buf: Uint8Array): number {
  const digits = String(id);
  buf[0] = digits.length + 1;
  buf[1] = 0x6b;
  for (let i = 0; i < digits.length; i++) buf[2 + i] = digits.charCodeAt(i);
  let p = 2 + digits.length;
  buf.set([4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1, 0], p);
  p += 11;
  return p;
}

function simAnswer(template: CachedAnswer, key: Uint8Array): CachedAnswer {
  return { ...template, key, qnameLen: key.length - 5, expiresNs: Number.MAX_SAFE_INTEGER };
}

function simulate(trace: Int32Array, size: number, protectedRatio: number, template: CachedAnswer, warm: number): number {
  const cache = new DnsCache({ maxEntries: size, protectedRatio, maxBytes: 2 ** 40 });
  const buf = new Uint8Array(64);
  let hits = 0;
  for (let i = 0; i < trace.length; i++) {
    const len = writeSimKey(trace[i]!, buf);
    if (cache.get(buf, len, 0) !== undefined) {
      if (i >= warm) hits++;
    } else {
      cache.insert(simAnswer(template, buf.slice(0, len)), 0);
    }
  }
  return hits / (trace.length - warm);
}

/** SLRU cache with the promotion policy; queries for hot keys count as served by XDP. */
function simulateHot(trace: Int32Array, size: number, template: CachedAnswer, warm: number): { kernel: number; user: number } {
  const hot = new Set<string>();
  const policy = new PromotionPolicy({
    cacheCapacity: size,
    onEvent: (e) => {
      if (e.kind === 'demote') hot.delete(keyString(e.key));
      else hot.add(keyString(e.answer.key));
    },
  });
  const cache = new DnsCache({ maxEntries: size, observer: policy, maxBytes: 2 ** 40 });
  const kernelHits = new Map<string, number>();
  const buf = new Uint8Array(64);
  let kernel = 0;
  let user = 0;
  let now = 0;
  for (let i = 0; i < trace.length; i++) {
    now += 10_000; // 100k queries/s
    const len = writeSimKey(trace[i]!, buf);
    const ks = keyString(buf, 0, len);
    if (hot.has(ks)) {
      kernelHits.set(ks, (kernelHits.get(ks) ?? 0) + 1);
      if (i >= warm) kernel++;
    } else if (cache.get(buf, len, now) !== undefined) {
      if (i >= warm) user++;
    } else {
      cache.insert(simAnswer(template, buf.slice(0, len)), now);
    }
    if (i % 10_000 === 0) {
      // upkeep: feed the kernel's per-entry hit counters back
      for (const [k, h] of kernelHits) policy.noteKernelHits(Uint8Array.from(k, (c) => c.charCodeAt(0)), h, now);
      kernelHits.clear();
    }
  }
  const total = trace.length - warm;
  return { kernel: kernel / total, user: user / total };
}

function hitRates(template: CachedAnswer): void {
  const length = QUICK ? 400_000 : 2_000_000;
  const workloads: Workload[] = [
    { name: 'Zipf 0.9, 30% one-hit wonders', universe: 100_000, s: 0.9, oneHit: 0.3, length },
    { name: 'Zipf 0.9, no one-hit wonders', universe: 100_000, s: 0.9, oneHit: 0, length },
    { name: 'Zipf 0.7, 50% one-hit wonders', universe: 100_000, s: 0.7, oneHit: 0.5, length },
  ];
  const sizes = [1_000, 5_000, 10_000];
  out(`### Hit rate: SLRU (20% probationary / 80% protected) vs plain LRU`);
  out();
  out(`Trace: ${fmt(length)} queries over 100,000 popular names plus unique one-off names; the first 10% warm the cache.`);
  out();
  out('| workload | cache entries | LRU hit rate | SLRU hit rate | SLRU vs LRU |');
  out('|---|---:|---:|---:|---:|');
  for (const w of workloads) {
    const trace = makeTrace(w, 7);
    const warm = Math.floor(length / 10);
    for (const size of sizes) {
      const lru = simulate(trace, size, 0, template, warm);
      const slru = simulate(trace, size, 0.8, template, warm);
      out(`| ${w.name} | ${fmt(size)} | ${fmt(lru * 100, 2)}% | ${fmt(slru * 100, 2)}% | ${slru >= lru ? '+' : ''}${fmt(((slru - lru) / lru) * 100, 1)}% |`);
    }
  }
  out();
  const w = workloads[0]!;
  const trace = makeTrace(w, 7);
  const warm = Math.floor(length / 10);
  const size = 10_000;
  const r = simulateHot(trace, size, template, warm);
  out(`### Hot map share (${w.name}, cache ${fmt(size)}, hot map ${fmt(size / 10)} = 10%, threshold 3)`);
  out();
  out('| served by | share of queries |');
  out('|---|---:|');
  out(`| XDP hot map (simulated) | ${fmt(r.kernel * 100, 2)}% |`);
  out(`| userspace cache hit | ${fmt(r.user * 100, 2)}% |`);
  out(`| miss (upstream) | ${fmt((1 - r.kernel - r.user) * 100, 2)}% |`);
  out();
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  out(`## Core benchmark: node ${process.version}, ${process.arch}, ${new Date().toISOString().slice(0, 10)}${QUICK ? ' (quick)' : ''}`);
  out();
  const samples = buildSamples(4096);
  const qlen = samples.reduce((s, x) => s + x.query.length, 0) / samples.length;
  out(`Queries: 4,096 distinct names, 0x20 mixed case, 70% A / 30% AAAA, 90% with EDNS (half with a cookie), mean ${fmt(qlen, 1)} bytes.`);
  out();
  await throughput(samples);
  await allocation(samples);
  await memory();
  const template = answerFromResponse(samples[0]!.response, 0);
  hitRates(template);
}

await main();
