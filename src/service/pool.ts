/**
 * WorkerPool: one AF_XDP worker thread per rx queue, supervised. A worker that dies
 * is replaced (its queue falls back to the kernel listener meanwhile, because a closed
 * socket leaves the XSKMAP); what it held hot is forgotten by the hot map sync.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { EngineConfig } from '../config.js';
import { StatsBlock } from '../engine/stats.js';
import { HeimdallError } from '../errors.js';
import type { PromotionEvent } from '../hot/promotion.js';
import type { UpstreamAddr } from '../upstream/upstream.js';
import type { EdgeSetup } from '../edge/policy.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

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
  /** Engine ids of workers are 1..queues (0 is the main thread's engine). */
  onPromotion: (engineId: number, e: PromotionEvent) => void;
  onWorkerGone: (engineId: number) => void;
  /** Told when a worker exits unexpectedly (it is restarted). */
  onRestart?: (queue: number, reason: string) => void;
}

const RESTART_DELAY_MS = 200;
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
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private stopping = false;
  restarts = 0;

  constructor(private readonly o: WorkerPoolOptions) {
    for (let q = 0; q < o.queues; q++) {
      this.slots.push({ worker: null, stats: new StatsBlock(), ready: false, restarts: 0 });
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
    };
    const w = new Worker(WORKER_FILE, { workerData: init });
    slot.worker = w;
    slot.ready = false;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      w.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            slot.ready = true;
            if (!settled) (settled = true), resolve();
            break;
          case 'promote':
            this.o.onPromotion(id, { kind: 'promote', answer: m.answer });
            break;
          case 'demote':
            this.o.onPromotion(id, { kind: 'demote', key: m.key, reason: m.reason });
            break;
          case 'fatal':
            if (!settled) (settled = true), reject(new HeimdallError('E_WORKER', m.message));
            void w.terminate();
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
        this.o.onWorkerGone(id);
        if (!settled) {
          settled = true;
          reject(new HeimdallError('E_WORKER', `worker for queue ${queue} exited with code ${code} before it was ready`));
          return;
        }
        if (this.stopping) return;
        this.restarts++;
        slot.restarts++;
        this.o.onRestart?.(queue, `exit code ${code}`);
        setTimeout(() => {
          if (!this.stopping) this.spawn(queue).catch((e: Error) => this.o.onRestart?.(queue, `restart failed: ${e.message}`));
        }, RESTART_DELAY_MS);
      });
    });
  }

  /** The thread ids of the live workers (tests kill one to check it is replaced). */
  threads(): (Worker | null)[] {
    return this.slots.map((s) => s.worker);
  }

  /** Hands a worker the kernel hits of its hot keys: one message per upkeep, not per key. */
  noteKernelHits(engineId: number, items: { key: Uint8Array; hits: number }[]): void {
    const w = this.slots[engineId - 1]?.worker;
    if (w && items.length > 0) w.postMessage({ type: 'kernelHits', items } satisfies ToWorker);
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
