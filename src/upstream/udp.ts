/**
 * One UDP exchange with one upstream: a fresh kernel socket bound to a
 * random source port from the ephemeral range, one datagram out, and every
 * datagram that comes back checked (source address and port, ID, question)
 * before it counts. The socket lives only as long as its query, so a
 * spoofed answer must guess about 15 bits of port and 16 bits of ID for
 * that one query (see docs/FORWARDER.md for the measured cost).
 *
 * The socket is not connect()ed: the kernel would then drop datagrams from
 * other sources silently, and we want to see and count them.
 */
import dgram from 'node:dgram';
import { MessageView } from '../dns/view.js';
import { randomPort, type PortRange } from './random.js';
import type { UpstreamAddr } from './upstream.js';
import { Mismatch, matchResponse, type MismatchCode, type Question } from './wire.js';

export interface UdpHooks {
  /** A validated answer; `view` holds it parsed (valid only during the call). */
  answer(msg: Uint8Array, view: MessageView): void;
  /** A datagram that was not the answer. */
  ignored(reason: MismatchCode): void;
  /** The exchange cannot succeed: bind, send or socket error. */
  error(err: Error): void;
}

/** Attempts at a random port before letting the kernel choose one (its own choice is random too). */
const BIND_TRIES = 4;

export class UdpExchange {
  private sock: dgram.Socket | null = null;
  private closed = false;
  /** performance.now() when the datagram was handed to the kernel. */
  sentAt = 0;
  /** Local port the query went out from (0 until bound). */
  localPort = 0;

  constructor(
    private readonly addr: UpstreamAddr,
    private readonly wire: Uint8Array,
    private readonly id: number,
    private readonly q: Question,
    private readonly ports: PortRange,
    private readonly view: MessageView,
    private readonly hooks: UdpHooks,
  ) {}

  start(): void {
    this.bindAndSend(0);
  }

  private bindAndSend(attempt: number): void {
    if (this.closed) return;
    const sock = dgram.createSocket({ type: this.addr.family === 6 ? 'udp6' : 'udp4', ipv6Only: this.addr.family === 6 });
    this.sock = sock;
    let bound = false;
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (this.sock !== sock) return;
      if (!bound && err.code === 'EADDRINUSE' && attempt + 1 < BIND_TRIES) {
        this.sock = null;
        sock.close();
        this.bindAndSend(attempt + 1);
        return;
      }
      this.fail(err);
    });
    sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    const port = attempt + 1 < BIND_TRIES ? randomPort(this.ports) : 0;
    sock.bind({ port, address: this.addr.family === 6 ? '::' : '0.0.0.0', exclusive: true }, () => {
      bound = true;
      if (this.closed || this.sock !== sock) return;
      this.localPort = port !== 0 ? port : sock.address().port;
      this.sentAt = performance.now();
      sock.send(this.wire, this.addr.port, this.addr.host, (err) => {
        if (err) this.fail(err);
      });
    });
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    if (rinfo.address !== this.addr.host || rinfo.port !== this.addr.port) {
      this.hooks.ignored(Mismatch.SOURCE);
      return;
    }
    const r = matchResponse(this.view, msg, this.id, this.q);
    if (r !== Mismatch.NONE) {
      this.hooks.ignored(r);
      return;
    }
    this.hooks.answer(msg, this.view);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.close();
    this.hooks.error(err);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stops listening; a late answer is then refused by the kernel. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const s = this.sock;
    this.sock = null;
    if (s === null) return;
    try {
      s.close();
    } catch {
      // already closed after a failed bind
    }
  }
}
