/**
 * DNS over TCP on the served port (RFC 7766, RFC 1035 4.2.2) through a
 * normal kernel socket: 2-byte length-prefixed messages, several queries per
 * connection handled concurrently and answered as they complete (possibly
 * out of order, RFC 7766 6.2.1.1), and bounds on connections, message size
 * and pipelining. What a query means is the handler's business (the same
 * engine, cache and forwarder as UDP); this file only moves frames and keeps
 * a hostile peer from costing more than its share (RFC 7766 6.2.3 and 10):
 *
 *   - a source the admit() option declines (the access list's deny) is reset at
 *     accept, before it counts toward any limit: it holds no slot and is never
 *     weighed against other connections for eviction.
 *   - at most maxConnections open, and at most maxPerClient from one client
 *     network (prefixKey: /24, /56). At the global limit a new connection
 *     takes the slot of the connection least recently active that has
 *     nothing in flight and nothing unsent (counted as evicted); only when
 *     every connection is busy is the new one refused. Over the per-client
 *     limit it is refused.
 *   - idle (nothing in flight, nothing buffered) for idleTimeoutMs: FIN;
 *     if the peer has not closed closeGraceMs later, the socket is destroyed
 *     and its slot freed (a FIN alone leaves a half-open socket holding it).
 *   - a message must arrive whole within messageTimeoutMs of its first byte
 *     (slowloris; time paused by the listener does not count), and replies
 *     waiting in the write buffer must make progress (one of them leave for the
 *     kernel, or the buffer drain) within writeTimeoutMs (a client that never
 *     reads): else the connection is destroyed.
 *   - replies written and not yet taken by the kernel are bounded: a reply is
 *     written only while its connection has less than TCP_WRITE_BUDGET of them
 *     and the listener less than maxUnsentBytes (as Unbound's stream-wait-size
 *     bounds its queued TCP answers); otherwise it is held, still counted as a
 *     query in flight (maxPipelined, maxInflight), until bytes leave. A
 *     connection with replies waiting takes no new query while they and the
 *     replies it has in flight (at its largest reply so far) would pass the budget.
 *   - under pressure (more than pressureShare of maxConnections open), the
 *     idle and message timeouts drop to pressureTimeoutMs, as Unbound
 *     shortens its TCP timeouts when more than half its slots are in use.
 *
 * The deadlines are checked by one sweep over the connections every
 * sweepIntervalMs against an injectable clock, not by a timer per socket,
 * so tests drive time by hand and thousands of connections cost one timer.
 *
 * A frame shorter than a DNS header, longer than maxMessageSize, or with
 * QR=1 (an answer sent to a server) is counted and closes the connection:
 * the stream cannot be trusted after it. Anything else goes to the handler,
 * which answers FORMERR or returns null to send nothing.
 */
import net from 'node:net';
import { FLAG_QR, HEADER_LEN, MAX_MESSAGE_LEN } from '../dns/constants.js';
import { parseAddr, prefixKey, type Addr } from '../net/addr.js';
import type { FrameHandler } from './xsk-server.js';

/** One query message in (no length prefix), one reply message out, or null for no reply. */
export type TcpHandler = (query: Uint8Array, client?: Addr) => Promise<Uint8Array | null>;

/** A TcpHandler over anything that answers in place (the engine): one buffer per query. */
export function tcpHandlerOf(handler: FrameHandler): TcpHandler {
  return async (q, client) => {
    const out = Buffer.allocUnsafeSlow(MAX_MESSAGE_LEN); // written before it is read: no need to zero 64 KiB a query
    const n = await handler.handle(q, 0, q.length, out, 0, true, undefined, undefined, client);
    return n > 0 ? out.subarray(0, n) : null;
  };
}

