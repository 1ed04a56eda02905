/**
 * XskSocket: the typed face of one AF_XDP socket (addon/xsk.cc) and the owner of its
 * UMEM frames.
 *
 * Every frame is in exactly one place, tracked in a preallocated state array:
 *   FREE  in the free list (a Uint32Array stack of frame start addresses)
 *   FILL  given to the kernel for receiving (fill ring, or the kernel's own cache of it)
 *   HELD  received, or allocated, and not yet sent or released by the caller
 *   TXQ   queued by send(), waiting for flush()
 *   TX    on the TX ring, until complete() hands it back
 * Nothing on the per-packet path allocates: descriptors travel in preallocated
 * Uint32Arrays and each ring call handles a whole batch in one native call.
 *
 * A worker's loop, driven by onReadable():
 *   sock.reclaim(); const n = sock.receive();
 *   for (let i = 0; i < n; i++) { const addr = sock.rxDescs[2*i]!, len = sock.rxDescs[2*i+1]!;
 *     ... build the reply in sock.umem at addr ...; sock.send(addr, replyLen) or sock.release(addr) }
 *   sock.flush(); sock.refill();
 */
import { loadAddon, type NativeAddon } from '../native/addon.js';
import { TX_REFUSED, type NativeXskDescription, type NativeXskSocket, type NativeXskStats, type XskBindMode } from '../native/xsk-types.js';

export type { XskBindMode } from '../native/xsk-types.js';

export interface XskOptions {
  ifname: string;
  queueId: number;
  /** XdpProgram.describe().xsksMapFd (FastPath.describe()); -1 or absent: not registered. */
  xsksMapFd?: number;
  /** 2048 (default) or 4096 bytes per frame. */
  frameSize?: number;
  /** Entries of each ring, a power of two 64..16384 (default 2048). */
  ringSize?: number;
  /** Frames in the UMEM (default 2 * ringSize: a full fill ring and as many in flight). */
  frameCount?: number;
  /** Descriptors per native call (default 64, at most ringSize). */
  batchSize?: number;
  mode?: XskBindMode;
  needWakeup?: boolean;
}

/** Where a frame is; see the module comment. */
export const FrameState = { FREE: 0, FILL: 1, HELD: 2, TXQ: 3, TX: 4 } as const;

export interface FrameAccounting {
  total: number;
  free: number;
  fill: number;
  held: number;
  txQueued: number;
  tx: number;
  /** Addresses the kernel returned that were not where the accounting expected them. */
  anomalies: number;
}

