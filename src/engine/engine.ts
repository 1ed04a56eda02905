/**
 * DnsEngine: one query in, one reply out, whatever carried it (an AF_XDP frame, a
 * kernel UDP datagram, a TCP message). It parses with the zero-copy view, answers a
 * cache hit synchronously into the caller's buffer, sends a miss to the upstream
 * resolver and writes the reply when the validated answer is cached, relays what may
 * not be cached, and turns bad input into FORMERR or a counted drop.
 *
 * One engine per thread, one cache for all of them: every engine is a view of the same
 * SharedCache (src/engine/shared-cache.ts), whose hit path takes no lock. A slot whose
 * uses reach the promotion threshold is reported to `onCandidate` (a worker posts it to
 * the main thread, where the one promotion policy runs); an engine made without a
 * shared cache (tests, tools) makes its own cache and its own policy. What a query
 * needs travels with it, in arguments and locals: nothing about one query is left in an
 * instance field for another (or for its own continuation) to read.
 */
import { MessageView } from '../dns/view.js';
import { writeReply, writeRcodeReply, writeFormErr, writeRelayed, type ReplyOptions } from '../dns/reply.js';
import { DnsErrorCode, errorDisposition, isDnsError } from '../dns/errors.js';
import { EDNS_UDP_SIZE, FLAG_TC, MAX_KEY_LEN, OPCODE_QUERY, RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL, RCODE_BADVERS } from '../dns/constants.js';
import { CONTENDED, SOLO, type FetchTable, type ReleaseOutcome } from '../upstream/fetch-table.js';
import { SharedCache } from './shared-cache.js';
import type { PromotionEvent } from '../hot/promotion.js';
import { PROMOTE_NEVER, SharedPromotion } from '../hot/shared-promotion.js';
import { AskCounter } from '../hot/asks.js';
import { keyHash } from '../dns/key.js';
import { answerFromResponse, type CachedAnswer, type TtlPolicy } from '../dns/answer.js';
import { fastMonotonicNs, type Clock } from './clock.js';
import { RCODE_BADVERS_SLOT, Slot, StatsBlock } from './stats.js';
import { hotSizeFor } from '../config.js';
import { prefixKey, type Addr } from '../net/addr.js';

/** What the engine needs of the upstream side (src/upstream/forwarder.ts provides it). */
export interface Resolver {
  /** `client`: the asker's prefix key (prefixKey), so one network cannot take every upstream slot. */
  resolve(q: { name: Uint8Array; qtype: number; qclass: number; dnssecOk: boolean; checkingDisabled?: boolean }, client?: string): Promise<Uint8Array>;
}

type ResolverQuestion = Parameters<Resolver['resolve']>[0];

export interface EngineOptions {
  resolver: Resolver;
  /** The process's one cache (a view of it on this thread); default: a cache of its own. */
  cache?: SharedCache;
  /**
   * The process's table of fetches in flight (src/upstream/fetch-table.ts): a miss for a
   * name another thread is fetching waits for that answer instead of asking upstream
   * again. Default: none (each miss asks; the forwarder still coalesces within this engine).
   */
  fetches?: FetchTable;
  /** Most queries waiting in the fetch table at once (default 4096, the forwarder's default bound on waiters). */
  maxTableWaiting?: number;
  /** Most of them from one client network (default a quarter); past it its misses go straight to the forwarder, which bounds them per network. */
  maxTableWaitingPerClient?: number;
  /** Where slots reaching the promotion threshold go (the main thread's policy); default: a policy of its own. */
  onCandidate?: (slot: number, seq: number) => void;
  /** Whether this engine's tick() sweeps expired entries (one thread sweeps the shared cache; default true). */
  sweep?: boolean;
  /** Cache entries of a cache of its own (default 100,000). */
  cacheSize?: number;
  /** Arena bytes of a cache of its own (SharedCache maxBytes). */
  cacheBytes?: number;
  /** Hot-map entries of a policy of its own (default hotSizeFor(cacheSize)); 0 disables promotion. */
  hotCapacity?: number;
  /** Asks before a name is promoted (default 3). */
  promoteAfter?: number;
  ttl?: Partial<TtlPolicy>;
  serveStale?: boolean;
  /** Our EDNS UDP size (default EDNS_UDP_SIZE). */
  udpSize?: number;
  onPromotion?: (e: PromotionEvent) => void;
  /** Ask counts shared with the other engines (default: this engine's own). */
  asks?: AskCounter;
  /** Where the counters live (default: a block of its own). */
  stats?: StatsBlock;
  clock?: Clock;
}

