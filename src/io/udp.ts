/**
 * Kernel UDP listener on the served port. It answers what reaches the kernel stack
 * rather than an AF_XDP socket: queries the XDP program passes (IPv4 options,
 * fragments), and every query when no AF_XDP socket is bound to its queue (the
 * redirect falls back to the kernel). Same engine, same cache rules as every other path.
 */
import dgram from 'node:dgram';
import { parseAddr } from '../net/addr.js';
import type { FrameHandler } from './xsk-server.js';

export interface UdpListenerOptions {
  port: number;
  /** Addresses to bind; default both wildcards. */
  hosts?: string[];
}

export class UdpListener {
  private readonly sockets: dgram.Socket[] = [];
  received = 0;
  sent = 0;
  errors = 0;

  constructor(private readonly handler: FrameHandler) {}

  /** Binds every host; rejects with the socket error (EADDRINUSE, EACCES) on failure. */
  async listen(opts: UdpListenerOptions): Promise<void> {
    const hosts = opts.hosts ?? ['0.0.0.0', '::'];
    for (const host of hosts) {
      const v6 = host.includes(':');
      const s = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(opts.port, host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      s.on('error', () => this.errors++);
      s.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
      this.sockets.push(s);
    }
  }

  private onMessage(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.received++;
    const out = Buffer.allocUnsafe(65535);
    const send = (n: number): void => {
      if (n <= 0) return;
      this.sent++;
      s.send(out.subarray(0, n), rinfo.port, rinfo.address, (e) => {
        if (e) this.errors++;
      });
    };
    try {
      const r = this.handler.handle(msg, 0, msg.length, out, 0, false, undefined, undefined, parseAddr(rinfo.address) ?? undefined);
      if (typeof r === 'number') send(r);
      else r.then(send, () => this.errors++);
    } catch {
      this.errors++;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.length = 0;
  }
}
