/**
 * Result collector of `npm run bench`: reads what scripts/bench/run.sh recorded in OUT
 * (meta.json, results.jsonl, end.json) and writes
 *   OUT/summary.json and OUT/results.md      always
 *   the results block of docs/BENCHMARKS.md  with --docs FILE (between the markers
 *                                           <!-- bench:results:begin/end -->; the prose
 *                                           around them is left as it is)
 *   the chart                               with --svg FILE
 *
 *   tsx scripts/bench/collect.ts OUT [--docs docs/BENCHMARKS.md] [--svg docs/benchmarks.svg]
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, relative, dirname } from 'node:path';
import {
  CONTENDER_LABEL, ORDER, PEERS, pairedRatio, parseRows, perRound, p, replies, spread,
  type Contender, type DpResult, type KxResult, type Mix, type PathsResult, type Row, type Spread,
} from './stats.js';
import { renderChart, type ChartData } from './chart.js';

const BEGIN = '<!-- bench:results:begin -->';
const END = '<!-- bench:results:end -->';

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

const out: string = process.argv[2] ?? '';
if (!out || out.startsWith('--')) {
  console.error('usage: collect.ts OUT [--docs FILE] [--svg FILE]');
  process.exit(2);
}
const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8'));
const end = existsSync(join(out, 'end.json')) ? JSON.parse(readFileSync(join(out, 'end.json'), 'utf8')) : {};
const rows = parseRows(readFileSync(join(out, 'results.jsonl'), 'utf8'));
const present = ORDER.filter((c) => rows.some((r) => r.contender === c && r.phase === 'round'));
const MIXES: Mix[] = ['hot', 'zipf'];

// ---- formatting -------------------------------------------------------------------

const k = (v: number): string => (v >= 999.5e3 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${Math.round(v / 1e3)}k` : `${Math.round(v)}`);
const us = (v: number): string => (Number.isFinite(v) ? `${Math.round(v * 1e6)}` : 'lost');
const x = (v: number): string => (v >= 10 ? v.toFixed(1) : v.toFixed(2));
function fmt(s: Spread | undefined, f: (v: number) => string): string {
  if (!s) return 'n/a';
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}-${f(s.max)})` : f(s.median);
}

// ---- summaries --------------------------------------------------------------------

const thr = (c: Contender, mix: Mix) => perRound(rows, c, 'kx', mix, replies);
const lat = (c: Contender, mix: Mix, q: 'p50' | 'p99' | 'p999') => perRound(rows, c, 'dp', mix, p(q));

function rowsOf(c: Contender, kind: 'kx' | 'dp', mix: Mix): Row[] {
  return rows.filter((r) => r.phase === 'round' && r.contender === c && r.kind === kind && r.mix === mix);
}

interface Summary {
  throughput: Record<string, Record<string, { replies: Spread | undefined; toReflector: Spread | undefined; offered: number | undefined; answered: Spread | undefined; sent: Spread | undefined }>>;
  latency: Record<string, Record<string, { p50?: Spread; p99?: Spread; p999?: Spread; achieved?: Spread; lost?: Spread }>>;
  peers: Record<string, Record<string, Record<string, Spread | undefined>>>;
  /** null: not measured; 'undecided': the measurement's own noise is larger than the bound. */
  targets: { what: string; want: string; got: string; met: boolean | null | 'undecided' }[];
}

const summary: Summary = { throughput: {}, latency: {}, peers: {}, targets: [] };
for (const c of present) {
  summary.throughput[c] = {};
  summary.latency[c] = {};
  summary.peers[c] = {};
  for (const mix of MIXES) {
    const kx = rowsOf(c, 'kx', mix).map((r) => r.r as KxResult).filter((r) => !r.error);
    summary.throughput[c]![mix] = {
      replies: spread([...thr(c, mix).values()]),
      toReflector: pairedRatio(thr(c, mix), thr('reflector', mix)),
      offered: kx[0]?.offered,
      answered: spread(kx.map((r) => r.answered)),
      sent: spread(kx.map((r) => r.sent_pps)),
    };
    const dp = rowsOf(c, 'dp', mix).map((r) => r.r as DpResult).filter((r) => !r.error);
    summary.latency[c]![mix] = {
      p50: spread([...lat(c, mix, 'p50').values()]),
      p99: spread([...lat(c, mix, 'p99').values()]),
      p999: spread([...lat(c, mix, 'p999').values()]),
      achieved: spread(dp.map((r) => r.achieved_qps)),
      lost: spread(dp.map((r) => r.lost / Math.max(1, (r as DpResult & { measured?: number }).measured ?? r.sent))),
    };
    summary.peers[c]![mix] = {};
    for (const peer of PEERS) summary.peers[c]![mix]![peer] = pairedRatio(thr(c, mix), thr(peer, mix));
  }
}

