/**
 * Health of one upstream: a smoothed RTT for choosing among them, and a
 * small circuit breaker. `failuresToDown` consecutive failures (timeouts,
 * send, bind or connect errors) mark it down for a backoff period
 * that doubles with every failure after the period is over (up to
 * `maxBackoffMs`; failures of exchanges still in flight within it do not
 * count towards the next period); once the
 * period is over the forwarder sends one probe, and any validated answer
 * marks the upstream up again. Down upstreams are used only when no up
 * one is left to try, so a full outage is still noticed by real traffic.
 *
 * Selection (BIND style): the lowest smoothed RTT wins; every upstream
 * passed over has its SRTT decayed a little, so a slower one is still
 * tried now and then and its estimate stays current. Never-measured
 * upstreams count as 0 ms, so each is tried early.
 */
import type { UpstreamAddr } from './upstream.js';
import { formatUpstream } from './upstream.js';
import { UpstreamError } from './errors.js';

export interface HealthOptions {
  /** Consecutive failures that mark an upstream down (default 3). */
  failuresToDown: number;
  /** First down period, ms (default 1000). */
  backoffMs: number;
  /** Longest down period, ms (default 30000). */
  maxBackoffMs: number;
  /** Factor applied to the SRTT of an upstream passed over (default 0.98). */
  decay: number;
}

export const DEFAULT_HEALTH: Readonly<HealthOptions> = Object.freeze({
  failuresToDown: 3,
  backoffMs: 1000,
  maxBackoffMs: 30_000,
  decay: 0.98,
});

export function resolveHealthOptions(p?: Partial<HealthOptions>): HealthOptions {
  const h: HealthOptions = { ...DEFAULT_HEALTH, ...p };
  const ok =
    Number.isInteger(h.failuresToDown) &&
    h.failuresToDown >= 1 &&
    h.backoffMs > 0 &&
    h.maxBackoffMs >= h.backoffMs &&
    h.decay > 0 &&
    h.decay <= 1;
  if (!ok) throw new UpstreamError('UPSTREAM_BAD_CONFIG', `bad health options ${JSON.stringify(h)}`);
  return h;
}

/** Snapshot of one upstream for stats and /metrics. */
export interface UpstreamStats {
  upstream: string;
  host: string;
  port: number;
  family: 4 | 6;
  healthy: boolean;
  /** Smoothed RTT in ms, or null before the first answer. */
  rttMs: number | null;
  consecutiveFailures: number;
  /** ms until the next probe while down, else 0. */
  downForMs: number;
  sent: number;
  answers: number;
  timeouts: number;
  errors: number;
  /** Datagrams on this upstream's sockets that were not its answer (spoofing attempts, stray packets). */
  mismatched: number;
  probes: number;
}

/**
 * Upper bounds (ms) of the per-upstream RTT histogram's buckets (the same bounds as the
 * engine's latency histogram, src/engine/stats.ts LATENCY_BUCKETS, in ms). A sample above
 * the last bound is only in the count.
 */
export const RTT_BUCKETS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500] as const;

/** RFC 6298 gains: SRTT moves 1/8 towards each sample. */
const ALPHA = 0.125;

export class UpstreamHealth {
  readonly label: string;
  srttMs = -1;
  consecutiveFailures = 0;
  down = false;
  /** performance.now() ms when a probe is due, while down. */
  downUntil = 0;
  private downs = 0;
  probing = false;
  sent = 0;
  answers = 0;
  timeouts = 0;
  errors = 0;
  mismatched = 0;
  probes = 0;
  /** Answers with RCODE SERVFAIL (still answers: the upstream is there). */
  servfail = 0;
  /**
   * Every RTT sample (the ones the SRTT is fed: UDP answers and probe answers), by bucket
   * of RTT_BUCKETS_MS (not cumulative), with their sum (ms) and count.
   */
  readonly rttCounts = new Float64Array(RTT_BUCKETS_MS.length);
  rttSumMs = 0;
  rttCount = 0;