const {
  queries: Slot_queries,
  dropped: Slot_dropped,
  notimp: Slot_notimp,
  badvers: Slot_badvers,
  notRecursive: Slot_notRecursive,
  formerr: Slot_formerr,
  cacheHits: Slot_cacheHits,
  staleServed: Slot_staleServed,
  upstreamAnswers: Slot_upstreamAnswers,
  fetchJoined: Slot_fetchJoined,
  fetchJoinedServed: Slot_fetchJoinedServed,
  relayed: Slot_relayed,
  unrelayable: Slot_unrelayable,
  servfail: Slot_servfail,
} = Slot;

/** Reply length, or 0 to send nothing. */
export type Handled = number | Promise<number>;

/**
 * A claim that meets its fetch-table bucket locked, or an insert its cache shard locked,
 * tries again this often, this many times (100 ms), then goes on without (asks on its own;
 * leaves the answer uncached, counted busy).
 */
const CLAIM_RETRY_MS = 2;
const CLAIM_TRIES = 50;

/** TTL put on records served after their expiry (RFC 8767 recommends 30 s). */
const STALE_TTL = 30;

export class DnsEngine {
  readonly cache: SharedCache;
  /** The engine's own promotion policy (an engine made without onCandidate), else undefined. */
  readonly policy: SharedPromotion | undefined;
  private readonly sweeps: boolean;
  readonly stats: StatsBlock;
  private readonly c: Float64Array;
  private readonly asks: AskCounter;
  /** Parses the query being answered now; a miss re-reads its own query after the await. */
  private readonly view = new MessageView();
  private readonly key = new Uint8Array(MAX_KEY_LEN);
  private resolver: Resolver;
  private readonly fetches: FetchTable | undefined;
  /** Queries of this engine waiting in the fetch table (a locked bucket, another thread's fetch), and their bound. */
  private tableWaiting = 0;
  private readonly maxTableWaiting: number;
  /** The same per client network (its prefix key); an entry goes at 0. */
  private readonly tableWaitingPer = new Map<string, number>();
  private readonly maxTableWaitingPerClient: number;
  private readonly clock: Clock;
  private readonly udpSize: number;
  /** Reply options of the synchronous path: written and used within one call. */
  private readonly syncOpts: ReplyOptions;

  constructor(opts: EngineOptions) {
    const cacheSize = opts.cacheSize ?? 100_000;
    this.clock = opts.clock ?? fastMonotonicNs;
    this.asks = opts.asks ?? new AskCounter(undefined, 16);
    this.cache = opts.cache ?? SharedCache.create({
      maxEntries: cacheSize,
      maxBytes: opts.cacheBytes,
      ttl: opts.ttl,
      serveStale: opts.serveStale ?? false,
      threshold: opts.promoteAfter ?? 3,
    });
    this.sweeps = opts.sweep ?? true;
    const hot = opts.hotCapacity ?? hotSizeFor(cacheSize);
    if (opts.onCandidate !== undefined) {
      this.policy = undefined;
      this.cache.onThreshold = opts.onCandidate;
    } else if (hot > 0) {
      const p = new SharedPromotion(this.cache, { capacity: hot, onEvent: opts.onPromotion, clock: this.clock });
      this.policy = p;
      this.cache.onThreshold = (slot, seq) => p.candidate(slot, seq);
    } else {
      this.policy = undefined;
    }
    this.resolver = opts.resolver;
    this.fetches = opts.fetches;
    this.maxTableWaiting = opts.maxTableWaiting ?? 4096;
    this.maxTableWaitingPerClient = opts.maxTableWaitingPerClient ?? Math.max(1, this.maxTableWaiting >> 2);
    this.stats = opts.stats ?? new StatsBlock();
    this.c = this.stats.v;
    this.udpSize = opts.udpSize ?? EDNS_UDP_SIZE;
    this.syncOpts = { udpSize: this.udpSize };
  }

  /** Sends the next misses to another resolver (a reload's upstreams); questions in flight finish on the old one. */
  setResolver(r: Resolver): void {
    this.resolver = r;
  }

