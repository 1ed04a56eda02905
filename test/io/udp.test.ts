/**
 * The kernel UDP listener on loopback: what a query waiting on the upstream holds, and
 * that the largest UDP reply the service can be set to send still goes out whole.
 */
import dgram from 'node:dgram';
import { endianness } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_EDNS_UDP_SIZE } from '../../src/dns/constants.js';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { UdpListener, procUdpSockets } from '../../src/io/udp.js';
import { execFileSync } from 'node:child_process';
import type { FrameHandler } from '../../src/io/xsk-server.js';
import { decode, query, response } from '../helpers/dns.js';

const listeners: UdpListener[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.close()));
});

async function listen(handler: FrameHandler): Promise<number> {
  const l = new UdpListener(handler);
  listeners.push(l);
  // Port 0 on loopback: the kernel picks one; read it back from the socket.
  await l.listen({ port: 0, hosts: ['127.0.0.1'] });
  return (l as unknown as { sockets: Map<string, dgram.Socket> }).sockets.get('127.0.0.1')!.address().port;
}

async function ask(port: number, msg: Uint8Array, waitMs = 2000): Promise<Buffer> {
  const s = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply')), waitMs);
      s.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(msg, port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

describe('UdpListener', () => {
  it('hands a query a reply buffer of the longest UDP reply, not of a 64 KiB message, and says so in maxLen', async () => {
    const seen: { size: number; maxLen: number | undefined }[] = [];
    let settle: (n: number) => void = () => {};
    const port = await listen({
      handle(buf, off, len, out, outOff, _tcp, maxLen) {
        seen.push({ size: out.byteLength, maxLen });
        out.set(buf.subarray(off, off + len), outOff); // echo, once "the upstream" answers
        return new Promise<number>((r) => (settle = () => r(len)));
      },
    });
    const q = query('held.example', 'A');
    const reply = ask(port, q);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([{ size: MAX_EDNS_UDP_SIZE, maxLen: MAX_EDNS_UDP_SIZE }]);
    settle(q.length);
    expect((await reply).equals(q)).toBe(true);
  });

  it('drops a datagram longer than any query may be, and counts it, without calling the handler', async () => {
    let calls = 0;
    const l = new UdpListener({
      handle(buf, off, len, out, outOff) {
        calls++;
        out.set(buf.subarray(off, off + 12), outOff);
        return 12;
      },
    });
    listeners.push(l);
    await l.listen({ port: 0, hosts: ['127.0.0.1'] });
    const port = (l as unknown as { sockets: Map<string, dgram.Socket> }).sockets.get('127.0.0.1')!.address().port;
    const big = Buffer.alloc(MAX_EDNS_UDP_SIZE + 1);
    query('a.example', 'A').copy(big);
    await expect(ask(port, big, 300)).rejects.toThrow('no reply');
    expect({ calls, oversize: l.oversize, received: l.received }).toEqual({ calls: 0, oversize: 1, received: 1 });
    const edge = Buffer.alloc(MAX_EDNS_UDP_SIZE);
    query('a.example', 'A').copy(edge);
    expect((await ask(port, edge)).length).toBe(12);
    expect(calls).toBe(1);
  });

  it('drops and counts the answer of a miss whose socket was closed while it waited (unbind at a reload), without crashing', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      let calls = 0;
      const l = new UdpListener({
        handle(buf, off, len, out, outOff) {
          calls++;
          out.set(buf.subarray(off, off + len), outOff);
          return new Promise<number>((r) => setTimeout(() => r(len), 300)); // a miss on a slow upstream
        },
      });
      listeners.push(l);
      await l.listen({ port: 0, hosts: ['127.0.0.1'] });
      const port = (l as unknown as { sockets: Map<string, dgram.Socket> }).sockets.get('127.0.0.1')!.address().port;
      const reply = ask(port, query('slow.example', 'A'), 600);
      await new Promise((r) => setTimeout(r, 50));
      expect(calls).toBe(1);
      await l.unbind('127.0.0.1'); // the interface's address went away
      await expect(reply).rejects.toThrow('no reply');
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      expect({ received: l.received, sent: l.sent, errors: l.errors }).toEqual({ received: 1, sent: 0, errors: 1 });
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('counts the datagrams the kernel dropped for a full receive buffer: every datagram sent is read or counted', async () => {
    let calls = 0;
    const l = new UdpListener({
      handle() {
        calls++;
        return 0; // no reply: the count is of what came in
      },
    });
    listeners.push(l);
    await l.listen({ port: 0, hosts: ['127.0.0.1'] });
    const sock = (l as unknown as { sockets: Map<string, dgram.Socket> }).sockets.get('127.0.0.1')!;
    const port = sock.address().port;
    sock.setRecvBufferSize(64 * 1024); // whatever the machine's default, the burst overflows it
    expect(l.kernelDrops()).toBe(0);
    // A burst the listener cannot read: this thread is blocked until the sender is done,
    // and loopback delivers (or drops) each datagram inside the sender's send.
    const N = 3000;
    const sender = `const s = require('node:dgram').createSocket('udp4'); const q = Buffer.from(${JSON.stringify([...query('flood.example', 'A')])});
      let left = ${N}; for (let i = 0; i < ${N}; i++) s.send(q, ${port}, '127.0.0.1', () => { if (--left === 0) s.close(); });`;
    execFileSync(process.execPath, ['-e', sender], { timeout: 20_000 });
    const deadline = Date.now() + 5000;
    while (l.received + l.kernelDrops() < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const dropped = l.kernelDrops();
    expect(dropped, 'the receive buffer overflowed').toBeGreaterThan(0);
    expect(l.received + dropped).toBe(N);
    expect(calls).toBe(l.received);
  });

  it('keeps the drops of a socket it closed (unbind) in its total, never lowers it when /proc cannot be read, and reads the kernel\'s table as the kernel prints it', async () => {
    // A fake /proc: the listener's own socket (found by address and port), with drops.
    const drops = new Map<number, number>();
    let socketLine = '';
    const hex4 = (a: number[]) => (endianness() === 'LE' ? [...a].reverse() : a).map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join('');
    let failing = false;
    const read = (path: string): string => {
      if (path.endsWith('udp6') || failing) throw new Error('ENOENT'); // no IPv6 here; or /proc unreadable (EMFILE)
      const head = '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n';
      return head + socketLine.replace('DROPS', String(drops.get(1) ?? 0)) + '\n';
    };
    const l = new UdpListener({ handle: () => 0 }, read);
    listeners.push(l);
    // bind() looks for its socket in the table: put it there first, on the port the test picks.
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    socketLine = `  7: ${hex4([127, 0, 0, 1])}:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 DROPS`;
    await l.listen({ port, hosts: ['127.0.0.1'] });
    drops.set(1, 41);
    expect(l.kernelDrops()).toBe(41);
    failing = true; // a read that fails keeps the total: a counter never goes down
    expect(l.kernelDrops()).toBe(41);
    failing = false;
    await l.unbind('127.0.0.1');
    drops.set(1, 0); // the socket is gone from the table
    expect(l.kernelDrops()).toBe(41);
    // The real table names the real socket: loopback IPv4 as 127.0.0.1.
    const real = dgram.createSocket('udp4');
    await new Promise<void>((r) => real.bind(0, '127.0.0.1', () => r()));
    try {
      const e = procUdpSockets({ ports: new Set([real.address().port]), v4: true, v6: false })!.find((x) => !x.v6);
      expect(e && [...e.addr]).toEqual([127, 0, 0, 1]);
    } finally {
      real.close();
    }
  });

  it('sends a reply of close to 4096 bytes whole when the service and the client both allow it', async () => {
    const name = 'big.example';
    const answers = Array.from({ length: 15 }, (_, i) => ({ type: 'TXT' as const, name, ttl: 300, data: `${String(i).padStart(2, '0')}${'x'.repeat(240)}` }));
    const big = response(name, 'TXT', { answers });
    const resolver: Resolver = { resolve: async () => big };
    const engine = new DnsEngine({ resolver, cacheSize: 16, udpSize: MAX_EDNS_UDP_SIZE });
    const port = await listen(engine);
    const m = await ask(port, query(name, 'TXT', { edns: { udpSize: MAX_EDNS_UDP_SIZE } }));
    expect(m.length).toBeGreaterThan(3700);
    expect(m.length).toBeLessThanOrEqual(MAX_EDNS_UDP_SIZE);
    const d = decode(m);
    expect(d.flags & 0x0200).toBe(0); // not truncated
    expect(d.answers.length).toBe(15);
  });
});
