/**
 * The running service behind `heimdall-xdp attach`: loads and attaches the XDP program,
 * starts the AF_XDP workers (one per rx queue), the kernel UDP and TCP listeners, the
 * hot-map upkeep and the metrics endpoint; on SIGINT or SIGTERM it stops them all and
 * detaches, leaving the interface as it was.
 */
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import type http from 'node:http';
import { FastPath, type AttachMode } from '../xdp/fastpath.js';
import { HotSync } from '../hot/hot-sync.js';
import { DnsEngine, type EngineCounters, LATENCY_BUCKETS } from '../engine/engine.js';
import { UdpListener } from '../io/udp.js';
import { TcpListener } from '../io/tcp.js';
import { Forwarder } from '../upstream/forwarder.js';
import { parseUpstreams } from '../upstream/upstream.js';
import { buildRegistry, serveMetrics } from './metrics.js';
import { WorkerPool } from './pool.js';
import { isNativeError } from '../errors.js';
import { AskCounter } from '../hot/asks.js';
import { Upkeep } from '../engine/upkeep.js';
import { loadAddon } from '../native/addon.js';

export interface AttachOptions {
  iface: string;
  upstream: string;
  port: number;
  mode: AttachMode;
  queues: number;
  cacheSize: number;
  hotSize: number;
  promoteAfter: number;
  udpSize: number;
  xdpAnswers: boolean;
  afXdp: boolean;
  serveStale: boolean;
  metricsListen?: string;
  force: boolean;
}

/** The main engine's upkeep: once a second while it serves queries, else every KERNEL_HITS_MS. */
const UPKEEP_MS = 1000;
/** Ask counts halve every minute: a name must keep being asked to stay promotable. */
const ASK_DECAY_MS = 60_000;
/**
 * Hits the XDP program served are handed to the engines every 5 s. They only feed heat
 * (60-second half-life) and SLRU recency, which 5 s of merging does not change, and each
 * hand-over wakes every worker (src/engine/upkeep.ts: why wake-ups are counted).
 */
const KERNEL_HITS_MS = 5000;
const MAIN_ENGINE = 0;

function portError(e: unknown, port: number, what: string): Error {
  const code = (e as { code?: string }).code;
  if (code === 'EADDRINUSE') return new Error(`${what} port ${port} is in use by another process (see 'ss -lunpt sport = :${port}'); stop it or choose --port`);
  if (code === 'EACCES') return new Error(`cannot bind ${what} port ${port}: permission denied (run as root)`);
  return e instanceof Error ? e : new Error(String(e));
}

/** Checks that at least one upstream answers before anything is attached. */
async function probeUpstreams(fwd: Forwarder, list: string): Promise<void> {
  try {
    // Any validated answer proves reachability, REFUSED included.
    await fwd.resolve({ name: new Uint8Array([0]), qtype: 2, qclass: 1, dnssecOk: false });
  } catch {
    throw new Error(`no upstream answers (${list}): check --upstream and that this host can reach it`);
  }
}