export interface TcpListenerOptions {
  /** Close a connection with nothing in flight after this long without traffic, ms (default 10000). */
  idleTimeoutMs?: number;
  /** Open connections at most (default 1000); see the file comment for what happens at the limit. */
  maxConnections?: number;
  /** Open connections at most from one client network, prefixKey (default 64). */
  maxPerClient?: number;
  /** A message must arrive whole within this long of its first byte, ms (default 3000). */
  messageTimeoutMs?: number;
  /** Replies waiting to be sent must make progress within this long, ms (default 5000). */
  writeTimeoutMs?: number;
  /**
   * Bytes of replies written and not yet taken by the kernel, over all connections
   * together (default TCP_MAX_UNSENT): at the bound, replies are held until some leave.
   */
  maxUnsentBytes?: number;
  /** After our FIN, destroy the socket if the peer has not closed within this long, ms (default 1000). */
  closeGraceMs?: number;
  /** Share of maxConnections open beyond which the listener is under pressure (default 0.5). */
  pressureShare?: number;
  /** Idle and message timeout under pressure, ms (default 500). */
  pressureTimeoutMs?: number;
  /** How often deadlines are checked, ms (default 100); tests that call sweep() themselves pass a large value. */
  sweepIntervalMs?: number;
  /** Milliseconds on a monotonic clock (default performance.now). */
  clock?: () => number;
  /** Largest query message accepted, bytes (default 4096, at most 65535). */
  maxMessageSize?: number;
  /** Queries in flight per connection before reading from it pauses (default 32). */
  maxPipelined?: number;
  /**
   * Queries in flight on all connections together before reading from any pauses
   * (default TCP_MAX_INFLIGHT). Each holds a 64 KiB reply buffer while it waits on the
   * upstream, so this is what bounds the listener's memory (docs/LIMITS.md), whatever
   * the number of connections times maxPipelined.
   */
  maxInflight?: number;
  /**
   * Queries in flight (answered and held for write room included) at most from one client
   * network (prefixKey) over all its connections (default a quarter of maxInflight). A
   * held reply keeps its place until its bytes leave, so without this a few connections
   * of one network that ask and never read would hold every place for their write
   * deadline, and every other network's TCP would wait.
   */
  maxInflightPerClient?: number;
  /**
   * Whether a connection from this source is taken at all, asked at accept (the service
   * passes the edge policy's access list, read at each call so a reload applies). A
   * declined one is reset at once and counted as `denied`. Default: every source.
   */
  admit?: (client: Addr) => boolean;
  /**
   * What the kernel dropped for a listening socket's fd (the addon's socketDrops): the
   * handshake packets refused because the accept queue was full, read by kernelDrops().
   * None given: kernelDrops() is 0.
   */
  socketDrops?: (fd: number) => number;
}

/** maxInflight's default: 256 queries, 16 MiB of reply buffers. */
export const TCP_MAX_INFLIGHT = 256;

/**
 * Bytes of replies one connection may have written and not yet taken by the kernel (its
 * socket's writableLength): at the budget its next reply is held, not written, and it
 * takes no new query. It passes the budget by one reply at most.
 */
export const TCP_WRITE_BUDGET = 64 * 1024;

/** maxUnsentBytes's default: replies written and not taken by the kernel over all connections (Unbound's stream-wait-size). */
export const TCP_MAX_UNSENT = 4 * 1024 * 1024;

export interface TcpListenOptions {
  port: number;
  /** Default: all addresses ('::', dual-stack where the kernel allows it). */
  host?: string;
  ipv6Only?: boolean;
  backlog?: number;
}

export interface TcpListenerStats {
  /** Open now. */
  connections: number;
  accepted: number;
  /** Reset at accept because admit() declined its source (a denied client). */
  denied: number;
  /** Closed at accept because maxConnections were open, every one of them busy. */
  rejected: number;
  /** Closed at accept because its client network had maxPerClient open. */
  rejectedClient: number;
  /** Closed to make room for a new connection at the global limit. */
  evicted: number;
  /** Closed because a message did not arrive whole in time. */
  messageTimeouts: number;
  /** Closed because replies were not read in time. */
  writeTimeouts: number;
  /** Destroyed because the peer did not close within closeGraceMs of our FIN. */
  closeTimeouts: number;
  /** 1 while more than pressureShare of maxConnections are open. */
  pressure: number;
  /** Client networks with a connection open. */
  clients: number;
  queries: number;
  responses: number;
  /** Handler returned null: nothing sent. */
  dropped: number;
  /** Frames shorter than a header or carrying QR=1; each closed its connection. */
  badFrames: number;
  /** Frames over maxMessageSize; each closed its connection. */
  oversize: number;
  /** Handler threw, rejected or returned something that cannot be framed. */
  handlerErrors: number;
  idleClosed: number;
  /** Resets and other socket errors. */
  socketErrors: number;
  /** Queries handed to the handler and not yet answered. */
  inflight: number;
  /** Bytes of replies written and not yet taken by the kernel, over all connections. */
  unsent: number;
  /** Replies answered and held for want of write room (counted in inflight too). */
  held: number;
}

