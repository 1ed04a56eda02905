/**
 * Prometheus metrics (prom-client) on --metrics-listen. Figures are collected at scrape
 * time from their owners, so the query path never touches a metric object:
 *   - every userspace counter from the engine hosts' StatsBlocks, summed; which metric
 *     and label each one is comes from the one list in src/engine/stats.ts;
 *   - the XDP program's outcome counters (per-CPU, summed by the addon);
 *   - each upstream's counts, state and RTT histogram from the blocks' per-upstream
 *     regions, merged by upstream (src/engine/upstream-stats.ts, labelled upstream="host:port");
 *   - the hot map's changes and the worker supervisor's restarts.
 */
import http from 'node:http';
import client from 'prom-client';
import { COUNTERS, LATENCY_BUCKETS, Slot, StatsBlock } from '../engine/stats.js';
import { readUpstreams, UPSTREAM_COUNTERS, UPSTREAM_GAUGES, UPSTREAM_RTT, type UpstreamFigures } from '../engine/upstream-stats.js';
import type { HotSyncCounters } from '../hot/hot-sync.js';

export interface MetricsSources {
  /** XDP outcome counters by name (summed over CPUs). */
  xdp(): Record<string, bigint>;
  /** Every engine host's counters (main thread and workers). */
  stats(): readonly StatsBlock[];
  hotEntries(): number;
  /** The hot map's writes, and the names the policy declined (an answer the map cannot hold). */
  hot(): HotSyncCounters & { declined: number };
  workerRestarts(): number;
}

type Def = (typeof COUNTERS)[keyof typeof COUNTERS];
type Name = keyof typeof COUNTERS;

/** The sum of every block, read once per scrape however many metrics ask for it. */
class Totals {
  private at = -Infinity;
  private block = StatsBlock.sum([]);
  constructor(private readonly src: MetricsSources) {}
  get(): StatsBlock {
    const now = performance.now();
    if (now - this.at > 50) {
      this.block = StatsBlock.sum(this.src.stats());
      this.at = now;
    }
    return this.block;
  }
}

// prom-client reads a metric through getForPromString() (its get() calls it too); its
// typings leave it out, so it is declared here for the override below.
declare module 'prom-client' {
  interface Histogram<T extends string> {
    getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<T>>>;
  }
}

/** The upstream latency histogram, rebuilt from the blocks' bucket counts at each scrape. */
class LatencyHistogram extends client.Histogram {
  constructor(private readonly totals: Totals, private readonly metricName: string, help: string) {
    super({ name: metricName, help, buckets: [...LATENCY_BUCKETS], registers: [] });
  }

  override async getForPromString(): Promise<client.MetricObjectWithValues<client.MetricValueWithName<string>>> {
    const v = await super.getForPromString();
    const l = this.totals.get().latency();
    const bucket = `${this.metricName}_bucket`;
    let cumulative = 0;
    v.values = l.buckets.map((le, i) => {
      cumulative += l.counts[i] ?? 0;
      return { labels: { le }, value: cumulative, metricName: bucket };
    });
    v.values.push({ labels: { le: '+Inf' }, value: l.count, metricName: bucket });
    v.values.push({ labels: {}, value: l.sum, metricName: `${this.metricName}_sum` });
    v.values.push({ labels: {}, value: l.count, metricName: `${this.metricName}_count` });
    return v;
  }
}

/** Every upstream merged over the blocks, read once per scrape. */
class UpstreamTotals {
  private at = -Infinity;
  private figs: UpstreamFigures[] = [];
  constructor(private readonly src: MetricsSources) {}
  get(): UpstreamFigures[] {
    const now = performance.now();
    if (now - this.at > 50) {
      this.figs = readUpstreams(this.src.stats().map((b) => b.upstreams));
      this.at = now;
    }
    return this.figs;
  }
}

/** Each upstream's RTT histogram, labelled by upstream, rebuilt from the regions at each scrape. */
class UpstreamRttHistogram extends client.Histogram {
  constructor(private readonly ups: UpstreamTotals) {
    super({ name: UPSTREAM_RTT.metric, help: UPSTREAM_RTT.help, labelNames: ['upstream'], buckets: [...LATENCY_BUCKETS], registers: [] });
  }

