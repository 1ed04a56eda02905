/**
 * DnsEngine: one query in, one reply out, whatever carried it (an AF_XDP frame, a
 * kernel UDP datagram, a TCP message). It parses with the zero-copy view, answers a
 * cache hit synchronously into the caller's buffer, sends a miss to the upstream
 * resolver and writes the reply when the validated answer is cached, and turns bad
 * input into FORMERR or a counted drop. Promotion events from its cache go to the
 * caller (who keeps the BPF hot map in sync).
 *
 * One engine per thread: a worker owns its cache, so the hot path takes no lock.
 */
import { MessageView } from '../dns/view.js';
import { writeReply, writeRcodeReply, writeFormErr, type ReplyOptions } from '../dns/reply.js';
import { DnsErrorCode, errorDisposition, isDnsError } from '../dns/errors.js';
import { MAX_KEY_LEN, OPCODE_QUERY, RCODE_NOTIMP, RCODE_SERVFAIL, RCODE_BADVERS, HEADER_LEN } from '../dns/constants.js';
import { DnsCache } from './cache.js';
import { PromotionPolicy, type PromotionEvent, type CacheObserver } from '../hot/promotion.js';
import { AskCounter } from '../hot/asks.js';
import { keyHash } from '../dns/key.js';
import type { CachedAnswer } from '../dns/answer.js';
import { fastMonotonicNs, type Clock } from './clock.js';
import type { TtlPolicy } from '../dns/answer.js';

/** What the engine needs of the upstream side (src/upstream/forwarder.ts provides it). */
export interface Resolver {
  resolve(q: { name: Uint8Array; qtype: number; qclass: number; dnssecOk: boolean; checkingDisabled?: boolean }): Promise<Uint8Array>;
}

export interface EngineOptions {
  resolver: Resolver;
  /** Cache entries (default 100,000). */
  cacheSize?: number;
  cacheBytes?: number;
  /** Hot-map share this engine may promote (entries); 0 disables promotion. */
  hotCapacity?: number;
  /** Hits before a key is promoted (default 3). */
  promoteAfter?: number;
  ttl?: Partial<TtlPolicy>;
  serveStale?: boolean;
  /** Our EDNS UDP size (default 1232). */
  udpSize?: number;
  onPromotion?: (e: PromotionEvent) => void;
  /** Ask counts shared with the other engines (default: this engine's own). */
  asks?: AskCounter;
  clock?: Clock;
}

/**
 * Between the cache and the promotion policy: a hit reports how often the name has been
 * asked on any engine, so "asked for the third time" holds however the queries were
 * spread over the workers' queues.
 */
class AskObserver implements CacheObserver {
  asks = 0;
  constructor(private readonly policy: PromotionPolicy) {}
  bindCache(h: Parameters<NonNullable<CacheObserver['bindCache']>>[0]): void {
    this.policy.bindCache(h);
  }
  onInsert(slot: number, a: CachedAnswer, now: number): void {
    this.policy.onInsert(slot, a, now);
    // The ask that fetched this answer may itself be the third one (the earlier asks
    // went to other workers): count it as a use, which promotes the name now.
    if (this.asks >= this.policy.threshold) this.policy.onHit(slot, a, this.asks, now);
  }
  onHit(slot: number, a: CachedAnswer, hits: number, now: number): void {
    this.policy.onHit(slot, a, hits > this.asks ? hits : this.asks, now);
  }
  onReplace(slot: number, old: CachedAnswer, a: CachedAnswer, now: number): void {
    this.policy.onReplace(slot, old, a, now);
  }
  onRemove(slot: number, a: CachedAnswer, reason: 'evicted' | 'expired'): void {
    this.policy.onRemove(slot, a, reason);
  }
}

export interface EngineCounters {
  queries: number;
  cacheHits: number;
  upstreamAnswers: number;
  servfail: number;
  formerr: number;
  dropped: number;
  notimp: number;
  badvers: number;
  uncacheable: number;
  staleServed: number;
}

/** Upper bounds (seconds) of the upstream latency histogram's buckets. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface LatencyHistogram {
  buckets: number[];
  /** Per bucket (not cumulative); samples above the last bound are only in count. */
  counts: number[];
  sum: number;
  count: number;
}

/** Reply length, or 0 to send nothing. */
export type Handled = number | Promise<number>;

