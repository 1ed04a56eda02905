/**
 * An AF_XDP worker: one thread per rx queue. It drains its socket in batches, answers
 * cache hits by writing the reply into the same UMEM frame and putting it on the TX
 * ring, sends misses upstream and replies when the answer comes back, answers malformed
 * queries FORMERR or drops them, and reports promotions to the main thread. Every frame
 * it receives is sent or released on every path.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { XskSocket } from '../io/xsk.js';
import { DnsEngine } from '../engine/engine.js';
import { AskCounter } from '../hot/asks.js';
import { Forwarder } from '../upstream/forwarder.js';
import { FrameInfo, parseFrame, finishReply } from '../io/frame.js';
import { fastMonotonicNs } from '../engine/clock.js';
import { Upkeep } from '../engine/upkeep.js';
import { COUNTER_SLOTS, ENGINE_COUNTER_NAMES, Slot, type FromWorker, type ToWorker, type WorkerInit } from './protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);
const shared = new Float64Array(init.counters, 0, COUNTER_SLOTS);

const forwarder = new Forwarder({ upstreams: init.upstreams, udpSize: init.engine.udpSize });
const engine = new DnsEngine({
  resolver: forwarder,
  cacheSize: init.engine.cacheSize,
  hotCapacity: init.engine.hotCapacity,
  promoteAfter: init.engine.promoteAfter,
  udpSize: init.engine.udpSize,
  serveStale: init.engine.serveStale,
  asks: new AskCounter(init.asks),
  onPromotion: (e) => (e.kind === 'promote' ? post({ type: 'promote', answer: e.answer }) : post({ type: 'demote', key: e.key, reason: e.reason })),
});

/** Descriptors taken from the RX ring per wake-up (and per native ring call). */
const BATCH = 256;

let sock: XskSocket;
let badFrames = 0;
let txFull = 0;
let pending = 0;
let stopping = false;
const info = new FrameInfo();

/** Puts a finished reply on the TX ring, or frees the frame when there is nothing to send. */
function complete(addr: number, fi: FrameInfo, dnsLen: number): void {
  if (sock.closed) return;
  if (dnsLen <= 0) {
    sock.release(addr);
    return;
  }
  const len = finishReply(sock.umem, addr, fi, dnsLen);
  if (!sock.send(addr, len)) {
    txFull++;
    sock.release(addr);
  }
}

function drain(): void {
  upkeep.wake();
  sock.reclaim();
  const n = sock.receive();
  const now = fastMonotonicNs(); // once per batch: the engine's per-query clock read showed in profiles
  const umem = sock.umem;
  const d = sock.rxDescs;
  const frameSize = sock.frameSize;
  for (let i = 0; i < n; i++) {
    const addr = d[2 * i]!;
    const len = d[2 * i + 1]!;
    if (!parseFrame(umem, addr, len, info)) {
      badFrames++;
      sock.release(addr);
      continue;
    }
    const dns = addr + info.dns;
    const room = frameSize - (addr - sock.frameOf(addr)) - info.dns;
    let r;
    try {
      r = engine.handle(umem, dns, info.dnsLen, umem, dns, false, room, now);
    } catch {
      badFrames++;
      sock.release(addr);
      continue;
    }
    if (typeof r === 'number') {
      complete(addr, info, r);
      continue;
    }
    // A miss: the frame stays held until the upstream answers (or fails: SERVFAIL).
    const fi = Object.assign(new FrameInfo(), info);
    pending++;
    r.then(
      (m) => {
        pending--;
        complete(addr, fi, m);
        if (!sock.closed) sock.flush();
      },
      () => {
        pending--;
        badFrames++;
        if (!sock.closed) sock.release(addr);
      },
    );
  }
  sock.flush();
  sock.refill();
}

function publish(): void {
  const c = engine.counters as unknown as Record<string, number>;
  for (const name of ENGINE_COUNTER_NAMES) shared[Slot[name]] = c[name]!;
  shared[Slot.cacheEntries] = engine.cache.size;
  const a = sock && !sock.closed ? sock.accounting() : undefined;
  shared[Slot.framesInUse] = a ? a.held + a.txQueued + a.tx : 0;
  shared[Slot.badFrames] = badFrames;
  shared[Slot.txFull] = txFull;
  shared[Slot.latencySum] = engine.latency.sum;
  shared[Slot.latencyCount] = engine.latency.count;
  engine.rcodes.forEach((v, i) => (shared[Slot.rcodes + i] = v));
  engine.latency.counts.forEach((v, i) => (shared[Slot.latencyBuckets + i] = v));
}

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  upkeep.stop();
  // Give queries waiting on the upstream a moment to be answered, then close.
  const deadline = Date.now() + 2000;
  while (pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (sock && !sock.closed) {
    sock.stopReadable();
    sock.reclaim();
    publish();
    sock.close();
  }
  await forwarder.close();
  post({ type: 'stopped' });
  port.close();
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'kernelHits') {
    for (const k of m.items) engine.policy?.noteKernelHits(k.key, k.hits);
  } else if (m.type === 'stop') {
    void stop();
  }
});

/**
 * Upkeep: expired entries out, completions reclaimed, counters published; once a second
 * while queries come, every 5 s when none did (src/engine/upkeep.ts says why).
 */
let lastQueries = 0;
const upkeep = new Upkeep(
  () => {
    engine.tick();
    if (sock && !sock.closed) {
      sock.reclaim(); // completions of the last replies, even when no new query wakes us
      sock.refill();
    }
    publish();
  },
  () => {
    const q = engine.counters.queries;
    const active = q !== lastQueries || pending > 0;
    lastQueries = q;
    return active;
  },
);
upkeep.start();

try {
  // Frames: a full fill ring, replies in flight, and queries held while the upstream
  // answers (up to the forwarder's in-flight limit): 2048 + 2048 + 4096. Batches of 256
  // descriptors per native call and per wake-up: at 64 the per-batch work (epoll wait,
  // the callback into JS, four ring calls, a sendto) was a visible share of the cost.
  sock = await XskSocket.openWhenFree({ ifname: init.iface, queueId: init.queue, xsksMapFd: init.xsksMapFd, frameSize: 2048, ringSize: 2048, frameCount: 8192, batchSize: BATCH });
  sock.onReadable(drain, (e) => post({ type: 'fatal', message: e.message }));
  post({ type: 'ready', mode: sock.mode });
} catch (e) {
  post({ type: 'fatal', message: `queue ${init.queue}: ${(e as Error).message}` });
  upkeep.stop();
  await forwarder.close();
  port.close();
}