/**
 * Percentiles over every query of every round (the raw dnsperf -v logs): one stall of
 * a few ms in one 3-second run moves that run's p99 a lot, so the pooled figure is the
 * steadier one. Lost queries count as slower than any answer.
 */
interface Pooled { p50: number; p99: number; p999: number; sent: number; lost: number }
function pooled(c: Contender, mix: Mix): Pooled | undefined {
  const runDir = join(out, 'run');
  if (!existsSync(runDir)) return undefined;
  const skip = Math.floor((meta.settings.lat_qps as number) * ((meta.settings.lat_warmup as number | undefined) ?? 0));
  const lat: number[] = [];
  let sent = 0;
  let lost = 0;
  for (const d of readdirSync(runDir)) {
    if (!new RegExp(`^r\\d+-${c}$`).test(d)) continue;
    for (const f of readdirSync(join(runDir, d))) {
      if (!f.startsWith(`dp-${mix}-`) || !f.endsWith('.txt.gz')) continue;
      const text = gunzipSync(readFileSync(join(runDir, d, f))).toString('latin1');
      if (!/Queries sent:\s+(\d+)/.test(text)) continue;
      let n = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith('> ') || ++n <= skip) continue; // dnsperf's start-up transient
        if (line.startsWith('> T ')) {
          lost++;
          sent++;
          continue;
        }
        const v = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (Number.isFinite(v)) {
          lat.push(v);
          sent++;
        }
      }
    }
  }
  if (sent === 0) return undefined;
  const a = Float64Array.from(lat).sort();
  const at = (q: number): number => {
    const i = Math.max(1, Math.ceil(q * sent));
    return i <= a.length ? a[i - 1]! : Number.POSITIVE_INFINITY;
  };
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999), sent, lost };
}
const POOLED: Record<string, Partial<Record<Mix, Pooled>>> = {};
for (const c of present) POOLED[c] = { hot: pooled(c, 'hot'), zipf: pooled(c, 'zipf') };

function target(what: string, want: string, s: Spread | undefined, ok: (v: number) => boolean, f: (v: number) => string = x): void {
  summary.targets.push({ what, want, got: fmt(s, f), met: s ? ok(s.median) : null });
}
target('XDP path replies/s ÷ reflector, hot set', '≥ 0.9', summary.throughput.xdp?.hot?.toReflector, (v) => v >= 0.9);
target('XDP path replies/s ÷ Unbound, hot set', '≥ 5', summary.peers.xdp?.hot?.unbound, (v) => v >= 5);
target('userspace path replies/s ÷ Unbound, hot set', '≥ 1.5', summary.peers.userspace?.hot?.unbound, (v) => v >= 1.5);
{
  const a = POOLED.xdp?.hot?.p99;
  const b = POOLED.reflector?.hot?.p99;
  const r = a !== undefined && b !== undefined ? a / b : undefined;
  // The reflector against itself: if its own runs' p99 differ by more than the bound,
  // one run of each contender cannot decide the bound either way.
  const own = rowsOf('reflector', 'dp', 'hot')
    .map((row) => (row.r as DpResult).p99)
    .filter((v): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0);
  const noise = own.length >= 2 ? Math.max(...own) / Math.min(...own) : undefined;
  summary.targets.push({
    what: `XDP path p99 ÷ reflector p99 at ${k(meta.settings.lat_qps)} q/s, hot set (all runs pooled; per-round ratios ${fmt(pairedRatio(lat('xdp', 'hot', 'p99'), lat('reflector', 'hot', 'p99')), x)})`,
    want: '≤ 1.2',
    got:
      r === undefined
        ? 'n/a'
        : `${x(r)} (${us(a!)} µs vs ${us(b!)} µs)` +
          (noise === undefined ? '' : `; the reflector's own runs: ${us(Math.min(...own))}-${us(Math.max(...own))} µs, ${x(noise)} × apart`),
    met: r === undefined ? null : noise !== undefined && noise > 1.2 ? 'undecided' : r <= 1.2,
  });
}

// ---- markdown ---------------------------------------------------------------------

