/**
 * AF_XDP lab agent: runs inside the appliance namespace (AF_XDP binds to an ifindex of
 * the caller's namespace), started as `ip netns exec NS node --expose-gc --import tsx agent.ts`,
 * holds the XDP program (answers off: every query goes to userspace) and obeys JSON lines:
 *   {cmd:'open', ifname, queues, attach?, xsk?, echo?}  attach, one XskSocket per queue
 *   {cmd:'stats'}       socket counters and frame accounting, XDP outcome counters
 *   {cmd:'quiesce'}     reclaims completions until no frame is in flight
 *   {cmd:'close'}       closes the sockets; says what was left in flight
 *   {cmd:'resources', inodes?}  AF_XDP ring mappings and socket fds of this process
 *   {cmd:'scenario', name, ...}  error-path scenarios (see scenarios.ts)
 *   {cmd:'worker-start', how} / {cmd:'worker-finish'}  worker-thread safety (see worker.ts)
 *   {cmd:'detach'}
 */
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import { FastPath } from '../../../src/xdp/fastpath.js';
import { interfaceAddresses } from '../../../src/edge/local.js';
import { serveLab } from '../../helpers/edge.js';
import { XskSocket, type XskOptions } from '../../../src/io/xsk.js';
import { makeEchoHandler, type EchoCounters } from './echo.js';
import { openWithRetry, resources, runScenario, type AgentContext } from './scenarios.js';

const fp = FastPath.open({ hotEntries: 64 });
fp.setAnswers(false);
const ctx: AgentContext = { fp, ifname: '', queues: 0, sockets: [], counters: [] };

const WORKER_URL = new URL('./worker.ts', import.meta.url).href;
let worker: { w: Worker; shared: Int32Array; inodes: string[]; exit: Promise<{ code: number; error: string | null }> } | null = null;

function statsOf(): Record<string, unknown> {
  return {
    sockets: ctx.sockets.map((s, q) => ({ queue: q, stats: s.stats(), echo: ctx.counters[q] })),
    xdp: Object.fromEntries(Object.entries(fp.stats()).map(([k, v]) => [k, Number(v)])),
  };
}

async function handle(m: Record<string, unknown>): Promise<unknown> {
  switch (m.cmd) {
    case 'open': {
      ctx.ifname = String(m.ifname);
      ctx.queues = Number(m.queues ?? 2);
      if (!fp.attachedInterface) {
        serveLab(fp, interfaceAddresses(ctx.ifname).map((s) => s.text));
        fp.attach(ctx.ifname, (m.attach as 'native' | 'generic') ?? 'native');
      }
      const xsk = (m.xsk ?? {}) as Partial<XskOptions>;
      for (let q = 0; q < ctx.queues; q++) {
        const s = await XskSocket.openWhenFree({ ...xsk, ifname: ctx.ifname, queueId: q, xsksMapFd: fp.describe().xsksMapFd });
        const c: EchoCounters = { replied: 0, released: 0, batches: 0, maxBatch: 0 };
        if (m.echo !== false) s.onReadable(makeEchoHandler(c));
        ctx.sockets.push(s);
        ctx.counters.push(c);
      }
      return { ok: true, sockets: ctx.sockets.map((s) => s.describe()), frames: ctx.sockets.map((s) => s.accounting()) };
    }
    case 'stats':
      return statsOf();
    case 'quiesce': {
      const deadline = Date.now() + 2000;
      for (;;) {
        for (const s of ctx.sockets) {
          s.flush();
          s.reclaim();
          s.refill();
        }
        if (ctx.sockets.every((s) => s.accounting().tx === 0 && s.accounting().txQueued === 0) || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      return statsOf();
    }
    case 'close': {
      const frames = ctx.sockets.map((s) => {
        s.close();
        return { ...s.accounting(), umemAfterClose: s.umem.byteLength };
      });
      ctx.sockets = [];
      ctx.counters = [];
      return { ok: true, frames };
    }
    case 'resources':
      return resources(m.inodes as string[] | undefined);
    case 'scenario':
      return runScenario(ctx, String(m.name), m);
    case 'worker-start': {
      if (worker) throw new Error('a worker is running already');
      const shared = new Int32Array(new SharedArrayBuffer(12));
      // Workers do not inherit tsx's loader hooks (Node 20): register them, then load the script.
      const boot = `import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(WORKER_URL)}); })`;
      const w = new Worker(boot, {
        eval: true,
        workerData: { ifname: ctx.ifname, queues: ctx.queues, xsksMapFd: fp.describe().xsksMapFd, how: m.how, shared },
      });
      let error: string | null = null;
      w.on('error', (e) => (error = e.message));
      const exit = new Promise<{ code: number; error: string | null }>((resolve) => w.on('exit', (code) => resolve({ code, error })));
      const ready = await new Promise<{ inodes: string[]; modes: string[] }>((resolve, reject) => {
        w.once('message', resolve);
        void exit.then((e) => reject(new Error(`worker exited before ready: ${JSON.stringify(e)}`)));
      });
      worker = { w, shared, inodes: ready.inodes, exit };
      return { ok: true, ...ready, resources: resources(ready.inodes) };
    }
    case 'worker-finish': {
      if (!worker) throw new Error('no worker');
      const { w, shared, inodes, exit } = worker;
      worker = null;
      const how = String(m.how);
      const deadline = Date.now() + 5000;
      // Mid-flight: traffic is being served when the worker goes.
      while (Atomics.load(shared, 0) < Number(m.afterBatches ?? 5) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const servedBefore = Atomics.load(shared, 0);
      if (how === 'terminate') void w.terminate();
      else Atomics.store(shared, 1, 1);
      if (how === 'terminate-busy') {
        while (Atomics.load(shared, 2) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
        void w.terminate();
      }
      const timeout = new Promise<{ code: number; error: string }>((r) => setTimeout(() => r({ code: -1, error: 'worker did not exit' }), 5000));
      const ended = await Promise.race([exit, timeout]);
      const after = resources(inodes);
      // The queues are free again: new sockets bind them (EBUSY otherwise).
      const rebound = [];
      for (let q = 0; q < ctx.queues; q++) {
        const r = await openWithRetry({ ifname: ctx.ifname, queueId: q, xsksMapFd: -1, ringSize: 64 });
        rebound.push({ queue: q, ok: r.sock !== null, error: r.error });
        r.sock?.close();
      }
      return { code: ended.code, workerError: ended.error, servedBefore, resources: after, rebound };
    }
    case 'detach':
      return { ok: true, removed: fp.detach() };
    default:
      return { error: `unknown command ${String(m.cmd)}` };
  }
}

let chain = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  chain = chain.then(async () => {
    let out: unknown;
    try {
      out = await handle(JSON.parse(line) as Record<string, unknown>);
    } catch (e) {
      const err = e as Error & { code?: string };
      out = { error: `${err.name}: ${err.message}${err.code ? ` [${err.code}]` : ''}` };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  });
});
function shutdown(): void {
  for (const s of ctx.sockets) s.close();
  fp.detach();
  fp.close();
  process.exit(0);
}
process.stdin.on('end', shutdown);
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, shutdown);
