/**
 * An AF_XDP worker thread: one per rx queue. It runs an EngineHost (forwarder, engine,
 * upkeep, counters) behind an XskServer on its queue's socket, over its view of the one
 * shared cache; it reports promotion candidates to the main thread and takes reloads,
 * control requests and the stop request from it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EngineHost } from '../engine/host.js';
import { StatsBlock } from '../engine/stats.js';
import { FetchTable } from '../upstream/fetch-table.js';
import { SharedCache } from '../engine/shared-cache.js';
import { AskCounter } from '../hot/asks.js';
import { SharedInflight } from '../upstream/budget.js';
import { EdgeGuard } from '../edge/guard.js';
import { buildPolicy, updatePolicy } from '../edge/policy.js';
import type { EdgePolicy } from '../edge/guard.js';
import { XskServer } from '../io/xsk-server.js';
import { XskSocket } from '../io/xsk.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { engineControl } from './cache-control.js';
import { fastMonotonicNs } from '../engine/clock.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);

/**
 * Promotion candidates go to the main thread once per batch of queries, not one message
 * each: a message costs a structured copy here and a wake-up of the main thread, and a
 * burst of names reaching the threshold together (a Zipf mix's second and third pass)
 * made postMessage ~4% of a worker's time and woke the main thread for every name
 * (docs/BENCHMARKS.md, "Tails: what lines up"). The flush is a microtask, so it runs when the batch's
 * synchronous work (or the answer's promise callbacks) is done.
 */
let candidates: number[] = [];
function flushCandidates(): void {
  const pairs = candidates;
  candidates = [];
  post({ type: 'candidates', pairs });
}
function candidate(slot: number, seq: number): void {
  if (candidates.length === 0) queueMicrotask(flushCandidates);
  candidates.push(slot, seq);
}

/**
 * Frames: a full fill ring and a full TX ring (2048 + 2048). A miss gives its frame back
 * while the upstream answers (src/io/xsk-server.ts), so the frames needed do not grow
 * with the queries in flight. Batches of 256 descriptors per native call and per
 * wake-up: at 64 the per-batch work (epoll wait, the callback into JS, four ring calls,
 * a sendto) was a visible share of the cost.
 */
const SOCKET = { frameSize: 2048, ringSize: 2048, frameCount: 4096, batchSize: 256 } as const;

let server: XskServer | undefined;
let guarded: EdgeGuard | undefined;
let policy: EdgePolicy | undefined;
/** The edge setup now: init's, or a reload's that came before the socket was ready. */
let edge = init.edge;
const host = new EngineHost({
  engine: init.engine,
  upstreams: init.upstreams,
  asks: new AskCounter(init.asks),
  stats: new StatsBlock(init.stats),
  cache: SharedCache.attach(init.cache),
  fetches: new FetchTable({ buffer: init.fetches }),
  ownsCache: false, // the main thread sweeps it and publishes its gauges
  onCandidate: candidate,
  inflight: { shared: new SharedInflight({ buffer: init.inflight }), engineId: init.id },
  onUpkeep: () => server?.upkeep(),
  busy: () => (server?.pending ?? 0) > 0,
  onUpstreamHealth: (down) => post({ type: 'health', down }),
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server?.stop();
  await host.close();
  post({ type: 'stopped' });
  port.close();
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'reload') {
    // The settings apply to the next query; those in flight finish under the old ones.
    edge = m.change.edge;
    if (policy && guarded) {
      policy = updatePolicy(policy, m.change.edge);
      guarded.setPolicy(policy);
    }
    host.setPromoteAfter(m.change.promoteAfter);
    host.setUpstreams(m.change.upstreams);
    post({ type: 'reloaded', seq: m.seq });
  } else if (m.type === 'control') {
    let value: unknown;
    try {
      value = engineControl(host, init.id, m.req, fastMonotonicNs());
    } catch (e) {
      value = { error: (e as Error).message };
    }
    post({ type: 'controlReply', seq: m.seq, value });
  } else if (m.type === 'stop') {
    void stop();
  }
});

host.start();
try {
  const sock = await XskSocket.openWhenFree({ ifname: init.iface, queueId: init.queue, xsksMapFd: init.xsksMapFd, ...SOCKET });
  policy = buildPolicy(edge);
  guarded = new EdgeGuard(host.engine, policy, host.stats);
  server = new XskServer(sock, guarded, host.stats, { onActivity: () => host.wake() });
  server.start((e) => post({ type: 'fatal', message: e.message }));
  post({ type: 'ready', mode: sock.mode });
} catch (e) {
  post({ type: 'fatal', message: `queue ${init.queue}: ${(e as Error).message}` });
  await host.close();
  port.close();
}
