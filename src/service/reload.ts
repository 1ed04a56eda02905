/**
 * What a reload may change. A running service takes a new HeimdallConfig (from the
 * config file read again, with the command line's flags still on top) and changes in
 * place what it can: the upstreams (the next misses go to them; questions in flight
 * finish on the old ones), the access lists and rate limits (the XDP maps are updated in
 * place and every thread's EdgeGuard swaps its policy), the promotion threshold,
 * whether XDP answers, the CPUs its threads run on, and the cache's TTL bounds, serve-stale and sizes (in the shared
 * cache's header, seen by every thread at once; sizes only up to what was allocated at
 * start: the service moves a larger one to `restart`). Everything else is fixed when the service starts (the interface,
 * the maps' sizes, the sockets, the workers): a change to it is reported as needing a
 * restart and not applied.
 *
 * The keys are the config file's (src/config-file.ts FILE_KEYS, whose `live` flags say
 * the same); a test keeps the two in step.
 */
import type { HeimdallConfig } from '../config.js';

type Get = (c: HeimdallConfig) => unknown;

/** Each file key and how to read its value from a resolved config. */
export const RELOAD_KEYS: Readonly<Record<string, { live: boolean; get: Get }>> = {
  interface: { live: false, get: (c) => c.iface },
  upstreams: { live: true, get: (c) => c.upstreams.map((u) => `${u.host}:${u.port}`) },
  port: { live: false, get: (c) => c.port },
  mode: { live: false, get: (c) => c.mode },
  'xdp-attach': { live: false, get: (c) => c.xdpAttach },
  queues: { live: false, get: (c) => c.queues },
  'cache-size': { live: true, get: (c) => c.cacheSize },
  'hot-size': { live: false, get: (c) => c.hotSize },
  'promote-after': { live: true, get: (c) => c.promoteAfter },
  'udp-size': { live: false, get: (c) => c.udpSize },
  'tcp-max-connections': { live: false, get: (c) => c.tcp.maxConnections },
  'tcp-max-per-client': { live: false, get: (c) => c.tcp.maxPerClient },
  'tcp-idle-timeout': { live: false, get: (c) => c.tcp.idleTimeoutMs },
  'cache-bytes': { live: true, get: (c) => c.cacheBytes },
  'cache-min-ttl': { live: true, get: (c) => c.cacheTtl.minTtl },
  'cache-max-ttl': { live: true, get: (c) => c.cacheTtl.maxTtl },
  'cache-max-negative-ttl': { live: true, get: (c) => c.cacheTtl.negativeMaxTtl },
  'upstream-inflight': { live: false, get: (c) => c.workerEngine.upstreamInflight },
  'upstream-inflight-total': { live: false, get: (c) => c.upstreamInflightTotal },
  'upstream-client-share': { live: false, get: (c) => c.workerEngine.upstreamPerClient },
  'upstream-tcp-conns': { live: false, get: (c) => c.workerEngine.upstreamTcpConns },
  'upstream-tcp-pipeline': { live: false, get: (c) => c.workerEngine.upstreamTcpPipeline },
  'upstream-port-reuse': { live: false, get: (c) => c.workerEngine.upstreamPortReuse },
  'xdp-answers': { live: true, get: (c) => c.xdpAnswers },
  prefetch: { live: true, get: (c) => c.prefetch },
  'af-xdp': { live: false, get: (c) => c.afXdp },
  'caps-for-id': { live: false, get: (c) => c.workerEngine.capsForId },
  'upstream-cookies': { live: false, get: (c) => c.workerEngine.upstreamCookies },
  'minimal-responses': { live: false, get: (c) => c.workerEngine.minimalResponses },
  'serve-stale': { live: true, get: (c) => c.serveStale },
  cpus: { live: true, get: (c) => c.cpus },
  'log-format': { live: true, get: (c) => c.logFormat },
  'metrics-listen': { live: false, get: (c) => c.metricsListen },
  listen: { live: false, get: (c) => c.edge.listen },
  allow: { live: true, get: (c) => c.edge.allow.map((x) => x.text) },
  deny: { live: true, get: (c) => c.edge.deny.map((x) => x.text) },
  rrl: { live: true, get: (c) => c.edge.rrl.rate },
  'rrl-slip': { live: true, get: (c) => c.edge.rrl.slip },
  'rrl-window': { live: true, get: (c) => c.edge.rrl.window },
  'rrl-all': { live: true, get: (c) => c.edge.rrl.allRate },
  'rrl-v4-prefix': { live: true, get: (c) => c.edge.rrl.v4Prefix },
  'rrl-v6-prefix': { live: true, get: (c) => c.edge.rrl.v6Prefix },
  'rrl-buckets': { live: false, get: (c) => c.edge.rrlBuckets },
  'rrl-exempt': { live: true, get: (c) => c.edge.rrlExempt.map((x) => x.text) },
};

export interface ConfigDiff {
  /** Keys that changed and change now. */
  live: string[];
  /** Keys that changed but keep their running value until a restart. */
  restart: string[];
}

export function diffConfig(running: HeimdallConfig, next: HeimdallConfig): ConfigDiff {
  const out: ConfigDiff = { live: [], restart: [] };
  for (const [key, k] of Object.entries(RELOAD_KEYS)) {
    if (JSON.stringify(k.get(running)) === JSON.stringify(k.get(next))) continue;
    (k.live ? out.live : out.restart).push(key);
  }
  return out;
}

/**
 * The config that runs after a reload: the new live settings, the running rest. `diff`:
 * what the service applied (a cache size it could not apply is in `restart`).
 */
export function applyLive(running: HeimdallConfig, next: HeimdallConfig, diff?: ConfigDiff): HeimdallConfig {
  const promoteAfter = next.promoteAfter;
  const sizeLive = (key: string): boolean => diff === undefined || !diff.restart.includes(key);
  const cacheSize = sizeLive('cache-size') ? next.cacheSize : running.cacheSize;
  const cacheBytes = sizeLive('cache-bytes') ? next.cacheBytes : running.cacheBytes;
  return Object.freeze({
    ...running,
    cacheSize,
    cacheBytes,
    cacheTtl: next.cacheTtl,
    serveStale: next.serveStale,
    upstreams: next.upstreams,
    upstreamList: next.upstreamList,
    promoteAfter,
    xdpAnswers: next.xdpAnswers,
    prefetch: next.prefetch,
    logFormat: next.logFormat,
    cpus: next.cpus,
    edge: Object.freeze({ ...running.edge, allow: next.edge.allow, deny: next.edge.deny, rrlExempt: next.edge.rrlExempt, rrl: next.edge.rrl }),
    mainEngine: Object.freeze({ ...running.mainEngine, promoteAfter, cacheSize, cacheBytes, serveStale: next.serveStale }),
    workerEngine: Object.freeze({ ...running.workerEngine, promoteAfter, cacheSize, cacheBytes, serveStale: next.serveStale }),
  });
}

/** One line for the log and the `reload` command. */
export function describeReload(d: ConfigDiff): string {
  const live = d.live.length > 0 ? `changed ${d.live.join(', ')}` : 'nothing to change';
  const restart = d.restart.length > 0 ? `; ${d.restart.join(', ')} changed in the file but ${d.restart.length === 1 ? 'needs' : 'need'} a restart (running values kept)` : '';
  return `${live}${restart}`;
}
