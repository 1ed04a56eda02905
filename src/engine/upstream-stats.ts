/**
 * Per-upstream figures, for every engine of the process. Each engine (the main thread and
 * every AF_XDP worker) has its own forwarder and so its own view of each upstream: its
 * counts, its RTT samples and its circuit breaker (src/upstream/health.ts). Each engine
 * host writes them into a region of its StatsBlock (src/engine/stats.ts), after the
 * counters, so a worker's reach the main thread through the same shared memory; the main
 * thread reads every block and merges them by upstream (readUpstreams) for /metrics and
 * the control socket.
 *
 * The set of upstreams changes on reload, and a worker can be replaced, so a region is not
 * indexed by list position: it has UPSTREAM_SLOTS slots, each carrying its upstream's
 * label ("198.18.1.2:53", "[fd00::2]:53") in its first 64 bytes. The one writer of a
 * region (its engine) binds a slot to each upstream of its forwarder: the slot already
 * labelled with it (a replaced worker's block, an upstream kept by a reload), else a free
 * one, else one its forwarder no longer uses (zeroed first). A slot whose upstream was
 * removed keeps its counts (they are still exported: a counter does not vanish with a
 * reload) until its slot is needed. The reader sees a label change only on such a
 * rebinding; a scrape that races it may count a few figures under the wrong upstream once.
 *
 * Health across engines: an upstream is up when no engine that uses it holds it down, as
 * the log's `up again` says (src/service/upstream-log.ts); how many engines hold it down is
 * exported beside it, since an engine that sends it nothing does not notice it is gone.
 */
import { RTT_BUCKETS_MS, type UpstreamHealth } from '../upstream/health.js';

/** Upstreams one engine can report separately; beyond them an upstream is only in the totals. */
export const UPSTREAM_SLOTS = 16;

const LABEL_BYTES = 64;
const LABEL_WORDS = LABEL_BYTES / 8;

/** The counters of each upstream, in slot order, and the metric each is exported as. */
export const UPSTREAM_COUNTERS = {
  queries: { metric: 'heimdall_upstream_server_queries_total', help: 'UDP queries sent to this upstream (attempts and health probes)' },
  answers: { metric: 'heimdall_upstream_server_answers_total', help: 'Validated UDP answers from this upstream (attempts and health probes)' },
  servfail: { metric: 'heimdall_upstream_server_servfail_total', help: 'Answers from this upstream with RCODE SERVFAIL (included in answers)' },
  timeouts: { metric: 'heimdall_upstream_server_timeouts_total', help: 'Queries to this upstream that timed out (attempts, TCP retries and probes)' },
  errors: { metric: 'heimdall_upstream_server_errors_total', help: 'Send, bind and connect errors toward this upstream' },
} as const;

/** The state of each upstream, merged over the engines that use it, as gauges. */
export const UPSTREAM_GAUGES = {
  up: { metric: 'heimdall_upstream_server_up', help: '1 while no engine that uses this upstream holds it down, else 0' },
  downEngines: { metric: 'heimdall_upstream_server_down_engines', help: 'Engines (main thread, AF_XDP workers) holding this upstream down now' },
  engines: { metric: 'heimdall_upstream_server_engines', help: 'Engines whose forwarder uses this upstream now (0: removed by a reload, counts kept)' },
  consecutiveFailures: { metric: 'heimdall_upstream_server_consecutive_failures', help: 'Failures in a row since its last answer (the most any engine has)' },
  srtt: { metric: 'heimdall_upstream_server_srtt_seconds', help: 'Smoothed RTT the upstream selection uses (mean over the engines that measured it)' },
} as const;

/** The RTT histogram of each upstream. */
export const UPSTREAM_RTT = {
  metric: 'heimdall_upstream_server_rtt_seconds',
  help: 'Time from sending a UDP query (or probe) to this upstream to its validated answer',
} as const;

type CounterKey = keyof typeof UPSTREAM_COUNTERS;
const COUNTER_KEYS = Object.keys(UPSTREAM_COUNTERS) as CounterKey[];

// Offsets inside a slot, after its label.
const IN_USE = LABEL_WORDS;
const DOWN = IN_USE + 1;
const FAILS = IN_USE + 2;
const SRTT = IN_USE + 3;
const COUNTS = IN_USE + 4;
const RTT = COUNTS + COUNTER_KEYS.length;
const NB = RTT_BUCKETS_MS.length;
/** Running totals a publisher keeps per upstream: the counters, the buckets, the sum (ms) and count. */
const TOTALS = COUNTER_KEYS.length + NB + 2;
const WIDTH = COUNTS + TOTALS;

/** float64 slots of one engine's region. */
export const UPSTREAM_REGION = UPSTREAM_SLOTS * WIDTH;

function bytesOf(region: Float64Array): Uint8Array {
  return new Uint8Array(region.buffer, region.byteOffset, region.byteLength);
}