const L: string[] = [];
const settings = meta.settings;
const R = '---:'; // a right-aligned (numeric) column
/** One results section: heading, an optional sentence, a table, a blank line. */
function section(title: string, intro: string | undefined, head: string[], align: string[], body: string[][]): void {
  L.push(`### ${title}`, '');
  if (intro !== undefined) L.push(intro, '');
  const row = (cells: string[]) => `|${cells.map((c) => (c === '' ? ' ' : ` ${c} `)).join('|')}|`;
  L.push(row(head), `|${align.join('|')}|`);
  for (const cells of body) L.push(row(cells));
  L.push('');
}
L.push(`Run of ${meta.date} (commit ${meta.git}), ${meta.cpus} × ${meta.cpu}, kernel ${meta.kernel}; ` +
  `${settings.rounds} rounds, ${settings.seconds} s per measurement, measured in ${end.seconds ?? '?'} s; ` +
  `load average ${meta.loadavg_start} at the start, ${end.loadavg_end ?? '?'} at the end. ` +
  `Figures are medians over the rounds with (min-max); ratios are taken round by round, then their median (min-max).`);
L.push('');
const pc = (s: Spread | undefined) => (s ? `${(s.median * 100).toFixed(1)}%` : 'n/a');
section(
  'Throughput: replies/s under kxdpgun',
  undefined,
  ['contender', 'hot set (100 names)', '÷ reflector', 'Zipf mix (10,000 names, 5% misses)', '÷ reflector', 'offered q/s (hot / zipf)', 'answered (hot / zipf)'],
  ['---', R, R, R, R, R, R],
  present.map((c) => {
    const h = summary.throughput[c]!.hot!;
    const z = summary.throughput[c]!.zipf!;
    return [CONTENDER_LABEL[c], fmt(h.replies, k), fmt(h.toReflector, x), fmt(z.replies, k), fmt(z.toReflector, x),
      `${h.offered ? k(h.offered) : '?'} / ${z.offered ? k(z.offered) : '?'}`, `${pc(h.answered)} / ${pc(z.answered)}`];
  }),
);

const peersPresent = PEERS.filter((pp) => present.includes(pp));
section(
  'Ratios to each peer (replies/s, hot set / Zipf mix)',
  undefined,
  ['contender', ...peersPresent.map((pp) => `÷ ${CONTENDER_LABEL[pp]}`)],
  ['---', ...peersPresent.map(() => R)],
  present.map((c) => [CONTENDER_LABEL[c], ...peersPresent.map((pp) => `${fmt(summary.peers[c]!.hot![pp], x)} / ${fmt(summary.peers[c]!.zipf![pp], x)}`)]),
);

const pv = (v: number | undefined) => (v === undefined ? 'n/a' : `**${us(v)}**`);
const pl = (p: Pooled | undefined) => (p ? `${((p.lost / p.sent) * 100).toFixed(2)}%` : 'n/a');
/** Replies the client's own sockets dropped over every round of one contender and mix (part of its lost queries). */
const clientDropped = (c: Contender, mix: Mix): string => {
  const counted = rowsOf(c, 'dp', mix).map((r) => (r.r as DpResult).client_dropped).filter((v): v is number => typeof v === 'number');
  return counted.length === 0 ? 'n/a' : `${counted.reduce((a, b) => a + b, 0)}`;
};
section(
  `Latency at ${k(settings.lat_qps)} q/s offered (dnsperf), µs`,
  `Pooled over every query of every round, after the first ${settings.lat_warmup ?? 0} s of each dnsperf run (its start-up transient); below each, the median (min-max) of the per-run figures. ` +
    `"Client drops": replies that reached the client and were dropped by its own sockets' receive buffers, over the whole of each run (warm-up included; "lost" is counted after it) (${settings.lat_client_buf_kb === undefined ? "the kernel's default size; not counted then" : `${settings.lat_client_buf_kb} KiB asked`}).`,
  ['contender', 'hot p50', 'hot p99', 'hot p99.9', 'zipf p50', 'zipf p99', 'zipf p99.9', 'lost (hot / zipf)', 'client drops (hot / zipf)'],
  ['---', R, R, R, R, R, R, R, R],
  present.flatMap((c) => {
    const h = summary.latency[c]!.hot!;
    const z = summary.latency[c]!.zipf!;
    const ph = POOLED[c]!.hot;
    const pz = POOLED[c]!.zipf;
    return [
      [CONTENDER_LABEL[c], pv(ph?.p50), pv(ph?.p99), pv(ph?.p999), pv(pz?.p50), pv(pz?.p99), pv(pz?.p999), `${pl(ph)} / ${pl(pz)}`, `${clientDropped(c, 'hot')} / ${clientDropped(c, 'zipf')}`],
      ['↳ per run', fmt(h.p50, us), fmt(h.p99, us), fmt(h.p999, us), fmt(z.p50, us), fmt(z.p99, us), fmt(z.p999, us), '', ''],
    ];
  }),
);

