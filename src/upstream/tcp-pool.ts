/**
 * DNS over TCP to one upstream (RFC 7766), used when a UDP answer came back with TC=1:
 * a small pool of reused connections, each carrying several queries at once
 * (pipelining, RFC 7766 §6.2.1). Answers may come in any order; each is matched to its
 * query by ID and then by question (wire.ts matchResponse), never by position.
 *
 *   query() ── an open connection with room (fewer than maxPipeline queries)? ── send on it
 *        │ none
 *        ├─ fewer than maxConns connections ─► open one, send on it
 *        └─ otherwise ──────────────────────► null: the caller gives what it has (busy)
 *
 * Bounds: maxConns connections per upstream, maxPipeline queries per connection, one
 * read buffer of at most one message (65,537 bytes) per connection, and a connection
 * with nothing in flight for idleMs is closed. A connection the upstream closes or
 * resets fails the queries on it (the forwarder then tries elsewhere); the pool opens a
 * new one for the next query. Each query has its own timer; a query that timed out
 * leaves the connection open for the others.
 */
import net from 'node:net';
import { MAX_MESSAGE_LEN } from '../dns/constants.js';
import { MessageView } from '../dns/view.js';
import { randomU16 } from './random.js';
import type { UpstreamAddr } from './upstream.js';
import { Mismatch, matchResponse, type MismatchCode, type Question } from './wire.js';

export interface TcpHooks {
  /** The validated answer; `view` holds it parsed (valid only during the call). */
  answer(msg: Uint8Array, view: MessageView): void;
  /** Connect error, reset, close before the answer, or this query's timeout (`timedOut`). */
  error(err: Error, timedOut: boolean): void;
}

/** The socket a connection runs over (net.Socket; tests give a fake). */
export interface TcpSocketLike {
  write(data: Uint8Array): boolean;
  destroy(): void;
  on(ev: 'connect', f: () => void): this;
  on(ev: 'data', f: (d: Buffer) => void): this;
  on(ev: 'error', f: (e: Error) => void): this;
  on(ev: 'close', f: () => void): this;
}

export interface TcpPoolOptions {
  /** Connections per upstream (default 2). */
  maxConns?: number;
  /** Queries in flight per connection (default 64). */
  maxPipeline?: number;
  /** A connection with nothing in flight this long is closed, ms (default 10,000). */
  idleMs?: number;
  /** Opens a connection (default net.connect with TCP_NODELAY). */
  connect?: (addr: UpstreamAddr) => TcpSocketLike;
}

export interface TcpPoolStats {
  /** Connections opened. */
  connects: number;
  /** Queries sent on a connection that already carried one. */
  reused: number;
  /** Queries refused because every connection was full and the pool at maxConns. */
  busy: number;
  /** Connections closed after idleMs with nothing in flight. */
  idleClosed: number;
  /** Connections the upstream closed or reset, or that failed to connect. */
  lost: number;
  /** Connections open now. */
  open: number;
}

export const TCP_POOL_DEFAULTS = { maxConns: 2, maxPipeline: 64, idleMs: 10_000 } as const;

function defaultConnect(addr: UpstreamAddr): TcpSocketLike {
  return net.connect({ host: addr.host, port: addr.port, family: addr.family, noDelay: true });
}

/** One query on a connection; close() abandons it without calling a hook. */
export interface TcpQuery {
  close(): void;
}

interface Pending extends TcpQuery {
  id: number;
  q: Question;
  hooks: TcpHooks;
  timer: NodeJS.Timeout | null;
  conn: Conn;
}

class Conn {
  readonly pending = new Map<number, Pending>();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  closed = false;
  /** Queries this connection has carried. */
  used = 0;

  constructor(
    private readonly pool: TcpPool,
    readonly sock: TcpSocketLike,
  ) {
    sock.on('data', (d) => this.onData(d));
    sock.on('error', (e) => this.lose(e));
    sock.on('close', () => this.lose(new Error(`TCP to ${pool.label} closed before the answer`)));
  }

  send(p: Pending, wire: Uint8Array): void {
    this.stopIdle();
    this.pending.set(p.id, p);
    this.used++;
    const frame = Buffer.allocUnsafe(2 + wire.length);
    frame.writeUInt16BE(wire.length, 0);
    frame.set(wire, 2);
    // Written before 'connect' too: the socket queues it until the handshake is done.
    this.sock.write(frame);
  }

  /** A query is over (answered, timed out, abandoned). */
  drop(p: Pending): void {
    if (this.pending.get(p.id) === p) this.pending.delete(p.id);
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    if (this.pending.size === 0 && !this.closed) this.startIdle();
  }