export class DnsEngine {
  readonly cache: DnsCache;
  readonly policy: PromotionPolicy | undefined;
  readonly counters: EngineCounters = {
    queries: 0, cacheHits: 0, upstreamAnswers: 0, servfail: 0, formerr: 0, dropped: 0, notimp: 0, badvers: 0, uncacheable: 0, staleServed: 0,
  };
  /** Replies written, by RCODE (16 = BADVERS). */
  readonly rcodes = new Float64Array(17);
  readonly latency: LatencyHistogram = { buckets: LATENCY_BUCKETS, counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
  private badvers = false;
  private readonly asks: AskCounter;
  private readonly observer: AskObserver | undefined;
  private readonly view = new MessageView();
  private readonly key = new Uint8Array(MAX_KEY_LEN);
  private readonly resolver: Resolver;
  private readonly clock: Clock;
  private readonly udpOpts: ReplyOptions;
  private readonly tcpOpts: ReplyOptions;

  constructor(opts: EngineOptions) {
    const cacheSize = opts.cacheSize ?? 100_000;
    const hot = opts.hotCapacity ?? Math.floor(cacheSize / 10);
    this.clock = opts.clock ?? fastMonotonicNs;
    this.policy = hot > 0
      ? new PromotionPolicy({ cacheCapacity: cacheSize, capacity: Math.min(hot, cacheSize), threshold: opts.promoteAfter ?? 3, onEvent: opts.onPromotion, clock: this.clock })
      : undefined;
    this.asks = opts.asks ?? new AskCounter(undefined, 16);
    this.observer = this.policy ? new AskObserver(this.policy) : undefined;
    this.cache = new DnsCache({
      maxEntries: cacheSize,
      maxBytes: opts.cacheBytes,
      ttl: opts.ttl,
      serveStale: opts.serveStale ?? false,
      clock: this.clock,
      observer: this.observer,
    });
    this.resolver = opts.resolver;
    const udpSize = opts.udpSize ?? 1232;
    this.udpOpts = { udpSize };
    this.tcpOpts = { udpSize, tcp: true };
  }

  /**
   * Answers the query in buf[off, off+len) into out at outOff (which may be the same
   * memory: the reply is written in place over the query). For a miss the promise
   * resolves once the reply is written; buf must stay untouched until then.
   *
   * nowNs: the clock, read once by a caller that handles a batch of queries (an AF_XDP
   * worker reads it once per RX batch, which takes well under a millisecond, the
   * clock's own agreement with CLOCK_MONOTONIC); read here when absent.
   */
  handle(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp = false, maxLen?: number, nowNs?: number): Handled {
    const r = this.dispatch(buf, off, len, out, outOff, tcp, maxLen, nowNs);
    if (typeof r === 'number') return this.tally(r, out, outOff);
    return r.then((n) => this.tally(n, out, outOff));
  }

  private tally(n: number, out: Uint8Array, outOff: number): number {
    if (this.badvers) {
      this.badvers = false;
      this.rcodes[16]! += 1;
    } else if (n >= 12) {
      this.rcodes[out[outOff + 3]! & 0xf]! += 1;
    }
    return n;
  }

  private dispatch(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen: number | undefined, nowNs: number | undefined): Handled {
    this.counters.queries++;
    const v = this.view;
    const err = v.parse(buf, off, len, this.key);
    if (err !== 0) return this.malformed(err, buf, off, len, out, outOff);
    const opts = this.options(tcp, maxLen);
    if (v.qr) {
      this.counters.dropped++; // never answer an answer
      return 0;
    }
    if (v.opcode !== OPCODE_QUERY) {
      this.counters.notimp++;
      return writeRcodeReply(v, RCODE_NOTIMP, out, outOff, opts);
    }
    if (v.hasOpt && v.ednsVersion > 0) {
      this.counters.badvers++; // RFC 6891 6.1.3
      this.badvers = true; // its header RCODE reads 0: tally() files it under 16
      return writeRcodeReply(v, RCODE_BADVERS, out, outOff, opts);
    }
    const now = nowNs ?? this.clock();
    const klen = v.keyLen;
    const hash = keyHash(this.key, 0, klen); // one hash for the ask count and the lookup
    if (this.observer) this.observer.asks = this.asks.addHashed(hash);
    const hit = this.cache.get(this.key, klen, now, hash);
    if (hit !== undefined) {
      this.counters.cacheHits++;
      return writeReply(v, hit, now, out, outOff, opts);
    }
    return this.miss(buf, off, len, out, outOff, { ...opts }, klen);
  }

  /**
   * Housekeeping, called about once a second: expired entries out of the cache (16,384
   * slots a call, a scan of a typed array; expired entries met by a lookup go at once)
   * and out of the hot set.
   */
  tick(): void {
    const now = this.clock();
    this.cache.sweep(now, 16_384);
    this.policy?.tick(now);
  }

  /** The reply options for this call; a reused object, so copy it before any await. */
  private options(tcp: boolean, maxLen: number | undefined): ReplyOptions {
    const o = tcp ? this.tcpOpts : this.udpOpts;
    o.maxLen = maxLen;
    return o;
  }

  private malformed(err: number, buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number {
    if (errorDisposition(err) === 'drop') {
      this.counters.dropped++;
      return 0;
    }
    const n = writeFormErr(buf, off, len, out, outOff);
    if (n === 0) this.counters.dropped++;
    else this.counters.formerr++;
    return n;
  }

  private async miss(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, opts: ReplyOptions, klen: number): Promise<number> {
    const v = this.view;
    const name = this.key.slice(0, klen - 5); // lowercased wire name: one upstream query for all cases
    const q = { name, qtype: v.qtype, qclass: v.qclass, dnssecOk: v.dnssecOk, checkingDisabled: v.cd };
    const key = this.key.slice(0, klen);
    const asked = this.observer?.asks ?? 0;
    let answer;
    try {
      const t0 = this.clock();
      const msg = await this.resolver.resolve(q);
      this.observeLatency((this.clock() - t0) / 1e9);
      this.counters.upstreamAnswers++;
      try {
        if (this.observer) this.observer.asks = asked; // other queries ran meanwhile
        answer = this.cache.insertResponse(msg, this.clock(), q.dnssecOk);
      } catch (e) {
        if (!isDnsError(e) || e.id !== DnsErrorCode.NOT_CACHEABLE) throw e;
        this.counters.uncacheable++;
        return this.passThrough(msg, buf, off, len, out, outOff, opts);
      }
    } catch (e) {
      const stale = this.cache.getStale(key, key.length, this.clock());
      this.reparse(buf, off, len);
      if (stale !== undefined) {
        this.counters.staleServed++;
        return writeReply(this.view, stale, this.clock(), out, outOff, { ...opts, staleTtl: 30 });
      }
      this.counters.servfail++;
      void e;
      return writeRcodeReply(this.view, RCODE_SERVFAIL, out, outOff, opts);
    }
    this.reparse(buf, off, len);
    return writeReply(this.view, answer, this.clock(), out, outOff, opts);
  }

  private observeLatency(sec: number): void {
    const l = this.latency;
    l.sum += sec;
    l.count++;
    for (let i = 0; i < l.buckets.length; i++) {
      if (sec <= l.buckets[i]!) {
        l.counts[i]!++;
        return;
      }
    }
  }

  /** The shared view was used by other queries meanwhile: read this one again. */
  private reparse(buf: Uint8Array, off: number, len: number): void {
    if (this.view.parse(buf, off, len) !== 0) throw new Error('query changed while waiting for the upstream');
  }

  /**
   * An upstream answer that must not be cached (REFUSED, a transfer, ...): relayed as
   * the upstream sent it under the client's ID, question bytes and RD/CD, cut to
   * header and question with TC=1 when over the client's limit.
   */
  private passThrough(msg: Uint8Array, buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, opts: ReplyOptions): number {
    this.reparse(buf, off, len);
    const v = this.view;
    const qEnd = HEADER_LEN + v.questionLen;
    const limit = Math.min(opts.tcp ? 65535 : v.hasOpt ? Math.max(512, Math.min(v.udpSize, opts.udpSize)) : 512, opts.maxLen ?? 65535, out.length - outOff);
    // Too short to relay, or still truncated after the forwarder's TCP retry failed: a
    // TCP client must not get TC=1 back, so it gets SERVFAIL.
    const upstreamTc = msg.length >= 4 && (msg[2]! & 0x02) !== 0;
    if (msg.length < qEnd || (opts.tcp === true && upstreamTc)) {
      this.counters.servfail++;
      return writeRcodeReply(v, RCODE_SERVFAIL, out, outOff, opts);
    }
    const question = buf.slice(off + HEADER_LEN, off + qEnd);
    let n = msg.length;
    let tc = false;
    if (n > limit) {
      n = qEnd;
      tc = true;
    }
    out.set(msg.subarray(0, n), outOff);
    out.set(question, outOff + HEADER_LEN);
    out[outOff] = buf[off]!;
    out[outOff + 1] = buf[off + 1]!;
    const qf = (buf[off + 2]! << 8) | buf[off + 3]!;
    let f = ((msg[2]! << 8) | msg[3]!) & ~(0x0100 | 0x0010 | 0x0400 | 0x0200);
    f |= qf & (0x0100 | 0x0010);
    if (tc) {
      f |= 0x0200;
      for (let i = 6; i < 12; i++) out[outOff + i] = 0;
    }
    out[outOff + 2] = f >>> 8;
    out[outOff + 3] = f & 0xff;
    return n;
  }
}
