/**
 * WorkerPool: one AF_XDP worker thread per rx queue, supervised. A worker that dies
 * is replaced (its queue falls back to the kernel listener meanwhile, because a closed
 * socket leaves the XSKMAP); the shared cache shards it held locked are recovered
 * (onWorkerGone gets its thread id).
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { EngineConfig } from '../config.js';
import { StatsBlock } from '../engine/stats.js';
import { HeimdallError } from '../errors.js';
import type { SharedCacheLayout } from '../engine/shared-cache.js';
import type { UpstreamAddr } from '../upstream/upstream.js';
import type { EdgeSetup } from '../edge/policy.js';
import type { FromWorker, LiveChange, ToWorker, WorkerInit } from './protocol.js';
import type { EngineRequest } from './cache-control.js';

export interface WorkerPoolOptions {
  iface: string;
  queues: number;
  xsksMapFd: number;
  edge: EdgeSetup;
  upstreams: readonly UpstreamAddr[];
  engine: EngineConfig;
  /** The shared ask counts (AskCounter.buffer). */
  asks: SharedArrayBuffer;
  /** The upstream in-flight budget (SharedInflight.buffer). */
  inflight: SharedArrayBuffer;
  /** The one cache (SharedCache.layout). */
  cache: SharedCacheLayout;
  /** FetchTable.buffer. */
  fetches: SharedArrayBuffer;
  /** A worker's cache slot reached the promotion threshold. */
  onCandidate: (slot: number, seq: number) => void;
  /** Engine ids of workers are 1..queues (0 is the main thread's engine); threadId: the dead thread's. */
  onWorkerGone: (engineId: number, threadId: number) => void;
  /** Told when the upstreams a worker holds down change. */
  onUpstreamHealth?: (engineId: number, down: string[]) => void;
  /** Told when a worker exits unexpectedly (it is restarted). */
  onRestart?: (queue: number, reason: string) => void;
}

const RESTART_DELAY_MS = 200;
const RESTART_DELAY_MAX_MS = 30_000;
/** A worker that served this long before it ended starts its queue's backoff afresh. */
const RESTART_STABLE_MS = 60_000;

/**
 * How long to wait before starting a queue's worker again after `failures` restarts in a
 * row that did not last (RESTART_STABLE_MS): 200 ms, doubling, at most 30 s. A worker that
 * keeps dying (its queue gone, the interface changed under it) would otherwise be started
 * five times a second forever, each a new isolate and a log line; a failed start is tried
 * again on the same schedule rather than leaving its queue to the kernel for good.
 */
export function restartDelayMs(failures: number): number {
  return Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MS * 2 ** Math.min(Math.max(0, failures), 20));
}
/** How long a reload or control request waits for each worker's answer. */
const REPLY_MS = 5000;
const STOP_GRACE_MS = 3000;

// From src/ (tests, tsx) the worker is TypeScript: source-entry.mjs registers tsx first.
const FROM_SOURCE = fileURLToPath(import.meta.url).endsWith('.ts');
const WORKER_FILE = new URL(FROM_SOURCE ? './source-entry.mjs' : './worker.js', import.meta.url);

interface Slot {
  worker: Worker | null;
  /** The worker's counters; kept across restarts, so totals never go backwards. */
  stats: StatsBlock;
  ready: boolean;
  restarts: number;
  /** Restarts in a row whose worker did not last RESTART_STABLE_MS (restartDelayMs). */
  failures: number;
  /** When its current worker said it was ready (performance.now()), or -1. */
  readyAt: number;
  /** Requests (reload, control) this worker has yet to answer, by sequence number. */
  waiting: Map<number, (value: unknown) => void>;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private stopping = false;
  private seq = 0;
  restarts = 0;

  constructor(private readonly o: WorkerPoolOptions) {
    for (let q = 0; q < o.queues; q++) {
      this.slots.push({ worker: null, stats: new StatsBlock(), ready: false, restarts: 0, failures: 0, readyAt: -1, waiting: new Map() });
    }
  }