  private startIdle(): void {
    this.stopIdle();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.pending.size > 0 || this.closed) return;
      this.pool.s.idleClosed++;
      this.close();
    }, this.pool.idleMs);
  }

  private stopIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private onData(d: Buffer): void {
    if (this.closed) return;
    this.chunks.push(d);
    this.buffered += d.length;
    for (;;) {
      if (this.buffered < 2) return;
      let all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const len = all.readUInt16BE(0);
      if (this.buffered < 2 + len) {
        this.chunks = [all];
        return;
      }
      const msg = all.subarray(2, 2 + len);
      all = all.subarray(2 + len);
      this.chunks = all.length > 0 ? [all] : [];
      this.buffered = all.length;
      this.onMessage(msg);
      if (this.closed) return;
    }
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 12 || msg.length > MAX_MESSAGE_LEN) {
      this.pool.ignored(Mismatch.MALFORMED);
      return;
    }
    const p = this.pending.get(msg.readUInt16BE(0));
    if (p === undefined) {
      // An ID nothing waits for (a query that timed out or was abandoned, or a forgery).
      this.pool.ignored(Mismatch.ID);
      return;
    }
    const view = this.pool.view;
    const r = matchResponse(view, msg, p.id, p.q);
    if (r !== Mismatch.NONE) {
      this.pool.ignored(r);
      return;
    }
    this.drop(p);
    p.hooks.answer(msg, view);
  }

  /** The connection is gone: every query on it fails. */
  private lose(err: Error): void {
    if (this.closed) return;
    this.pool.s.lost++;
    const ps = [...this.pending.values()];
    this.close();
    for (const p of ps) p.hooks.error(err, false);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopIdle();
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    this.chunks = [];
    this.buffered = 0;
    this.pool.remove(this);
    this.sock.destroy();
  }
}

export class TcpPool {
  readonly maxConns: number;
  readonly maxPipeline: number;
  readonly idleMs: number;
  readonly label: string;
  private readonly conns: Conn[] = [];
  private readonly connect: (addr: UpstreamAddr) => TcpSocketLike;
  /** Running counts (TcpPoolStats without `open`). */
  readonly s = { connects: 0, reused: 0, busy: 0, idleClosed: 0, lost: 0 };

  constructor(
    readonly addr: UpstreamAddr,
    /** Parses answers; shared with the forwarder (used synchronously). */
    readonly view: MessageView,
    /** Told about every message that was not an answer to a query in flight. */
    readonly ignored: (reason: MismatchCode) => void,
    opts: TcpPoolOptions = {},
  ) {
    this.maxConns = opts.maxConns ?? TCP_POOL_DEFAULTS.maxConns;
    this.maxPipeline = opts.maxPipeline ?? TCP_POOL_DEFAULTS.maxPipeline;
    this.idleMs = opts.idleMs ?? TCP_POOL_DEFAULTS.idleMs;
    for (const [k, v] of [['maxConns', this.maxConns], ['maxPipeline', this.maxPipeline], ['idleMs', this.idleMs]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`TCP pool ${k} must be a positive integer, got ${String(v)}`);
    }
    this.connect = opts.connect ?? defaultConnect;
    this.label = addr.family === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
  }

  /**
   * Sends question `q` (the wire query for an ID comes from `build`) on a connection of
   * the pool and calls `hooks` once with its fate, or returns null at once, calling no
   * hook, when every connection is full and the pool is at maxConns.
   */
  query(q: Question, build: (id: number) => Uint8Array, timeoutMs: number, hooks: TcpHooks): TcpQuery | null {
    let conn: Conn | undefined;
    for (const c of this.conns) {
      if (c.pending.size < this.maxPipeline) {
        conn = c;
        break;
      }
    }
    if (conn === undefined) {
      if (this.conns.length >= this.maxConns) {
        this.s.busy++;
        return null;
      }
      conn = new Conn(this, this.connect(this.addr));
      this.conns.push(conn);
      this.s.connects++;
    } else if (conn.used > 0) {
      this.s.reused++;
    }
    let id = randomU16();
    while (conn.pending.has(id)) id = (id + 1) & 0xffff; // at most maxPipeline steps
    const c = conn;
    const p: Pending = {
      id,
      q,
      hooks,
      timer: null,
      conn: c,
      close: () => c.drop(p),
    };
    p.timer = setTimeout(() => {
      p.timer = null;
      c.drop(p);
      hooks.error(new Error(`TCP to ${this.label} timed out`), true);
    }, Math.max(1, timeoutMs));
    c.send(p, build(id));
    return p;
  }

  /** Called by a connection as it closes. */
  remove(c: Conn): void {
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
  }

  get open(): number {
    return this.conns.length;
  }

  /** Queries in flight on every connection. */
  get inflight(): number {
    let n = 0;
    for (const c of this.conns) n += c.pending.size;
    return n;
  }

  stats(): TcpPoolStats {
    return { ...this.s, open: this.conns.length };
  }

  /** Closes every connection; queries on them are abandoned without a hook. */
  close(): void {
    for (const c of [...this.conns]) c.close();
  }
}
