/**
 * Bytes of JavaScript heap a worker allocates per query on the hit path (issue 16,
 * item 2: the tails). Every byte allocated brings the next young-generation collection
 * closer, and on this VM a scavenge of a worker stops its queue, and the other queue on
 * the same CPU, for 1-6 ms.
 *
 * The worker's own chain in one thread: XskServer.drain over a fake kernel that
 * allocates nothing per call (its rings are typed arrays), the EdgeGuard with its access
 * list and rate limiting on, and an EngineHost over the shared cache, as
 * src/service/worker.ts builds them. It is first warmed as the service is, misses
 * included (answered by scripts/bench/miss/responder.cjs in its own process), because
 * what the optimiser saw on the miss path changes the code of the hit path (a closure
 * made on the miss branch of a function allocated its context on every call). Then:
 *
 *   1. heap growth per query over 100,000 drains of 1, 8 and 64 queries each (young
 *      generation made large enough that nothing is collected in between);
 *   2. where it is allocated: the sampling heap profiler (node:inspector) with collected
 *      objects kept, by function (V8 counts what an inlined function allocates in the
 *      function it was inlined into).
 *
 * A benchmark, not a test: its numbers are for reading.
 *   npm run bench:alloc
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { resolveConfig } from '../../src/config.js';
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { EdgeGuard } from '../../src/edge/guard.js';
import { RRL_BUCKET_BYTES, RRL_DEFAULTS, RateLimiter } from '../../src/edge/rrl.js';
import { EngineHost } from '../../src/engine/host.js';
import { SharedCache } from '../../src/engine/shared-cache.js';
import { StatsBlock } from '../../src/engine/stats.js';
import { AskCounter } from '../../src/hot/asks.js';
import { XskServer } from '../../src/io/xsk-server.js';
import { XskSocket } from '../../src/io/xsk.js';
import type { NativeAddon } from '../../src/native/addon.js';
import type { NativeXskSocket, NativeXskStats } from '../../src/native/xsk-types.js';
import { buildFrame } from '../../test/helpers/frames.js';
import { query } from '../../test/helpers/dns.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
if (!process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) {
  // Re-run with a young generation that holds a whole measurement without a collection.
  const child = spawn(process.execPath, ['--max-semi-space-size=256', '--min-semi-space-size=256', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  const [code] = (await once(child, 'exit')) as [number | null];
  process.exit(code ?? 1);
}
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

// ---- a kernel that allocates nothing per call ------------------------------------------

const RING = 2048;
const FRAMES = 4096;
const FRAME = 2048;
const HEADROOM = 256;

/** A ring of (addr, len) pairs in a typed array. */
class Ring {
  private readonly a = new Uint32Array(4 * RING);
  private head = 0;
  private tail = 0;
  get size(): number {
    return this.tail - this.head;
  }
  push(addr: number, len = 0): void {
    const i = (this.tail++ % (2 * RING)) * 2;
    this.a[i] = addr;
    this.a[i + 1] = len;
  }
  /** Index of the oldest pair, removed. */
  shift(): number {
    return (this.head++ % (2 * RING)) * 2;
  }
  at(i: number): number {
    return this.a[i]!;
  }
}

class QuietKernel implements NativeXskSocket {
  fd = 99;
  private readonly buf = new ArrayBuffer(FRAME * FRAMES);
  private readonly u8 = new Uint8Array(this.buf);
  private readonly fillQ = new Ring();
  private readonly rxQ = new Ring();
  private readonly compQ = new Ring();
  umem(): ArrayBuffer {
    return this.buf;
  }
  register(): void {}
  fill(addrs: Uint32Array, n: number, offset = 0): number {
    const k = Math.min(n, RING - this.fillQ.size);
    for (let i = 0; i < k; i++) this.fillQ.push(addrs[offset + i]!);
    return k;
  }
  rx(out: Uint32Array, max: number): number {
    const n = Math.min(max, this.rxQ.size);
    for (let i = 0; i < n; i++) {
      const j = this.rxQ.shift();
      out[2 * i] = this.rxQ.at(j);
      out[2 * i + 1] = this.rxQ.at(j + 1);
    }
    return n;
  }
  /** Sends at once: every frame submitted is completed. */
  tx(descs: Uint32Array, n: number): number {
    for (let i = 0; i < n; i++) this.compQ.push(descs[2 * i]! & ~(FRAME - 1));
    return n;
  }
  txWaiting(): number {
    return 0;
  }
  complete(out: Uint32Array, max: number): number {
    const n = Math.min(max, this.compQ.size);
    for (let i = 0; i < n; i++) out[i] = this.compQ.at(this.compQ.shift());
    return n;
  }
  poll(): void {}
  stopPoll(): void {}
  stats(): NativeXskStats {
    return {
      rxDropped: 0, rxInvalidDescs: 0, txInvalidDescs: 0, rxRingFull: 0, rxFillRingEmptyDescs: 0, txRingEmptyDescs: 0,
      rxPackets: 0, txPackets: 0, filled: 0, completed: 0, txKicks: 0, fillKicks: 0, kickErrors: 0, lastKickErrno: 0, pollWakeups: 0,
    };
  }
  describe(): ReturnType<NativeXskSocket['describe']> {
    return { mode: 'copy', open: true } as ReturnType<NativeXskSocket['describe']>;
  }
  close(): void {}
  /** A frame arrives: into the next fill frame, onto the RX ring. */
  deliver(frame: Uint8Array): void {
    const a = this.fillQ.at(this.fillQ.shift());
    this.u8.set(frame, a + HEADROOM);
    this.rxQ.push(a + HEADROOM, frame.length);
  }
}

