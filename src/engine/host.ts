/**
 * EngineHost: what runs one DnsEngine on a thread, the same on every thread. It builds
 * the upstream forwarder, the engine over it and the upkeep timer, and keeps every
 * counter of the three in one StatsBlock (src/engine/stats.ts). An AF_XDP worker and
 * the main thread each make one; only their I/O differs (an XskServer on a worker, the
 * kernel UDP and TCP listeners on the main thread), and each adds its own upkeep work.
 */
import type { EngineConfig } from '../config.js';
import type { PromotionEvent } from '../hot/promotion.js';
import type { AskCounter } from '../hot/asks.js';
import { engineShare, type SharedInflight } from '../upstream/budget.js';
import { Forwarder } from '../upstream/forwarder.js';
import type { UpstreamAddr } from '../upstream/upstream.js';
import { DnsEngine } from './engine.js';
import type { FetchTable } from '../upstream/fetch-table.js';
import type { SharedCache } from './shared-cache.js';
import { StatsBlock, type CounterName } from './stats.js';
import { UpstreamPublisher } from './upstream-stats.js';
import { Upkeep, type UpkeepOptions } from './upkeep.js';

export interface EngineHostOptions {
  engine: EngineConfig;
  upstreams: readonly UpstreamAddr[];
  /** Ask counts shared by every engine of the process. */
  asks: AskCounter;
  /** Where the counters go (a worker's shared block); default a fresh one. */
  stats?: StatsBlock;
  /** The process's one cache, this thread's view (default: a cache of the engine's own). */
  cache?: SharedCache;
  /** The process's table of fetches in flight (one fetch per name across threads). */
  fetches?: FetchTable;
  /** Slots reaching the promotion threshold (to the main thread's policy); default: a policy of the engine's own. */
  onCandidate?: (slot: number, seq: number) => void;
  /** This host sweeps the cache and publishes its gauges (the main thread's; default true). */
  ownsCache?: boolean;
  /** Promotion events of a policy of the engine's own (no onCandidate). */
  onPromotion?: (e: PromotionEvent) => void;
  /** The thread's own upkeep (TX completions, the XDP hit feed), run after the engine's. */
  onUpkeep?: () => void;
  /** Work the thread knows is under way (queries waiting on the upstream). */
  busy?: () => boolean;
  upkeep?: UpkeepOptions;
  /** The process-wide budget of questions in flight upstream, and this engine's id in it (0: main thread). */
  inflight?: { shared: SharedInflight; engineId: number };
  /** Told when the set of upstreams this engine holds down changes (labels, e.g. "198.18.1.2:53"). */
  onUpstreamHealth?: (down: string[]) => void;
  /** Forwarder timing (tests shorten it). */
  upstreamTimeoutMs?: number;
  upstreamDeadlineMs?: number;
}

/** The counters publish() takes from the forwarder's running totals. */
const FORWARDER_COUNTERS: readonly CounterName[] = [
  'upstreamSent', 'upstreamTimeouts', 'upstreamFailures', 'busyEngine', 'busyClient', 'busyClientProcess', 'busyProcess', 'busyWaiting', 'busyClientWaiting', 'busyTcp',
  'upstreamTcpConnects', 'upstreamTcpIdleClosed', 'upstreamTcpLost', 'upstreamTcpReused', 'upstreamErrors', 'upstreamTcpRetries',
  'upstreamCoalesced', 'mismatchSource', 'mismatchId', 'mismatchQuestion', 'mismatchMalformed',
];

/** The longest a replaced forwarder is kept for its questions in flight (its deadline is 4 s). */
const DRAIN_MS = 10_000;

export class EngineHost {
  private fwd: Forwarder;
  /** Forwarders replaced by a reload, finishing their questions in flight. */
  private readonly draining = new Set<Promise<void>>();
  readonly engine: DnsEngine;
  readonly stats: StatsBlock;
  private readonly upkeep: Upkeep;
  private lastQueries = -1;
  /** The upstreams last reported down, joined. */
  private downKey = '';
  /** What publish() last added for each forwarder counter (the block keeps running totals). */
  private readonly published = new Map<CounterName, number>();
  /** Each upstream's figures, into the block's per-upstream region. */
  private readonly upstreamFigures: UpstreamPublisher;

