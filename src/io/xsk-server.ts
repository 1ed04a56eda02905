/**
 * XskServer: DNS over one AF_XDP socket. It owns the life of every frame it receives:
 *
 *   receive ─► parse L2-L4 ─► copy the query aside ─► handler (the engine)
 *                  │ bad              sync: reply ──► copied into the same frame ─► TX ring
 *                  ▼                  async (a miss): L2-L4 headers copied aside, frame
 *               release                 RELEASED at once; when the answer comes, a fresh
 *                                       frame from the free list takes headers + reply ─► TX
 *                                       (no free frame: counted drop, no_frame)
 *                                     0: release; throws or rejects: release, counted
 *
 * so that every frame received is sent or released within its batch, whatever the
 * upstream does: a miss never holds a UMEM frame, and the fill ring stays stocked while
 * thousands of queries wait on a slow upstream. What a parked miss keeps is its query
 * and reply buffer (one frame's worth of JS memory, reused from a small pool) and its
 * L2-L4 headers.
 *
 * The handler works on a copy of the DNS message, never in the UMEM: a miss keeps
 * reading its query and writes its reply after an await, and by then the frame is
 * someone else's. A hit pays two small copies (query in, reply out).
 *
 * The handler is anything with DnsEngine.handle's shape; the socket is an XskSocket,
 * which tests drive with a fake kernel (test/io/xsk-server.test.ts) and workers with the
 * real one. upkeep() publishes the frame gauge and the kernel's XDP_STATISTICS as
 * counters (deltas of the socket's totals).
 */
import type { Handled } from '../engine/engine.js';
import { fastMonotonicNs, type Clock } from '../engine/clock.js';
import type { CounterName, StatsBlock } from '../engine/stats.js';
import type { NativeXskStats } from '../native/xsk-types.js';
import type { Addr } from '../net/addr.js';
import { FrameInfo, finishReply, parseFrame, readSource } from './frame.js';
import type { XskSocket } from './xsk.js';

/** What answers a DNS message in place (DnsEngine.handle). */
export interface FrameHandler {
  /**
   * DnsEngine.handle's arguments, plus the client's address. `client` is the caller's
   * scratch object, valid only during the call: whoever keeps it past the call copies it.
   */
  handle(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen?: number, nowNs?: number, client?: Addr): Handled;
}

export interface XskServerOptions {
  /** Told of each batch before it is handled (an idle upkeep wakes up). */
  onActivity?: () => void;
  /**
   * Read once per batch (CLOCK_MONOTONIC ns, default fastMonotonicNs) and passed to the
   * handler: the engine's TTLs and the edge guard's rate limiting both run on it.
   */
  clock?: Clock;
}

/** XDP_STATISTICS fields exported, and the counter each one's growth is added to. */
const KERNEL_STATS: readonly (readonly [keyof NativeXskStats, CounterName])[] = [
  ['rxDropped', 'xskKernelRxDropped'],
  ['rxRingFull', 'xskKernelRxRingFull'],
  ['rxInvalidDescs', 'xskKernelRxInvalid'],
  ['txInvalidDescs', 'xskKernelTxInvalid'],
  ['rxFillRingEmptyDescs', 'xskFillRingEmpty'],
  ['txRingEmptyDescs', 'xskTxRingEmpty'],
];

/** Query/reply buffers kept for reuse once their miss is answered. */
const SPARE_BUFFERS = 64;

const EMPTY = Buffer.alloc(0);

/** Bytes of headers (L2-L4) a parked miss keeps in place: Ethernet, two VLAN tags, IPv4 with options or IPv6, UDP. */
const HEAD_ROOM = 128;

/**
 * A miss waiting on the upstream: what its reply needs, none of it in the UMEM. Records
 * are reused (with their buffers and their two settle callbacks), so parking a miss
 * allocates nothing but its promise's reaction: under a burst of misses, what stays
 * alive across scavenges is what they cost.
 */
class Parked {
  /** The query (handler input), then the reply (handler output), from offset 0: set by park(). */
  msg: Buffer = EMPTY;
  /** The frame's bytes before the DNS message (L2-L4 headers), as received: head[0, info.dns). */
  head = Buffer.allocUnsafeSlow(HEAD_ROOM);
  readonly info = new FrameInfo();
  /** Where in its frame the packet started (the kernel's headroom): kept for the reply. */
  offset = 0;
  readonly answered: (dnsLen: number) => void;
  readonly failed: () => void;

  constructor(server: XskServer) {
    this.answered = (dnsLen) => server.settleParked(this, dnsLen);
    this.failed = () => server.settleParked(this, -1);
  }
}

/**
 * Copies n bytes between the UMEM and the scratch buffer. A loop, not Buffer.copy: on this
 * Node, Buffer.copy makes a Uint8Array view of the source per call, which was a quarter of
 * everything a worker allocated on the hit path (a sampled heap profile under load; see
 * docs/BENCHMARKS.md), and a DNS message is a few hundred bytes at most.
 */
function copy(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dOff + i] = src[sOff + i]!;
}

