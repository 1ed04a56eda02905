/**
 * The kernel UDP listener on loopback: what a query waiting on the upstream holds, and
 * that the largest UDP reply the service can be set to send still goes out whole.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_EDNS_UDP_SIZE } from '../../src/dns/constants.js';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { UdpListener } from '../../src/io/udp.js';
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
