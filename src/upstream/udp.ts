/**
 * UDP exchanges with the upstreams over a small pool of kernel sockets, each
 * bound to a random source port from the ephemeral range and used for a
 * bounded number of queries (`reuse`) and a bounded time (`reuseMs`), then
 * retired: a retired socket takes no new query and closes as soon as its last
 * query is settled. `reuse` = 1 is a fresh socket per query, closed with it.
 *
 * Every query on a socket has an ID no other pending query on that socket
 * holds (drawn from the CSPRNG, drawn again on a clash), so an answer is
 * demultiplexed by its ID, then checked against the query that holds it:
 * source address and port equal to that query's upstream, then the question
 * (wire.ts matchResponse: name, case, type, class, cookies). A datagram whose
 * ID no pending query holds (a forgery, or a late answer to a settled query)
 * is counted as a mismatch and never taken. docs/FORWARDER.md, "Source ports:
 * a bounded pool", has the arithmetic of what a spoofer must guess.
 *
 * Sockets are not connect()ed: the kernel would then drop datagrams from other
 * sources silently, and we want to see and count them.
 */
import dgram from 'node:dgram';
import type { MessageView } from '../dns/view.js';
import { randomPort, randomU16, type PortRange } from './random.js';
import type { UpstreamAddr } from './upstream.js';
import { Mismatch, matchResponse, type MismatchCode, type Question } from './wire.js';

export interface UdpHooks {
  /** A validated answer; `view` holds it parsed (valid only during the call). */
  answer(msg: Uint8Array, view: MessageView): void;
  /** A datagram carrying this query's ID that was not its answer. */
  ignored(reason: MismatchCode): void;
  /** The exchange cannot succeed: bind, send or socket error. */
  error(err: Error): void;
}

/** A datagram that no pending query's ID matches: from where, and how short. */
export type StrayHook = (msg: Uint8Array, from: dgram.RemoteInfo) => void;

/**
 * Upstream and bind addresses are IP literals (upstream.ts canonicalises them): handed
 * back at once, where dgram's default lookup defers every bind and send by a tick.
 */
function literal(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, typeof family === 'number' ? family : address.includes(':') ? 6 : 4);
}

/** Attempts at a random port before letting the kernel choose one (its own choice is random too). */
const BIND_TRIES = 4;

export interface UdpPoolOptions {
  /** Queries per socket before it is retired (1: a fresh socket per query). */
  reuse: number;
  /** Most ms a socket takes new queries (and stays open when idle). */
  reuseMs: number;
  ports: PortRange;
  /** Reused for every check; parse is synchronous inside one socket callback. */
  view: MessageView;
  /** A datagram no pending query's ID matches. */
  stray: StrayHook;
}

/** One kernel socket and the queries pending on it, by ID. */
class PooledSocket {
  sock: dgram.Socket | null = null;
  readonly pending = new Map<number, UdpExchange>();
  /** Exchanges waiting for the bind to finish. */
  queue: UdpExchange[] = [];
  ready = false;
  closed = false;
  /** Takes no new query; closes when `pending` is empty. */
  retired = false;
  uses = 0;
  port = 0;
  bindTries = 0;
  ageTimer: NodeJS.Timeout | null = null;

  constructor(readonly family: 4 | 6) {}
}

export class UdpPool {
  private readonly current: [PooledSocket | null, PooledSocket | null] = [null, null];
  /** Every socket not yet closed (current and retired ones with queries pending). */
  private readonly open = new Set<PooledSocket>();
  private closedPool = false;
  /** Exchanges to send at the end of this callback (post). */
  private outbox: UdpExchange[] = [];
  /** Sockets opened (bound or not) since the start. */
  opened = 0;

  constructor(private readonly o: UdpPoolOptions) {}

  /** Sockets open now. */
  get sockets(): number {
    return this.open.size;
  }

  /**
   * Starts one exchange: a socket (the current one, or a new one), an ID free on it,
   * the query built for that ID by `build`, sent as soon as the socket is bound.
   */
  exchange(addr: UpstreamAddr, q: Question, build: (id: number) => Uint8Array, hooks: UdpHooks): UdpExchange {
    const fi = addr.family === 6 ? 1 : 0;
    let ps = this.current[fi];
    if (ps === null || ps.retired) ps = this.newSocket(addr.family === 6 ? 6 : 4);
    let id = randomU16();
    while (ps.pending.has(id)) id = randomU16();
    const ex = new UdpExchange(this, ps, addr, build(id), id, q, hooks);
    ps.pending.set(id, ex);
    if (++ps.uses >= this.o.reuse) this.retire(ps);
    if (this.closedPool) ex.fail(new Error('upstream sockets closed'));
    else if (ps.ready) this.post(ex);
    else ps.queue.push(ex);
    return ex;
  }

  /**
   * Sends go out together at the end of the current callback (a microtask), not one
   * by one between the queries of a batch: an AF_XDP worker handles up to 256 queries
   * per wake-up, and its misses, sent back to back, reach the upstream while it is
   * still awake for the first, instead of waking it once each (on this VM a wake-up was
   * the largest single cost of a miss's send: docs/BENCHMARKS.md, "The miss path under
   * load"). The queries of the batch that are hits were written before any of this.
   */
  private post(ex: UdpExchange): void {
    if (this.outbox.length === 0) queueMicrotask(this.sendOutbox);
    this.outbox.push(ex);
  }