/** A Buffer over the same memory as u (no copy). */
const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * After a TX kick the kernel refused without progress (copy mode: the device's queue was
 * full), the replies left on the ring are kicked again after 1 ms, then 2, 4 ... up to
 * this, not only when the next query or the upkeep (1 s) comes: at the end of a burst
 * they would wait that long.
 */
const TX_RETRY_MAX_MS = 64;

export class XskServer {
  /** Queries waiting on the upstream (none of them holds a frame). */
  pending = 0;
  private readonly info = new FrameInfo();
  /** The source of the frame being handled, rewritten for each one. */
  private readonly client: Addr = { family: 4, bytes: new Uint8Array(16) };
  private readonly clock: Clock;
  /** The pending retry of a refused TX kick, and its delay (TX_RETRY_MAX_MS). */
  private txRetry: NodeJS.Timeout | undefined;
  private txRetryMs = 0;
  /** The batch's clock reading (drain()); undefined until the first batch. */
  private batchNow: number | undefined = undefined;
  /** The buffer the next query is copied into; handed to a miss that parks. */
  private scratch: Buffer;
  private readonly spares: Buffer[] = [];
  /** Records of answered misses, kept for the next (with spares, at most SPARE_BUFFERS each). */
  private readonly spareParked: Parked[] = [];
  /** The UMEM as a Buffer, for Buffer.copy. */
  private readonly umemBuf: Buffer;
  /** A flush of parked replies is queued for the end of this event-loop turn (flushSoon). */
  private flushQueued = false;
  /** The socket's XDP_STATISTICS totals already added to the counters. */
  private readonly seen = new Map<keyof NativeXskStats, number>();

  constructor(
    readonly sock: XskSocket,
    private readonly handler: FrameHandler,
    private readonly stats: StatsBlock,
    private readonly o: XskServerOptions = {},
  ) {
    this.clock = o.clock ?? fastMonotonicNs;
    this.scratch = Buffer.allocUnsafeSlow(sock.frameSize);
    this.umemBuf = asBuffer(sock.umem);
  }

  /** Serves the socket from now on; onFatal gets errors of the poll loop itself. */
  start(onFatal: (e: Error) => void): void {
    this.sock.onReadable(() => this.drain(), onFatal);
  }

  /** One batch: reclaim completions, receive, answer, flush, refill. */
  drain(): void {
    const sock = this.sock;
    this.o.onActivity?.();
    sock.reclaim();
    const n = sock.receive();
    if (n > 0) this.stats.add('xskReceived', n);
    // The clock is read once per batch (a read per query showed in profiles) and kept in
    // a field that has held undefined, so V8 keeps it as one boxed number made once per
    // batch. Held in a local, the optimised loop boxed it again for every query it
    // passed to the handler (16 B a query; docs/BENCHMARKS.md, "Allocation on the hit
    // path").
    this.batchNow = this.clock();
    const umem = sock.umem;
    const ub = this.umemBuf;
    const d = sock.rxDescs;
    const frameSize = sock.frameSize;
    const info = this.info;
    for (let i = 0; i < n; i++) {
      const addr = d[2 * i]!;
      const len = d[2 * i + 1]!;
      if (!parseFrame(umem, addr, len, info)) {
        this.stats.add('badFrames');
        sock.release(addr);
        continue;
      }
      const dns = addr + info.dns;
      const room = frameSize - (addr - sock.frameOf(addr)) - info.dns;
      const msg = this.scratch;
      let r: Handled;
      try {
        copy(msg, 0, ub, dns, info.dnsLen);
        readSource(umem, addr, info, this.client);
        r = this.handler.handle(msg, 0, info.dnsLen, msg, 0, false, room, this.batchNow, this.client);
      } catch {
        this.stats.add('xskHandlerErrors');
        sock.release(addr);
        continue;
      }
      if (typeof r === 'number') {
        if (r > 0) copy(ub, dns, msg, 0, r);
        this.complete(addr, info, r);
      } else {
        this.park(addr, r);
      }
    }
    sock.flush();
    sock.refill();
    this.checkTx();
  }

  /** Replies a refused kick left on the TX ring: kick again soon, backing off (no native call). */
  private checkTx(): void {
    if (this.txRetry !== undefined) return;
    if (!this.sock.txRefused) {
      this.txRetryMs = 0;
      return;
    }
    this.txRetryMs = Math.min(TX_RETRY_MAX_MS, this.txRetryMs * 2 || 1);
    this.txRetry = setTimeout(this.retryTx, this.txRetryMs);
    this.txRetry.unref();
  }

  private readonly retryTx = (): void => {
    this.txRetry = undefined;
    const sock = this.sock;
    if (sock.closed) return;
    if (sock.txRefused) {
      this.stats.add('xskTxRetries');
      sock.reclaim(); // a full completion ring also stops the kernel
      sock.kick();
    }
    this.checkTx();
  };

