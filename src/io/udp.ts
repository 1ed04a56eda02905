/**
 * Kernel UDP listener on the served port. It answers what reaches the kernel stack
 * rather than an AF_XDP socket: queries the XDP program passes (IPv4 options,
 * fragments), and every query when no AF_XDP socket is bound to its queue (the
 * redirect falls back to the kernel). Same engine, same cache rules as every other path.
 */
import dgram from 'node:dgram';
import { MAX_EDNS_UDP_SIZE } from '../dns/constants.js';
import { parseAddr } from '../net/addr.js';
import type { FrameHandler } from './xsk-server.js';

export interface UdpListenerOptions {
  port: number;
  /** Addresses to bind; default both wildcards. */
  hosts?: string[];
}

export class UdpListener {
  private readonly sockets = new Map<string, dgram.Socket>();
  /** Sockets not yet closed: a reply that comes after its socket was closed is dropped. */
  private readonly live = new Set<dgram.Socket>();
  received = 0;
  sent = 0;
  /**
   * Socket errors, handler failures, and replies that could not be sent: their socket was
   * closed while the query waited on the upstream (its address went away at a reload, or
   * the service is stopping), or send() refused them.
   */
  errors = 0;
  /** Datagrams longer than MAX_EDNS_UDP_SIZE, dropped unanswered. */
  oversize = 0;

  constructor(private readonly handler: FrameHandler) {}

  /** Binds every host; rejects with the socket error (EADDRINUSE, EACCES) on failure. */
  async listen(opts: UdpListenerOptions): Promise<void> {
    for (const host of opts.hosts ?? ['0.0.0.0', '::']) await this.bind(opts.port, host);
  }

  /** Binds one more address (the service follows its interface's addresses). */
  async bind(port: number, host: string): Promise<void> {
    if (this.sockets.has(host)) return;
    const v6 = host.includes(':');
    const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    s.on('error', () => this.errors++);
    s.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
    this.sockets.set(host, s);
    this.live.add(s);
  }

  /** Closes the socket of one address. */
  async unbind(host: string): Promise<void> {
    const s = this.sockets.get(host);
    if (!s) return;
    this.sockets.delete(host);
    this.live.delete(s);
    await new Promise<void>((r) => s.close(() => r()));
  }

  private onMessage(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.received++;
    // No query needs more than the longest UDP reply (the TCP listener's bound on a query is
    // the same 4096 bytes), and a miss keeps its query until the answer comes: a 64 KiB
    // datagram (one large EDNS option, reassembled from fragments) would be held whole.
    if (msg.length > MAX_EDNS_UDP_SIZE) {
      this.oversize++;
      return;
    }
    // A miss keeps this buffer until its answer comes (up to the forwarder's deadline), so
    // it is sized to the longest UDP reply the service can send, not to a DNS message: at
    // 64 KiB, thousands of spoofed queries for one slow name reserved hundreds of MiB (little
    // of it resident, as a reply writes its first page only, but all of it counted by V8 as
    // external memory; docs/LIMITS.md).
    const out = Buffer.allocUnsafe(MAX_EDNS_UDP_SIZE);
    // A miss answers after an await: by then its socket may be closed (unbind at a reload,
    // close at stop), and dgram's send() throws on a closed socket. Thrown inside the
    // promise's reaction with nothing to catch it, that ended the process.
    const send = (n: number): void => {
      if (n <= 0) return;
      if (!this.live.has(s)) {
        this.errors++;
        return;
      }
      try {
        s.send(out.subarray(0, n), rinfo.port, rinfo.address, (e) => {
          if (e) this.errors++;
        });
        this.sent++;
      } catch {
        this.errors++;
      }
    };
    try {
      const client = parseAddr(rinfo.address) ?? undefined;
      if (client) client.port = rinfo.port;
      const r = this.handler.handle(msg, 0, msg.length, out, 0, false, MAX_EDNS_UDP_SIZE, undefined, client);
      if (typeof r === 'number') send(r);
      else r.then(send, () => this.errors++).catch(() => this.errors++);
    } catch {
      this.errors++;
    }
  }

  async close(): Promise<void> {
    this.live.clear();
    await Promise.all([...this.sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.clear();
  }
}