  /**
   * Answers the query in buf[off, off+len) into out at outOff and returns the reply's
   * length (0: send nothing), or a promise of it for a miss.
   *
   * `out` may be the same memory as `buf` (an AF_XDP frame is answered in place): the
   * reply is written only once everything it needs of the query has been read. For a
   * miss, buf[off, off+len) must stay untouched until the promise settles.
   * maxLen: the most bytes the reply may take (room in the frame); tcp: the reply goes
   * over TCP (no UDP size limit, never TC=1 from an upstream's truncation).
   * nowNs: the clock, read once by a caller that handles a batch of queries (an AF_XDP
   * worker reads it once per RX batch); read here when absent. client: who asked, for
   * the per-network share of the upstream (a miss without it is charged to no network).
   */
  handle(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen?: number, nowNs?: number, client?: Addr): Handled {
    const c = this.c;
    c[Slot_queries]! += 1;
    const v = this.view;
    const err = v.parse(buf, off, len, this.key);
    if (err !== 0) return this.malformed(err, buf, off, len, out, outOff);
    if (v.qr) {
      c[Slot_dropped]! += 1; // never answer an answer
      return 0;
    }
    const opts = this.syncOpts;
    opts.tcp = tcp;
    opts.maxLen = maxLen;
    if (v.opcode !== OPCODE_QUERY) {
      c[Slot_notimp]! += 1;
      return this.counted(writeRcodeReply(v, RCODE_NOTIMP, out, outOff, opts), out, outOff);
    }
    if (v.hasOpt && v.ednsVersion > 0) {
      c[Slot_badvers]! += 1; // RFC 6891 6.1.3; its header RCODE reads 0, so it is counted by name
      this.stats.countRcode(RCODE_BADVERS_SLOT);
      return writeRcodeReply(v, RCODE_BADVERS, out, outOff, opts);
    }
    if (!v.rd) {
      // RD=0 asks us not to recurse. A forwarder has nothing of its own to answer with, and
      // answering from the cache would tell anyone what this service's clients asked (cache
      // snooping): REFUSED, as Unbound's default access does, on every path (the XDP
      // program sends these up: USER_NO_RD).
      c[Slot_notRecursive]! += 1;
      return this.counted(writeRcodeReply(v, RCODE_REFUSED, out, outOff, opts), out, outOff);
    }
    const now = nowNs ?? this.clock();
    const klen = v.keyLen;
    const hash = keyHash(this.key, 0, klen); // one hash for the ask count and the lookup
    // Asks count toward promotion only. With promotion off (XDP answers off: the threshold
    // is out of reach), counting one was a compare-and-swap at a random place in a 4 MiB
    // shared table per query, 4-5 % of a saturated worker, for nothing. The cache's own
    // use counts go on, so a name still cached is promoted at its next ask once answers
    // are back on; one fetched after that starts from its new asks.
    const asks = this.cache.threshold >= PROMOTE_NEVER ? 0 : this.asks.addHashed(hash, this.key, klen);
    const n = this.cache.reply(v, this.key, klen, hash, now, out, outOff, opts, false, asks);
    if (n > 0) {
      c[Slot_cacheHits]! += 1;
      return this.counted(n, out, outOff);
    }
    // The entry changed under a reply half written into out, which may be the query's own
    // buffer: the query is no longer there to forward (SharedCache.reply).
    if (n < 0) return this.servfail(out, outOff, opts);
    // The client's network, taken now: `client` is the caller's scratch object (an AF_XDP
    // worker rewrites it for every frame), and a miss may reach the upstream only after an
    // await (waiting on another thread's fetch), when it holds some later query's source.
    return this.miss(buf, off, len, out, outOff, tcp, maxLen, klen, hash, asks, client === undefined ? undefined : prefixKey(client));
  }

  /**
   * Housekeeping, called about once a second: expired entries out of the cache (16,384
   * slots a call, a scan of a typed array; expired entries met by a lookup go at once)
   * and out of the hot set.
   */
  tick(): void {
    const now = this.clock();
    if (this.sweeps) this.cache.sweep(now, 16_384);
    this.policy?.tick(now);
  }

  /** Counts a written reply by its RCODE and passes its length on. */
  private counted(n: number, out: Uint8Array, outOff: number): number {
    if (n >= 12) this.stats.countRcode(out[outOff + 3]! & 0xf);
    return n;
  }