  constructor(private readonly o: EngineHostOptions) {
    this.stats = o.stats ?? new StatsBlock();
    this.upstreamFigures = new UpstreamPublisher(this.stats.upstreams);
    this.fwd = this.makeForwarder(o.upstreams);
    this.engine = new DnsEngine({
      resolver: this.fwd,
      cacheSize: o.engine.cacheSize,
      cacheBytes: o.engine.cacheBytes,
      hotCapacity: o.engine.hotCapacity,
      promoteAfter: o.engine.promoteAfter,
      udpSize: o.engine.udpSize,
      serveStale: o.engine.serveStale,
      asks: o.asks,
      stats: this.stats,
      cache: o.cache,
      fetches: o.fetches,
      // As many as the forwarder lets wait (its maxWaiting default: 4 × its in-flight bound).
      maxTableWaiting: this.fwd.maxWaiting,
      maxTableWaitingPerClient: this.fwd.maxWaitingPerClient,
      onCandidate: o.onCandidate,
      sweep: o.ownsCache ?? true,
      onPromotion: o.onPromotion,
    });
    // Upkeep: expired entries out, the thread's own work, counters published; once a
    // second while queries come, every 5 s when none did (upkeep.ts says why).
    this.upkeep = new Upkeep(() => this.runUpkeep(), () => this.active(), o.upkeep);
  }

  /** The forwarder misses go to now. */
  get forwarder(): Forwarder {
    return this.fwd;
  }

  private makeForwarder(upstreams: readonly UpstreamAddr[]): Forwarder {
    const o = this.o;
    return new Forwarder({
      upstreams: [...upstreams],
      udpSize: o.engine.udpSize,
      timeoutMs: o.upstreamTimeoutMs,
      deadlineMs: o.upstreamDeadlineMs,
      maxInflight: o.engine.upstreamInflight,
      maxPerClient: o.engine.upstreamPerClient,
      shared: o.inflight === undefined ? undefined : engineShare(o.inflight.shared, o.inflight.engineId),
      tcp: { maxConns: o.engine.upstreamTcpConns, maxPipeline: o.engine.upstreamTcpPipeline },
      portReuse: o.engine.upstreamPortReuse,
      caps: o.engine.capsForId,
      cookies: o.engine.upstreamCookies,
      minimalResponses: o.engine.minimalResponses,
    });
  }

