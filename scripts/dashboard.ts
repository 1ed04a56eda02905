/**
 * Writes dashboards/heimdall-xdp.json (or the path given), the Grafana dashboard over the Prometheus metrics
 * (import it in Grafana, pick the Prometheus data source). Generated so the panels stay
 * uniform; test/lab/control.test.ts checks that every metric it queries exists in a
 * running service's /metrics.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Target {
  expr: string;
  legend: string;
}

let id = 0;
function panel(title: string, description: string, targets: Target[], o: { unit?: string; x: number; y: number; w?: number; h?: number; stat?: boolean; max?: number }): Record<string, unknown> {
  id++;
  return {
    id,
    type: o.stat ? 'stat' : 'timeseries',
    title,
    description,
    datasource: { type: 'prometheus', uid: '${datasource}' },
    gridPos: { x: o.x, y: o.y, w: o.w ?? 12, h: o.h ?? 8 },
    fieldConfig: { defaults: { unit: o.unit ?? 'short', ...(o.max !== undefined ? { max: o.max, min: 0 } : {}) }, overrides: [] },
    options: o.stat ? { reduceOptions: { calcs: ['lastNotNull'] }, graphMode: 'area' } : { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } },
    targets: targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), expr: t.expr, legendFormat: t.legend, datasource: { type: 'prometheus', uid: '${datasource}' } })),
  };
}

const sel = 'instance=~"$instance"';
const r = (m: string, extra = '', w = '$__rate_interval'): string => `rate(${m}{${sel}${extra ? `,${extra}` : ''}}[${w}])`;

const panels = [
  panel('Answers/s by path', 'Responses sent: from the XDP hot map, the userspace cache, the upstream, or an error reply', [{ expr: `sum by (path) (${r('heimdall_responses_total')})`, legend: '{{path}}' }], { unit: 'reqps', x: 0, y: 0 }),
  panel('Hit ratio', 'Share of answers from XDP or the cache (not the upstream)', [
    { expr: `sum(${r('heimdall_responses_total', 'path=~"xdp|cache"')}) / sum(${r('heimdall_responses_total', 'path=~"xdp|cache|upstream"')})`, legend: 'xdp + cache' },
    { expr: `sum(${r('heimdall_responses_total', 'path="xdp"')}) / sum(${r('heimdall_responses_total', 'path=~"xdp|cache|upstream"')})`, legend: 'xdp' },
  ], { unit: 'percentunit', x: 12, y: 0, max: 1 }),
  panel('Queries/s', 'Queries seen: answered in XDP plus handled in userspace', [{ expr: `sum(${r('heimdall_queries_total')})`, legend: 'queries' }], { unit: 'reqps', x: 0, y: 8, w: 8 }),
  panel('Hot map entries', 'Entries in the XDP hot map (its size is --hot-size)', [{ expr: `sum(heimdall_hot_entries{${sel}})`, legend: 'entries' }], { x: 8, y: 8, w: 8 }),
  panel('Hot map changes/s', 'Promotions into the hot map, demotions out of it, promotions refused', [{ expr: `sum by (change) (${r('heimdall_hot_changes_total')})`, legend: '{{change}}' }], { unit: 'ops', x: 16, y: 8, w: 8 }),
  panel('Upstream latency', 'Time to an upstream answer', [
    { expr: `histogram_quantile(0.5, sum by (le) (${r('heimdall_upstream_latency_seconds_bucket')}))`, legend: 'p50' },
    { expr: `histogram_quantile(0.99, sum by (le) (${r('heimdall_upstream_latency_seconds_bucket')}))`, legend: 'p99' },
  ], { unit: 's', x: 0, y: 16 }),
  panel('Upstream health', 'Queries sent upstream, timeouts, failures (SERVFAIL after every upstream), questions in flight', [
    { expr: `sum(${r('heimdall_upstream_queries_total')})`, legend: 'sent/s' },
    { expr: `sum(${r('heimdall_upstream_timeouts_total')})`, legend: 'timeouts/s' },
    { expr: `sum(${r('heimdall_upstream_failures_total')})`, legend: 'failures/s' },
    { expr: `sum(heimdall_upstream_inflight{${sel}})`, legend: 'in flight' },
  ], { x: 12, y: 16 }),
  panel('Drops by reason', 'Packets the XDP program dropped, queries the userspace edge policy dropped, AF_XDP frames that could not be answered', [
    { expr: `sum by (outcome) (${r('heimdall_xdp_packets_total', 'outcome=~"DROP_.*"')})`, legend: 'xdp {{outcome}}' },
    { expr: `sum by (reason) (${r('heimdall_edge_drops_total')})`, legend: 'edge {{reason}}' },
    { expr: `sum by (reason) (${r('heimdall_af_xdp_drops_total')})`, legend: 'af_xdp {{reason}}' },
  ], { unit: 'pps', x: 0, y: 24 }),
  panel('Rate-limited and refused', 'Responses dropped or truncated by rate limiting, REFUSED to clients outside the allow list (XDP and userspace)', [
    { expr: `sum by (outcome) (${r('heimdall_xdp_packets_total', 'outcome=~"DROP_RATE_LIMITED|TX_SLIP|TX_REFUSED|DROP_DENIED"')})`, legend: 'xdp {{outcome}}' },
    { expr: `sum by (reason) (${r('heimdall_edge_drops_total', 'reason=~"rate_limited|denied"')})`, legend: 'userspace {{reason}}' },
    { expr: `sum by (kind) (${r('heimdall_edge_replies_total')})`, legend: 'userspace {{kind}}' },
  ], { unit: 'pps', x: 12, y: 24 }),
  panel('Upstream limits', 'Questions refused at once because a limit of work in flight upstream was reached', [{ expr: `sum by (limit) (${r('heimdall_upstream_busy_total')})`, legend: '{{limit}}' }], { unit: 'ops', x: 0, y: 32, w: 8 }),
  panel('Worker restarts', 'AF_XDP workers that died and were replaced', [{ expr: `sum(increase(heimdall_worker_restarts_total{${sel}}[$__range]))`, legend: 'restarts' }], { x: 8, y: 32, w: 8, stat: true }),
  panel('Cache', 'Userspace cache entries and bytes (all engines)', [
    { expr: `sum(heimdall_cache_entries{${sel}})`, legend: 'entries' },
    { expr: `sum(heimdall_cache_bytes{${sel}})`, legend: 'bytes' },
  ], { x: 16, y: 32, w: 8 }),

  // Each upstream, as every engine together sees it (src/engine/upstream-stats.ts).
  panel('Upstream RTT by upstream', 'Time from a UDP query to each upstream to its validated answer (p50, p99 from the histogram) and the smoothed RTT its selection uses', [
    { expr: `histogram_quantile(0.5, sum by (le, upstream) (${r('heimdall_upstream_server_rtt_seconds_bucket')}))`, legend: 'p50 {{upstream}}' },
    { expr: `histogram_quantile(0.99, sum by (le, upstream) (${r('heimdall_upstream_server_rtt_seconds_bucket')}))`, legend: 'p99 {{upstream}}' },
    { expr: `avg by (upstream) (heimdall_upstream_server_srtt_seconds{${sel}})`, legend: 'srtt {{upstream}}' },
  ], { unit: 's', x: 0, y: 40 }),
  panel('Upstream up by upstream', '1 while no engine holds the upstream down (its breaker opens after consecutive failures), and how many engines hold it down', [
    { expr: `min by (upstream) (heimdall_upstream_server_up{${sel}})`, legend: 'up {{upstream}}' },
    { expr: `sum by (upstream) (heimdall_upstream_server_down_engines{${sel}})`, legend: 'engines holding {{upstream}} down' },
  ], { x: 12, y: 40 }),
  panel('Upstream queries by upstream', 'UDP queries sent to each upstream, its answers, SERVFAIL answers, timeouts and errors', [
    { expr: `sum by (upstream) (${r('heimdall_upstream_server_queries_total')})`, legend: 'sent {{upstream}}' },
    { expr: `sum by (upstream) (${r('heimdall_upstream_server_answers_total')})`, legend: 'answers {{upstream}}' },
    { expr: `sum by (upstream) (${r('heimdall_upstream_server_servfail_total')})`, legend: 'servfail {{upstream}}' },
    { expr: `sum by (upstream) (${r('heimdall_upstream_server_timeouts_total')})`, legend: 'timeouts {{upstream}}' },
    { expr: `sum by (upstream) (${r('heimdall_upstream_server_errors_total')})`, legend: 'errors {{upstream}}' },
  ], { unit: 'ops', x: 0, y: 48, w: 24 }),
];

const dashboard = {
  title: 'heimdall-xdp',
  uid: 'heimdall-xdp',
  description: 'Caching DNS forwarder with XDP: answers by path, hit ratio, hot map, upstream latency and health by upstream, drops',
  tags: ['dns', 'xdp', 'heimdall-xdp'],
  schemaVersion: 39,
  version: 1,
  editable: true,
  time: { from: 'now-1h', to: 'now' },
  refresh: '10s',
  templating: {
    list: [
      { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus' },
      {
        name: 'instance',
        label: 'Instance',
        type: 'query',
        datasource: { type: 'prometheus', uid: '${datasource}' },
        query: { query: 'label_values(heimdall_queries_total, instance)', refId: 'instance' },
        definition: 'label_values(heimdall_queries_total, instance)',
        includeAll: true,
        multi: true,
        refresh: 2,
      },
    ],
  },
  panels,
};

const out = process.argv[2] ?? fileURLToPath(new URL('../dashboards/heimdall-xdp.json', import.meta.url));
writeFileSync(out, `${JSON.stringify(dashboard, null, 2)}\n`);
console.log(`wrote ${out}`);
