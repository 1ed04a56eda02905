/**
 * The CLI verbs over the control socket (src/service/control.ts): stats, cache lookup
 * and flush, upstreams. Each asks the running `attach` of an interface and prints a few
 * lines for a person, or with --json the reply as it came, for scripts.
 */
import { controlRequest } from './service/control.js';
import type { CachedEntryInfo } from './service/cache-control.js';
import type { UpstreamLine } from './engine/upstream-stats.js';

type Metrics = Record<string, number>;

interface StatsReply {
  metrics: Metrics;
  upstreams?: UpstreamLine[];
  hotCapacity: number;
  workers: { configured: number; live: number };
  uptimeS: number;
}

const sum = (m: Metrics, prefix: string, filter: (k: string) => boolean = () => true): number =>
  Object.entries(m).reduce((a, [k, v]) => (k.startsWith(prefix) && filter(k) ? a + v : a), 0);
const pct = (a: number, b: number): string => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : '-');

/** Per-second rates between two samples `ms` apart, of the counters that moved. */
export function rates(a: Metrics, b: Metrics, ms: number): Metrics {
  const out: Metrics = {};
  for (const [k, v] of Object.entries(b)) {
    if (k.includes('_bucket{') || !/_total(\{|$)/.test(k)) continue;
    const d = v - (a[k] ?? 0);
    if (d > 0) out[k] = Math.round((d * 1000) / ms);
  }
  return out;
}

/** The stats a person reads: rates over the interval, then totals. */
export function formatStats(iface: string, s: StatsReply, r: Metrics, ms: number): string {
  const m = s.metrics;
  const path = (p: string, x: Metrics): number => x[`heimdall_responses_total{path="${p}"}`] ?? 0;
  const answered = (x: Metrics): number => path('xdp', x) + path('cache', x) + path('upstream', x);
  const lines: string[] = [];
  lines.push(`${iface}: up ${s.uptimeS} s, ${s.workers.live} of ${s.workers.configured} AF_XDP workers running, ${m['heimdall_worker_restarts_total'] ?? 0} restarts`);
  lines.push(`queries/s: ${r['heimdall_queries_total'] ?? 0} (over ${ms} ms); answers/s: xdp ${path('xdp', r)}, cache ${path('cache', r)}, upstream ${path('upstream', r)}, error ${path('error', r)}`);
  const hitNow = answered(r);
  lines.push(
    `hit ratio: ${pct(path('xdp', r) + path('cache', r), hitNow)} now (xdp ${pct(path('xdp', r), hitNow)}), ${pct(path('xdp', m) + path('cache', m), answered(m))} since start (xdp ${pct(path('xdp', m), answered(m))})`,
  );
  const hot = m['heimdall_hot_entries'] ?? 0;
  lines.push(`hot map: ${hot} of ${s.hotCapacity} entries (${pct(hot, s.hotCapacity)}); promotions ${m['heimdall_hot_changes_total{change="promote"}'] ?? 0}, demotions ${m['heimdall_hot_changes_total{change="demote"}'] ?? 0}`);
  const lat = m['heimdall_upstream_latency_seconds_count'] ?? 0;
  const mean = lat > 0 ? `${((1000 * (m['heimdall_upstream_latency_seconds_sum'] ?? 0)) / lat).toFixed(1)} ms mean` : 'no answers yet';
  lines.push(
    `upstream: ${sum(m, 'heimdall_upstream_queries_total')} sent, ${mean}, ${sum(m, 'heimdall_upstream_timeouts_total')} timeouts, ${sum(m, 'heimdall_upstream_failures_total')} failures, ${m['heimdall_upstream_inflight'] ?? 0} in flight`,
  );
  if (s.upstreams) lines.push(`upstreams: ${s.upstreams.map((u) => `${u.upstream} ${health(u)}, rtt ${millis(u.rttMs)}, p99 ${millis(u.p99Ms)}, ${u.timeouts} timeouts`).join('; ')}`);
  const drops = Object.entries(m)
    .filter(([k, v]) => v > 0 && (/^heimdall_xdp_packets_total\{outcome="DROP_/.test(k) || k.startsWith('heimdall_edge_drops_total') || k.startsWith('heimdall_af_xdp_drops_total') || k.startsWith('heimdall_upstream_busy_total')))
    .map(([k, v]) => `${/"([^"]+)"/.exec(k)?.[1] ?? k} ${v}`);
  lines.push(`drops: ${drops.length > 0 ? drops.join(', ') : 'none'}`);
  const refused = Object.entries(m).filter(([k, v]) => v > 0 && (k.startsWith('heimdall_edge_replies_total') || /outcome="(REFUSED|RRL_|SLIP)/.test(k)));
  if (refused.length > 0) lines.push(`edge replies: ${refused.map(([k, v]) => `${/"([^"]+)"/.exec(k)?.[1] ?? k} ${v}`).join(', ')}`);
  return lines.join('\n');
}

export async function statsCommand(iface: string, o: { json?: boolean; interval?: string }): Promise<void> {
  const ms = Math.max(100, Math.min(60_000, Number(o.interval ?? 1000) || 1000));
  const a = (await controlRequest(iface, { cmd: 'stats' })) as unknown as StatsReply;
  await new Promise((r) => setTimeout(r, ms));
  const b = (await controlRequest(iface, { cmd: 'stats' })) as unknown as StatsReply;
  const r = rates(a.metrics, b.metrics, ms);
  if (o.json) console.log(JSON.stringify({ iface, intervalMs: ms, perSecond: r, ...b, ok: undefined }));
  else console.log(formatStats(iface, b, r, ms));
}

export async function cacheCommand(iface: string, action: string, name: string | undefined, type: string | undefined, o: { all?: boolean; json?: boolean }): Promise<void> {
  const out = (r: Record<string, unknown>, text: string): void => console.log(o.json ? JSON.stringify({ ...r, ok: undefined }) : text);
  if (action === 'flush' && o.all) {
    if (name !== undefined) throw new Error('cache flush --all takes no name');
    const r = await controlRequest(iface, { cmd: 'cache', op: 'flushAll' });
    out(r, `flushed ${entriesText(r.removed)} and ${String(r.hotRemoved)} from the XDP hot map`);
    const busy = Number(r.busyShards ?? 0);
    if (busy > 0) throw new Error(`${busy} cache shard(s) kept their entries: a worker held them past the wait; run the flush again`);
    return;
  }
  if ((action !== 'lookup' && action !== 'flush') || name === undefined) {
    throw new Error("usage: cache <iface> lookup <name> [type] | cache <iface> flush <name> [type] | cache <iface> flush --all");
  }
  const r = await controlRequest(iface, { cmd: 'cache', op: action, name, type });
  if (action === 'flush') {
    out(r, `flushed ${entriesText(r.removed)} of ${name}${type ? ` ${type}` : ''} and ${String(r.hotRemoved)} from the XDP hot map`);
    const kept = Number(r.kept ?? 0);
    if (kept > 0) throw new Error(`${entriesText(kept)} of ${name} stayed: a worker held their cache shard past the wait; run the flush again`);
    return;
  }
  const entries = r.entries as CachedEntryInfo[];
  const hot = r.hot as { type: string; dnssecOk: boolean; checkingDisabled?: boolean }[];
  // One cache serves every engine (src/engine/shared-cache.ts): an entry is the process's, not a thread's.
  const lines = entries.map((e) => `  ${e.type}${e.dnssecOk ? ' (DO)' : ''}${e.checkingDisabled === true ? ' (CD)' : ''} rcode ${e.rcode}, TTL left ${e.ttlLeft} s`);
  const hotText = hot.length > 0 ? `hot in XDP: ${hot.map((h) => `${h.type}${h.dnssecOk ? ' (DO)' : ''}${h.checkingDisabled === true ? ' (CD)' : ''}`).join(', ')}` : type ? 'not in the XDP hot map' : 'XDP hot map: give a type to look it up';
  out(r, `${name}${type ? ` ${type}` : ''}: ${entries.length > 0 ? `cached (${countOf(entries.length, 'entry', 'entries')})` : 'not cached'}; ${hotText}${lines.length ? `\n${lines.join('\n')}` : ''}`);
}

export async function upstreamsCommand(iface: string, o: { json?: boolean }): Promise<void> {
  const r = await controlRequest(iface, { cmd: 'upstreams' });
  if (o.json) {
    console.log(JSON.stringify({ ...r, ok: undefined }));
    return;
  }
  console.log(formatUpstreams(r.upstreams as UpstreamLine[]));
}

/** One line per upstream: state, smoothed RTT, p50/p99 from the RTT histogram, counts. */
export function formatUpstreams(list: readonly UpstreamLine[]): string {
  if (list.length === 0) return 'no upstreams';
  return list
    .map((u) => {
      const fails = u.consecutiveFailures > 0 ? ` (${u.consecutiveFailures} failures in a row)` : '';
      return `${u.upstream}: ${health(u)}${fails}, rtt ${millis(u.rttMs)}, p50 ${millis(u.p50Ms)}, p99 ${millis(u.p99Ms)}, ${u.sent} sent, ${u.answers} answers, ${u.servfail} servfail, ${u.timeouts} timeouts, ${u.errors} errors`;
    })
    .join('\n');
}

const millis = (x: number | null): string => (x === null ? '-' : `${x} ms`);

function health(u: UpstreamLine): string {
  return u.state === 'up' ? 'up' : u.state === 'down' ? 'DOWN' : `up in ${u.healthyIn} of ${u.engines} engines`;
}

function countOf(n: unknown, one: string, many: string): string {
  return `${String(n)} ${n === 1 ? one : many}`;
}

function entriesText(n: unknown): string {
  return countOf(n, 'cache entry', 'cache entries');
}