/** Bytes received and not yet framed: a list of chunks, joined only when a whole frame is there. */
class FrameBuffer {
  private chunks: Buffer[] = [];
  size = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.size += b.length;
  }

  /** The 16-bit length prefix, or -1 while fewer than 2 bytes are buffered. */
  peekLength(): number {
    if (this.size < 2) return -1;
    const c0 = this.chunks[0]!;
    return c0.length >= 2 ? (c0[0]! << 8) | c0[1]! : (c0[0]! << 8) | this.chunks[1]![0]!;
  }

  /** Removes and returns the first n bytes (n <= size); copies only when they span chunks. */
  take(n: number): Buffer {
    const c0 = this.chunks[0]!;
    let out: Buffer;
    if (c0.length >= n) {
      out = c0.subarray(0, n);
      if (c0.length === n) this.chunks.shift();
      else this.chunks[0] = c0.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - o);
        out.set(c.subarray(0, k), o);
        o += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.size -= n;
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.size = 0;
  }
}

interface Conn {
  sock: net.Socket;
  /** The peer's address, parsed once at accept. */
  client: Addr | undefined;
  /** prefixKey of the client, for the per-client count. */
  prefix: string;
  /** Last time a byte came in or a reply went out (ms, listener clock). */
  lastActive: number;
  /** When the first byte of the message being received came; -1 when none is partial. */
  msgStart: number;
  /** Since when replies have been waiting in our send buffer without progress; -1 when it is empty. */
  writeStart: number;
  /** Bytes written and not yet taken by the kernel (this connection's share of the listener's unsent). */
  unsent: number;
  /** The largest reply written on this connection, framed: what a reply in flight is counted at. */
  largest: number;
  /** Framed replies answered while there was no write room, oldest first; each still counts in inflight. */
  held: Buffer[];
  /** When we sent FIN; -1 before. */
  endAt: number;
  /** Removed from the listener's books (closed, or being destroyed). */
  gone: boolean;
  frames: FrameBuffer;
  inflight: number;
  /** Reading paused for pipelining or write backpressure. */
  paused: boolean;
  /** The peer sent FIN: finish what is in flight, then end. */
  peerEnded: boolean;
  /** We sent FIN (idle or after the peer's). */
  ending: boolean;
}

const MAX_MS = 2_147_483_647;