function readLabel(bytes: Uint8Array, slot: number): string {
  const at = slot * WIDTH * 8;
  const n = bytes[at]!;
  if (n === 0 || n >= LABEL_BYTES) return '';
  return Buffer.from(bytes.buffer, bytes.byteOffset + at + 1, n).toString('latin1');
}

/** The running totals of one upstream, in slot order from COUNTS. */
function totalsOf(u: UpstreamHealth, out: Float64Array): void {
  out[0] = u.sent + u.probes;
  out[1] = u.answers;
  out[2] = u.servfail;
  out[3] = u.timeouts;
  out[4] = u.errors;
  out.set(u.rttCounts, COUNTER_KEYS.length);
  out[COUNTER_KEYS.length + NB] = u.rttSumMs;
  out[COUNTER_KEYS.length + NB + 1] = u.rttCount;
}

/**
 * The writer of one engine's region (its EngineHost). publish() takes the forwarder's
 * upstreams; a different list (a new forwarder: start, reload) is bound to slots first,
 * and counts from zero, as the new forwarder does.
 */
export class UpstreamPublisher {
  private readonly bytes: Uint8Array;
  private bound: readonly UpstreamHealth[] | null = null;
  /** Slot of each upstream of the bound list (-1: none left). */
  private slots: number[] = [];
  /** What was last added for each upstream of the bound list. */
  private last: Float64Array[] = [];
  private readonly now = new Float64Array(TOTALS);

  constructor(private readonly region: Float64Array) {
    if (region.length < UPSTREAM_REGION) throw new RangeError(`upstream region of ${region.length} slots, need ${UPSTREAM_REGION}`);
    this.bytes = bytesOf(region);
  }

  publish(ups: readonly UpstreamHealth[]): void {
    if (ups !== this.bound) this.bind(ups);
    const v = this.region;
    for (let i = 0; i < ups.length; i++) {
      const slot = this.slots[i]!;
      if (slot < 0) continue;
      const u = ups[i]!;
      const o = slot * WIDTH;
      v[o + DOWN] = u.down ? 1 : 0;
      v[o + FAILS] = u.consecutiveFailures;
      v[o + SRTT] = u.srttMs;
      totalsOf(u, this.now);
      const last = this.last[i]!;
      for (let k = 0; k < TOTALS; k++) {
        v[o + COUNTS + k]! += this.now[k]! - last[k]!;
        last[k] = this.now[k]!;
      }
    }
  }

  /** This engine uses none of its upstreams any more (it stopped). */
  release(): void {
    releaseUpstreams(this.region);
    this.bound = null;
  }

  private bind(ups: readonly UpstreamHealth[]): void {
    const v = this.region;
    const labels: string[] = [];
    for (let s = 0; s < UPSTREAM_SLOTS; s++) labels.push(readLabel(this.bytes, s));
    const claimed = new Set<number>();
    this.slots = ups.map((u) => {
      const s = labels.indexOf(u.label);
      if (s >= 0) claimed.add(s);
      return s;
    });
    for (let i = 0; i < ups.length; i++) {
      if (this.slots[i]! >= 0) continue;
      // A free slot first; else one no upstream of this list has (its counts are lost).
      let s = labels.indexOf('');
      if (s < 0 || claimed.has(s)) s = labels.findIndex((l, j) => !claimed.has(j) && l !== '' && !ups.some((u) => u.label === l));
      if (s < 0) continue;
      claimed.add(s);
      labels[s] = ups[i]!.label;
      v.fill(0, s * WIDTH, (s + 1) * WIDTH);
      const b = Buffer.from(ups[i]!.label, 'latin1').subarray(0, LABEL_BYTES - 1);
      this.bytes.set(b, s * WIDTH * 8 + 1);
      this.bytes[s * WIDTH * 8] = b.length; // the length last: a reader sees the whole label or none
      this.slots[i] = s;
    }
    for (let s = 0; s < UPSTREAM_SLOTS; s++) v[s * WIDTH + IN_USE] = claimed.has(s) ? 1 : 0;
    this.last = ups.map(() => new Float64Array(TOTALS));
    this.bound = ups;
  }
}

/**
 * Marks every upstream of a region unused, its counts kept: for an engine that stopped, or
 * a worker that died (the main thread writes its block then: its writer is gone).
 */
export function releaseUpstreams(region: Float64Array): void {
  for (let s = 0; s < UPSTREAM_SLOTS; s++) region[s * WIDTH + IN_USE] = 0;
}

/** One upstream as the whole process sees it. */
export interface UpstreamFigures {
  upstream: string;
  /** Engines whose forwarder uses it now (0: removed by a reload; its counts are kept). */
  engines: number;
  /** Engines holding it down now. */
  downIn: number;
  /** Used by some engine, and none holds it down. */
  up: boolean;
  /** Failures in a row, the most any engine has. */
  consecutiveFailures: number;
  /** Smoothed RTT, mean over the engines that measured it; null before any answer. */
  srttMs: number | null;
  queries: number;
  answers: number;
  servfail: number;
  timeouts: number;
  errors: number;
  rtt: RttHistogram;
}