export async function runAttach(o: AttachOptions): Promise<void> {
  loadAddon().xdpStatus(o.iface); // a missing interface is reported before anything starts
  // V8's memory reducer shrinks the heap once a burst of work is over, with a series of
  // incremental collections spread over the following seconds. For a server whose
  // caches are bounded it buys nothing, and those collections were most of the CPU an
  // idle heimdall-xdp used, on cores it shares with the softirq work of the XDP path
  // (and, in the lab, with the clients): they showed in the p99 of XDP answers. The heap
  // still shrinks on the next allocation-driven collection. Set before the workers start.
  setFlagsFromString('--no-memory-reducer');
  const upstreams = parseUpstreams(o.upstream);
  const forwarder = new Forwarder({ upstreams, udpSize: o.udpSize });
  const cleanups: (() => Promise<void> | void)[] = [async () => forwarder.close()];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* keep tearing down */
      }
    }
    cleanups.length = 0;
  };

  try {
    await probeUpstreams(forwarder, o.upstream);

    const fp = FastPath.open({ ports: [o.port], udpSize: o.udpSize, hotEntries: o.hotSize });
    cleanups.push(() => fp.close());
    const sync = new HotSync(fp);

    // Workers and the main engine share the hot map: each may promote its share. With
    // AF_XDP the main engine sees only the kernel path (TCP, fragments, dead queues), so
    // it gets a tenth and the workers split the rest.
    const mainShare = o.afXdp ? Math.max(1, Math.floor(o.hotSize / 10)) : o.hotSize;
    const share = o.afXdp ? Math.max(1, Math.floor((o.hotSize - mainShare) / o.queues)) : mainShare;
    const asks = new AskCounter();
    const engine = new DnsEngine({
      asks,
      resolver: forwarder,
      cacheSize: o.cacheSize,
      hotCapacity: mainShare,
      promoteAfter: o.promoteAfter,
      udpSize: o.udpSize,
      serveStale: o.serveStale,
      onPromotion: (e) => sync.apply(MAIN_ENGINE, e),
    });

    const udp = new UdpListener(engine);
    await udp.listen({ port: o.port }).catch((e) => {
      throw portError(e, o.port, 'UDP');
    });
    cleanups.push(() => udp.close());
    const tcp = new TcpListener(async (q) => {
      const out = new Uint8Array(65535);
      const n = await engine.handle(q, 0, q.length, out, 0, true);
      return n > 0 ? out.subarray(0, n) : null;
    });
    await tcp.listen({ port: o.port }).catch((e: unknown) => {
      throw portError(e, o.port, 'TCP');
    });
    cleanups.push(() => tcp.close());

    const r = fp.attach(o.iface, o.mode, o.force);
    cleanups.push(() => {
      fp.detach();
    });
    fp.setAnswers(o.xdpAnswers);
    if (r.replaced) console.log(`replaced XDP program '${r.replaced.name}' (id ${r.replaced.id}) on ${o.iface}`);

    let pool: WorkerPool | undefined;
    if (o.afXdp) {
      pool = new WorkerPool({
        iface: o.iface,
        queues: o.queues,
        xsksMapFd: fp.describe().xsksMapFd,
        upstreams,
        asks: asks.buffer,
        engine: { cacheSize: o.cacheSize, hotCapacity: share, promoteAfter: o.promoteAfter, udpSize: o.udpSize, serveStale: o.serveStale },
        onPromotion: (id, e) => sync.apply(id, e),
        onWorkerGone: (id) => sync.forgetEngine(id),
        onRestart: (queue, why) => console.error(`heimdall-xdp: worker for queue ${queue} replaced (${why})`),
      });
      cleanups.push(() => pool!.stop());
      await pool.start();
    }

    let lastQueries = 0;
    let lastDecay = performance.now();
    let lastKernelHits = lastDecay;
    const upkeep = new Upkeep(
      () => {
        engine.tick();
        const now = performance.now();
        if (now - lastDecay >= ASK_DECAY_MS) {
          lastDecay = now;
          asks.decay();
        }
        if (now - lastKernelHits < KERNEL_HITS_MS) return;
        lastKernelHits = now;
        const forWorkers = new Map<number, { key: Uint8Array; hits: number }[]>();
        for (const k of sync.collectKernelHits()) {
          for (const id of k.engines) {
            if (id === MAIN_ENGINE) engine.policy?.noteKernelHits(k.key, k.hits);
            else {
              let list = forWorkers.get(id);
              if (!list) forWorkers.set(id, (list = []));
              list.push({ key: k.key, hits: k.hits });
            }
          }
        }
        for (const [id, items] of forWorkers) pool?.noteKernelHits(id, items);
      },
      () => {
        const q = engine.counters.queries;
        const active = q !== lastQueries;
        lastQueries = q;
        return active;
      },
      { busyMs: UPKEEP_MS, idleMs: KERNEL_HITS_MS },
    );
    upkeep.start();
    cleanups.push(() => upkeep.stop());

    if (o.metricsListen) {
      const reg = buildRegistry({
        xdp: () => fp.stats(),
        engines: (): EngineCounters[] => [engine.counters, ...(pool?.counters() ?? [])],
        rcodes: () => {
          const out = Array.from(engine.rcodes);
          for (const w of pool?.rcodes() ?? []) w.forEach((v, i) => (out[i] = (out[i] ?? 0) + v));
          return out;
        },
        cacheEntries: () => engine.cache.size + (pool?.cacheEntries() ?? 0),
        hotEntries: () => sync.size,
        hot: () => sync.counters,
        upstream: () => {
          const s = forwarder.stats();
          const latency = { buckets: LATENCY_BUCKETS, counts: [...engine.latency.counts], sum: engine.latency.sum, count: engine.latency.count };
          for (const l of pool?.latencies() ?? []) {
            l.counts.forEach((c, i) => (latency.counts[i]! += c));
            latency.sum += l.sum;
            latency.count += l.count;
          }
          const failures = engine.counters.servfail + engine.counters.staleServed + (pool?.counters() ?? []).reduce((a, c) => a + c.servfail + c.staleServed, 0);
          return { failures, timeouts: s.timeouts, latency };
        },
        framesInUse: () => pool?.framesInUse() ?? 0,
        workerRestarts: () => pool?.restarts ?? 0,
      });
      const server: http.Server = await serveMetrics(reg, o.metricsListen).catch((e: unknown) => {
        throw portError(e, Number(o.metricsListen!.split(':').pop()), 'metrics');
      });
      cleanups.push(() => new Promise<void>((res) => server.close(() => res())));
    }

    const mode = `${r.mode} XDP${o.xdpAnswers ? '' : ', answers off'}`;
    const paths = o.afXdp ? `${o.queues} AF_XDP worker(s)` : 'kernel sockets only';
    console.log(`heimdall-xdp serving ${o.iface} port ${o.port} (${mode}, ${paths}) via ${o.upstream}; SIGINT or SIGTERM detaches`);

    // SIGUSR2 crashes the workers on purpose; the supervisor replaces them. It exists
    // to prove (and let an operator check) that recovery loses nothing.
    const onUsr2 = () => pool?.crashAll();
    process.on('SIGUSR2', onUsr2);
    cleanups.push(() => {
      process.off('SIGUSR2', onUsr2);
    });

    await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
    await cleanup();
    console.log(`detached from ${o.iface}`);
  } catch (e) {
    await cleanup();
    if (isNativeError(e) && e.code === 'EPERM') throw new Error('loading XDP was refused: run as root (CAP_BPF, CAP_NET_ADMIN)');
    throw e;
  }
}