  /**
   * Completions reclaimed, replies still on the TX ring kicked again and the fill ring
   * topped up even when no query wakes us; gauges and kernel counters. The kick matters in
   * copy mode: the kernel transmits inside the sendto of a kick, and one that returned
   * EAGAIN without progress leaves the last replies of a burst on the ring until something
   * kicks again (otherwise the next reply on this queue).
   */
  upkeep(): void {
    const sock = this.sock;
    if (!sock.closed) {
      sock.reclaim();
      if (sock.txPending > 0) sock.kick();
      sock.refill();
      this.checkTx();
    }
    this.publish();
  }

  /** Waits up to graceMs for queries on the upstream to be answered, then closes the socket. */
  async stop(graceMs = 2000): Promise<void> {
    const deadline = Date.now() + graceMs;
    while (this.pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const sock = this.sock;
    clearTimeout(this.txRetry);
    this.txRetry = undefined;
    if (sock.closed) return;
    sock.stopReadable();
    // Replies written this turn wait for flushSoon's turn-end flush: send them now.
    sock.flush();
    sock.reclaim();
    this.publish();
    sock.close();
  }

  private publish(): void {
    const sock = this.sock;
    const a = sock.closed ? undefined : sock.accounting();
    this.stats.set('framesInUse', a ? a.held + a.txQueued + a.tx : 0);
    if (sock.closed) return;
    let k: NativeXskStats;
    try {
      k = sock.stats();
    } catch {
      return; // a socket whose interface went away: nothing more to read
    }
    for (const [field, counter] of KERNEL_STATS) {
      const v = k[field];
      if (typeof v !== 'number') continue;
      const last = this.seen.get(field) ?? 0;
      if (v > last) this.stats.add(counter, v - last);
      this.seen.set(field, v);
    }
  }

  /**
   * A miss: keep its headers and its buffer, give the frame back now, and build the
   * reply in a fresh frame when the answer (or SERVFAIL) comes.
   */
  private park(addr: number, r: Promise<number>): void {
    const sock = this.sock;
    const info = this.info;
    const base = sock.frameOf(addr);
    const p = this.spareParked.pop() ?? new Parked(this);
    p.msg = this.scratch;
    if (info.dns > p.head.length) p.head = Buffer.allocUnsafeSlow(info.dns);
    copy(p.head, 0, sock.umem, addr, info.dns);
    const pi = p.info;
    pi.l3 = info.l3;
    pi.l4 = info.l4;
    pi.dns = info.dns;
    pi.dnsLen = info.dnsLen;
    pi.ipv6 = info.ipv6;
    p.offset = addr - base;
    this.scratch = this.spares.pop() ?? Buffer.allocUnsafeSlow(sock.frameSize);
    sock.release(addr);
    this.pending++;
    // In the block the main thread shares: if this worker dies, what it held is counted.
    this.stats.set('xskWaiting', this.pending);
    r.then(p.answered, p.failed);
  }

  /** The end of a parked miss: its reply (dnsLen > 0), nothing to send (0), or a handler failure (-1). */
  settleParked(p: Parked, dnsLen: number): void {
    this.pending--;
    this.stats.set('xskWaiting', this.pending);
    // The socket closed while it waited (a stop past its grace): unanswered, counted as a
    // worker exit's, as the main thread counts what a worker that died held.
    if (this.sock.closed && dnsLen !== 0) this.stats.add('xskAbandoned');
    else if (dnsLen < 0) this.stats.add('xskHandlerErrors');
    else this.answerParked(p, dnsLen);
    if (this.spares.length < SPARE_BUFFERS) this.spares.push(p.msg);
    if (this.spareParked.length < SPARE_BUFFERS) this.spareParked.push(p);
  }

  private answerParked(p: Parked, dnsLen: number): void {
    const sock = this.sock;
    if (sock.closed || dnsLen <= 0) return;
    const base = sock.allocFrame();
    if (base < 0) {
      this.stats.add('noFrame');
      return;
    }
    const addr = base + p.offset;
    copy(this.umemBuf, addr, p.head, 0, p.info.dns);
    copy(this.umemBuf, addr + p.info.dns, p.msg, 0, dnsLen);
    this.complete(addr, p.info, dnsLen);
    this.flushSoon();
  }

  /**
   * Submits parked replies once per turn of the event loop, not once each: every upstream
   * answer read in one poll phase settles its miss in its own callback, and a flush is a
   * native call and, on most drivers, a sendto that runs the transmit path. setImmediate
   * runs after the poll phase, so the replies of that phase go in one kick; the next
   * drain() flushes too, whichever comes first.
   */
  private flushSoon(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(this.flushQueuedReplies);
  }

  private readonly flushQueuedReplies = (): void => {
    this.flushQueued = false;
    if (this.sock.closed) return;
    this.sock.flush();
    this.checkTx();
  };

  /** Puts a finished reply on the TX ring, or frees the frame when there is nothing to send. */
  private complete(addr: number, fi: FrameInfo, dnsLen: number): void {
    const sock = this.sock;
    if (sock.closed) return;
    if (dnsLen <= 0) {
      sock.release(addr);
      return;
    }
    const len = finishReply(sock.umem, addr, fi, dnsLen);
    if (!sock.send(addr, len)) {
      this.stats.add('txFull');
      sock.release(addr);
    }
  }
}
