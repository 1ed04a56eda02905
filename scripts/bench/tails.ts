/**
 * The analysis half of `npm run bench:tails` (scripts/bench/tails.sh): one run's
 * latencies, CPU profiles and scheduling delays on one clock, in windows.
 *
 *   tsx scripts/bench/tails.ts OUTDIR     (reads OUTDIR/tails.json; markdown on stdout)
 *
 * Clocks: dnsperf prints latencies in completion order, so the i-th line is placed at
 * start + i × (run time ÷ lines), with dnsperf's own run time (off by the query's
 * latency, well inside a window; a lost query by its timeout, which is taken off);
 * a V8 CPU profile's timestamps are CLOCK_MONOTONIC microseconds; perf sched records
 * with -k CLOCK_MONOTONIC. tails.sh reads CLOCK_MONOTONIC just before dnsperf starts.
 *
 * Per window and thread the profile gives milliseconds of: garbage collection, the
 * upkeep timer (engine/upkeep.ts and what it runs), promotion and the hot map's writes
 * (src/hot), the prefetch poll, other work (queries), and idle. perf sched gives the
 * longest time a heimdall thread was runnable without a CPU. Then the slowest windows
 * (by p99) are set against the rest: what they have more of is what lines up.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { KINDS, latenciesOf, schedOf, threadsOf, type Kind, type Profile, type Thread } from './tails-parse.js';

interface Run {
  mix: string;
  dnsperf: string;
  startNs: number;
  sched: string | null;
}
interface Manifest {
  contender: string;
  git: string;
  qps: number;
  seconds: number;
  windowMs: number;
  /** Seconds at the start of each dnsperf run left out (its start-up transient). */
  warmupS: number;
  /** dnsperf's timeout (-t), seconds. */
  timeoutS: number;
  pid: number;
  runs: Run[];
}