export interface RttHistogram {
  /** Upper bounds, ms. */
  boundsMs: readonly number[];
  /** Per bucket, not cumulative; a sample above the last bound is only in count. */
  counts: number[];
  sumMs: number;
  count: number;
}

/** Every upstream in the regions of every engine, merged by label, in the order first seen. */
export function readUpstreams(regions: readonly Float64Array[]): UpstreamFigures[] {
  const by = new Map<string, UpstreamFigures & { srtts: number[] }>();
  for (const v of regions) {
    const bytes = bytesOf(v);
    for (let s = 0; s < UPSTREAM_SLOTS; s++) {
      const label = readLabel(bytes, s);
      if (label === '') continue;
      let f = by.get(label);
      if (f === undefined) {
        f = {
          upstream: label, engines: 0, downIn: 0, up: false, consecutiveFailures: 0, srttMs: null,
          queries: 0, answers: 0, servfail: 0, timeouts: 0, errors: 0,
          rtt: { boundsMs: RTT_BUCKETS_MS, counts: new Array<number>(NB).fill(0), sumMs: 0, count: 0 },
          srtts: [],
        };
        by.set(label, f);
      }
      const o = s * WIDTH;
      COUNTER_KEYS.forEach((k, i) => (f[k] += v[o + COUNTS + i]!));
      for (let b = 0; b < NB; b++) f.rtt.counts[b]! += v[o + RTT + b]!;
      f.rtt.sumMs += v[o + RTT + NB]!;
      f.rtt.count += v[o + RTT + NB + 1]!;
      if (v[o + IN_USE] !== 1) continue;
      f.engines++;
      if (v[o + DOWN] === 1) f.downIn++;
      f.consecutiveFailures = Math.max(f.consecutiveFailures, v[o + FAILS]!);
      if (v[o + SRTT]! >= 0) f.srtts.push(v[o + SRTT]!);
    }
  }
  return [...by.values()].map(({ srtts, ...f }) => ({
    ...f,
    up: f.engines > 0 && f.downIn === 0,
    srttMs: srtts.length > 0 ? srtts.reduce((a, b) => a + b, 0) / srtts.length : null,
  }));
}

/**
 * The q-quantile (0..1) of a histogram in ms, as Prometheus's histogram_quantile gives
 * it: linear inside the bucket the rank falls in; the last bound when it falls above it;
 * null without samples.
 */
export function quantileMs(h: RttHistogram, q: number): number | null {
  if (h.count <= 0) return null;
  const rank = q * h.count;
  let below = 0;
  for (let i = 0; i < h.boundsMs.length; i++) {
    const c = h.counts[i]!;
    if (c > 0 && below + c >= rank) {
      const lo = i === 0 ? 0 : h.boundsMs[i - 1]!;
      return lo + (h.boundsMs[i]! - lo) * Math.max(0, rank - below) / c;
    }
    below += c;
  }
  return h.boundsMs[h.boundsMs.length - 1]!;
}

/** One upstream as the control socket reports it (`heimdall-xdp upstreams`, `stats`). */
export interface UpstreamLine {
  upstream: string;
  /** up: no engine holds it down; down: every engine using it does; partial: some do. */
  state: 'up' | 'down' | 'partial';
  engines: number;
  healthyIn: number;
  consecutiveFailures: number;
  /** Smoothed RTT (ms, 0.1 ms steps), null before any answer. */
  rttMs: number | null;
  /** From the RTT histogram (ms, 0.01 ms steps), null before any answer. */
  p50Ms: number | null;
  p99Ms: number | null;
  sent: number;
  answers: number;
  servfail: number;
  timeouts: number;
  errors: number;
}

/** The upstreams some engine uses now, as lines for the control socket. */
export function upstreamLines(figs: readonly UpstreamFigures[]): UpstreamLine[] {
  return figs
    .filter((f) => f.engines > 0)
    .map((f) => ({
      upstream: f.upstream,
      state: f.downIn === 0 ? 'up' : f.downIn >= f.engines ? 'down' : 'partial',
      engines: f.engines,
      healthyIn: f.engines - f.downIn,
      consecutiveFailures: f.consecutiveFailures,
      rttMs: f.srttMs === null ? null : Number(f.srttMs.toFixed(1)),
      p50Ms: q(f.rtt, 0.5),
      p99Ms: q(f.rtt, 0.99),
      sent: f.queries,
      answers: f.answers,
      servfail: f.servfail,
      timeouts: f.timeouts,
      errors: f.errors,
    }));
}

function q(h: RttHistogram, p: number): number | null {
  const v = quantileMs(h, p);
  return v === null ? null : Number(v.toFixed(2));
}
