/**
 * The composition root of `heimdall-xdp attach`: from one resolved HeimdallConfig it
 * builds the parts and wires them, and returns { start, stop }. The parts know nothing
 * of it: the XDP program (FastPath), the hot map sync, the main thread's EngineHost
 * behind the kernel UDP and TCP listeners, the AF_XDP worker pool (each worker an
 * EngineHost behind an XskServer), and the metrics endpoint. Signals are the caller's
 * business (src/cli.ts).
 *
 *   start(): probe an upstream, load the program, bind the kernel listeners, attach,
 *            start the workers, serve metrics; on any failure undo what was done.
 *   stop():  everything in reverse; the program is detached and the interface left as
 *            it was.
 */
import { setFlagsFromString } from 'node:v8';
import type http from 'node:http';
import { formatCpuList, type HeimdallConfig } from '../config.js';
import { EngineHost } from '../engine/host.js';
import { HeimdallError, isNativeError } from '../errors.js';
import { EdgeGuard } from '../edge/guard.js';
import { ServedAddresses, type Served } from '../edge/local.js';
import { claimInterface } from '../edge/owner.js';
import { accessListOf, buildPolicy, edgeSetup, updatePolicy, type EdgeSetup } from '../edge/policy.js';
import { RELOAD_KEYS, applyLive, diffConfig, type ConfigDiff } from './reload.js';
import { announce, log } from '../log.js';
import { UpstreamLog } from './upstream-log.js';
import { engineControl, qtypeText, type CachedEntryInfo, type EngineRequest, type FlushResult } from './cache-control.js';
import { fastMonotonicNs } from '../engine/clock.js';
import { makeKey } from '../dns/key.js';
import { readUpstreams, releaseUpstreams, upstreamLines } from '../engine/upstream-stats.js';
import { AskCounter } from '../hot/asks.js';
import { SharedInflight } from '../upstream/budget.js';
import { checkFdLimit } from './fd-limit.js';
import { HotSync } from '../hot/hot-sync.js';
import { PROMOTE_NEVER, SharedPromotion } from '../hot/shared-promotion.js';
import { SharedCache, type SharedCacheOptions } from '../engine/shared-cache.js';
import { Prefetcher } from '../hot/prefetch.js';
import { questionOfKey } from '../dns/key.js';
import { FetchTable, fetchTableCapacity } from '../upstream/fetch-table.js';
import { TcpListener, tcpHandlerOf } from '../io/tcp.js';
import { UdpListener } from '../io/udp.js';
import type { Addr } from '../net/addr.js';
import type { FrameHandler } from '../io/xsk-server.js';
import { loadAddon } from '../native/addon.js';
import { pinService } from './cpus.js';
import { Forwarder } from '../upstream/forwarder.js';
import { FastPath } from '../xdp/fastpath.js';
import { hotUnfitReason } from '../xdp/hot-entry.js';
import { KEY_CD, KEY_DO, RCODE_SERVFAIL } from '../dns/constants.js';
import { buildRegistry, serveMetrics } from './metrics.js';
import { WorkerPool } from './pool.js';

/** Ask counts halve every minute: a name must keep being asked to stay promotable. */
const ASK_DECAY_MS = 60_000;
/**
 * Hits the XDP program served are handed to the promotion policy every 5 s. They only
 * feed heat (60-second half-life) and SLRU recency, which 5 s of merging does not change.
 */
const KERNEL_HITS_MS = 5000;

/** How often the prefetcher looks for due entries: well inside the last 10% of the shortest lifetime it refreshes (4 s). */
const PREFETCH_POLL_MS = 100;
/**
 * The promotion threshold the shared cache holds: the configured one, or never while XDP
 * answers nothing (`xdp-answers: false`). Then a promotion would fill a map no query is
 * served from (and prefetch, which follows the kernel's hits on it, refreshes nothing),
 * at the cost of the main thread's work for every name asked three times: ~0.5 s of CPU
 * in a 4-s Zipf round of the userspace path, on the two cores the workers and the
 * generator share (docs/BENCHMARKS.md, "The XDP path's learning burst"). Entries already hot stay in the map, followed as
 * before (refreshed, evicted, expired), and serve again if answers are switched back on;
 * then the names asked since reach the threshold at their next hit.
 */