/** The server's threads' profiles, by name (read once for every mix). */
function loadProfiles(dir: string): { name: string; p: Profile }[] {
  const profDir = join(dir, 'prof');
  let files: string[] = [];
  try {
    files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  return files.sort().map((f) => {
    const tid = Number(f.split('.')[4]); // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile
    return { name: tid === 0 ? 'main' : `worker ${tid}`, p: JSON.parse(readFileSync(join(profDir, f), 'utf8')) as Profile };
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
const f0 = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '-');
const f2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '-');
const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

const dir = process.argv[2];
if (!dir) {
  console.error('usage: tails.ts OUTDIR');
  process.exit(2);
}
const m = JSON.parse(readFileSync(join(dir, 'tails.json'), 'utf8')) as Manifest;
const windowUs = m.windowMs * 1000;
const profiles = loadProfiles(dir);
const n = Math.floor((m.seconds * 1000) / m.windowMs);
console.log(`# Latency tails: ${m.contender}, ${m.qps} q/s, ${m.seconds} s a mix, windows of ${m.windowMs} ms (commit ${m.git})\n`);

for (const run of m.runs) {
  const t0Us = run.startNs / 1000 + m.warmupS * 1e6; // window 0 starts after dnsperf's transient
  const { lat, lost, achieved } = latenciesOf(readFileSync(join(dir, run.dnsperf), 'utf8'), m.warmupS, m.timeoutS, m.windowMs, n);
  const threads = threadsOf(profiles, t0Us, windowUs, n);
  const workers = threads.filter((t) => t.name !== 'main');
  const main = threads.find((t) => t.name === 'main');
  const sched = run.sched ? schedOf(readFileSync(join(dir, run.sched), 'utf8'), m.pid, t0Us, windowUs, n) : null;
  const rows = lat.map((l, w) => {
    const s = l.sort((a, b) => a - b);
    // A window whose queries were all lost is the slowest there is, not a missing value.
    const p99 = s.length ? pct(s, 0.99) : lost[w]! > 0 ? Infinity : NaN;
    const sumOf = (ts: Thread[], k: Kind) => ts.reduce((a, t) => a + t.ms.get(k)![w]!, 0);
    const maxOf = (ts: Thread[], k: Kind) => ts.reduce((a, t) => Math.max(a, t.ms.get(k)![w]!), 0);
    return {
      w,
      n: s.length,
      lost: lost[w]!,
      p50: pct(s, 0.5),
      p99,
      max: s.length ? s[s.length - 1]! : NaN,
      over1ms: s.filter((v) => v > 1000).length + lost[w]!,
      gcWorker: maxOf(workers, 'gc'),
      upkeep: sumOf(threads, 'upkeep'),
      hot: sumOf(threads, 'hot') + sumOf(threads, 'prefetch'),
      mainBusy: main ? KINDS.filter((k) => k !== 'idle').reduce((a, k) => a + main.ms.get(k)![w]!, 0) : NaN,
      workerIdle: workers.length ? Math.min(...workers.map((t) => t.ms.get('idle')![w]!)) : NaN,
      schedMax: sched ? sched[w]! : NaN,
    };
  });
  const traffic = rows.filter((r) => !Number.isNaN(r.p99)); // windows without any query left out below
  const all = lat.flat().sort((a, b) => a - b);
  const lostAll = lost.reduce((a, b) => a + b, 0);
  console.log(`## ${run.mix}\n`);
  console.log(`dnsperf kept ${f0(achieved)} q/s of the ${m.qps} asked. ${all.length} answers, ${lostAll} lost; p50 ${f0(pct(all, 0.5))} µs, p99 ${f0(pct(all, 0.99))} µs, p99.9 ${f0(pct(all, 0.999))} µs, max ${f0(all[all.length - 1]!)} µs. ` +
    `Threads profiled: ${threads.map((t) => t.name).join(', ') || 'none'}; scheduling delays: ${sched ? 'yes' : 'no'}.\n`);

  // The slowest tenth of the windows by p99 against the rest.
  const byP99 = [...traffic].sort((a, b) => b.p99 - a.p99);
  const slow = byP99.slice(0, Math.max(1, Math.round(traffic.length / 10)));
  const rest = byP99.slice(slow.length);
  const share = (rs: typeof rows, f: (r: (typeof rows)[number]) => boolean) => (rs.length ? (100 * rs.filter(f).length) / rs.length : NaN);
  const col = (label: string, f: (r: (typeof rows)[number]) => number, test: (r: (typeof rows)[number]) => boolean, testLabel: string) =>
    `| ${label} | ${f2(mean(slow.map(f)))} | ${f2(mean(rest.map(f)))} | ${testLabel} | ${f0(share(slow, test))} % | ${f0(share(rest, test))} % |`;
  console.log(`Slowest ${slow.length} windows by p99 (p99 ≥ ${f0(slow[slow.length - 1]!.p99)} µs) against the other ${rest.length}:\n`);
  console.log('| per window | slow: mean | rest: mean | windows with | slow | rest |');
  console.log('|---|---:|---:|---|---:|---:|');
  console.log(col('answers over 1 ms (or lost)', (r) => r.over1ms, (r) => r.over1ms > 0, 'any'));
  if (threads.length) {
    console.log(col('GC in the busiest worker, ms', (r) => r.gcWorker, (r) => r.gcWorker >= 1, 'GC ≥ 1 ms'));
    console.log(col('upkeep, all threads, ms', (r) => r.upkeep, (r) => r.upkeep >= 0.5, 'upkeep ≥ 0.5 ms'));
    console.log(col('promotion, hot map, prefetch, ms', (r) => r.hot, (r) => r.hot >= 0.5, '≥ 0.5 ms'));
    console.log(col('main thread not idle, ms', (r) => r.mainBusy, (r) => r.mainBusy >= 5, '≥ 5 ms'));
    console.log(col('least idle worker: idle, ms', (r) => r.workerIdle, (r) => r.workerIdle < m.windowMs / 10, `< ${m.windowMs / 10} ms idle`));
  }
  if (sched) console.log(col('longest wait for a CPU (any server thread), ms', (r) => r.schedMax, (r) => r.schedMax >= 1, 'a wait ≥ 1 ms'));
  console.log('');

  console.log('<details><summary>every window</summary>\n');
  console.log('| t (s) | answers | p50 µs | p99 µs | max µs | > 1 ms | GC worker ms | upkeep ms | hot ms | main not idle ms | min worker idle ms | CPU wait ms |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${((r.w * m.windowMs) / 1000).toFixed(1)} | ${r.n} | ${f0(r.p50)} | ${f0(r.p99)} | ${f0(r.max)} | ${r.over1ms} | ${f2(r.gcWorker)} | ${f2(r.upkeep)} | ${f2(r.hot)} | ${f2(r.mainBusy)} | ${f2(r.workerIdle)} | ${f2(r.schedMax)} |`);
  }
  console.log('\n</details>\n');
}
