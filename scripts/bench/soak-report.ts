/**
 * The soak's report (scripts/bench/soak.sh): RSS samples and the dnsperf summary of OUT
 * into OUT/soak.md. The trend is a least-squares slope over the second half of the soak,
 * when the cache has long been full; the first samples include the cache filling and V8
 * growing its heap, and a collection can give memory back at any time.
 *
 *   tsx scripts/bench/soak-report.ts OUT MODE QPS
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

interface Sample { t: number; rss_kib: number; hwm_kib: number; after?: boolean; xdp?: number; cache?: number; upstream?: number; hot_entries?: number }

const [out, mode, qps] = process.argv.slice(2);
if (!out) throw new Error('usage: soak-report.ts OUT MODE QPS');
const rows = readFileSync(`${out}/rss.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Sample);
const perf = readFileSync(`${out}/dnsperf.txt`, 'utf8');
const grab = (re: RegExp): string => (re.exec(perf)?.[1] ?? '?').trim();
const load = rows.filter((r) => !r.after);
const mib = (k: number): string => (k / 1024).toFixed(1);
const last = load[load.length - 1]!;

function slopeKiBPerMin(xs: Sample[]): number {
  if (xs.length < 2) return Number.NaN;
  const n = xs.length;
  const mx = xs.reduce((a, r) => a + r.t, 0) / n;
  const my = xs.reduce((a, r) => a + r.rss_kib, 0) / n;
  const sxy = xs.reduce((a, r) => a + (r.t - mx) * (r.rss_kib - my), 0);
  const sxx = xs.reduce((a, r) => a + (r.t - mx) ** 2, 0);
  return (sxy / sxx) * 60;
}
const half = load.filter((r) => r.t >= last.t / 2);
const slope = slopeKiBPerMin(half);
const rss = load.map((r) => r.rss_kib);

const L: string[] = [];
L.push(
  `Soak: ${mode} path, dnsperf at ${qps} q/s offered for ${last.t} s; sent ${grab(/Queries sent:\s+(\d+)/)}, ` +
    `completed ${grab(/Queries completed:\s+(\d+ \([^)]*\))/)}, lost ${grab(/Queries lost:\s+(\d+ \([^)]*\))/)}, ` +
    `${Math.round(Number(grab(/Queries per second:\s+([\d.]+)/)))} q/s achieved; ` +
    `the client's own sockets dropped ${existsSync(`${out}/client-dropped.txt`) ? readFileSync(`${out}/client-dropped.txt`, 'utf8').trim() : 'an uncounted number'} of the replies (counted in lost).`,
);
L.push('');
L.push(
  `RSS: first sample ${mib(rss[0]!)} MiB, last ${mib(last.rss_kib)} MiB, min ${mib(Math.min(...rss))} MiB, max ${mib(Math.max(...rss))} MiB; ` +
    `trend over the second half (t ≥ ${Math.round(last.t / 2)} s, ${half.length} samples) ${Number.isFinite(slope) ? Math.round(slope) : '?'} KiB/min; ` +
    `peak (VmHWM) ${mib(rows[rows.length - 1]!.hwm_kib)} MiB.`,
);
L.push('');
L.push('| t (s) | RSS (MiB) | answered by XDP | from the cache | from the upstream | hot entries |');
L.push('|---:|---:|---:|---:|---:|---:|');
for (const r of load) L.push(`| ${r.t} | ${mib(r.rss_kib)} | ${r.xdp ?? ''} | ${r.cache ?? ''} | ${r.upstream ?? ''} | ${r.hot_entries ?? ''} |`);
writeFileSync(`${out}/soak.md`, L.join('\n') + '\n');
console.log(L.join('\n'));
