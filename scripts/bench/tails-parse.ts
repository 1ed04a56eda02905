/**
 * The parsers of `npm run bench:tails` (scripts/bench/tails.ts), apart from its file
 * reading and report so that test/bench/tails-parse.test.ts can hold them to the formats
 * they read: V8 CPU profiles, dnsperf -v output and perf sched timehist lines.
 */

export const KINDS = ['gc', 'upkeep', 'hot', 'prefetch', 'work', 'idle'] as const;
export type Kind = (typeof KINDS)[number];

export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
export interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** What a sample's stack was doing, from the innermost frame outwards. */
export function classifier(p: Profile): (id: number) => Kind {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const memo = new Map<number, Kind>();
  return (id) => {
    const hit = memo.get(id);
    if (hit) return hit;
    const leaf = byId.get(id)!.callFrame.functionName;
    let k: Kind = 'work';
    if (leaf === '(garbage collector)') k = 'gc';
    else if (leaf === '(idle)') k = 'idle';
    else {
      for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
        const f = byId.get(n)!.callFrame;
        if (f.url.endsWith('/engine/upkeep.js') || f.functionName === 'runUpkeep') {
          k = 'upkeep';
          break;
        }
        if (f.url.endsWith('/hot/prefetch.js')) {
          k = 'prefetch';
          break;
        }
        if (f.url.includes('/hot/') || f.url.endsWith('/xdp/fastpath.js')) k = 'hot'; // unless upkeep runs it
      }
    }
    memo.set(id, k);
    return k;
  };
}

export interface Thread {
  name: string;
  /** ms of each kind per window, for the windows of one run. */
  ms: Map<Kind, Float64Array>;
}

/**
 * Each thread's milliseconds of each kind per window over [t0, t0 + n windows). A sample
 * stands for the time until the next one; a profiler thread kept from its CPU makes that
 * gap long, and the whole of it lands in the sample's window.
 */
export function threadsOf(profiles: { name: string; p: Profile }[], t0Us: number, windowUs: number, n: number): Thread[] {
  const out: Thread[] = [];
  for (const { name, p } of profiles) {
    const kindOf = classifier(p);
    const ms = new Map<Kind, Float64Array>(KINDS.map((k) => [k, new Float64Array(n)]));
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      const dt = p.timeDeltas[i + 1] ?? 0; // a sample stands for the time until the next one
      t += p.timeDeltas[i]!;
      const w = Math.floor((t - t0Us) / windowUs);
      if (w < 0 || w >= n) continue;
      ms.get(kindOf(p.samples[i]!))![w]! += dt / 1000;
    }
    out.push({ name, ms });
  }
  return out;
}

/**
 * Latencies (µs) per window, from dnsperf -v: "> NOERROR name A 0.000123", lost ones
 * "> T ...". Lines come in completion order, spread over the run time dnsperf reports
 * (which says what rate it really kept); the first `skipS` seconds (dnsperf's own
 * start-up transient, as `npm run bench` skips it) are left out, and a lost query is
 * placed when it was sent, `timeoutS` before its line.
 */
export function latenciesOf(text: string, skipS: number, timeoutS: number, windowMs: number, n: number): { lat: number[][]; lost: number[]; achieved: number } {
  const lat: number[][] = Array.from({ length: n }, () => []);
  const lost = new Array<number>(n).fill(0);
  const lines = text.split('\n').filter((l) => l.startsWith('> '));
  const runS = Number(/Run time \(s\):\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  if (!(runS > 0) || lines.length === 0) return { lat, lost, achieved: NaN };
  const perLine = runS / lines.length;
  lines.forEach((line, i) => {
    const f = line.split(/\s+/);
    const isLost = f[1] === 'T';
    const t = i * perLine - (isLost ? timeoutS : 0) - skipS;
    const w = Math.floor((t * 1000) / windowMs);
    if (w < 0 || w >= n) return;
    if (isLost) lost[w]!++;
    else {
      const s = Number(f[f.length - 1]);
      if (Number.isFinite(s)) lat[w]!.push(s * 1e6);
    }
  });
  return { lat, lost, achieved: lines.length / runS };
}

/** Longest runnable-but-waiting time (ms) of the server's threads per window, from perf sched timehist. */
export function schedOf(text: string, pid: number, t0Us: number, windowUs: number, n: number): Float64Array {
  const max = new Float64Array(n);
  for (const line of text.split('\n')) {
    // time cpu task[tid/pid] wait sch_delay run; a process's main thread is task[tid] alone
    const m = /^\s*([\d.]+)\s+\[\d+\]\s+.*?\[(\d+)(?:\/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/.exec(line);
    if (!m || Number(m[3] ?? m[2]) !== pid) continue;
    const delayMs = Number(m[5]);
    // The line is written when the thread stops running; it waited before it ran.
    const waitedAtUs = Number(m[1]) * 1e6 - Number(m[6]) * 1000;
    const w = Math.floor((waitedAtUs - t0Us) / windowUs);
    if (w < 0 || w >= n) continue;
    if (delayMs > max[w]!) max[w] = delayMs;
  }
  return max;
}