  override async getForPromString(): Promise<client.MetricObjectWithValues<client.MetricValueWithName<string>>> {
    const v = await super.getForPromString();
    const name = UPSTREAM_RTT.metric;
    v.values = [];
    for (const f of this.ups.get()) {
      const upstream = f.upstream;
      let cumulative = 0;
      f.rtt.boundsMs.forEach((ms, i) => {
        cumulative += f.rtt.counts[i] ?? 0;
        v.values.push({ labels: { upstream, le: ms / 1000 }, value: cumulative, metricName: `${name}_bucket` });
      });
      v.values.push({ labels: { upstream, le: '+Inf' }, value: f.rtt.count, metricName: `${name}_bucket` });
      v.values.push({ labels: { upstream }, value: f.rtt.sumMs / 1000, metricName: `${name}_sum` });
      v.values.push({ labels: { upstream }, value: f.rtt.count, metricName: `${name}_count` });
    }
    return v;
  }
}

/**
 * The per-upstream metrics: UPSTREAM_COUNTERS for every upstream with counts (one removed
 * by a reload included), UPSTREAM_GAUGES for those in use (`engines` for all), the RTT histogram.
 */
function registerUpstreams(reg: client.Registry, ups: UpstreamTotals): void {
  for (const key of Object.keys(UPSTREAM_COUNTERS) as (keyof typeof UPSTREAM_COUNTERS)[]) {
    const d = UPSTREAM_COUNTERS[key];
    reg.registerMetric(new client.Counter({
      registers: [], name: d.metric, help: d.help, labelNames: ['upstream'],
      collect() {
        this.reset();
        for (const f of ups.get()) this.inc({ upstream: f.upstream }, f[key]);
      },
    }));
  }
  const gauge = (f: UpstreamFigures, key: keyof typeof UPSTREAM_GAUGES): number | null => {
    if (key === 'engines') return f.engines;
    if (f.engines === 0) return null;
    if (key === 'up') return f.up ? 1 : 0;
    if (key === 'downEngines') return f.downIn;
    if (key === 'consecutiveFailures') return f.consecutiveFailures;
    return f.srttMs === null ? null : f.srttMs / 1000;
  };
  for (const key of Object.keys(UPSTREAM_GAUGES) as (keyof typeof UPSTREAM_GAUGES)[]) {
    const d = UPSTREAM_GAUGES[key];
    reg.registerMetric(new client.Gauge({
      registers: [], name: d.metric, help: d.help, labelNames: ['upstream'],
      collect() {
        this.reset();
        for (const f of ups.get()) {
          const x = gauge(f, key);
          if (x !== null) this.set({ upstream: f.upstream }, x);
        }
      },
    }));
  }
  reg.registerMetric(new UpstreamRttHistogram(ups));
}

/** Registers one metric per distinct metric name of COUNTERS. */
function registerCounters(reg: client.Registry, totals: Totals): void {
  const groups = new Map<string, Name[]>();
  for (const name of Object.keys(COUNTERS) as Name[]) {
    const m = COUNTERS[name].metric;
    groups.set(m, [...(groups.get(m) ?? []), name]);
  }
  for (const [metric, names] of groups) {
    const first: Def = COUNTERS[names[0]!];
    if (first.kind === 'histogram') {
      reg.registerMetric(new LatencyHistogram(totals, metric, first.help));
      continue;
    }
    const labelNames = [...new Set(names.map((n) => labelOf(COUNTERS[n])).filter((l): l is string => l !== undefined))];
    const collect = function (this: client.Counter | client.Gauge): void {
      const t = totals.get();
      this.reset();
      for (const n of names) {
        const d: Def = COUNTERS[n];
        const at = Slot[n];
        if ('values' in d) {
          d.values.forEach((label, i) => t.v[at + i]! > 0 && this.inc({ [d.label]: label }, t.v[at + i]!));
        } else if ('label' in d) {
          this.inc({ [d.label[0]]: d.label[1] }, t.v[at]!);
        } else if (d.kind === 'gauge') {
          (this as client.Gauge).set(t.v[at]!);
        } else {
          this.inc(t.v[at]!);
        }
      }
    };
    const Kind = first.kind === 'gauge' ? client.Gauge : client.Counter;
    reg.registerMetric(new Kind({ name: metric, help: first.help, labelNames, collect, registers: [] }));
  }
}

