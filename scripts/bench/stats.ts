/**
 * The benchmark's numbers: what run.sh recorded (one JSON line per measurement), and the
 * summaries the report and the chart are drawn from: medians with min-max over rounds,
 * and ratios between contenders taken round by round (each round measures every
 * contender within a few minutes of the others, so a ratio within a round is what the
 * alternation protects from drift).
 */

export type Mix = 'hot' | 'zipf';
export type Contender = 'reflector' | 'xdp' | 'userspace' | 'unbound' | 'dnsdist' | 'kresd';

export const CONTENDER_LABEL: Record<Contender, string> = {
  reflector: 'XDP_TX reflector (ceiling)',
  xdp: 'heimdall-xdp, XDP path',
  userspace: 'heimdall-xdp, userspace path',
  unbound: 'Unbound',
  dnsdist: 'dnsdist',
  kresd: 'Knot Resolver',
};
export const ORDER: Contender[] = ['reflector', 'xdp', 'userspace', 'unbound', 'dnsdist', 'kresd'];
export const PEERS: Contender[] = ['unbound', 'dnsdist', 'kresd'];

export interface KxResult {
  offered: number;
  sent: number;
  sent_pps: number;
  replies: number;
  replies_pps: number;
  answered: number;
  threads: number;
  rcodes: Record<string, number>;
  error?: string;
}

export interface DpResult {
  offered: number;
  sent: number;
  answered: number;
  lost: number;
  /** Replies the client's own sockets dropped (its namespace's UDP receive-buffer errors) over the whole run, warm-up included; null if unread, absent in older results. */
  client_dropped?: number | null;
  achieved_qps: number;
  /** Seconds; null when the percentile falls among the lost queries. */
  p50: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  error?: string;
}

export interface PathsResult {
  xdp?: number;
  cache?: number;
  upstream?: number;
  error?: number;
  hot_entries?: number;
  rss_kib: number;
}

export interface Row {
  phase: 'cal' | 'round';
  round: number;
  contender: Contender;
  kind: 'kx' | 'dp' | 'paths';
  mix: Mix | 'all';
  t: number;
  r: KxResult | DpResult | PathsResult;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function spread(xs: number[]): Spread | undefined {
  if (xs.length === 0) return undefined;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

export function parseRows(text: string): Row[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Row);
}

/** Values of one measure per round (the median when a round measured it more than once). */
export function perRound(rows: Row[], c: Contender, kind: 'kx' | 'dp', mix: Mix, pick: (r: Row['r']) => number | null | undefined): Map<number, number> {
  const all = new Map<number, number[]>();
  for (const row of rows) {
    if (row.phase !== 'round' || row.contender !== c || row.kind !== kind || row.mix !== mix) continue;
    if ((row.r as { error?: string }).error) continue;
    const v = pick(row.r);
    if (v === null || v === undefined || Number.isNaN(v)) continue; // Infinity stays: lost
    const a = all.get(row.round) ?? [];
    a.push(v);
    all.set(row.round, a);
  }
  return new Map([...all].map(([round, vs]) => [round, median(vs)]));
}

/** a/b round by round (rounds where both were measured): median and min-max. */
export function pairedRatio(a: Map<number, number>, b: Map<number, number>): Spread | undefined {
  const rs: number[] = [];
  for (const [round, va] of a) {
    const vb = b.get(round);
    if (vb !== undefined && vb > 0) rs.push(va / vb);
  }
  return spread(rs);
}

export const replies = (r: Row['r']): number | undefined => (r as KxResult).replies_pps;
export const p = (k: 'p50' | 'p99' | 'p999') => (r: Row['r']): number | null => {
  const v = (r as DpResult)[k];
  return v === null ? Number.POSITIVE_INFINITY : v;
};