  /**
   * New upstreams (a reload): the next misses go to a new forwarder over them; the old
   * one finishes the questions it has in flight (up to its deadline) and is closed, so
   * no query is lost. What the old one counts after the switch is not published.
   */
  setUpstreams(upstreams: readonly UpstreamAddr[]): void {
    const now = this.fwd.upstreams.map((u) => `${u.host}:${u.port}`).join(',');
    const next = upstreams.map((u) => `${u.host}:${u.port}`).join(',');
    if (now === next) return;
    this.publish();
    const old = this.fwd;
    this.fwd = this.makeForwarder(upstreams);
    this.engine.setResolver(this.fwd);
    // The new forwarder counts from zero: publish() adds its totals from there.
    for (const name of FORWARDER_COUNTERS) this.published.set(name, 0);
    const drained = (async () => {
      const end = performance.now() + DRAIN_MS;
      while (old.inflight > 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 50));
      await old.close();
    })();
    this.draining.add(drained);
    void drained.finally(() => this.draining.delete(drained));
  }

  /** A new promotion threshold (a reload). */
  setPromoteAfter(n: number): void {
    this.engine.cache.setThreshold(n); // shared: every thread's view sees it
    this.engine.policy?.setThreshold(n);
  }

  start(): void {
    this.upkeep.start();
  }

  /** A query arrived: bring an idle upkeep back to its busy pace. */
  wake(): void {
    this.upkeep.wake();
  }

  /**
   * Brings what the forwarder and the cache count on their own into the stats block.
   * Counters are added as increments, so a block that outlives its host (a worker's,
   * across a restart) keeps running totals; gauges are set.
   */
  publish(): void {
    const f = this.forwarder.stats();
    if (this.o.onUpstreamHealth) {
      const down = f.perUpstream.filter((u) => !u.healthy).map((u) => u.upstream);
      const key = down.join(',');
      if (key !== this.downKey) {
        this.downKey = key;
        this.o.onUpstreamHealth(down);
      }
    }
    this.advance('upstreamSent', f.sent);
    this.advance('upstreamTimeouts', f.timeouts);
    this.advance('upstreamFailures', f.servfail);
    this.advance('busyEngine', f.busyBy.engine);
    this.advance('busyClient', f.busyBy.client);
    this.advance('busyClientProcess', f.busyBy.clientProcess);
    this.advance('busyProcess', f.busyBy.process);
    this.advance('busyWaiting', f.busyBy.waiting);
    this.advance('busyClientWaiting', f.busyBy.clientWaiting);
    this.advance('busyTcp', f.tcp.busy);
    this.advance('upstreamTcpConnects', f.tcp.connects);
    this.advance('upstreamTcpIdleClosed', f.tcp.idleClosed);
    this.advance('upstreamTcpLost', f.tcp.lost);
    this.advance('upstreamTcpReused', f.tcp.reused);
    this.stats.set('upstreamTcpOpen', f.tcp.open);
    this.stats.set('upstreamWaiting', f.waiting);
    this.stats.set('upstreamClients', this.forwarder.clients);
    this.advance('upstreamErrors', f.errors);
    this.advance('upstreamTcpRetries', f.tcpRetries);
    this.advance('upstreamCoalesced', f.coalesced);
    if (this.o.fetches !== undefined) {
      // The table counts per thread (plain fields); this thread's share is published here.
      const t = this.o.fetches.stats();
      this.advance('fetchOwned', t.owned);
      this.advance('fetchSolo', t.full + t.contended);
      this.advance('fetchExpired', t.deadlineExpired);
      this.advance('fetchOwnerDied', t.ownerDied);
      this.advance('fetchLost', t.lost);
    }
    this.advance('mismatchSource', f.mismatchedBy.source);
    this.advance('mismatchId', f.mismatchedBy.id);
    this.advance('mismatchQuestion', f.mismatchedBy.question);
    this.advance('mismatchMalformed', f.mismatchedBy.malformed);
    this.advance('mismatchCase', f.mismatchedBy.case);
    this.advance('mismatchCookie', f.mismatchedBy.cookie);
    this.advance('mismatchCookieMissing', f.mismatchedBy.cookieMissing);
    this.advance('scrubbedAnswer', f.scrubbed.answer);
    this.advance('scrubbedAuthority', f.scrubbed.authority);
    this.advance('scrubbedAdditional', f.scrubbed.additional);
    this.advance('upstreamCapsFallbacks', f.capsFallbacks);
    this.advance('upstreamCookieResets', f.cookieResets);
    this.stats.set('upstreamInflight', f.inflight);
    // One cache for every engine: its owner (the main thread) publishes its gauges.
    if (this.o.ownsCache ?? true) {
      this.stats.set('cacheEntries', this.engine.cache.size);
      this.stats.set('cacheBytes', this.engine.cache.bytes);
      const cs = this.engine.cache.stats;
      this.advance('cacheSkippedBusy', cs.busy);
      this.advance('cacheSkippedLarge', cs.rejected);
      this.advance('cacheResets', cs.resets);
    }
    this.upstreamFigures.publish(this.forwarder.health);
  }

  /** Adds to a counter what `total` (a running count kept elsewhere) grew by since last time. */
  advance(name: CounterName, total: number): void {
    this.stats.add(name, total - (this.published.get(name) ?? 0));
    this.published.set(name, total);
  }

  /** Stops the upkeep and the forwarder (queries still waiting on it get SERVFAIL). */
  async close(): Promise<void> {
    this.upkeep.stop();
    await this.fwd.close();
    await Promise.all([...this.draining]);
    this.publish();
    this.upstreamFigures.release();
  }

  private runUpkeep(): void {
    this.engine.tick();
    this.o.onUpkeep?.();
    this.publish();
  }

  private active(): boolean {
    const q = this.stats.get('queries');
    const active = q !== this.lastQueries || this.forwarder.inflight > 0 || (this.o.busy?.() ?? false);
    this.lastQueries = q;
    return active;
  }
}