  constructor(
    readonly addr: UpstreamAddr,
    readonly index: number,
    private readonly opts: HealthOptions,
  ) {
    this.label = formatUpstream(addr);
  }

  /** SRTT for selection: unmeasured counts as 0 so every upstream gets measured. */
  get score(): number {
    return this.srttMs < 0 ? 0 : this.srttMs;
  }

  onAnswer(rttMs: number): void {
    this.answers++;
    this.rttSumMs += rttMs;
    this.rttCount++;
    for (let i = 0; i < RTT_BUCKETS_MS.length; i++) {
      if (rttMs <= RTT_BUCKETS_MS[i]!) {
        this.rttCounts[i]! += 1;
        break;
      }
    }
    this.srttMs = this.srttMs < 0 ? rttMs : this.srttMs + ALPHA * (rttMs - this.srttMs);
    this.consecutiveFailures = 0;
    this.down = false;
    this.downs = 0;
    this.downUntil = 0;
  }

  /** A failed exchange; `penaltyMs` (the timeout that expired) is fed to the SRTT. */
  onFailure(now: number, kind: 'timeout' | 'error', penaltyMs: number): void {
    if (kind === 'timeout') this.timeouts++;
    else this.errors++;
    if (penaltyMs > 0) {
      const base = this.srttMs < 0 ? penaltyMs : this.srttMs;
      this.srttMs = Math.max(base, base + ALPHA * (penaltyMs - base));
    }
    this.consecutiveFailures++;
    // Down, and its period not over: an exchange sent before it went down (many are in
    // flight under load) is no new evidence; only a failure after the period (the probe,
    // or traffic when no up upstream is left) lengthens the next one.
    if (this.down && now < this.downUntil) return;
    if (this.down || this.consecutiveFailures >= this.opts.failuresToDown) {
      this.down = true;
      this.downs++;
      const backoff = Math.min(this.opts.backoffMs * 2 ** Math.min(this.downs - 1, 30), this.opts.maxBackoffMs);
      this.downUntil = now + backoff;
    }
  }

  /** Passed over by a selection: decay the estimate so it is retried in time. */
  decay(): void {
    if (this.srttMs > 0) this.srttMs *= this.opts.decay;
  }

  probeDue(now: number): boolean {
    return this.down && !this.probing && now >= this.downUntil;
  }

  snapshot(now: number): UpstreamStats {
    return {
      upstream: this.label,
      host: this.addr.host,
      port: this.addr.port,
      family: this.addr.family,
      healthy: !this.down,
      rttMs: this.srttMs < 0 ? null : Math.round(this.srttMs * 1000) / 1000,
      consecutiveFailures: this.consecutiveFailures,
      downForMs: this.down ? Math.max(0, Math.ceil(this.downUntil - now)) : 0,
      sent: this.sent,
      answers: this.answers,
      timeouts: this.timeouts,
      errors: this.errors,
      mismatched: this.mismatched,
      probes: this.probes,
    };
  }
}

/**
 * The upstream for the next attempt of one query. `tries` counts attempts
 * per upstream index in this query. Order: up and untried (lowest SRTT,
 * then list order), up and least tried, then down ones (earliest due
 * first). Decays the SRTT of the up upstreams passed over.
 */
export function pickUpstream(all: readonly UpstreamHealth[], tries: Uint8Array): UpstreamHealth {
  let best: UpstreamHealth | undefined;
  let bestKey = Infinity;
  for (const u of all) {
    // Three tiers, then SRTT inside a tier (ties keep list order: strict <).
    const t = tries[u.index]!;
    const tier = u.down ? 1e15 + 1e13 * t + u.downUntil : 1e9 * t;
    const key = tier + u.score;
    if (key < bestKey) {
      bestKey = key;
      best = u;
    }
  }
  for (const u of all) if (u !== best && !u.down) u.decay();
  return best!;
}
