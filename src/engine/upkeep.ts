/**
 * Upkeep on a timer that slows down when there is nothing to keep up.
 *
 * Every thread of heimdall-xdp has housekeeping (expiry sweeps, TX completions,
 * counters, the XDP hit feed). When the XDP program answers everything, none of it has
 * anything to do, yet each timer still wakes its thread, and on a small (virtual)
 * machine a wake-up is not free: its cost is taken from the cores the clients and the
 * XDP path's softirq work share, and shows in the XDP path's latency tail
 * (docs/BENCHMARKS.md has the figures).
 *
 * So: `work` runs every `busyMs` while `active()` says something happened since the
 * last run, and every `idleMs` once it says nothing did. `wake()` puts an idle schedule
 * back on the busy one (a query arrived), so counters never lag more than busyMs behind
 * work that is going on.
 */
export interface UpkeepOptions {
  busyMs?: number;
  idleMs?: number;
}

export class Upkeep {
  readonly busyMs: number;
  readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private idle = false;
  private stopped = false;
  private lastRun = 0;
  runs = 0;

  constructor(
    private readonly work: () => void,
    private readonly active: () => boolean,
    opts: UpkeepOptions = {},
  ) {
    this.busyMs = opts.busyMs ?? 1000;
    this.idleMs = opts.idleMs ?? 5000;
    if (!(this.busyMs > 0 && this.idleMs >= this.busyMs)) throw new RangeError(`upkeep ${this.busyMs}/${this.idleMs} ms`);
  }

  /** True while the timer runs at the idle pace. */
  get isIdle(): boolean {
    return this.idle;
  }

  start(): void {
    this.lastRun = performance.now();
    this.arm(this.busyMs);
  }

  /** Activity: if the timer is at the idle pace, the next run comes busyMs after the last. */
  wake(): void {
    if (!this.idle || this.stopped) return;
    this.idle = false;
    clearTimeout(this.timer);
    this.arm(Math.max(0, this.lastRun + this.busyMs - performance.now()));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.run(), ms);
  }

  private run(): void {
    this.lastRun = performance.now();
    this.runs++;
    try {
      this.work();
    } finally {
      this.idle = !this.active();
      this.arm(this.idle ? this.idleMs : this.busyMs);
    }
  }
}
