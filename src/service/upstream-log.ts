/**
 * The log's upstream events. Each engine (main thread, every worker) keeps its own
 * upstream health (src/upstream/health.ts) and reports the upstreams it holds down when
 * that changes; this turns those reports into one line per change of the whole:
 *
 *   heimdall-xdp: warn upstream: 198.18.1.2:53 down (in 2 of 3 engines)
 *   heimdall-xdp: info upstream: 198.18.1.2:53 up again
 */
import { log } from '../log.js';

export class UpstreamLog {
  private readonly byEngine = new Map<number, Set<string>>();
  private down = new Set<string>();
  /** Nothing is written before the service serves (a failed start says why in its error). */
  private active = false;

  constructor(
    private readonly engines: () => number,
    private readonly write: typeof log = log,
  ) {}

  /** From now on changes are written. */
  start(): void {
    this.active = true;
  }

  /** An engine's report: the upstreams it holds down now (an engine that is gone: []). */
  update(engine: number, down: readonly string[]): void {
    if (down.length === 0) this.byEngine.delete(engine);
    else this.byEngine.set(engine, new Set(down));
    const now = new Set<string>();
    for (const s of this.byEngine.values()) for (const u of s) now.add(u);
    for (const u of now) {
      if (this.down.has(u) || !this.active) continue;
      const n = [...this.byEngine.values()].filter((s) => s.has(u)).length;
      this.write('warn', 'upstream', `${u} down (in ${n} of ${this.engines()} engines)`, { upstream: u });
    }
    for (const u of this.down) if (!now.has(u) && this.active) this.write('info', 'upstream', `${u} up again`, { upstream: u });
    this.down = now;
  }
}