// ---- the worker's chain ------------------------------------------------------------------

const responder = spawn(process.execPath, [path.join(HERE, 'miss', 'responder.cjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
const [portLine] = (await once(responder.stdout!, 'data')) as [Buffer];
const upPort = Number(String(portLine).trim());

let kernel!: QuietKernel;
const addon = {
  layout: { MAX_QUEUES: 64 },
  XskSocket: function () {
    kernel = new QuietKernel();
    return kernel;
  },
} as unknown as NativeAddon;
const sock = XskSocket.open({ ifname: 'veth0', queueId: 0, ringSize: RING, frameCount: FRAMES, batchSize: 256 }, addon);
const cfg = resolveConfig({ iface: 'hx0', upstream: `127.0.0.1:${upPort}` }, () => 1);
const stats = new StatsBlock();
const host = new EngineHost({
  engine: cfg.mainEngine,
  upstreams: cfg.upstreams,
  asks: new AskCounter(undefined, 12),
  stats,
  cache: SharedCache.create({ maxEntries: 10_000 }),
  onCandidate: () => {},
});
const guard = new EdgeGuard(
  host.engine,
  {
    acl: AccessList.build(parseAclList('default,198.18.0.0/15'), parseAclList(''), parseAclList('')),
    rrl: new RateLimiter(new ArrayBuffer(4096 * RRL_BUCKET_BYTES), 4096, 0x9e3779b9, { ...RRL_DEFAULTS, rate: 1_000_000 }), // a seed past 2^31, as half of the real ones are
    guardedPorts: new Set([0, 7, 19]),
    udpSize: 1232,
  },
  stats,
);
const server = new XskServer(sock, guard, stats, { onActivity: () => host.wake() });
host.start();
sock.refill();

const NAMES = 200;
const hitFrames = Array.from({ length: NAMES }, (_, i) => buildFrame(query(`n${i}.lab.example`, 'A', { id: i, edns: {} })));
const idle = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Warm as the service is warmed: every name a miss first (answered by the responder),
// then hits and fresh misses mixed, so the optimiser sees both branches.
for (let i = 0; i < NAMES; i++) {
  kernel.deliver(hitFrames[i]!);
  server.drain();
}
await idle(200);
for (let round = 0; round < 20; round++) {
  for (let i = 0; i < 20; i++) {
    kernel.deliver(buildFrame(query(`m${round}-${i}.lab.example`, 'A', { id: i, edns: {} })));
    server.drain();
  }
  for (let i = 0; i < 5_000; i++) {
    kernel.deliver(hitFrames[i % NAMES]!);
    server.drain();
  }
  await idle(20);
}
const misses = stats.get('upstreamAnswers');

function run(per: number, drains: number): void {
  for (let d = 0; d < drains; d++) {
    for (let j = 0; j < per; j++) kernel.deliver(hitFrames[(d * per + j) % NAMES]!);
    server.drain();
  }
}

const out = (s = ''): void => console.log(s);
out(`# Allocation on the worker's hit path (node ${process.version})`);
out();
out(`Warmed with ${NAMES} names asked first as misses and 400 more misses among 100,000 hits (${misses} answered by the upstream).`);
out();
out('| queries per drain | drains | heap growth per query, B | per drain, B |');
out('|---:|---:|---:|---:|');
const sizes = [1, 8, 64];
for (const per of sizes) {
  const drains = Math.max(2_000, Math.floor(100_000 / per));
  run(per, 2_000);
  gc();
  gc();
  const before = v8.getHeapStatistics().used_heap_size;
  run(per, drains);
  const grown = v8.getHeapStatistics().used_heap_size - before;
  out(`| ${per} | ${drains} | ${(grown / drains / per).toFixed(1)} | ${(grown / drains).toFixed(1)} |`);
}

// Where: the sampling heap profiler, collected objects kept.
interface Node {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: Node[];
}
const session = new Session();
session.connect();
for (const per of [1, 64]) {
  const drains = Math.floor(64_000 / per);
  await session.post('HeapProfiler.startSampling', { samplingInterval: 32, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  run(per, drains);
  const { profile } = await session.post('HeapProfiler.stopSampling');
  const bySite = new Map<string, number>();
  const walk = (n: Node, parents: string[]): void => {
    const name = `${n.callFrame.functionName || '(anonymous)'}${n.callFrame.url ? ` (${path.basename(n.callFrame.url)})` : ''}`;
    const here = [...parents, name];
    if (n.selfSize > 0) {
      const site = here.slice(-2).join(' → ');
      bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here);
  };
  walk(profile.head as unknown as Node, []);
  out();
  out(`Where, ${drains} drains of ${per} (sampled every 32 B; what a function allocates itself and what was inlined into it):`);
  out();
  out('| B per query | caller → function |');
  out('|---:|---|');
  for (const [site, bytes] of [...bySite].sort((x, y) => y[1] - x[1]).slice(0, 8)) {
    if (bytes / drains / per < 0.5) break;
    out(`| ${(bytes / drains / per).toFixed(1)} | ${site.replaceAll('|', '\\|')} |`);
  }
}
session.disconnect();
await host.close();
responder.kill();