function labelOf(d: Def): string | undefined {
  if ('values' in d) return d.label;
  if ('label' in d) return d.label[0];
  return undefined;
}

/** A registry of its own: metrics are created with `registers: []`, never in prom-client's global one. */
export function buildRegistry(src: MetricsSources): client.Registry {
  const reg = new client.Registry();
  const totals = new Totals(src);
  registerCounters(reg, totals);
  registerUpstreams(reg, new UpstreamTotals(src));
  const xdpTx = (): number => Number(src.xdp().TX ?? 0n);
  reg.registerMetric(new client.Counter({
    registers: [],
    name: 'heimdall_responses_total',
    help: 'DNS responses sent, by the path that produced them',
    labelNames: ['path'],
    collect() {
      const t = totals.get();
      this.reset();
      this.inc({ path: 'xdp' }, xdpTx());
      this.inc({ path: 'cache' }, t.get('cacheHits') + t.get('staleServed'));
      // A query that waited on another's fetch was answered from it: an upstream answer too (docs/FORWARDER.md).
      this.inc({ path: 'upstream' }, t.get('upstreamAnswers') + t.get('relayed') + t.get('fetchJoinedServed'));
      this.inc({ path: 'error' }, t.get('servfail') + t.get('formerr') + t.get('notimp') + t.get('badvers'));
    },
  }));
  reg.registerMetric(new client.Counter({
    registers: [],
    name: 'heimdall_queries_total',
    help: 'DNS queries seen: answered in XDP plus handled in userspace',
    collect() {
      this.reset();
      this.inc(xdpTx() + totals.get().get('queries'));
    },
  }));
  reg.registerMetric(new client.Counter({
    registers: [],
    name: 'heimdall_xdp_packets_total',
    help: 'Packets seen by the XDP program, by outcome (TX, PASS_*, USER_*, DROP_*)',
    labelNames: ['outcome'],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(src.xdp())) this.inc({ outcome: k }, Number(v));
    },
  }));
  reg.registerMetric(new client.Gauge({
    registers: [],
    name: 'heimdall_hot_entries',
    help: 'Entries in the XDP hot map',
    collect() {
      this.set(src.hotEntries());
    },
  }));
  reg.registerMetric(new client.Counter({
    registers: [],
    name: 'heimdall_hot_changes_total',
    help: 'Hot map promotions, demotions, in-place replacements (a new answer of a hot name), refused promotions (map full), declined ones (a name at the threshold whose answer the map cannot hold, or SERVFAIL; judged at most once a second per name) and map writes or deletes the kernel failed (a failed delete is retried every 5 s until it takes)',
    labelNames: ['change'],
    collect() {
      const h = src.hot();
      this.reset();
      this.inc({ change: 'promote' }, h.promotions);
      this.inc({ change: 'demote' }, h.demotions);
      this.inc({ change: 'replace' }, h.replacements);
      this.inc({ change: 'refused' }, h.refused);
      this.inc({ change: 'declined' }, h.declined);
      this.inc({ change: 'failed' }, h.failed);
    },
  }));
  reg.registerMetric(new client.Counter({
    registers: [],
    name: 'heimdall_worker_restarts_total',
    help: 'AF_XDP workers that died and were replaced',
    collect() {
      this.reset();
      this.inc(src.workerRestarts());
    },
  }));
  return reg;
}

/** Serves /metrics on host:port; resolves once listening, rejects on bind errors. */
export async function serveMetrics(reg: client.Registry, listen: { host: string; port: number }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    reg.metrics().then(
      (body) => res.writeHead(200, { 'content-type': reg.contentType }).end(body),
      (e: Error) => res.writeHead(500).end(e.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return server;
}