  /** Starts every worker; resolves when all have their socket, rejects with the first failure. */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((_, q) => this.spawn(q)));
  }

  private spawn(queue: number): Promise<void> {
    const slot = this.slots[queue]!;
    const id = queue + 1;
    const init: WorkerInit = {
      id,
      iface: this.o.iface,
      queue,
      xsksMapFd: this.o.xsksMapFd,
      edge: this.o.edge,
      upstreams: this.o.upstreams,
      engine: this.o.engine,
      asks: this.o.asks,
      stats: slot.stats.buffer as SharedArrayBuffer,
      inflight: this.o.inflight,
      cache: this.o.cache,
      fetches: this.o.fetches,
    };
    const w = new Worker(WORKER_FILE, { workerData: init });
    const tid = w.threadId; // read now: a worker that exited reports -1
    slot.worker = w;
    slot.ready = false;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            slot.ready = true;
            slot.readyAt = performance.now();
            if (!settled) (settled = true), resolve();
            break;
          case 'candidates':
            for (let i = 0; i + 1 < m.pairs.length; i += 2) this.o.onCandidate(m.pairs[i]!, m.pairs[i + 1]!);
            break;
          case 'fatal':
            if (!settled) (settled = true), reject(new HeimdallError('E_WORKER', m.message));
            void w.terminate();
            break;
          case 'reloaded':
            slot.waiting.get(m.seq)?.(true);
            break;
          case 'health':
            this.o.onUpstreamHealth?.(id, m.down);
            break;
          case 'controlReply':
            slot.waiting.get(m.seq)?.(m.value);
            break;
          case 'stopped':
            break;
        }
      });
      w.on('error', (e) => {
        if (!settled) (settled = true), reject(e);
      });
      w.on('exit', (code) => {
        slot.worker = null;
        slot.ready = false;
        // The queries it held waiting on the upstream die with it (a crash: a worker that
        // stops counts its own as its socket closes): counted, and the gauge it can no
        // longer lower is cleared.
        const held = slot.stats.get('xskWaiting');
        if (held > 0) slot.stats.add('xskAbandoned', held);
        slot.stats.set('xskWaiting', 0);
        this.o.onWorkerGone(id, tid);
        if (!settled) {
          settled = true;
          reject(new HeimdallError('E_WORKER', `worker for queue ${queue} exited with code ${code} before it was ready`));
          return;
        }
        // A worker that never got ready was refused (a fatal message) and its start rejected:
        // whoever started it schedules the next try.
        if (this.stopping || slot.readyAt < 0) return;
        if (performance.now() - slot.readyAt >= RESTART_STABLE_MS) slot.failures = 0;
        slot.readyAt = -1;
        this.restarts++;
        slot.restarts++;
        this.o.onRestart?.(queue, `exit code ${code}`);
        this.restartLater(queue);
      });
    });
  }

  /** Starts the queue's worker again after its backoff; a start that fails is tried again the same way. */
  private restartLater(queue: number): void {
    const slot = this.slots[queue]!;
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(queue).catch((e: Error) => {
        this.o.onRestart?.(queue, `restart failed: ${e.message}`);
        if (this.stopping) return;
        this.restarts++;
        slot.restarts++;
        this.restartLater(queue);
      });
    }, restartDelayMs(slot.failures++));
  }

  /**
   * Hands every worker a reload's settings, and keeps them for workers started later
   * (a restart). Resolves with the number of workers that confirmed within REPLY_MS; a
   * worker starting meanwhile gets them from its WorkerInit.
   */
  async reload(change: LiveChange): Promise<{ confirmed: number; live: number }> {
    this.o.edge = change.edge;
    this.o.upstreams = change.upstreams;
    this.o.engine = { ...this.o.engine, promoteAfter: change.promoteAfter };
    const replies = await this.request((seq) => ({ type: 'reload', seq, change }));
    return { confirmed: replies.filter((r) => r !== undefined).length, live: replies.length };
  }

  /** Asks every live worker's engine (src/service/cache-control.ts); undefined for one that did not answer. */
  control(req: EngineRequest): Promise<unknown[]> {
    return this.request((seq) => ({ type: 'control', seq, req }));
  }

  /** Sends a request to every live worker; each answer, or undefined after REPLY_MS or if it exits. */
  private async request(make: (seq: number) => ToWorker): Promise<unknown[]> {
    const seq = ++this.seq;
    const waits: Promise<unknown>[] = [];
    for (const s of this.slots) {
      const w = s.worker;
      if (!w) continue;
      waits.push(
        new Promise<unknown>((resolve) => {
          const t = setTimeout(() => finish(undefined), REPLY_MS);
          const onExit = (): void => finish(undefined);
          function finish(v: unknown): void {
            clearTimeout(t);
            w!.off('exit', onExit);
            s.waiting.delete(seq);
            resolve(v);
          }
          s.waiting.set(seq, finish);
          w.once('exit', onExit);
        }),
      );
      w.postMessage(make(seq));
    }
    return Promise.all(waits);
  }

  /** How many workers run now. */
  get live(): number {
    return this.slots.filter((s) => s.worker !== null && s.ready).length;
  }

  /** The thread ids of the live workers (tests kill one to check it is replaced). */
  threads(): (Worker | null)[] {
    return this.slots.map((s) => s.worker);
  }

  /** Every worker's counters (the blocks they write; read at scrape time). */
  stats(): StatsBlock[] {
    return this.slots.map((s) => s.stats);
  }

  /**
   * Terminates every worker at once, as a crash would (SIGUSR2): the supervisor replaces
   * them, and the cleanup hooks close their sockets and free their UMEM.
   */
  crashAll(): void {
    for (const s of this.slots) void s.worker?.terminate();
  }

  /** Asks every worker to finish and close its socket; terminates stragglers. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(async (s) => {
        const w = s.worker;
        if (!w) return;
        const exited = new Promise<void>((r) => w.once('exit', () => r()));
        w.postMessage({ type: 'stop' } satisfies ToWorker);
        const t = setTimeout(() => void w.terminate(), STOP_GRACE_MS);
        await exited;
        clearTimeout(t);
      }),
    );
  }
}