function promotionThreshold(c: { xdpAnswers: boolean; promoteAfter: number }): number {
  return c.xdpAnswers ? c.promoteAfter : PROMOTE_NEVER;
}

/** The main thread's engine id for the hot map sync (workers are 1..queues). */
const MAIN_ENGINE = 0;

export interface ReloadResult {
  diff: ConfigDiff;
  /** Workers that confirmed the new settings, of those running. */
  workers: { confirmed: number; live: number };
}

export interface ServiceStats {
  /** metric{label="value"} -> value, as /metrics says them. */
  metrics: Record<string, number>;
  hotCapacity: number;
  workers: { configured: number; live: number };
  uptimeS: number;
}

export interface Service {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Changes what can change while running to `next`'s values (src/service/reload.ts);
   * reports what changed and what needs a restart. Queries in flight are not lost.
   */
  reload(next: HeimdallConfig): Promise<ReloadResult>;
  /** The config running now (the start's, with what reloads changed). */
  readonly config: HeimdallConfig;
  /** A cache or upstream request over every engine and the hot map (the control socket). */
  control(req: EngineRequest): Promise<Record<string, unknown>>;
  /** Every metric as /metrics has it, and what the figures are out of. */
  stats(): Promise<ServiceStats>;
  /** What start() attached, for the start-up line. */
  readonly summary: string;
}

