/**
 * The benchmark chart as a self-contained SVG (no fonts, scripts or external files):
 *   top     replies/s under kxdpgun per contender, hot set and Zipf mix side by side,
 *           bar = median, whisker = min-max over the rounds, value printed at the end;
 *   bottom  latency at the fixed offered rate (hot set) on a log scale: p50, p99 and
 *           p99.9 per contender on one line, p99 printed.
 */
import type { Spread } from './stats.js';

export interface ChartData {
  title: string;
  rounds: number;
  latQps: number;
  contenders: {
    id: string;
    label: string;
    hot?: Spread;
    zipf?: Spread;
    p50?: Spread;
    p99?: Spread;
    p999?: Spread;
  }[];
}

const W = 960;
const LEFT = 290;
const RIGHT = 90;
const ROW = 44;
const COLORS = { hot: '#1f5f99', zipf: '#8fb8de', p50: '#2e7d32', p99: '#e08a00', p999: '#c62828', ours: '#fff4d6' };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (v: number): string => (v >= 999.5e3 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${Math.round(v / 1e3)}k` : `${Math.round(v)}`);

function niceMax(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

export function renderChart(d: ChartData): string {
  const n = d.contenders.length;
  const plotW = W - LEFT - RIGHT;
  const o: string[] = [];
  let y = 0;
  const text = (tx: number, ty: number, s: string, attrs = ''): void => {
    o.push(`<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" ${attrs}>${esc(s)}</text>`);
  };

  // Title.
  y = 30;
  text(20, y, d.title, 'font-size="18" font-weight="bold"');
  y += 22;
  text(20, y, `median of ${d.rounds} alternating rounds; whiskers: min-max; tables and ratios in docs/BENCHMARKS.md`, 'font-size="13" fill="#555"');

  // ---- throughput panel ----
  y += 34;
  text(20, y, 'Throughput: replies/s under kxdpgun (more is better)', 'font-size="15" font-weight="bold"');
  y += 12;
  const maxThr = niceMax(Math.max(1, ...d.contenders.flatMap((c) => [c.hot?.max ?? 0, c.zipf?.max ?? 0])));
  const sx = (v: number): number => LEFT + (v / maxThr) * plotW;
  const top = y + 8;
  const panelH = n * ROW;
  for (let t = 0; t <= 5; t++) {
    const v = (maxThr * t) / 5;
    o.push(`<line x1="${sx(v)}" y1="${top}" x2="${sx(v)}" y2="${top + panelH}" stroke="#ddd"/>`);
    text(sx(v), top + panelH + 16, num(v), 'font-size="12" text-anchor="middle" fill="#555"');
  }
  d.contenders.forEach((c, i) => {
    const ry = top + i * ROW;
    if (c.id === 'xdp' || c.id === 'userspace') o.push(`<rect x="0" y="${ry}" width="${W}" height="${ROW}" fill="${COLORS.ours}" opacity="0.6"/>`);
    text(LEFT - 10, ry + ROW / 2 + 5, c.label, 'font-size="13" text-anchor="end"');
    (['hot', 'zipf'] as const).forEach((mix, j) => {
      const s = c[mix];
      const by = ry + 6 + j * 16;
      if (!s) return;
      o.push(`<rect x="${LEFT}" y="${by}" width="${(sx(s.median) - LEFT).toFixed(1)}" height="13" fill="${COLORS[mix]}"/>`);
      o.push(`<line x1="${sx(s.min).toFixed(1)}" y1="${by + 6.5}" x2="${sx(s.max).toFixed(1)}" y2="${by + 6.5}" stroke="#222" stroke-width="1.5"/>`);
      o.push(`<line x1="${sx(s.min).toFixed(1)}" y1="${by + 2}" x2="${sx(s.min).toFixed(1)}" y2="${by + 11}" stroke="#222"/>`);
      o.push(`<line x1="${sx(s.max).toFixed(1)}" y1="${by + 2}" x2="${sx(s.max).toFixed(1)}" y2="${by + 11}" stroke="#222"/>`);
      text(sx(s.max) + 6, by + 11, num(s.median), 'font-size="12"');
    });
  });
  y = top + panelH + 34;
  o.push(`<rect x="${LEFT}" y="${y - 10}" width="12" height="12" fill="${COLORS.hot}"/>`);
  text(LEFT + 18, y, 'hot set (100 names)', 'font-size="12"');
  o.push(`<rect x="${LEFT + 170}" y="${y - 10}" width="12" height="12" fill="${COLORS.zipf}"/>`);
  text(LEFT + 188, y, 'Zipf mix (10,000 names, 5% misses)', 'font-size="12"');

  // ---- latency panel ----
  y += 40;
  text(20, y, `Latency at ${num(d.latQps)} queries/s offered, hot set (dnsperf; less is better, log scale)`, 'font-size="15" font-weight="bold"');
  y += 12;
  const vals = d.contenders.flatMap((c) => [c.p50?.median, c.p99?.median, c.p999?.median]).filter((v): v is number => v !== undefined && Number.isFinite(v) && v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...vals, 1e-5)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...vals, 1e-4)));
  const lx = (v: number): number => LEFT + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  const ltop = y + 8;
  const lrow = 30;
  const lH = n * lrow;
  for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) {
    const v = 10 ** e;
    o.push(`<line x1="${lx(v)}" y1="${ltop}" x2="${lx(v)}" y2="${ltop + lH}" stroke="#ddd"/>`);
    const label = v >= 1e-3 ? `${+(v * 1e3).toPrecision(3)} ms` : `${+(v * 1e6).toPrecision(3)} µs`;
    text(lx(v), ltop + lH + 16, label, 'font-size="12" text-anchor="middle" fill="#555"');
  }
  d.contenders.forEach((c, i) => {
    const ry = ltop + i * lrow;
    if (c.id === 'xdp' || c.id === 'userspace') o.push(`<rect x="0" y="${ry}" width="${W}" height="${lrow}" fill="${COLORS.ours}" opacity="0.6"/>`);
    text(LEFT - 10, ry + lrow / 2 + 5, c.label, 'font-size="13" text-anchor="end"');
    const cy = ry + lrow / 2;
    const pts = ([['p50', c.p50], ['p99', c.p99], ['p999', c.p999]] as const).filter(([, s]) => s && Number.isFinite(s.median) && s.median > 0);
    if (pts.length >= 2) o.push(`<line x1="${lx(pts[0]![1]!.median).toFixed(1)}" y1="${cy}" x2="${lx(pts[pts.length - 1]![1]!.median).toFixed(1)}" y2="${cy}" stroke="#999" stroke-width="2"/>`);
    for (const [q, s] of pts) o.push(`<circle cx="${lx(s!.median).toFixed(1)}" cy="${cy}" r="6" fill="${COLORS[q]}"/>`);
    const p99 = c.p99?.median;
    const last = pts.length ? lx(pts[pts.length - 1]![1]!.median) : LEFT;
    const lostNote = c.p999 !== undefined && !Number.isFinite(c.p999.median) ? ', p99.9 lost' : '';
    text(last + 10, cy + 4, p99 === undefined ? 'n/a' : Number.isFinite(p99) ? `p99 ${Math.round(p99 * 1e6)} µs${lostNote}` : 'p99 lost', 'font-size="12"');
  });
  y = ltop + lH + 34;
  (['p50', 'p99', 'p999'] as const).forEach((q, i) => {
    o.push(`<circle cx="${LEFT + 6 + i * 110}" cy="${y - 4}" r="6" fill="${COLORS[q]}"/>`);
    text(LEFT + 18 + i * 110, y, q === 'p999' ? 'p99.9' : q, 'font-size="12"');
  });
  text(LEFT + 340, y, 'lost: over 0.1% of queries unanswered after 1 s', 'font-size="12" fill="#555"');
  y += 20;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="Helvetica, Arial, sans-serif">\n` +
    `<rect width="${W}" height="${y}" fill="#fff"/>\n${o.join('\n')}\n</svg>\n`
  );
}