function intOption(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min || x > max) throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${String(v)}`);
  return x;
}

export class TcpListener {
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxPerClient: number;
  readonly maxMessageSize: number;
  readonly maxPipelined: number;
  readonly maxInflight: number;
  /** Some connection paused because the listener had maxInflight queries in flight. */
  private capped = false;
  readonly messageTimeoutMs: number;
  readonly writeTimeoutMs: number;
  readonly maxUnsentBytes: number;
  /** Bytes of replies written and not yet taken by the kernel, over all connections. */
  private unsent = 0;
  /** Replies held over all connections. */
  private heldCount = 0;
  /** Some connection holds a reply because the listener had maxUnsentBytes unsent. */
  private writeCapped = false;
  readonly closeGraceMs: number;
  readonly pressureShare: number;
  readonly pressureTimeoutMs: number;
  /** One listening server per bound address (the service follows its interface's addresses). */
  private readonly servers = new Map<string, net.Server>();
  /** Open connections, least recently active first (touch() moves one to the end). */
  private readonly conns = new Set<Conn>();
  private readonly perClient = new Map<string, number>();
  private readonly clock: () => number;
  private readonly sweeper: NodeJS.Timeout;
  private readonly s: Omit<TcpListenerStats, 'connections' | 'inflight' | 'pressure' | 'clients' | 'unsent' | 'held'> = {
    accepted: 0,
    denied: 0,
    rejected: 0,
    rejectedClient: 0,
    evicted: 0,
    queries: 0,
    responses: 0,
    dropped: 0,
    badFrames: 0,
    oversize: 0,
    handlerErrors: 0,
    idleClosed: 0,
    messageTimeouts: 0,
    writeTimeouts: 0,
    closeTimeouts: 0,
    socketErrors: 0,
  };
  private inflight = 0;
  /** Queries in flight per client network (prefixKey); absent at 0. */
  private readonly netInflight = new Map<string, number>();
  readonly maxInflightPerClient: number;
  private closed = false;
  private readonly admit: ((client: Addr) => boolean) | undefined;
  private readonly socketDrops: ((fd: number) => number) | undefined;
  /** The kernel's drop count last read for each listening server (it only grows while the socket lives). */
  private readonly serverDrops = new Map<net.Server, number>();
  /** Drops of servers since closed (unlisten, close). */
  private retiredDrops = 0;

  constructor(
    private readonly handle: TcpHandler,
    opts: TcpListenerOptions = {},
  ) {
    if (typeof handle !== 'function') throw new TypeError('TcpListener needs a handler function');
    this.idleTimeoutMs = intOption('idleTimeoutMs', opts.idleTimeoutMs, 10_000, 1, MAX_MS);
    this.maxConnections = intOption('maxConnections', opts.maxConnections, 1000, 1, 1_000_000);
    this.maxPerClient = intOption('maxPerClient', opts.maxPerClient, 64, 1, 1_000_000);
    this.maxMessageSize = intOption('maxMessageSize', opts.maxMessageSize, 4096, HEADER_LEN, MAX_MESSAGE_LEN);
    this.maxPipelined = intOption('maxPipelined', opts.maxPipelined, 32, 1, 65535);
    this.maxInflight = intOption('maxInflight', opts.maxInflight, TCP_MAX_INFLIGHT, 1, 1_000_000);
    this.maxInflightPerClient = intOption('maxInflightPerClient', opts.maxInflightPerClient, Math.max(1, Math.floor(this.maxInflight / 4)), 1, 1_000_000);
    this.messageTimeoutMs = intOption('messageTimeoutMs', opts.messageTimeoutMs, 3000, 1, MAX_MS);
    this.writeTimeoutMs = intOption('writeTimeoutMs', opts.writeTimeoutMs, 5000, 1, MAX_MS);
    this.maxUnsentBytes = intOption('maxUnsentBytes', opts.maxUnsentBytes, TCP_MAX_UNSENT, 2 + MAX_MESSAGE_LEN, 2 ** 40);
    this.closeGraceMs = intOption('closeGraceMs', opts.closeGraceMs, 1000, 1, MAX_MS);
    this.pressureTimeoutMs = intOption('pressureTimeoutMs', opts.pressureTimeoutMs, 500, 1, MAX_MS);
    const share = opts.pressureShare ?? 0.5;
    if (!(share > 0 && share <= 1)) throw new RangeError(`pressureShare must be in (0, 1], got ${String(opts.pressureShare)}`);
    this.pressureShare = share;
    const sweepMs = intOption('sweepIntervalMs', opts.sweepIntervalMs, 100, 1, MAX_MS);
    this.clock = opts.clock ?? (() => performance.now());
    if (opts.admit !== undefined && typeof opts.admit !== 'function') throw new TypeError('admit must be a function');
    this.admit = opts.admit;
    if (opts.socketDrops !== undefined && typeof opts.socketDrops !== 'function') throw new TypeError('socketDrops must be a function');
    this.socketDrops = opts.socketDrops;
    // Connection limits are ours (onConnection), never a server's maxConnections: that one would refuse where we evict.
    this.sweeper = setInterval(() => this.sweep(), sweepMs);
    this.sweeper.unref();
  }

  /**
   * Starts listening on one more address (o.host; default all); resolves with the bound
   * address (port 0 picks a free one). Connections of every address share the limits.
   */
  listen(o: TcpListenOptions): Promise<net.AddressInfo> {
    if (this.closed) return Promise.reject(new Error('TcpListener is closed'));
    const key = o.host ?? '';
    if (this.servers.has(key)) return Promise.reject(new Error(`already listening on '${key}'`));
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }, (sock) => this.onConnection(sock));
    server.on('drop', () => this.s.rejected++);
    return new Promise((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      const lo: net.ListenOptions = { port: o.port, exclusive: true };
      if (o.host !== undefined) lo.host = o.host;
      if (o.ipv6Only !== undefined) lo.ipv6Only = o.ipv6Only;
      if (o.backlog !== undefined) lo.backlog = o.backlog;
      server.listen(lo, () => {
        server.off('error', onError);
        // After listen() succeeded, server errors (EMFILE on accept ...) are counted, never thrown.
        server.on('error', () => this.s.socketErrors++);
        this.servers.set(key, server);
        resolve(server.address() as net.AddressInfo);
      });
    });
  }

  /** Stops listening on one address; its open connections carry on. */
  async unlisten(host: string): Promise<void> {
    const server = this.servers.get(host);
    if (!server) return;
    this.servers.delete(host);
    this.retireDrops(server);
    await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * Handshake packets the kernel dropped on our listening sockets because an accept
   * queue was full (a SYN, or the ACK that would have completed a handshake: tcp_listendrop
   * counts each, so a client that retries is counted again), since the listener was made;
   * closed sockets keep their share. 0 without socketDrops. A socket that cannot be read
   * this time keeps its last count, so the total never goes down.
   */
  kernelDrops(): number {
    let total = this.retiredDrops;
    for (const server of this.servers.values()) total += this.readDrops(server);
    return total;
  }

  private readDrops(server: net.Server): number {
    let last = this.serverDrops.get(server) ?? 0;
    const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (this.socketDrops !== undefined && typeof fd === 'number' && fd >= 0) {
      try {
        const n = this.socketDrops(fd);
        if (n > last) this.serverDrops.set(server, (last = n));
      } catch {
        // Keeps the last count: the socket may be closing under us.
      }
    }
    return last;
  }

  /** Moves a server's last count into the retired total as it closes. */
  private retireDrops(server: net.Server): void {
    this.retiredDrops += this.readDrops(server);
    this.serverDrops.delete(server);
  }

  /** The first bound address. */
  address(): net.AddressInfo | null {
    for (const server of this.servers.values()) {
      const a = server.address();
      if (a !== null && typeof a === 'object') return a;
    }
    return null;
  }

  stats(): TcpListenerStats {
    return { connections: this.conns.size, inflight: this.inflight, unsent: this.unsent, held: this.heldCount, pressure: this.underPressure() ? 1 : 0, clients: this.perClient.size, ...this.s };
  }

  /** More than pressureShare of maxConnections open. */
  private underPressure(): boolean {
    return this.conns.size > this.maxConnections * this.pressureShare;
  }

  /**
   * Checks every connection's deadlines against the clock (the sweep timer calls this;
   * tests with a fake clock call it themselves).
   */
  sweep(now: number = this.clock()): void {
    const pressure = this.underPressure();
    const idleMs = pressure ? Math.min(this.idleTimeoutMs, this.pressureTimeoutMs) : this.idleTimeoutMs;
    const msgMs = pressure ? Math.min(this.messageTimeoutMs, this.pressureTimeoutMs) : this.messageTimeoutMs;
    for (const c of [...this.conns]) {
      if (c.gone) continue;
      const sock = c.sock;
      if (c.held.length > 0) this.flushHeld(c); // a wakeup missed is not a reply lost
      if (c.endAt >= 0) {
        if (now - c.endAt >= this.closeGraceMs) {
          this.s.closeTimeouts++;
          this.drop(c);
        }
        continue;
      }
      // writeStart restarts whenever a reply leaves (wrote) or the buffer drains: a client
      // that reads steadily never meets the deadline, one that stops does.
      if (sock.writableLength > 0) {
        if (c.writeStart < 0) c.writeStart = now;
        else if (now - c.writeStart >= this.writeTimeoutMs) {
          this.s.writeTimeouts++;
          this.drop(c);
          continue;
        }
      } else {
        c.writeStart = -1;
      }
      if (c.msgStart >= 0 && !c.paused) {
        if (now - c.msgStart >= msgMs) {
          this.s.messageTimeouts++;
          this.drop(c);
        }
        continue;
      }
      if (c.inflight === 0 && !c.paused && c.writeStart < 0 && now - c.lastActive >= idleMs) {
        this.s.idleClosed++;
        this.endConn(c, now);
      }
    }
  }

  /** Stops accepting, closes every connection (answers in flight are dropped) and waits for the server to close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const server of this.servers.values()) this.retireDrops(server);
    const done = Promise.all([...this.servers.values()].map((server) => new Promise<void>((r) => server.close(() => r()))));
    this.servers.clear();
    for (const c of [...this.conns]) {
      this.forget(c);
      c.sock.destroy();
    }
    await done;
  }

  // ---- connections -------------------------------------------------------------

  private onConnection(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    const client = parseAddr(sock.remoteAddress ?? '') ?? undefined;
    // A denied source never holds a slot; one whose address could not be read is already
    // gone, and the handler refuses to serve it (the edge policy fails closed).
    if (client && this.admit && !this.admit(client)) {
      this.s.denied++;
      // A failed reset is emitted as 'error': without a listener it would throw and the
      // socket would be left half destroyed.
      sock.on('error', () => {});
      try {
        sock.resetAndDestroy();
      } catch {
        sock.destroy();
      }
      return;
    }
    const prefix = client ? prefixKey(client) : '?';
    if ((this.perClient.get(prefix) ?? 0) >= this.maxPerClient) {
      this.s.rejectedClient++;
      sock.destroy();
      return;
    }
    if (this.conns.size >= this.maxConnections && !this.evictOne()) {
      this.s.rejected++;
      sock.destroy();
      return;
    }
    this.s.accepted++;
    const now = this.clock();
    const c: Conn = {
      sock, client, prefix, lastActive: now, msgStart: -1, writeStart: -1, unsent: 0, largest: 0, held: [], endAt: -1, gone: false,
      frames: new FrameBuffer(), inflight: 0, paused: false, peerEnded: false, ending: false,
    };
    this.conns.add(c);
    this.perClient.set(prefix, (this.perClient.get(prefix) ?? 0) + 1);
    sock.on('data', (d: Buffer) => this.onData(c, d));
    sock.on('end', () => {
      c.peerEnded = true;
      this.maybeEnd(c);
    });
    sock.on('drain', () => {
      // The buffer emptied: the write deadline starts again with the next reply that waits.
      if (sock.writableLength === 0) c.writeStart = -1;
      this.flushHeld(c);
      this.maybeResume(c);
      this.maybeEnd(c);
    });
    sock.on('error', () => this.s.socketErrors++);
    sock.on('close', () => this.forget(c));
  }

  /** Frees the slot of the least recently active connection with nothing in flight or unsent. */
  private evictOne(): boolean {
    for (const c of this.conns) {
      if (c.gone || c.inflight > 0 || c.sock.writableLength > 0) continue;
      this.s.evicted++;
      this.drop(c);
      return true;
    }
    return false;
  }

  /**
   * Takes a connection off the books now and resets it: an RST frees the kernel's side
   * at once too, where a close after our FIN, or with replies unsent, would leave an
   * orphan socket holding memory for a minute or more.
   */
  private drop(c: Conn): void {
    this.forget(c);
    if (c.sock.destroyed) return;
    try {
      c.sock.resetAndDestroy();
    } catch {
      c.sock.destroy(); // not connected (yet or any more): nothing to reset
    }
  }

  private forget(c: Conn): void {
    if (c.gone) return;
    c.gone = true;
    this.conns.delete(c);
    const n = (this.perClient.get(c.prefix) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(c.prefix);
    else this.perClient.set(c.prefix, n);
    c.frames.clear();
    // Its unsent replies go with the socket (destroyed, or closed with nothing left to send),
    // and its held ones with it: they free their places in flight.
    this.unsent -= c.unsent;
    c.unsent = 0;
    const k = c.held.length;
    if (k > 0) {
      c.held = [];
      this.heldCount -= k;
      c.inflight -= k;
      this.inflight -= k;
      this.netAdd(c.prefix, -k);
    }
    // Room freed under either bound goes to the connections waiting for it (not from
    // inside whatever is dropping this one).
    if ((this.writeCapped || this.capped) && !this.closed) setImmediate(() => this.wake());
  }

  /** Activity: the connection moves to the end of the eviction order. */
  private touch(c: Conn, now: number): void {
    c.lastActive = now;
    if (c.gone) return;
    this.conns.delete(c);
    this.conns.add(c);
  }

  private onData(c: Conn, d: Buffer): void {
    if (c.sock.destroyed || c.ending) return;
    const now = this.clock();
    if (c.frames.size === 0 && d.length > 0) c.msgStart = now;
    c.frames.push(d);
    this.touch(c, now);
    this.pump(c);
    // Bytes left after the whole messages: the next message has begun (by now at the latest).
    if (c.frames.size === 0) c.msgStart = -1;
    else if (c.msgStart < 0) c.msgStart = now;
  }

  /** True while this connection may take another query. */
  private canTake(c: Conn): boolean {
    if (this.inflight >= this.maxInflight || (this.netInflight.get(c.prefix) ?? 0) >= this.maxInflightPerClient) {
      // Waits for a place: an answer anywhere (resumeCapped) looks at it again.
      this.capped = true;
      return false;
    }
    if (c.inflight >= this.maxPipelined || c.held.length > 0) return false;
    const sock = c.sock;
    if (sock.writableNeedDrain) return false;
    // Replies already waiting for the kernel (the client is not reading as fast as it asks):
    // no more queries while they and the answers on their way would pass the budget.
    const waiting = sock.writableLength;
    return waiting === 0 || waiting + c.inflight * c.largest < TCP_WRITE_BUDGET;
  }

  /** Frames and dispatches buffered queries while the connection may take more; pauses reading when it may not. */
  private pump(c: Conn): void {
    for (;;) {
      if (!this.canTake(c)) {
        this.pause(c);
        return;
      }
      const len = c.frames.peekLength();
      if (len < 0) return;
      if (len > this.maxMessageSize) {
        this.s.oversize++;
        this.kill(c);
        return;
      }
      if (len < HEADER_LEN) {
        this.s.badFrames++;
        this.kill(c);
        return;
      }
      if (c.frames.size < 2 + len) return;
      c.frames.take(2);
      const msg = c.frames.take(len);
      c.msgStart = c.frames.size > 0 ? this.clock() : -1;
      if ((((msg[2]! << 8) | msg[3]!) & FLAG_QR) !== 0) {
        this.s.badFrames++;
        this.kill(c);
        return;
      }
      this.dispatch(c, msg);
      if (c.sock.destroyed) return;
    }
  }

  private dispatch(c: Conn, msg: Uint8Array): void {
    this.s.queries++;
    c.inflight++;
    this.inflight++;
    this.netAdd(c.prefix, 1);
    let p: Promise<Uint8Array | null>;
    try {
      p = Promise.resolve(this.handle(msg, c.client));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (reply) => this.onReply(c, reply),
      () => {
        this.s.handlerErrors++;
        this.onReply(c, null, true);
      },
    ).catch(() => this.s.socketErrors++); // a reply that cannot be written is never an unhandled rejection
  }

  private onReply(c: Conn, reply: Uint8Array | null, failed = false): void {
    const sock = c.sock;
    if (!failed && !c.gone && !sock.destroyed && !c.ending) {
      if (reply === null) {
        this.s.dropped++;
      } else if (!(reply instanceof Uint8Array) || reply.length < HEADER_LEN || reply.length > MAX_MESSAGE_LEN) {
        this.s.handlerErrors++;
      } else {
        // One buffer, one write: the handler may reuse its output buffer as soon as we return.
        const framed = Buffer.allocUnsafe(2 + reply.length);
        framed[0] = reply.length >>> 8;
        framed[1] = reply.length & 0xff;
        framed.set(reply, 2);
        if (c.held.length > 0 || !this.canWrite(c)) {
          // No room: held, and still in flight (it keeps its place under maxPipelined and
          // maxInflight) until bytes leave (wrote) and there is.
          c.held.push(framed);
          this.heldCount++;
          if (this.unsent >= this.maxUnsentBytes) this.writeCapped = true;
          return;
        }
        this.write(c, framed);
      }
    }
    this.answered(c);
  }

  /** Room to write one more reply on this connection: under its budget, and the listener under maxUnsentBytes. */
  private canWrite(c: Conn): boolean {
    return c.sock.writableLength < TCP_WRITE_BUDGET && this.unsent < this.maxUnsentBytes;
  }

  private write(c: Conn, framed: Buffer): void {
    const sock = c.sock;
    const n = framed.length;
    this.s.responses++;
    if (n > c.largest) c.largest = n;
    c.unsent += n;
    this.unsent += n;
    sock.write(framed, () => this.wrote(c, n));
    const now = this.clock();
    if (sock.writableLength > 0 && c.writeStart < 0) c.writeStart = now;
    this.touch(c, now);
  }

  /** A query is done (its reply written, or nothing to write): its place in flight is free. */
  private answered(c: Conn): void {
    c.inflight--;
    this.inflight--;
    this.netAdd(c.prefix, -1);
    // After a drop or an error, idleness counts from the answer's end, not from the query.
    if (c.inflight === 0) c.lastActive = this.clock();
    // Room under maxInflight goes to the connections waiting for it first, least recently
    // active first (this one was just touched, so it comes last): were it refilled first, one
    // connection with thousands of queries buffered would keep every other one waiting.
    if (this.capped && this.inflight < this.maxInflight) this.resumeCapped();
    this.maybeResume(c);
    this.maybeEnd(c);
  }

  /** Writes held replies while there is room; each written one is answered. */
  private flushHeld(c: Conn): void {
    while (c.held.length > 0 && !c.gone && !c.sock.destroyed) {
      if (!this.canWrite(c)) {
        if (this.unsent >= this.maxUnsentBytes) this.writeCapped = true;
        return;
      }
      const framed = c.held.shift()!;
      this.heldCount--;
      this.write(c, framed);
      this.answered(c);
    }
  }

  /** A reply left for the kernel (or its socket was destroyed): progress, room for held replies, maybe for more queries. */
  private wrote(c: Conn, n: number): void {
    if (c.gone) return;
    c.unsent -= n;
    this.unsent -= n;
    c.writeStart = c.sock.writableLength > 0 ? this.clock() : -1;
    this.flushHeld(c);
    if (this.writeCapped && this.unsent < this.maxUnsentBytes) this.wake();
    this.maybeResume(c);
  }

  /**
   * Room again under maxUnsentBytes or maxInflight: connections holding replies write
   * them, and connections paused for the cap read again, least recently active first.
   */
  private wake(): void {
    if (this.writeCapped) {
      this.writeCapped = false;
      for (const o of this.conns) {
        if (o.held.length > 0) this.flushHeld(o);
        if (this.writeCapped) break;
      }
    }
    if (this.capped && this.inflight < this.maxInflight) this.resumeCapped();
  }

  private netAdd(prefix: string, d: number): void {
    const n = (this.netInflight.get(prefix) ?? 0) + d;
    if (n > 0) this.netInflight.set(prefix, n);
    else this.netInflight.delete(prefix);
  }

  /** Room again under maxInflight: connections paused for it read again, least recently active first, while it lasts. */
  private resumeCapped(): void {
    this.capped = false;
    for (const other of this.conns) {
      if (this.inflight >= this.maxInflight) {
        this.capped = true;
        return;
      }
      this.maybeResume(other);
      this.maybeEnd(other);
    }
  }

  private pause(c: Conn): void {
    if (c.paused) return;
    c.paused = true;
    c.sock.pause();
  }

  /** After an answer or a drain: frame what is buffered, then read again if there is room. */
  private maybeResume(c: Conn): void {
    if (!c.paused || c.sock.destroyed || c.ending) return;
    if (!this.canTake(c)) return;
    c.paused = false;
    // Time paused by us is not the client's: a partial message's deadline starts again.
    if (c.frames.size > 0) c.msgStart = this.clock();
    this.pump(c);
    if (!c.paused) c.sock.resume();
  }

  /**
   * After the peer's FIN, end our side once every answer is out. Not while
   * paused: complete frames may still wait in the buffer; a partial frame
   * left when the peer stops is discarded.
   */
  private maybeEnd(c: Conn): void {
    if (c.peerEnded && c.inflight === 0 && !c.paused && !c.ending && !c.sock.destroyed) this.endConn(c, this.clock());
  }

  /** Sends our FIN; the sweep destroys the socket if the peer has not closed closeGraceMs later. */
  private endConn(c: Conn, now: number): void {
    c.ending = true;
    c.endAt = now;
    c.frames.clear();
    c.msgStart = -1;
    c.sock.end();
  }

  /** Closes at once after a framing error: the rest of the stream cannot be trusted. */
  private kill(c: Conn): void {
    this.drop(c);
  }
}