/** One line an operator can act on, for a failed bind of one of the service's ports. */
export function bindError(e: unknown, port: number, what: string, host?: string): Error {
  const code = (e as { code?: string }).code;
  const on = host ? ` on ${host}` : '';
  if (code === 'EADDRINUSE') return new HeimdallError('E_PORT_IN_USE', `${what} port ${port}${on} is in use by another process (see 'ss -lunpt sport = :${port}'); stop it or choose another port`, { cause: e });
  if (code === 'EACCES') return new HeimdallError('E_PERMISSION', `cannot bind ${what} port ${port}${on}: permission denied (run as root)`, { cause: e });
  if (code === 'EADDRNOTAVAIL') return new HeimdallError('E_BAD_OPTION', `cannot bind ${what} port ${port}${on}: the address is not on this host (check --listen)`, { cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

/** Checks that at least one upstream answers before anything is attached (or, on reload, switched). */
async function probeUpstreams(fwd: Forwarder, list: string, where = '--upstream'): Promise<void> {
  try {
    // Any validated answer proves reachability, REFUSED included.
    await fwd.resolve({ name: new Uint8Array([0]), qtype: 2, qclass: 1, dnssecOk: false });
  } catch (e) {
    throw new HeimdallError('E_NO_UPSTREAM', `no upstream answers (${list}): check ${where} and that this host can reach it`, { cause: e });
  }
}

/**
 * The one cache, or one line if the host cannot give it the memory: the sizes are checked
 * against bounds, not against this host's RAM, and V8 says only "Array buffer allocation
 * failed".
 */
export function allocateCache(o: SharedCacheOptions): SharedCache {
  try {
    return SharedCache.create(o);
  } catch (e) {
    if (!(e instanceof RangeError) || !/allocation failed|invalid array buffer length/i.test(e.message)) throw e;
    const mib = Math.ceil((o.maxBytes ?? o.maxEntries * 512) / 2 ** 20);
    throw new HeimdallError('E_BAD_OPTION', `cannot allocate ${mib} MiB for the cache: lower --cache-size/--cache-bytes (or 'cache-size'/'cache-bytes' in the file)`, { cause: e });
  }
}

/** A reload's new upstreams, asked as start asks: a list nobody answers is refused. */
async function probeNewUpstreams(next: HeimdallConfig): Promise<void> {
  const e = next.mainEngine;
  const fwd = new Forwarder({ upstreams: [...next.upstreams], udpSize: e.udpSize, caps: e.capsForId, cookies: e.upstreamCookies, minimalResponses: e.minimalResponses });
  try {
    await probeUpstreams(fwd, next.upstreamList, "'upstreams' in the file");
  } finally {
    await fwd.close();
  }
}

export function createService(initial: HeimdallConfig): Service {
  const cfg = initial;
  /** The running config: `cfg` (the start's) with what reloads changed. */
  let running = initial;
  const undo: (() => Promise<void> | void)[] = [];
  let summary = '';
  /** Set once started: applies a reload's live settings. */
  let applyChange: ((next: HeimdallConfig, diff: ConfigDiff) => Promise<ReloadResult['workers']>) | undefined;
  /** Set once started: the control requests. */
  let controlImpl: ((req: EngineRequest) => Promise<Record<string, unknown>>) | undefined;
  let statsImpl: (() => Promise<ServiceStats>) | undefined;
  const startedAt = performance.now();
  let reloading: Promise<unknown> = Promise.resolve();

  async function stop(): Promise<void> {
    while (undo.length > 0) {
      try {
        await undo.pop()!();
      } catch {
        // keep tearing down: the program must be detached whatever else failed
      }
    }
  }

  async function start(): Promise<void> {
    loadAddon().xdpStatus(cfg.iface); // a missing interface is reported before anything starts
    checkFdLimit(cfg); // soft RLIMIT_NOFILE up to the hard one, and the limits well under it
    // Before any worker exists: each inherits the set of the thread that starts it.
    if (cfg.cpus) pinService(cfg.cpus, loadAddon());
    // V8's memory reducer shrinks the heap once a burst of work is over, with incremental
    // collections spread over the following seconds. For a server whose caches are
    // bounded it buys nothing, and those collections run on the cores the XDP path's
    // softirq work shares. The heap still shrinks on allocation-driven collections. Set
    // before the workers start, so they inherit it.
    setFlagsFromString('--no-memory-reducer');
    try {
      await compose();
    } catch (e) {
      await stop();
      if (isNativeError(e) && e.code === 'EPERM') throw new HeimdallError('E_PERMISSION', 'loading XDP was refused: run as root (CAP_BPF, CAP_NET_ADMIN)', { cause: e });
      throw e;
    }
  }

  async function compose(): Promise<void> {
    const asks = new AskCounter();
    // Each client network's share of it counted across every engine too; one row per engine (main and workers).
    const inflight = new SharedInflight({ limit: cfg.upstreamInflightTotal, perNetwork: cfg.upstreamPerClientTotal, engines: 1 + (cfg.afXdp ? cfg.queues : 0) });
    let sync: HotSync | undefined;
    let pool: WorkerPool | undefined;
    let fp: FastPath | undefined;
    let udp: UdpListener | undefined;
    let tcp: TcpListener | undefined;
    let lastDecay = performance.now();
    let lastKernelHits = lastDecay;
    /**
     * Cache bounds a reload lowered or raised whose every shard could not be locked at
     * once (a worker writing there, or a dead worker's lock not yet recovered): tried
     * again each upkeep until every shard has them, so no shard keeps the old bound.
     */
    let pendingLimits: { entries: number; bytes: number } | undefined;

    const upstreamLog = new UpstreamLog(() => 1 + (cfg.afXdp ? cfg.queues : 0));
    // The one cache of the process: the main thread's engine and every worker's are views
    // of it. The one promotion policy runs here, over its slots, and drives the hot map.
    const cache = allocateCache({ maxEntries: cfg.cacheSize, maxBytes: cfg.cacheBytes, ttl: { ...cfg.cacheTtl }, serveStale: cfg.serveStale, threshold: promotionThreshold(cfg) });
    // Fetches in flight, shared by every engine: one upstream query per name however many
    // queues ask for it at once (src/upstream/fetch-table.ts).
    const fetches = new FetchTable({ capacity: fetchTableCapacity(cfg.upstreamInflightTotal) });
    // Hot names still asked are refreshed before they expire (src/hot/prefetch.ts); it
    // follows what is in the hot map through the policy's events.
    let prefetcher: Prefetcher | undefined;
    let prefetchOn = cfg.prefetch;
    const promo = new SharedPromotion(cache, {
      capacity: cfg.hotSize,
      // What the XDP map can hold (its layout is the addon's, known once the program is open).
      eligible: (a) => a.rcode !== RCODE_SERVFAIL && (fp === undefined || hotUnfitReason(a, fp.layout) === null),
      onEvent: (e) => {
        sync?.apply(e);
        if (e.kind !== 'demote') {
          // A promotion, or a new answer of a hot key (the refresh starts a new life).
          if (prefetchOn && sync?.isHot(e.answer.key)) prefetcher?.track(e.answer.key, e.answer.originNs, e.answer.expiresNs);
        } else {
          prefetcher?.untrack(e.key);
        }
      },
      clock: fastMonotonicNs,
    });
    const main = new EngineHost({
      engine: cfg.mainEngine,
      onUpstreamHealth: (down) => upstreamLog.update(MAIN_ENGINE, down),
      upstreams: cfg.upstreams,
      asks,
      cache,
      fetches,
      onCandidate: (slot, seq) => promo.candidate(slot, seq),
      inflight: { shared: inflight, engineId: MAIN_ENGINE },
      onUpkeep: () => {
        const now = performance.now();
        if (now - lastDecay >= ASK_DECAY_MS) {
          lastDecay = now;
          asks.decay();
        }
        if (udp && tcp) publishListeners(main, udp, tcp);
        promo.tick(); // refreshes and evictions of hot entries by any thread, expired hot entries
        if (pendingLimits !== undefined && cache.setLimits(pendingLimits.entries, pendingLimits.bytes)) pendingLimits = undefined;
        if (prefetcher) {
          const p = prefetcher.counters;
          main.advance('prefetchIssued', p.issued);
          main.advance('prefetchRefreshed', p.refreshed);
          main.advance('prefetchFailed', p.failed);
          main.advance('prefetchCold', p.cold);
          main.advance('prefetchMissed', p.missed);
        }
        if (!sync || now - lastKernelHits < KERNEL_HITS_MS) return;
        lastKernelHits = now;
        for (const k of sync.collectKernelHits()) promo.noteKernelHits(k.key, k.hits);
      },
      upkeep: { busyMs: 1000, idleMs: KERNEL_HITS_MS },
    });
    undo.push(() => main.close());
    await probeUpstreams(main.forwarder, cfg.upstreamList);

    // One live owner per interface: a second instance is refused before it touches anything.
    const claim = await claimInterface(cfg.iface, cfg.force);
    undo.push(() => claim.release());

    fp = FastPath.open({ ports: [cfg.port], udpSize: cfg.udpSize, hotEntries: cfg.hotSize, rrlBuckets: cfg.edge.rrlBuckets });
    const program = fp;
    undo.push(() => program.close());
    sync = new HotSync(fp);
    const hot = sync;
    prefetcher = new Prefetcher({
      clock: fastMonotonicNs,
      hits: (key) => {
        const slot = program.slotOf(key);
        return slot === undefined ? undefined : Number(program.hits(slot));
      },
      // Through the main engine's forwarder (its upstreams, budget, 0x20, cookies and
      // scrubbing), into the one cache; the policy then rewrites the hot map at once.
      refresh: async (key) => {
        const q = questionOfKey(key);
        const since = cache.flushGeneration();
        const msg = await main.forwarder.resolve(q);
        return promo.acceptRefresh(msg, fastMonotonicNs(), q.dnssecOk, q.checkingDisabled, since);
      },
    });
    const prefetch = prefetcher;
    const prefetchTimer = setInterval(() => prefetch.poll(), PREFETCH_POLL_MS);
    prefetchTimer.unref();
    undo.push(() => clearInterval(prefetchTimer));
    const d = fp.describe();
    const setup = edgeSetup(cfg.edge, cfg.udpSize, { fd: d.rrlMapFd, buckets: d.rrlBuckets, seed: d.rrlSeed });
    fp.setAccessList(accessListOf(setup));
    fp.setRateLimit(cfg.edge.rrl);

    // The kernel listeners answer through the main engine behind the edge policy, waking
    // its upkeep from its idle pace as a worker's XskServer does, so their counters are
    // never 5 s late.
    const engineHandler: FrameHandler = {
      handle: (buf, off, len, out, outOff, tcp, maxLen, nowNs, client) => {
        main.wake();
        return main.engine.handle(buf, off, len, out, outOff, tcp, maxLen, nowNs, client);
      },
    };
    let mainPolicy = buildPolicy(setup);
    const mainHandler = new EdgeGuard(engineHandler, mainPolicy, main.stats);
    udp = new UdpListener(mainHandler);
    const u = udp;
    undo.push(() => u.close());
    // The access list is asked at accept too: a denied source's connection holds no slot.
    // A refusal wakes the upkeep as a query does, so its count is published as soon.
    const admit = (c: Addr): boolean => {
      if (mainHandler.admits(c)) return true;
      main.wake();
      return false;
    };
    const { socketDrops } = loadAddon();
    tcp = new TcpListener(tcpHandlerOf(mainHandler), { ...cfg.tcp, admit, socketDrops });
    const t = tcp;
    undo.push(() => t.close());

    // The served addresses: the program answers for them only, and the kernel listeners
    // bind them only. Followed as the interface's addresses change (unless --listen).
    const bindServed = async (s: Served): Promise<void> => {
      await u.bind(cfg.port, s.text).catch((e: unknown) => {
        throw bindError(e, cfg.port, 'UDP', s.text);
      });
      await t.listen({ port: cfg.port, host: s.text }).catch((e: unknown) => {
        throw bindError(e, cfg.port, 'TCP', s.text);
      });
    };
    let started = false;
    const served = new ServedAddresses(cfg.iface, cfg.edge.listen, async (all, added, removed) => {
      program.setLocalAddresses(all.map((s) => s.addr));
      for (const s of removed) {
        await u.unbind(s.text);
        await t.unlisten(s.text);
      }
      for (const s of added) {
        try {
          await bindServed(s);
        } catch (e) {
          const cause = (e as { cause?: { code?: string } }).cause;
          if (!cfg.edge.listen && cause?.code === 'EADDRNOTAVAIL') {
            // An interface address still in duplicate address detection (IPv6 right
            // after the link came up) cannot be bound yet: try again at the next poll.
            await u.unbind(s.text);
            await t.unlisten(s.text);
            served.retry(s);
          } else if (!started) {
            throw e;
          } else {
            log('error', 'address', `cannot serve new address ${s.text}: ${(e as Error).message}`);
          }
        }
      }
      if (started && (added.length > 0 || removed.length > 0)) {
        log('info', 'address', `now serving ${all.map((s) => s.text).join(', ') || 'no address'} on ${cfg.iface}`);
      }
    });
    await served.start();
    started = true;
    undo.push(() => served.stop());
    if (served.list.length === 0) {
      throw new HeimdallError('E_NO_ADDRESS', `interface '${cfg.iface}' has no IP address to serve; add one, or name the addresses with --listen`);
    }

    const r = fp.attach(cfg.iface, cfg.mode, cfg.force, cfg.xdpAttach);
    undo.push(() => {
      program.detach();
    });
    fp.setAnswers(cfg.xdpAnswers);
    if (r.replaced) announce('attach', `replaced XDP program '${r.replaced.name}' (id ${r.replaced.id}) on ${cfg.iface}`);

    if (cfg.afXdp) {
      pool = new WorkerPool({
        iface: cfg.iface,
        queues: cfg.queues,
        xsksMapFd: fp.describe().xsksMapFd,
        edge: setup,
        upstreams: cfg.upstreams,
        asks: asks.buffer,
        inflight: inflight.buffer,
        cache: cache.layout,
        fetches: fetches.buffer,
        engine: cfg.workerEngine,
        onCandidate: (slot, seq) => promo.candidate(slot, seq),
        onUpstreamHealth: (id, down) => upstreamLog.update(id, down),
        onWorkerGone: (id, threadId) => {
          upstreamLog.update(id, []);
          // Shards the dead worker held locked are emptied and unlocked (it may have died
          // halfway through a write); the rest of the cache is untouched.
          const reset = cache.recover(threadId);
          // Fetches it owned end as 'ownerDied': their waiters ask on their own.
          fetches.reclaim(threadId);
          if (reset > 0) log('warn', 'worker', `emptied ${reset} cache shard(s) the worker for engine ${id} held when it died`);
          const block = pool?.stats()[id - 1];
          if (block) releaseUpstreams(block.upstreams); // its replacement binds them again
          inflight.forget(id); // what the dead worker held upstream is free again
        },
        onRestart: (queue, why) => log('warn', 'worker', `worker for queue ${queue} replaced (${why})`),
      });
      const workers = pool;
      undo.push(() => workers.stop());
      await pool.start();
    }
    main.start();
    upstreamLog.start();

    const workers = pool;
    const reg = buildRegistry({
      xdp: () => program.stats(),
      stats: () => [main.stats, ...(workers?.stats() ?? [])],
      hotEntries: () => hot.size,
      hot: () => ({ ...hot.counters, declined: promo.policy.declined }),
      workerRestarts: () => workers?.restarts ?? 0,
    });
    if (cfg.metricsListen) {
      const listen = cfg.metricsListen;
      const server: http.Server = await serveMetrics(reg, listen).catch((e: unknown) => {
        throw bindError(e, listen.port, 'metrics');
      });
      undo.push(() => new Promise<void>((res) => server.close(() => res())));
    }
    statsImpl = async () => ({
      metrics: parseExposition(await reg.metrics()),
      hotCapacity: cfg.hotSize,
      workers: { configured: cfg.afXdp ? cfg.queues : 0, live: workers?.live ?? 0 },
      uptimeS: Math.round((performance.now() - startedAt) / 1000),
    });
    /** Every engine's answer to req: the main thread's and each worker's that answered. */
    const askEngines = async (req: EngineRequest): Promise<{ all: unknown[]; engines: { asked: number; answered: number } }> => {
      const mine = engineControl(main, MAIN_ENGINE, req, fastMonotonicNs());
      const theirs = workers ? await workers.control(req) : [];
      const all = [mine, ...theirs.filter((v) => v !== undefined && !(v as { error?: string }).error)];
      return { all, engines: { asked: 1 + theirs.length, answered: all.length } };
    };
    /** The cache is one: the main thread's view answers for every engine. */
    const oneCache = { asked: 1, answered: 1 };
    controlImpl = async (req) => {
      switch (req.op) {
        case 'lookup': {
          const entries = engineControl(main, MAIN_ENGINE, req, fastMonotonicNs()) as CachedEntryInfo[];
          const keys = new Set([...entries.map((e) => e.key), ...keysOf(req.name, req.qtype)]);
          const hotKeys = [...keys].filter((k) => hot.isHot(Buffer.from(k, 'hex')));
          return { entries, hot: hotKeys.map((k) => describeKey(k)), engines: oneCache };
        }
        case 'flush': {
          // Out of the cache and out of the XDP map at once; the policy sees the removal
          // at its next look at the slot. One scan of the cache: the keys it removed, with
          // the name's usual keys (a hot entry whose cache entry is already gone is still
          // dropped from the XDP map). An entry found in a shard that stayed busy is left
          // everywhere, cache and map alike, and reported: the operator runs it again.
          const { removed, kept } = engineControl(main, MAIN_ENGINE, req, fastMonotonicNs()) as FlushResult;
          const stay = new Set(kept);
          const keys = [...new Set([...removed, ...keysOf(req.name, req.qtype)])].filter((k) => !stay.has(k));
          const wasHot = keys.filter((k) => hot.isHot(Buffer.from(k, 'hex')));
          for (const k of keys) hot.drop(Buffer.from(k, 'hex'));
          promo.tick();
          return { removed: removed.length, kept: kept.length, hotRemoved: wasHot.length, engines: oneCache };
        }
        case 'flushAll': {
          // The XDP map is emptied whatever happens; a shard a worker held past the wait
          // keeps its entries, and the answer says how many shards: the operator runs it again.
          const hotBefore = hot.size;
          const { removed, busy } = engineControl(main, MAIN_ENGINE, req, fastMonotonicNs()) as { removed: number; busy: number };
          hot.dropAll();
          promo.tick();
          return { removed, busyShards: busy, hotRemoved: hotBefore, engines: oneCache };
        }
        case 'upstreams': {
          // Each engine publishes its figures first; they are then read as /metrics reads them.
          const { engines } = await askEngines(req);
          return { upstreams: upstreamLines(readUpstreams([main.stats, ...(workers?.stats() ?? [])].map((b) => b.upstreams))), engines };
        }
      }
    };
    undo.push(() => {
      controlImpl = undefined;
      statsImpl = undefined;
    });

    const mode = `${r.mode} XDP${cfg.xdpAnswers ? '' : ', answers off'}`;
    const paths = cfg.afXdp ? `${cfg.queues} AF_XDP worker(s)` : 'kernel sockets only';
    const rrl = cfg.edge.rrl.rate > 0 ? `rate limit ${cfg.edge.rrl.rate}/s` : 'no rate limit';
    const how = r.dispatcher ? `libxdp dispatcher, position ${r.dispatcher.position} of ${r.dispatcher.count}` : `direct attach${r.directReason ? `: ${r.directReason}` : ''}`;
    const cpus = cfg.cpus ? `, threads on CPUs ${formatCpuList(cfg.cpus)}` : '';
    summary = `${served.list.map((s) => s.text).join(', ')} on ${cfg.iface} port ${cfg.port} (${mode}, ${paths}${cpus}, ${rrl}, ${how}) via ${cfg.upstreamList}`;
    applyChange = async (next, diff) => {
      // What can fail comes first, before anything changes: a refused reload leaves every
      // running setting as it was (the service then still reports the old config).
      if (diff.live.includes('upstreams')) await probeNewUpstreams(next);
      // Pinned first (pinService puts every thread back if it cannot pin them all), and put
      // back if a later step refuses the reload.
      const repin = diff.live.includes('cpus');
      if (repin) pinService(next.cpus, loadAddon());
      try {
        return await applyRest(next, diff);
      } catch (e) {
        if (repin) pinService(running.cpus, loadAddon());
        throw e;
      }
    };
    const applyRest = async (next: HeimdallConfig, diff: ConfigDiff): Promise<ReloadResult['workers']> => {
      const nextSetup: EdgeSetup = { ...setup, allow: next.edge.allow.map((c) => c.text), deny: next.edge.deny.map((c) => c.text), exempt: next.edge.rrlExempt.map((c) => c.text), rrl: { ...next.edge.rrl } };
      const nextAcl = accessListOf(nextSetup);
      // The XDP maps first (in place: setAccessList adds before it removes, and checks the
      // size before it writes), then each thread's guard; a query sees either the old
      // policy or the new, never neither.
      program.setAccessList(nextAcl);
      // The cache's settings live in its shared header: every thread sees them at once.
      cache.setTtlPolicy({ ...next.cacheTtl });
      cache.setServeStale(next.serveStale);
      if (diff.live.includes('cache-size') || diff.live.includes('cache-bytes')) {
        // Within the memory allocated at start: lower bounds evict down to them now, and
        // may be raised again up to the start's; beyond that needs a restart.
        try {
          const all = cache.setLimits(next.cacheSize, next.cacheBytes);
          pendingLimits = all ? undefined : { entries: next.cacheSize, bytes: next.cacheBytes };
        } catch {
          for (const k of ['cache-size', 'cache-bytes']) {
            const i = diff.live.indexOf(k);
            if (i >= 0) diff.live.splice(i, 1), diff.restart.push(k);
          }
          const order = Object.keys(RELOAD_KEYS);
          diff.restart.sort((a, b) => order.indexOf(a) - order.indexOf(b));
        }
      }
      program.setRateLimit(next.edge.rrl);
      program.setAnswers(next.xdpAnswers);
      prefetchOn = next.prefetch;
      if (!prefetchOn) prefetch.clear();
      mainPolicy = updatePolicy(mainPolicy, nextSetup);
      mainHandler.setPolicy(mainPolicy);
      const threshold = promotionThreshold(next);
      main.setPromoteAfter(threshold);
      promo.setThreshold(threshold);
      main.setUpstreams(next.upstreams);
      return pool ? pool.reload({ edge: nextSetup, upstreams: next.upstreams, promoteAfter: threshold }) : { confirmed: 0, live: 0 };
    };
    undo.push(() => {
      applyChange = undefined;
    });

    const crash = (): void => pool?.crashAll();
    // SIGUSR2 crashes the workers on purpose; the supervisor replaces them. It exists to
    // prove (and let an operator check) that recovery loses nothing.
    process.on('SIGUSR2', crash);
    undo.push(() => {
      process.off('SIGUSR2', crash);
    });
  }

  async function reload(next: HeimdallConfig): Promise<ReloadResult> {
    // One reload at a time: a second waits for the first.
    const run = reloading.then(async (): Promise<ReloadResult> => {
      if (!applyChange) throw new HeimdallError('E_NOT_RUNNING', 'the service is not running');
      const diff = diffConfig(running, next);
      const workers = diff.live.length > 0 ? await applyChange(next, diff) : { confirmed: 0, live: 0 };
      running = applyLive(running, next, diff);
      return { diff, workers };
    });
    reloading = run.catch(() => undefined);
    return run;
  }

  return {
    start,
    stop,
    reload,
    control: (req) => {
      if (!controlImpl) throw new HeimdallError('E_NOT_RUNNING', 'the service is not running');
      return controlImpl(req);
    },
    stats: () => {
      if (!statsImpl) throw new HeimdallError('E_NOT_RUNNING', 'the service is not running');
      return statsImpl();
    },
    get config() {
      return running;
    },
    get summary() {
      return summary;
    },
  };
}

/** The kernel listeners' own counts, into the main host's block. */
function publishListeners(main: EngineHost, udp: UdpListener, tcp: TcpListener): void {
  main.advance('udpReceived', udp.received);
  main.advance('udpSent', udp.sent);
  main.advance('udpErrors', udp.errors);
  main.advance('udpOversize', udp.oversize);
  main.advance('udpKernelDropped', udp.kernelDrops());
  const t = tcp.stats();
  main.stats.set('tcpOpen', t.connections);
  main.advance('tcpAccepted', t.accepted);
  main.advance('tcpListenDropped', tcp.kernelDrops());
  main.advance('tcpRejected', t.rejected);
  main.advance('tcpDenied', t.denied);
  main.advance('tcpIdleClosed', t.idleClosed);
  main.advance('tcpRejectedClient', t.rejectedClient);
  main.advance('tcpEvicted', t.evicted);
  main.advance('tcpMessageTimeouts', t.messageTimeouts);
  main.advance('tcpWriteTimeouts', t.writeTimeouts);
  main.advance('tcpCloseTimeouts', t.closeTimeouts);
  main.stats.set('tcpPressure', t.pressure);
  main.stats.set('tcpClients', t.clients);
  main.advance('tcpSocketErrors', t.socketErrors);
  main.advance('tcpResponses', t.responses);
  main.advance('tcpDropped', t.dropped);
  main.advance('tcpBadFrames', t.badFrames);
  main.advance('tcpOversize', t.oversize);
  main.advance('tcpHandlerErrors', t.handlerErrors);
}

/** The cache keys of a name and type, with and without DO and CD (for the hot map). */
function keysOf(name: string, qtype: number | undefined): string[] {
  if (qtype === undefined) return [];
  const n = name.endsWith('.') ? name : `${name}.`;
  return [0, 1, 2, 3].map((f) => Buffer.from(makeKey(n, qtype, 1, (f & 1) !== 0, (f & 2) !== 0)).toString('hex'));
}

function describeKey(hex: string): { type: string; dnssecOk: boolean; checkingDisabled: boolean } {
  const k = Buffer.from(hex, 'hex');
  const f = k[k.length - 1]!;
  return { type: qtypeText((k[k.length - 5]! << 8) | k[k.length - 4]!), dnssecOk: (f & KEY_DO) !== 0, checkingDisabled: (f & KEY_CD) !== 0 };
}

/** The Prometheus text /metrics serves into metric{labels} -> value (the same figures, the same names). */
export function parseExposition(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const v = Number(line.slice(sp + 1));
    if (sp > 0 && !Number.isNaN(v)) out[line.slice(0, sp)] = v;
  }
  return out;
}