  private malformed(err: number, buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number {
    if (errorDisposition(err) === 'drop') {
      this.c[Slot_dropped]! += 1;
      return 0;
    }
    const n = writeFormErr(buf, off, len, out, outOff);
    this.c[n === 0 ? Slot_dropped : Slot_formerr]! += 1;
    return this.counted(n, out, outOff);
  }

  /**
   * A miss: ask the upstream, cache what may be cached, and write the reply. Everything
   * this query needs is in the arguments and locals; after the await the shared view is
   * pointed at this query's bytes again before anything is written.
   */
  private async miss(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen: number | undefined, klen: number, hash: number, asks: number, network: string | undefined): Promise<number> {
    const v = this.view;
    const q = { name: this.key.slice(0, klen - 5), qtype: v.qtype, qclass: v.qclass, dnssecOk: v.dnssecOk, checkingDisabled: v.cd };
    const key = this.key.slice(0, klen);
    const opts: ReplyOptions = { udpSize: this.udpSize, tcp, maxLen };
    const c = this.c;
    // One fetch per name across threads: join a fetch in flight, or own this one.
    let ticket = SOLO;
    const fetches = this.fetches;
    // Queries waiting here (for a locked bucket, or on another thread's fetch) bypass the
    // forwarder's own bound on waiters, so they have one of their own: past it, a miss goes
    // straight to the forwarder, which coalesces it or refuses it as busy (counted there).
    if (fetches !== undefined && this.tableWaiting < this.maxTableWaiting && (network === undefined || (this.tableWaitingPer.get(network) ?? 0) < this.maxTableWaitingPerClient)) {
      // The bucket's lock is held for a microsecond; held longer, its holder is off the CPU
      // (more threads than cores): wait for it with the event loop free, not in Atomics.wait.
      let r = fetches.claim(key, klen, hash, this.clock() / 1e6, false);
      let awaited = false;
      for (let tries = 0; r === CONTENDED && tries < CLAIM_TRIES; tries++) {
        this.tableWait(network, 1);
        await new Promise((res) => setTimeout(res, CLAIM_RETRY_MS));
        this.tableWait(network, -1);
        awaited = true;
        r = fetches.claim(key, klen, hash, this.clock() / 1e6, false);
      }
      if (r === CONTENDED) {
        fetches.giveUp();
        r = SOLO;
      }
      if (awaited) this.reparse(buf, off, len);
      if (typeof r === 'number') {
        ticket = r;
        if (ticket >= 0) {
          // A fetch may have ended between the lookup and the claim: look again (the view
          // holds this query: parsed again after any wait).
          const n = this.cache.reply(v, key, klen, hash, this.clock(), out, outOff, opts, false, asks);
          if (n > 0) {
            fetches.release(ticket, 'cached');
            c[Slot_cacheHits]! += 1;
            return this.counted(n, out, outOff);
          }
          if (n < 0) {
            fetches.release(ticket, 'failed'); // waiters ask on their own
            return this.servfail(out, outOff, opts);
          }
        }
      } else {
        c[Slot_fetchJoined]! += 1;
        this.tableWait(network, 1);
        const outcome = await r; // never rejects: every end of a wait is an outcome
        this.tableWait(network, -1);
        this.reparse(buf, off, len);
        if (outcome === 'cached') {
          const n = this.cache.reply(v, key, klen, hash, this.clock(), out, outOff, opts, false, asks);
          if (n > 0) {
            c[Slot_fetchJoinedServed]! += 1;
            return this.counted(n, out, outOff);
          }
          if (n < 0) return this.servfail(out, outOff, opts);
        }
        // Not cached (uncacheable, failed, owner gone, or already evicted): ask on our own,
        // so a waiter never gets nothing.
      }
    }
    let outcome: ReleaseOutcome = 'failed';
    try {
      return await this.fetch(buf, off, len, out, outOff, tcp, q, key, opts, asks, network, (o) => (outcome = o));
    } finally {
      if (ticket >= 0) fetches!.release(ticket, outcome);
    }
  }

  /** Asks the upstream, caches what may be cached, and writes the reply; `settled` learns whether the answer is now in the cache. */
  private async fetch(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, q: ResolverQuestion, key: Uint8Array, opts: ReplyOptions, asks: number, network: string | undefined, settled: (o: ReleaseOutcome) => void): Promise<number> {
    const v = this.view;
    const c = this.c;
    let msg: Uint8Array;
    // An operator's flush while the question is out: its answer still goes to this client,
    // but is not cached (SharedCache G_FLUSH_GEN), and waiters on the fetch ask again.
    const flushGen = this.cache.flushGeneration();
    try {
      const t0 = this.clock();
      // Lowercased name: one upstream question for every case.
      msg = await this.resolver.resolve(q, network);
      this.stats.observeLatency((this.clock() - t0) / 1e9);
    } catch {
      const now = this.clock();
      this.reparse(buf, off, len);
      const n = this.cache.serveStale ? this.cache.reply(v, key, key.length, keyHash(key, 0, key.length), now, out, outOff, { ...opts, staleTtl: STALE_TTL }, true) : 0;
      if (n > 0) {
        c[Slot_staleServed]! += 1;
        return this.counted(n, out, outOff);
      }
      return this.servfail(out, outOff, opts);
    }
    let answer: CachedAnswer | undefined;
    try {
      let now = this.clock();
      answer = answerFromResponse(msg, now, this.cache.ttlPolicy, q.dnssecOk, q.checkingDisabled);
      // A shard lock held past the cache's spin means its holder is off the CPU: try again
      // with the event loop free, so the answer is cached for the queries waiting on it.
      let slot = this.cache.insert(answer, now, asks, false, flushGen);
      // These waits count with the fetch table's: past that bound the answer goes out
      // uncached at once (counted busy) rather than held, with its reply, for up to 100 ms.
      for (let tries = 0; slot === -2 && tries < CLAIM_TRIES; tries++) {
        if (this.tableWaiting >= this.maxTableWaiting) {
          slot = this.cache.insert(answer, this.clock(), asks, true, flushGen);
          break;
        }
        this.tableWaiting++;
        await new Promise((res) => setTimeout(res, CLAIM_RETRY_MS));
        this.tableWaiting--;
        now = this.clock();
        slot = this.cache.insert(answer, now, asks, tries + 1 === CLAIM_TRIES, flushGen);
      }
      settled(slot >= 0 && this.cache.has(answer.key, answer.key.length, now) ? 'cached' : 'uncached');
      if (this.policy !== undefined) {
        // A refresh of a hot key: its own policy rewrites the hot map at once.
        const s = this.cache.find(answer.key, answer.key.length);
        if (s >= 0) this.policy.noteWrite(s, now);
      }
    } catch (e) {
      if (!isDnsError(e) || e.id !== DnsErrorCode.NOT_CACHEABLE) {
        this.reparse(buf, off, len);
        return this.servfail(out, outOff, opts); // an answer the forwarder let through but the cache cannot read
      }
    }
    this.reparse(buf, off, len);
    if (answer !== undefined) {
      c[Slot_upstreamAnswers]! += 1;
      return this.counted(writeReply(v, answer, this.clock(), out, outOff, opts), out, outOff);
    }
    settled('uncached');
    // Not cacheable (REFUSED, a transfer, TTL 0, ...): relayed as the upstream sent it.
    // Still truncated after the forwarder's TCP retry failed: a TCP client must not get
    // TC=1 back, so it gets SERVFAIL.
    const truncated = msg.length >= 4 && (msg[2]! & (FLAG_TC >>> 8)) !== 0;
    const n = tcp && truncated ? 0 : writeRelayed(v, msg, out, outOff, opts);
    if (n === 0) {
      c[Slot_unrelayable]! += 1;
      return this.servfail(out, outOff, opts);
    }
    c[Slot_relayed]! += 1;
    return this.counted(n, out, outOff);
  }

  private servfail(out: Uint8Array, outOff: number, opts: ReplyOptions): number {
    this.c[Slot_servfail]! += 1;
    return this.counted(writeRcodeReply(this.view, RCODE_SERVFAIL, out, outOff, opts), out, outOff);
  }

  /** A query of `network` starts (1) or ends (-1) a wait in the fetch table. */
  private tableWait(network: string | undefined, d: 1 | -1): void {
    this.tableWaiting += d;
    if (network === undefined) return;
    const n = (this.tableWaitingPer.get(network) ?? 0) + d;
    if (n > 0) this.tableWaitingPer.set(network, n);
    else this.tableWaitingPer.delete(network);
  }

  /** The shared view was used by other queries meanwhile: read this one again. */
  private reparse(buf: Uint8Array, off: number, len: number): void {
    if (this.view.parse(buf, off, len) !== 0) throw new Error('query changed while waiting for the upstream');
  }
}