export interface XskStats extends NativeXskStats {
  frames: FrameAccounting;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer ${min}..${max}, got ${v}`);
  return v;
}

const MAX_UMEM = 2 ** 30;

export class XskSocket {
  /** The UMEM, shared with the kernel; empty (detached) once closed. */
  readonly umem: Uint8Array;
  /** Pairs (addr, len) of the last receive(). */
  readonly rxDescs: Uint32Array;
  readonly ifname: string;
  readonly queueId: number;
  readonly frameSize: number;
  readonly frameCount: number;
  readonly ringSize: number;
  readonly batchSize: number;
  /** The mode the kernel bound. */
  readonly mode: 'copy' | 'zerocopy';

  private readonly native: NativeXskSocket;
  private readonly shift: number;
  private readonly baseMask: number;
  private readonly state: Uint8Array;
  private readonly pool: Uint32Array;
  private poolCount: number;
  private readonly txDescs: Uint32Array;
  private txCount = 0;
  private readonly compBuf: Uint32Array;
  private inFill = 0;
  private held = 0;
  private inTx = 0;
  private refused = false;
  private anomalies = 0;
  private closedWith: FrameAccounting | null = null;

  private constructor(native: NativeXskSocket, o: Required<Omit<XskOptions, 'xsksMapFd' | 'mode' | 'needWakeup'>>) {
    this.native = native;
    this.ifname = o.ifname;
    this.queueId = o.queueId;
    this.frameSize = o.frameSize;
    this.frameCount = o.frameCount;
    this.ringSize = o.ringSize;
    this.batchSize = o.batchSize;
    this.mode = native.describe().mode;
    this.umem = new Uint8Array(native.umem());
    this.shift = Math.log2(o.frameSize);
    this.baseMask = ~(o.frameSize - 1);
    this.state = new Uint8Array(o.frameCount);
    this.pool = new Uint32Array(o.frameCount);
    // Lowest addresses on top of the stack: the first fill takes them.
    for (let i = 0; i < o.frameCount; i++) this.pool[i] = (o.frameCount - 1 - i) * o.frameSize;
    this.poolCount = o.frameCount;
    this.rxDescs = new Uint32Array(2 * o.batchSize);
    this.txDescs = new Uint32Array(2 * o.batchSize);
    this.compBuf = new Uint32Array(o.batchSize);
  }

  /** Opens the socket on one rx queue, fills its fill ring, then registers it in the XSKMAP. */
  static open(opts: XskOptions, addon: NativeAddon = loadAddon()): XskSocket {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('options must be an object');
    const { ifname } = opts;
    if (typeof ifname !== 'string' || ifname.length === 0 || ifname.length > 15) throw new TypeError('ifname must be 1..15 characters');
    const queueId = checkInt('queueId', opts.queueId, 0, addon.layout.MAX_QUEUES - 1);
    const xsksMapFd = checkInt('xsksMapFd', opts.xsksMapFd ?? -1, -1, 2 ** 31 - 1);
    const frameSize = checkInt('frameSize', opts.frameSize ?? 2048, 2048, 4096);
    if (frameSize !== 2048 && frameSize !== 4096) throw new RangeError('frameSize must be 2048 or 4096');
    const ringSize = checkInt('ringSize', opts.ringSize ?? 2048, 64, 16384);
    if (!isPowerOfTwo(ringSize)) throw new RangeError(`ringSize must be a power of two, got ${ringSize}`);
    const frameCount = checkInt('frameCount', opts.frameCount ?? 2 * ringSize, 1, MAX_UMEM / frameSize);
    const batchSize = checkInt('batchSize', opts.batchSize ?? 64, 1, ringSize);
    const mode = opts.mode ?? 'auto';
    if (mode !== 'copy' && mode !== 'zerocopy' && mode !== 'auto') throw new RangeError("mode must be 'copy', 'zerocopy' or 'auto'");
    const needWakeup = opts.needWakeup ?? true;
    if (typeof needWakeup !== 'boolean') throw new TypeError('needWakeup must be a boolean');

    const native = new addon.XskSocket(ifname, queueId, { frameSize, frameCount, ringSize, mode, needWakeup });
    try {
      const sock = new XskSocket(native, { ifname, queueId, frameSize, frameCount, ringSize, batchSize });
      // Stock the fill ring before XDP starts redirecting here, or the first packets drop.
      sock.refill();
      if (xsksMapFd >= 0) native.register(xsksMapFd);
      return sock;
    } catch (e) {
      native.close();
      throw e;
    }
  }

  /**
   * open(), retried while the queue is still busy (EBUSY) for up to timeoutMs. The kernel
   * frees a closed socket's hold on its queue only after an RCU grace period and a
   * workqueue run (tens of milliseconds; docs/AF_XDP.md), so a socket reopened at once on the same
   * queue, as by a restarted worker, can find it busy for that long.
   */
  static async openWhenFree(opts: XskOptions, timeoutMs = 1000, addon: NativeAddon = loadAddon()): Promise<XskSocket> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return XskSocket.open(opts, addon);
      } catch (e) {
        if ((e as { code?: unknown }).code !== 'EBUSY' || Date.now() >= deadline) throw e;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  }

  get fd(): number {
    return this.native.fd;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Start of the frame an address points into. */
  frameOf(addr: number): number {
    return addr & this.baseMask;
  }

  /**
   * Takes up to max descriptors from the RX ring into rxDescs; the frames become HELD.
   * A descriptor whose frame the kernel was not given to receive into (not FILL: free,
   * held, on the TX ring, or outside the UMEM) is counted as an anomaly and left out of
   * rxDescs, its frame's state unchanged: handed on, it would give one frame two users.
   */
  receive(max: number = this.batchSize): number {
    const d = this.rxDescs;
    const n = this.native.rx(d, max > this.batchSize ? this.batchSize : max);
    const st = this.state;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const addr = d[2 * i]!;
      const f = addr >>> this.shift;
      if (f >= this.frameCount || st[f] !== FrameState.FILL) {
        this.anomalies++;
        continue;
      }
      this.inFill--;
      st[f] = FrameState.HELD;
      if (k !== i) {
        d[2 * k] = addr;
        d[2 * k + 1] = d[2 * i + 1]!;
      }
      k++;
    }
    this.held += k;
    return k;
  }

  /** A free frame for a message of the caller's own (start address), or -1 if none is free. */
  allocFrame(): number {
    if (this.poolCount === 0) return -1;
    const addr = this.pool[--this.poolCount]!;
    this.state[addr >>> this.shift] = FrameState.HELD;
    this.held++;
    return addr;
  }

  /** Gives a HELD frame back to the free list (a query dropped, a reply not sent). */
  release(addr: number): void {
    const f = this.heldFrame(addr, 'release');
    this.state[f] = FrameState.FREE;
    this.held--;
    this.pool[this.poolCount++] = (addr & this.baseMask) >>> 0;
  }

  /**
   * Queues a HELD frame for transmission: len bytes from addr, inside its frame. Flushes
   * when the batch is full; returns false (frame still HELD) if the TX ring is full.
   */
  send(addr: number, len: number): boolean {
    const f = this.heldFrame(addr, 'send');
    if (!Number.isInteger(len) || len < 1 || (addr & (this.frameSize - 1)) + len > this.frameSize) {
      throw new RangeError(`send: length ${len} at ${addr} does not fit in its ${this.frameSize}-byte frame`);
    }
    if (this.txCount === this.batchSize && (this.flush() === 0 || this.txCount === this.batchSize)) return false;
    this.txDescs[2 * this.txCount] = addr;
    this.txDescs[2 * this.txCount + 1] = len;
    this.txCount++;
    this.state[f] = FrameState.TXQ;
    this.held--;
    return true;
  }

  /** Submits the queued frames to the TX ring (one native call); returns how many went. */
  flush(): number {
    if (this.txCount === 0) return 0;
    const r = this.native.tx(this.txDescs, this.txCount);
    this.refused = r >= TX_REFUSED;
    const k = r & (TX_REFUSED - 1);
    for (let i = 0; i < k; i++) this.state[this.txDescs[2 * i]! >>> this.shift] = FrameState.TX;
    this.inTx += k;
    if (k < this.txCount) this.txDescs.copyWithin(0, 2 * k, 2 * this.txCount);
    this.txCount -= k;
    return k;
  }

  /** Returns transmitted frames from the completion ring to the free list. */
  reclaim(): number {
    let total = 0;
    const st = this.state;
    for (let round = 0; round * this.batchSize < this.ringSize; round++) {
      const n = this.native.complete(this.compBuf, this.compBuf.length);
      for (let i = 0; i < n; i++) {
        const base = (this.compBuf[i]! & this.baseMask) >>> 0;
        const f = base >>> this.shift;
        if (f >= this.frameCount || st[f] !== FrameState.TX) {
          this.anomalies++; // not ours to free: inTx counts only frames that were on the TX ring
          continue;
        }
        st[f] = FrameState.FREE;
        this.pool[this.poolCount++] = base;
        this.inTx--;
      }
      total += n;
      if (n < this.compBuf.length) break;
    }
    return total;
  }

  /**
   * The last kick was refused by the kernel without progress (copy mode: the device queue
   * full): replies wait on the TX ring until another kick (XskServer retries soon).
   */
  get txRefused(): boolean {
    return this.refused;
  }

  /** Replies not yet transmitted and reclaimed: queued for flush(), on the TX ring, or completed and not yet reclaimed. */
  get txPending(): number {
    return this.txCount + this.inTx;
  }

  /**
   * Submits what is queued and asks the kernel again to transmit what waits on the TX
   * ring. The native tx() kicks whenever the ring holds entries the kernel has not
   * taken, even with nothing new to submit; a kick the kernel answered with EAGAIN and no
   * progress (copy mode) leaves them there until the next one. Returns how many queued
   * descriptors went.
   */
  kick(): number {
    if (this.closedWith) return 0;
    if (this.txCount > 0) return this.flush();
    if (this.inTx > 0) this.refused = this.native.tx(this.txDescs, 0) >= TX_REFUSED;
    return 0;
  }

  /** Tops the fill ring up from the free list; returns how many frames went to the kernel. */
  refill(): number {
    let k = this.ringSize - this.inFill;
    if (k > this.poolCount) k = this.poolCount;
    if (k <= 0) return 0;
    const start = this.poolCount - k;
    const a = this.native.fill(this.pool, k, start);
    for (let i = start; i < start + a; i++) this.state[this.pool[i]! >>> this.shift] = FrameState.FILL;
    if (a < k) this.pool.copyWithin(start, start + a, this.poolCount);
    this.poolCount -= a;
    this.inFill += a;
    return a;
  }

  /**
   * Calls handler(this) whenever RX descriptors wait (again on the next loop turn if it
   * left some). The socket keeps the event loop alive until stopReadable() or close().
   */
  onReadable(handler: (sock: XskSocket) => void, onError: (err: Error) => void = (err) => {
    throw err;
  }): void {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    this.native.poll((err?: Error) => (err ? onError(err) : handler(this)));
  }

  stopReadable(): void {
    this.native.stopPoll();
  }

  /** Where the frames are now (or were when the socket closed). */
  accounting(): FrameAccounting {
    if (this.closedWith) return { ...this.closedWith };
    return {
      total: this.frameCount,
      free: this.poolCount,
      fill: this.inFill,
      held: this.held,
      txQueued: this.txCount,
      tx: this.inTx,
      anomalies: this.anomalies,
    };
  }

  stats(): XskStats {
    return { ...this.native.stats(), frames: this.accounting() };
  }

  describe(): NativeXskDescription {
    return this.native.describe();
  }

  /**
   * Closes the socket: the kernel drops it from the XSKMAP (queries on its queue go to
   * the kernel again), the UMEM is freed and every view of it becomes empty. Frames
   * still held, queued or in flight are gone with it; accounting() keeps where they were.
   */
  close(): void {
    if (this.closedWith) return;
    this.closedWith = this.accounting();
    this.native.close();
  }

  private heldFrame(addr: number, what: string): number {
    if (this.closedWith) throw new Error(`${what}: the socket is closed`);
    if (!Number.isInteger(addr) || addr < 0 || addr >>> this.shift >= this.frameCount) {
      throw new RangeError(`${what}: ${addr} is not a UMEM address`);
    }
    const f = addr >>> this.shift;
    if (this.state[f] !== FrameState.HELD) {
      throw new RangeError(`${what}: frame at ${addr} is not held by the caller (released twice, or never received?)`);
    }
    return f;
  }
}
