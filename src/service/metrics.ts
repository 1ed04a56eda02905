/**
 * Prometheus metrics (prom-client) on --metrics-listen. Figures are collected at
 * scrape time from their owners (the XDP counters, each engine's counters, the hot
 * map sync, the forwarder), so the query path never touches a metric object.
 */
import http from 'node:http';
import client from 'prom-client';
import type { EngineCounters } from '../engine/engine.js';

export interface MetricsSources {
  /** XDP outcome counters by name (summed over CPUs). */
  xdp(): Record<string, bigint>;
  /** Every engine's counters (main thread and workers). */
  engines(): EngineCounters[];
  /** Replies by RCODE, summed over engines (index = RCODE, 16 = BADVERS). */
  rcodes(): number[];
  cacheEntries(): number;
  hotEntries(): number;
  hot(): { promotions: number; demotions: number; refused: number };
  upstream(): { failures: number; timeouts: number; latency: { buckets: number[]; counts: number[]; sum: number; count: number } };
  framesInUse(): number;
  workerRestarts(): number;
}

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE', 'DSOTYPENI', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15', 'BADVERS'];

function sum<K extends keyof EngineCounters>(list: EngineCounters[], k: K): number {
  return list.reduce((a, c) => a + c[k], 0);
}

export function buildRegistry(src: MetricsSources): client.Registry {
  const reg = new client.Registry();
  reg.registerMetric(new client.Counter({
    name: 'heimdall_responses_total',
    help: 'DNS responses sent, by the path that produced them',
    labelNames: ['path'],
    collect() {
      const e = src.engines();
      this.reset();
      this.inc({ path: 'xdp' }, Number(src.xdp().TX ?? 0n));
      this.inc({ path: 'cache' }, sum(e, 'cacheHits') + sum(e, 'staleServed'));
      this.inc({ path: 'upstream' }, sum(e, 'upstreamAnswers'));
      this.inc({ path: 'error' }, sum(e, 'servfail') + sum(e, 'formerr') + sum(e, 'notimp') + sum(e, 'badvers'));
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_queries_total',
    help: 'DNS queries seen: answered in XDP plus handled in userspace',
    collect() {
      this.reset();
      this.inc(Number(src.xdp().TX ?? 0n) + sum(src.engines(), 'queries'));
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_xdp_packets_total',
    help: 'Packets seen by the XDP program, by outcome (TX, PASS_*, USER_*, DROP_*)',
    labelNames: ['outcome'],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(src.xdp())) this.inc({ outcome: k }, Number(v));
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_userspace_rcode_total',
    help: 'Responses written in userspace, by RCODE',
    labelNames: ['rcode'],
    collect() {
      this.reset();
      src.rcodes().forEach((n, i) => n > 0 && this.inc({ rcode: RCODE_NAMES[i] ?? String(i) }, n));
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_malformed_total',
    help: 'Malformed queries: answered FORMERR or dropped',
    labelNames: ['action'],
    collect() {
      const e = src.engines();
      this.reset();
      this.inc({ action: 'formerr' }, sum(e, 'formerr'));
      this.inc({ action: 'dropped' }, sum(e, 'dropped'));
    },
  }));
  reg.registerMetric(new client.Gauge({
    name: 'heimdall_cache_entries',
    help: 'Entries in the userspace caches (all workers)',
    collect() {
      this.set(src.cacheEntries());
    },
  }));
  reg.registerMetric(new client.Gauge({
    name: 'heimdall_hot_entries',
    help: 'Entries in the XDP hot map',
    collect() {
      this.set(src.hotEntries());
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_hot_changes_total',
    help: 'Hot map promotions, demotions and refused promotions',
    labelNames: ['change'],
    collect() {
      const h = src.hot();
      this.reset();
      this.inc({ change: 'promote' }, h.promotions);
      this.inc({ change: 'demote' }, h.demotions);
      this.inc({ change: 'refused' }, h.refused);
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_upstream_failures_total',
    help: 'Queries no upstream answered in time (client got SERVFAIL or a stale answer)',
    collect() {
      this.reset();
      this.inc(src.upstream().failures);
    },
  }));
  reg.registerMetric(new client.Counter({
    name: 'heimdall_upstream_timeouts_total',
    help: 'Upstream attempts that timed out',
    collect() {
      this.reset();
      this.inc(src.upstream().timeouts);
    },
  }));
  const latency = new client.Histogram({
    name: 'heimdall_upstream_latency_seconds',
    help: 'Time from sending a query upstream to its validated answer',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  });
  // The histogram's state is rebuilt from the engines' bucket counts at scrape time.
  const origGet = latency.get.bind(latency);
  latency.get = async () => {
    const v = await origGet();
    const l = src.upstream().latency;
    let cumulative = 0;
    v.values = [];
    l.buckets.forEach((le, i) => {
      cumulative += l.counts[i] ?? 0;
      v.values.push({ labels: { le }, value: cumulative, metricName: 'heimdall_upstream_latency_seconds_bucket' });
    });
    v.values.push({ labels: { le: '+Inf' }, value: l.count, metricName: 'heimdall_upstream_latency_seconds_bucket' });
    v.values.push({ labels: {}, value: l.sum, metricName: 'heimdall_upstream_latency_seconds_sum' });
    v.values.push({ labels: {}, value: l.count, metricName: 'heimdall_upstream_latency_seconds_count' });
    return v;
  };
  reg.registerMetric(latency);
  reg.registerMetric(new client.Gauge({
    name: 'heimdall_umem_frames_in_use',
    help: 'AF_XDP UMEM frames held by userspace (rx being answered, tx not yet completed)',
    collect() {
      this.set(src.framesInUse());
    },
  }));
  reg.registerMetric(new client.Counter({
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
export async function serveMetrics(reg: client.Registry, listen: string): Promise<http.Server> {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`--metrics-listen must be addr:port, got '${listen}'`);
  const host = m[1] || '127.0.0.1';
  const port = Number(m[2]);
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
    server.listen(port, host, () => resolve());
  });
  return server;
}
