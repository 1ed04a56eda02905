/**
 * Kernel UDP listener on the served port. It answers what reaches the kernel stack
 * rather than an AF_XDP socket: queries the XDP program passes (IPv4 options,
 * fragments), and every query when no AF_XDP socket is bound to its queue (the
 * redirect falls back to the kernel). Same engine, same cache rules as every other path.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { MAX_EDNS_UDP_SIZE } from '../dns/constants.js';
import { parseAddr } from '../net/addr.js';
import type { FrameHandler } from './xsk-server.js';

export interface UdpListenerOptions {
  port: number;
  /** Addresses to bind; default both wildcards. */
  hosts?: string[];
}

/** Reads a /proc file (tests give their own). */
export type ProcReader = (path: string) => string;

const readProc: ProcReader = (path) => readFileSync(path, 'latin1');

/** One line of /proc/net/udp or /proc/net/udp6. */
interface ProcUdpSocket {
  v6: boolean;
  /** The local address as its bytes (4 or 16). */
  addr: Uint8Array;
  port: number;
  inode: number;
  /** Datagrams the kernel threw away for this socket (a full receive buffer above all). */
  drops: number;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Which lines procUdpSockets() keeps: local ports, and the families to read. */
export interface ProcUdpFilter {
  ports: ReadonlySet<number>;
  v4: boolean;
  v6: boolean;
}

/**
 * UDP sockets of this network namespace on the filter's ports, from /proc/net/udp and
 * /proc/net/udp6 as the filter names them (only those lines are parsed: the upstream
 * sockets can be thousands). The kernel prints an address as 32-bit words in the
 * machine's byte order, so each group of four bytes comes reversed on a little-endian
 * machine. Returns null when a file it was to read could not be read.
 */
export function procUdpSockets(only: ProcUdpFilter, read: ProcReader = readProc): ProcUdpSocket[] | null {
  const out: ProcUdpSocket[] = [];
  const tags = [...only.ports].map((p) => `:${p.toString(16).toUpperCase().padStart(4, '0')} `);
  for (const [path, v6] of [['/proc/net/udp', false], ['/proc/net/udp6', true]] as const) {
    if (!(v6 ? only.v6 : only.v4)) continue;
    let text: string;
    try {
      text = read(path);
    } catch {
      return null;
    }
    const lines = text.split('\n');
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (!tags.some((t) => line.includes(t))) continue;
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
      const f = line.trim().split(/\s+/);
      if (f.length < 13) continue;
      const [hex, portHex] = f[1]!.split(':');
      if (!hex || !portHex || hex.length !== (v6 ? 32 : 8)) continue;
      const port = parseInt(portHex, 16);
      if (!only.ports.has(port)) continue;
      const addr = new Uint8Array(hex.length / 2);
      for (let k = 0; k < addr.length; k++) {
        const at = LITTLE_ENDIAN ? (k & ~3) + 3 - (k & 3) : k;
        addr[at] = parseInt(hex.slice(2 * k, 2 * k + 2), 16);
      }
      const inode = Number(f[9]);
      const drops = Number(f[f.length - 1]);
      if (Number.isInteger(inode) && Number.isInteger(drops)) out.push({ v6, addr, port, inode, drops });
    }
  }
  return out;
}

/** A bound socket's identity in /proc: its inode (0 when it was not found), port and family. */
interface SocketId {
  inode: number;
  port: number;
  v6: boolean;
}

/** Finds a bound socket in /proc by its local address and port. */
function socketId(s: dgram.Socket, read: ProcReader): SocketId {
  const { address, port, family } = s.address();
  const v6 = family === 'IPv6';
  const id = { inode: 0, port, v6 };
  const a = parseAddr(address);
  if (!a) return id;
  // parseAddr keeps an IPv4 address in the first four of its sixteen bytes.
  const want = v6 && a.family === 6 ? a.bytes : a.bytes.subarray(0, 4);
  for (const e of procUdpSockets({ ports: new Set([port]), v4: !v6, v6 }, read) ?? []) {
    if (e.v6 === v6 && e.addr.length === want.length && e.addr.every((b, i) => b === want[i])) return { ...id, inode: e.inode };
  }
  return id;
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
  /** Each live socket's place in /proc, for its kernel drop counter (inode 0: not found). */
  private readonly ids = new Map<dgram.Socket, SocketId>();
  /** The most each socket's counter has read (by inode): a failed read never lowers the total. */
  private readonly lastDrops = new Map<number, number>();
  /** Kernel drops of sockets closed since (unbind): their counters went with them. */
  private closedDrops = 0;

  constructor(
    private readonly handler: FrameHandler,
    private readonly read: ProcReader = readProc,
  ) {}

  /**
   * Datagrams the kernel dropped on this listener's sockets before they were read: a
   * receive buffer full while the service was busy (a flood through the kernel path).
   * Read from /proc on each call (the lines of this listener's ports only); a running
   * total across unbinds that never goes down (a read that fails keeps the last figures).
   */
  kernelDrops(): number {
    const ports = new Set<number>();
    let v4 = false;
    let v6 = false;
    for (const id of this.ids.values()) {
      if (!id.inode) continue;
      ports.add(id.port);
      if (id.v6) v6 = true;
      else v4 = true;
    }
    if (ports.size > 0) {
      for (const e of procUdpSockets({ ports, v4, v6 }, this.read) ?? []) {
        const last = this.lastDrops.get(e.inode);
        if (last !== undefined && e.drops > last) this.lastDrops.set(e.inode, e.drops);
      }
    }
    let n = this.closedDrops;
    for (const id of this.ids.values()) n += this.lastDrops.get(id.inode) ?? 0;
    return n;
  }

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
    const id = socketId(s, this.read);
    this.ids.set(s, id);
    if (id.inode) this.lastDrops.set(id.inode, 0); // a new socket's counter starts at 0
  }

  /** Closes the socket of one address. */
  async unbind(host: string): Promise<void> {
    const s = this.sockets.get(host);
    if (!s) return;
    this.sockets.delete(host);
    this.live.delete(s);
    this.retire(s);
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Keeps what the kernel dropped on a socket about to close. */
  private retire(s: dgram.Socket): void {
    this.kernelDrops(); // its last figure
    const id = this.ids.get(s);
    this.ids.delete(s);
    if (!id?.inode) return;
    this.closedDrops += this.lastDrops.get(id.inode) ?? 0;
    this.lastDrops.delete(id.inode);
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
    this.ids.clear();
    await Promise.all([...this.sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.clear();
  }
}