  private readonly sendOutbox = (): void => {
    // Taken first: a send that throws must not leave the outbox full, which would keep
    // post() from ever scheduling another flush. A send that throws fails its exchange.
    const out = this.outbox;
    this.outbox = [];
    for (let i = 0; i < out.length; i++) {
      try {
        out[i]!.send();
      } catch (e) {
        out[i]!.fail(e instanceof Error ? e : new Error(String(e)));
      }
    }
  };

  private newSocket(family: 4 | 6): PooledSocket {
    const ps = new PooledSocket(family);
    this.current[family === 6 ? 1 : 0] = ps;
    this.open.add(ps);
    this.bind(ps);
    if (this.o.reuse > 1) {
      ps.ageTimer = setTimeout(() => {
        ps.ageTimer = null;
        this.retire(ps);
      }, this.o.reuseMs);
      ps.ageTimer.unref();
    }
    return ps;
  }

  private bind(ps: PooledSocket): void {
    this.opened++;
    const sock = dgram.createSocket({ type: ps.family === 6 ? 'udp6' : 'udp4', ipv6Only: ps.family === 6, lookup: literal });
    ps.sock = sock;
    const attempt = ps.bindTries++;
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (ps.sock !== sock) return;
      if (!ps.ready && err.code === 'EADDRINUSE' && attempt + 1 < BIND_TRIES) {
        ps.sock = null;
        sock.close();
        this.bind(ps);
        return;
      }
      this.failSocket(ps, err);
    });
    sock.on('message', (msg, rinfo) => this.onMessage(ps, msg, rinfo));
    const port = attempt + 1 < BIND_TRIES ? randomPort(this.o.ports) : 0;
    sock.bind({ port, address: ps.family === 6 ? '::' : '0.0.0.0', exclusive: true }, () => {
      if (ps.closed || ps.sock !== sock) return;
      ps.ready = true;
      ps.port = port !== 0 ? port : sock.address().port;
      const q = ps.queue;
      ps.queue = [];
      for (const ex of q) if (!ex.isClosed) ex.send();
    });
  }

  private onMessage(ps: PooledSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (ps.closed) return;
    const ex = msg.length >= 2 ? ps.pending.get((msg[0]! << 8) | msg[1]!) : undefined;
    if (ex === undefined) {
      this.o.stray(msg, rinfo);
      return;
    }
    ex.onMessage(msg, rinfo, this.o.view);
  }

  /** Takes no new query; closes now if nothing is pending. */
  private retire(ps: PooledSocket): void {
    if (ps.retired) return;
    ps.retired = true;
    const fi = ps.family === 6 ? 1 : 0;
    if (this.current[fi] === ps) this.current[fi] = null;
    if (ps.pending.size === 0) this.closeSocket(ps);
  }

  /** An exchange is over: off its socket's table, and the socket closed if retired and empty. */
  release(ps: PooledSocket, ex: UdpExchange): void {
    if (ps.pending.get(ex.id) === ex) ps.pending.delete(ex.id);
    if (ps.retired && ps.pending.size === 0) this.closeSocket(ps);
  }

  private failSocket(ps: PooledSocket, err: Error): void {
    this.retire(ps);
    for (const ex of [...ps.pending.values()]) ex.fail(err);
    this.closeSocket(ps);
  }

  private closeSocket(ps: PooledSocket): void {
    if (ps.closed) return;
    ps.closed = true;
    ps.retired = true;
    this.open.delete(ps);
    if (ps.ageTimer !== null) clearTimeout(ps.ageTimer);
    ps.ageTimer = null;
    const s = ps.sock;
    ps.sock = null;
    if (s === null) return;
    try {
      s.close();
    } catch {
      // already closed after a failed bind
    }
  }

  /** Closes every socket; exchanges still pending fail. Idempotent. */
  close(): void {
    this.closedPool = true;
    for (const ps of [...this.open]) this.failSocket(ps, new Error('upstream sockets closed'));
    this.current[0] = this.current[1] = null;
  }
}

/** One query on one pooled socket. */
export class UdpExchange {
  private closed = false;
  /** performance.now() when the datagram was handed to the kernel. */
  sentAt = 0;

  constructor(
    private readonly pool: UdpPool,
    private readonly ps: PooledSocket,
    private readonly addr: UpstreamAddr,
    private readonly wire: Uint8Array,
    readonly id: number,
    private readonly q: Question,
    private readonly hooks: UdpHooks,
  ) {}

  /** Local port the query went out from (0 until bound). */
  get localPort(): number {
    return this.ps.port;
  }

  send(): void {
    const sock = this.ps.sock;
    if (this.closed || sock === null) return;
    this.sentAt = performance.now();
    sock.send(this.wire, this.addr.port, this.addr.host, (err) => {
      if (err) this.fail(err);
    });
  }

  onMessage(msg: Buffer, rinfo: dgram.RemoteInfo, view: MessageView): void {
    if (this.closed) return;
    if (rinfo.address !== this.addr.host || rinfo.port !== this.addr.port) {
      this.hooks.ignored(Mismatch.SOURCE);
      return;
    }
    const r = matchResponse(view, msg, this.id, this.q);
    if (r !== Mismatch.NONE) {
      this.hooks.ignored(r);
      return;
    }
    this.hooks.answer(msg, view);
  }

  fail(err: Error): void {
    if (this.closed) return;
    this.close();
    this.hooks.error(err);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Stops listening for this query: a later datagram with its ID is a stray (counted,
   * never taken), and the socket closes if it is retired and this was its last query
   * (the kernel then refuses the datagram). Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.release(this.ps, this);
  }
}