const verdict = (m: boolean | null | 'undecided'): string =>
  m === null ? 'not measured' : m === 'undecided' ? 'undecided (the reference varies more than the bound)' : m ? 'met' : '**missed**';
section('Targets', undefined, ['target', 'wanted', 'measured', ''], ['---', '---', '---', '---'],
  summary.targets.map((t) => [t.what, t.want, t.got, verdict(t.met)]));

const ladder: number[] = settings.ladder;
section(
  'Calibration: replies/s by offered rate (kxdpgun, one short run each)',
  undefined,
  ['contender', 'mix', ...ladder.map((q) => `${k(q)} offered`)],
  ['---', '---', ...ladder.map(() => R)],
  present.flatMap((c) =>
    MIXES.map((mix) => [CONTENDER_LABEL[c], mix, ...ladder.map((q) => {
      const r = rows.find((row) => row.phase === 'cal' && row.contender === c && row.kind === 'kx' && row.mix === mix && (row.r as KxResult).offered === q);
      if (!r || (r.r as KxResult).error) return 'n/a';
      const kr = r.r as KxResult;
      const best = summary.throughput[c]![mix]!.offered === q;
      return best ? `**${k(kr.replies_pps)}**` : k(kr.replies_pps);
    })]),
  ),
);

const pathRows = rows.filter((r) => r.kind === 'paths');
if (pathRows.length) {
  section(
    'heimdall-xdp: who answered, and its RSS, at the end of each round',
    'Counters over the whole life of the instance (warm-up, the kxdpgun runs, the dnsperf runs).',
    ['round', 'path', 'XDP', 'cache', 'upstream', 'error', 'hot entries', 'RSS'],
    [R, '---', R, R, R, R, R, R],
    pathRows.sort((a, b) => a.round - b.round || ORDER.indexOf(a.contender) - ORDER.indexOf(b.contender)).map((r) => {
      const v = r.r as PathsResult;
      const tot = (v.xdp ?? 0) + (v.cache ?? 0) + (v.upstream ?? 0) + (v.error ?? 0);
      const sh = (n: number | undefined) => `${k(n ?? 0)} (${tot ? (((n ?? 0) / tot) * 100).toFixed(1) : '0'}%)`;
      return [String(r.round), r.contender, sh(v.xdp), sh(v.cache), sh(v.upstream), k(v.error ?? 0), k(v.hot_entries ?? 0), `${(v.rss_kib / 1024).toFixed(0)} MiB`];
    }),
  );
}
L.push('Versions: ' + Object.entries(meta.versions as Record<string, string>).map(([n, v]) => `${n} \`${v}\``).join(', ') + '.');
L.push('');
L.push(`Query files: ${JSON.stringify(meta.queries)}`);
const md = L.join('\n');

writeFileSync(join(out, 'summary.json'), JSON.stringify({ meta, end, summary, pooled: POOLED }, (_k, v) => (v === Number.POSITIVE_INFINITY ? 'lost' : v), 2));
writeFileSync(join(out, 'results.md'), md + '\n');

// ---- chart ------------------------------------------------------------------------

const svgPath = opt('--svg');
const one = (v: number | undefined): Spread | undefined => (v === undefined ? undefined : { median: v, min: v, max: v, n: 1 });
if (svgPath) {
  const data: ChartData = {
    title: `heimdall-xdp and peers on ${meta.cpus} vCPUs, veth lab, ${meta.date.slice(0, 10)}`,
    rounds: settings.rounds,
    latQps: settings.lat_qps,
    contenders: present.map((c) => ({
      id: c,
      label: CONTENDER_LABEL[c],
      hot: summary.throughput[c]!.hot!.replies,
      zipf: summary.throughput[c]!.zipf!.replies,
      p50: one(POOLED[c]!.hot?.p50),
      p99: one(POOLED[c]!.hot?.p99),
      p999: one(POOLED[c]!.hot?.p999),
    })),
  };
  writeFileSync(svgPath, renderChart(data));
}

const docs = opt('--docs');
if (docs) {
  const svgRef = svgPath ? `![Throughput and latency](${relative(dirname(docs), svgPath)})\n\n` : '';
  const block = `${BEGIN}\n${svgRef}${md}\n${END}`;
  let text = existsSync(docs) ? readFileSync(docs, 'utf8') : `# Benchmarks\n\n${BEGIN}\n${END}\n`;
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) text = `${text.trimEnd()}\n\n${block}\n`;
  else text = text.slice(0, a) + block + text.slice(b + END.length);
  writeFileSync(docs, text);
}
console.log(md);
