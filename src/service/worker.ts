/**
 * An AF_XDP worker thread: one per rx queue. It runs an EngineHost (forwarder, engine,
 * upkeep, counters) behind an XskServer on its queue's socket, reports promotions to the
 * main thread, and takes the XDP hit feed and the stop request from it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EngineHost } from '../engine/host.js';
import { StatsBlock } from '../engine/stats.js';
import { AskCounter } from '../hot/asks.js';
import { SharedInflight } from '../upstream/budget.js';
import { EdgeGuard } from '../edge/guard.js';
import { buildPolicy } from '../edge/policy.js';
import { XskServer } from '../io/xsk-server.js';
import { XskSocket } from '../io/xsk.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);

/**
 * Frames: a full fill ring and a full TX ring (2048 + 2048). A miss gives its frame back
 * while the upstream answers (src/io/xsk-server.ts), so the frames needed do not grow
 * with the queries in flight. Batches of 256 descriptors per native call and per
 * wake-up: at 64 the per-batch work (epoll wait, the callback into JS, four ring calls,
 * a sendto) was a visible share of the cost.
 */
const SOCKET = { frameSize: 2048, ringSize: 2048, frameCount: 4096, batchSize: 256 } as const;

let server: XskServer | undefined;
const host = new EngineHost({
  engine: init.engine,
  upstreams: init.upstreams,
  asks: new AskCounter(init.asks),
  stats: new StatsBlock(init.stats),
  inflight: { shared: new SharedInflight({ buffer: init.inflight }), engineId: init.id },
  onPromotion: (e) => (e.kind === 'promote' ? post({ type: 'promote', answer: e.answer }) : post({ type: 'demote', key: e.key, reason: e.reason })),
  onUpkeep: () => server?.upkeep(),
  busy: () => (server?.pending ?? 0) > 0,
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
  if (m.type === 'kernelHits') {
    for (const k of m.items) host.engine.policy?.noteKernelHits(k.key, k.hits);
  } else if (m.type === 'stop') {
    void stop();
  }
});

host.start();
try {
  const sock = await XskSocket.openWhenFree({ ifname: init.iface, queueId: init.queue, xsksMapFd: init.xsksMapFd, ...SOCKET });
  const guarded = new EdgeGuard(host.engine, buildPolicy(init.edge), host.stats);
  server = new XskServer(sock, guarded, host.stats, { onActivity: () => host.wake() });
  server.start((e) => post({ type: 'fatal', message: e.message }));
  post({ type: 'ready', mode: sock.mode });
} catch (e) {
  post({ type: 'fatal', message: `queue ${init.queue}: ${(e as Error).message}` });
  await host.close();
  port.close();
}
