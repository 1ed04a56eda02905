/**
 * The DNS-over-TCP listener on loopback: RFC 7766 framing, pipelining with
 * out-of-order answers, idle timeout, limits, hostile framing; and, end to
 * end with the forwarder and the DNS core's cache, the full answer for a
 * client that got TC=1 over UDP.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { TCP_WRITE_BUDGET, TcpListener, type TcpHandler, type TcpListenerOptions } from '../../src/io/tcp.js';
import { DnsCache } from '../../src/engine/cache.js';
import { MessageView } from '../../src/dns/view.js';
import { writeReply, writeRcodeReply } from '../../src/dns/reply.js';
import { MAX_KEY_LEN, RCODE_SERVFAIL } from '../../src/dns/constants.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { EdgeGuard, type EdgePolicy } from '../../src/edge/guard.js';
import { StatsBlock } from '../../src/engine/stats.js';
import { loadAddon } from '../../src/native/addon.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function query(name: string, id: number, type: dnsPacket.RecordType = 'A', udpSize?: number): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
    additionals: udpSize ? [{ type: 'OPT', name: '.', udpPayloadSize: udpSize, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
  });
}

function frame(m: Uint8Array): Buffer {
  const b = Buffer.alloc(2 + m.length);
  b.writeUInt16BE(m.length, 0);
  b.set(m, 2);
  return b;
}

/** Answers "<n>ms.<anything>" after n ms with one A record; "drop." with null; "throw." by throwing. */
const echo: TcpHandler = async (qm) => {
  const d = dnsPacket.decode(Buffer.from(qm));
  const name = d.questions![0]!.name;
  if (name.startsWith('drop.')) return null;
  if (name.startsWith('throw.')) throw new Error('handler bug');
  const ms = /^(\d+)ms\./.exec(name);
  if (ms) await sleep(Number(ms[1]));
  return dnsPacket.encode({
    type: 'response',
    id: d.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: d.questions,
    answers: [{ type: 'A', name, ttl: 60, data: '198.18.0.1' }],
  });
};

async function listener(handler: TcpHandler = echo, opts: TcpListenerOptions = {}, host = '127.0.0.1'): Promise<{ l: TcpListener; port: number }> {
  const l = new TcpListener(handler, opts);
  const a = await l.listen({ port: 0, host });
  cleanups.push(() => l.close());
  return { l, port: a.port };
}

/** A client that collects length-prefixed messages and notices the close. */
class Client {
  readonly msgs: dnsPacket.DecodedPacket[] = [];
  closed = false;
  closedAt = 0;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const n = this.buf.readUInt16BE(0);
        this.msgs.push(dnsPacket.decode(this.buf.subarray(2, 2 + n)));
        this.buf = this.buf.subarray(2 + n);
      }
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.closedAt = performance.now();
      this.wake();
    });
  }

  static async connect(port: number, host = '127.0.0.1', o: { localAddress?: string; allowHalfOpen?: boolean } = {}): Promise<Client> {
    const s = net.connect({ port, host, ...o });
    await once(s, 'connect');
    const c = new Client(s);
    cleanups.push(() => {
      s.destroy();
    });
    return c;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `pred` holds (checked on every event), or fails after `ms`. */
  async until(pred: () => boolean, ms = 2000): Promise<void> {
    const end = performance.now() + ms;
    while (!pred()) {
      const left = end - performance.now();
      if (left <= 0) throw new Error('timed out waiting');
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(left)]);
    }
  }

  write(b: Uint8Array): Promise<void> {
    return new Promise((r) => this.sock.write(b, () => r()));
  }
}

describe('TcpListener: framing and pipelining', () => {
  it('answers several pipelined queries on one connection, out of order as they complete', async () => {
    const { l, port } = await listener();
    const c = await Client.connect(port);
    await c.write(Buffer.concat([frame(query('150ms.slow.test', 1)), frame(query('fast.test', 2)), frame(query('20ms.mid.test', 3))]));
    await c.until(() => c.msgs.length === 3);
    expect(c.msgs.map((m) => m.id)).toEqual([2, 3, 1]);
    expect(c.msgs.find((m) => m.id === 1)!.questions![0]!.name).toBe('150ms.slow.test');
    expect(l.stats()).toMatchObject({ accepted: 1, connections: 1, queries: 3, responses: 3, inflight: 0 });
  });

  it('reassembles frames split across TCP segments, down to one byte at a time', async () => {
    const { l, port } = await listener();
    const c = await Client.connect(port);
    const bytes = Buffer.concat([frame(query('split-one.test', 11)), frame(query('split-two.test', 12))]);
    for (let i = 0; i < bytes.length; i++) {
      await c.write(bytes.subarray(i, i + 1));
      if (i % 8 === 0) await sleep(1);
    }
    await c.until(() => c.msgs.length === 2);
    expect(c.msgs.map((m) => m.id).sort()).toEqual([11, 12]);
    // Boundaries inside the length prefix and across messages in one write.
    const more = Buffer.concat([frame(query('a.test', 21)), frame(query('b.test', 22)), frame(query('c.test', 23))]);
    await c.write(more.subarray(0, 1));
    await sleep(5);
    await c.write(more.subarray(1, 40));
    await sleep(5);
    await c.write(more.subarray(40));
    await c.until(() => c.msgs.length === 5);
    expect(l.stats()).toMatchObject({ queries: 5, responses: 5, badFrames: 0 });
  });

  it('keeps the connection after a dropped query and after a handler error, and counts both', async () => {
    const { l, port } = await listener();
    const c = await Client.connect(port);
    await c.write(Buffer.concat([frame(query('drop.test', 1)), frame(query('throw.test', 2)), frame(query('ok.test', 3))]));
    await c.until(() => c.msgs.length === 1);
    expect(c.msgs[0]!.id).toBe(3);
    expect(c.closed).toBe(false);
    expect(l.stats()).toMatchObject({ dropped: 1, handlerErrors: 1, responses: 1 });
  });

  it('answers queries sent before the client half-closes, then closes', async () => {
    const { port } = await listener();
    const c = await Client.connect(port);
    await c.write(Buffer.concat([frame(query('30ms.fin.test', 7)), frame(query('fin2.test', 8))]));
    c.sock.end();
    await c.until(() => c.closed);
    expect(c.msgs.map((m) => m.id).sort()).toEqual([7, 8]);
  });

  it('serves IPv6 loopback', async () => {
    const { port } = await listener(echo, {}, '::1');
    const c = await Client.connect(port, '::1');
    await c.write(frame(query('v6.test', 66)));
    await c.until(() => c.msgs.length === 1);
    expect(c.msgs[0]!.id).toBe(66);
    expect(c.sock.remoteAddress).toBe('::1');
  });

  it('pauses reading beyond maxPipelined and still answers everything', async () => {
    const { l, port } = await listener(echo, { maxPipelined: 4 });
    const c = await Client.connect(port);
    const frames = Array.from({ length: 40 }, (_, i) => frame(query(`10ms.p${i}.test`, 100 + i)));
    let peak = 0;
    const t = setInterval(() => (peak = Math.max(peak, l.stats().inflight)), 1);
    await c.write(Buffer.concat(frames));
    await c.until(() => c.msgs.length === 40, 5000);
    clearInterval(t);
    expect(peak).toBeLessThanOrEqual(4);
    expect(new Set(c.msgs.map((m) => m.id)).size).toBe(40);
  });

  it('holds the whole listener to maxInflight queries in flight over many connections, and still answers everything', async () => {
    const { l, port } = await listener(echo, { maxInflight: 5, maxInflightPerClient: 5, maxPipelined: 32 });
    const clients = await Promise.all(Array.from({ length: 4 }, () => Client.connect(port)));
    let peak = 0;
    const t = setInterval(() => (peak = Math.max(peak, l.stats().inflight)), 1);
    await Promise.all(clients.map((c, k) => c.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => frame(query(`10ms.c${k}q${i}.test`, 100 * k + i)))))));
    await Promise.all(clients.map((c) => c.until(() => c.msgs.length === 10, 5000)));
    clearInterval(t);
    expect(peak).toBeLessThanOrEqual(5);
    expect(peak).toBeGreaterThanOrEqual(2);
    clients.forEach((c, k) => expect(new Set(c.msgs.map((m) => m.id))).toEqual(new Set(Array.from({ length: 10 }, (_, i) => 100 * k + i))));
    expect(l.stats()).toMatchObject({ queries: 40, responses: 40, inflight: 0 });
  });

  it('at maxInflight, a connection with a long queue does not keep one waiting with a single query', async () => {
    const { port } = await listener(echo, { maxInflight: 2, maxInflightPerClient: 2, maxPipelined: 32 });
    const greedy = await Client.connect(port);
    await greedy.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => frame(query(`20ms.g${i}.test`, i)))));
    await greedy.until(() => greedy.msgs.length >= 2, 2000); // the cap is reached and turning over
    const polite = await Client.connect(port);
    await polite.write(frame(query('p.test', 500)));
    await polite.until(() => polite.msgs.length === 1, 3000);
    // Served within a few turns of the cap, not after the whole queue (100 × 20 ms / 2 = 1 s).
    expect(greedy.msgs.length).toBeLessThan(20);
    await greedy.until(() => greedy.msgs.length === 100, 5000);
  });

  it('holds one network to its share of the places in flight: another network is answered at once', async () => {
    const { l, port } = await listener(echo, { maxInflight: 8, maxPipelined: 32 });
    expect(l.maxInflightPerClient).toBe(2);
    // Network 127.0.1.0/24 asks 40 slow questions on two connections.
    const hogs = await Promise.all(['127.0.1.2', '127.0.1.3'].map((a) => Client.connect(port, '127.0.0.1', { localAddress: a })));
    await Promise.all(hogs.map((c, k) => c.write(Buffer.concat(Array.from({ length: 20 }, (_, i) => frame(query(`300ms.h${k}q${i}.test`, 100 * k + i)))))));
    await sleep(50);
    expect(l.stats().inflight).toBe(2);
    const other = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.9' });
    const t0 = performance.now();
    await other.write(frame(query('fast.test', 7)));
    await other.until(() => other.msgs.length === 1, 2000);
    expect(performance.now() - t0).toBeLessThan(250); // not behind the 300 ms questions
    await Promise.all(hogs.map((c) => c.until(() => c.msgs.length === 20, 10_000)));
  });

  it('answers every buffered query after a half-close while paused by maxPipelined', async () => {
    const { port } = await listener(echo, { maxPipelined: 2 });
    const c = await Client.connect(port);
    await c.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => frame(query(`5ms.h${i}.test`, 200 + i)))));
    c.sock.end();
    await c.until(() => c.closed, 3000);
    expect(c.msgs).toHaveLength(10);
  });
});

/** Replies of 60,000 bytes (the query's ID kept), as a large TXT or DNSKEY set would be. */
const BIG = 60_000;
const bigAnswer: TcpHandler = async (q) => {
  const r = new Uint8Array(BIG);
  r.set(q.subarray(0, 2));
  r[2] = 0x80;
  return r;
};

/** The listener's side of its connections. */
const serverSocks = (l: TcpListener): net.Socket[] => [...(l as unknown as { conns: Set<{ sock: net.Socket }> }).conns].map((c) => c.sock);

/** A client that reads everything and counts the bytes. */
async function reader(port: number): Promise<{ sock: net.Socket; bytes: () => number }> {
  const sock = net.connect({ port, host: '127.0.0.1' });
  await once(sock, 'connect');
  cleanups.push(() => {
    sock.destroy();
  });
  let n = 0;
  sock.on('data', (d: Buffer) => (n += d.length));
  sock.on('error', () => {});
  return { sock, bytes: () => n };
}

describe('TcpListener: replies a client does not read', () => {
  it('holds what a non-reading client makes it buffer to its write budget, and stops reading its queries; a reading client is unaffected', async () => {
    const { l, port } = await listener(bigAnswer);
    const stuck = await Client.connect(port);
    stuck.sock.pause(); // never reads: the kernel's buffers fill, then ours would
    let peak = 0;
    const t = setInterval(() => {
      const s = serverSocks(l)[0];
      if (s) peak = Math.max(peak, s.writableLength);
    }, 1);
    stuck.sock.write(Buffer.concat(Array.from({ length: 160 }, (_, i) => frame(query(`big${i}.test`, i)))));
    // Until the listener stops: its buffer for the client is non-empty and nothing more is written.
    await settle(() => (serverSocks(l)[0]?.writableLength ?? 0) > 0, 5000);
    let last = -1;
    await settle(() => {
      const r = l.stats().responses;
      const still = r === last;
      last = r;
      return still;
    }, 5000);
    await sleep(200);
    clearInterval(t);
    const st = l.stats();
    expect(peak).toBeLessThanOrEqual(TCP_WRITE_BUDGET + 2 + BIG);
    expect(st.unsent).toBeLessThanOrEqual(TCP_WRITE_BUDGET + 2 + BIG);
    expect(st.unsent).toBe(serverSocks(l)[0]!.writableLength);
    expect(st.queries).toBeLessThan(160); // the rest wait in the kernel, unread
    expect(st.inflight).toBeLessThanOrEqual(32);
    expect(st.held).toBe(st.inflight); // answered, held for want of room, still in flight
    // Another client, reading, pipelining as many large answers: all of them, at once.
    const r = await reader(port);
    r.sock.write(Buffer.concat(Array.from({ length: 20 }, (_, i) => frame(query(`r${i}.test`, 1000 + i)))));
    const t0 = performance.now();
    while (r.bytes() < 20 * (2 + BIG)) {
      if (performance.now() - t0 > 5000) throw new Error(`reader got ${r.bytes()} bytes`);
      await sleep(5);
    }
    expect(r.bytes()).toBe(20 * (2 + BIG));
    // The stuck client reads at last: everything it asked is answered.
    let got = 0;
    stuck.sock.removeAllListeners('data');
    stuck.sock.on('data', (d: Buffer) => (got += d.length));
    stuck.sock.resume();
    const t1 = performance.now();
    while (got < 160 * (2 + BIG)) {
      if (performance.now() - t1 > 10_000) throw new Error(`stuck client got ${got} bytes`);
      await sleep(5);
    }
    expect(l.stats()).toMatchObject({ queries: 180, responses: 180, inflight: 0, held: 0, unsent: 0 });
  });

  it('holds the listener to maxUnsentBytes over many non-reading clients', async () => {
    const cap = 3 * 65_538;
    const { l, port } = await listener(bigAnswer, { maxUnsentBytes: cap });
    let peak = 0;
    const t = setInterval(() => {
      let sum = 0;
      for (const s of serverSocks(l)) sum += s.writableLength;
      peak = Math.max(peak, sum, l.stats().unsent);
    }, 1);
    const cs = await Promise.all(Array.from({ length: 6 }, () => Client.connect(port)));
    for (const [k, c] of cs.entries()) {
      c.sock.pause();
      c.sock.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => frame(query(`c${k}q${i}.test`, i)))));
    }
    await settle(() => serverSocks(l).filter((s) => s.writableLength > 0).length >= 2, 5000);
    await sleep(300);
    clearInterval(t);
    expect(peak).toBeLessThanOrEqual(cap + 2 + BIG);
    expect(l.stats().unsent).toBeLessThanOrEqual(cap + 2 + BIG);
    expect(l.stats()).toMatchObject({ connections: 6, writeTimeouts: 0 }); // held, not reset
    expect(l.stats().held).toBeGreaterThan(0);
  });
});

describe('TcpListener: timeouts, limits and hostile input', () => {
  it('closes an idle connection after idleTimeoutMs, but not while a query is in flight', async () => {
    const { l, port } = await listener(echo, { idleTimeoutMs: 150 });
    const idle = await Client.connect(port);
    const t0 = performance.now();
    await idle.until(() => idle.closed);
    expect(idle.closedAt - t0).toBeGreaterThanOrEqual(120);
    expect(idle.closedAt - t0).toBeLessThan(1000);

    const busy = await Client.connect(port);
    await busy.write(frame(query('400ms.slow.test', 5)));
    await busy.until(() => busy.msgs.length === 1 || busy.closed, 2000);
    expect(busy.msgs.map((m) => m.id)).toEqual([5]);
    const answeredAt = performance.now();
    await busy.until(() => busy.closed);
    expect(busy.closedAt - answeredAt).toBeGreaterThanOrEqual(100);
    expect(l.stats().idleClosed).toBe(2);
  });

  it('re-arms the idle timer after a dropped query', async () => {
    const { port } = await listener(echo, { idleTimeoutMs: 150 });
    const c = await Client.connect(port);
    await c.write(frame(query('drop.again.test', 1)));
    await c.until(() => c.closed, 1000);
  });

  it('closes the connection on an oversize frame and counts it', async () => {
    const { l, port } = await listener(echo, { maxMessageSize: 512 });
    const c = await Client.connect(port);
    const big = Buffer.alloc(2 + 600);
    big.writeUInt16BE(600, 0);
    await c.write(big.subarray(0, 2)); // the length alone is enough to refuse it
    await c.until(() => c.closed);
    expect(l.stats()).toMatchObject({ oversize: 1, queries: 0 });
  });

  it('closes on a frame shorter than a header, on a response (QR=1), and on random garbage; never crashes', async () => {
    const { l, port } = await listener();
    const short = await Client.connect(port);
    await short.write(Buffer.from([0, 5, 1, 2, 3, 4, 5]));
    await short.until(() => short.closed);

    const resp = await Client.connect(port);
    const r = dnsPacket.encode({ type: 'response', id: 9, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name: 'x.test', type: 'A', class: 'IN' }] });
    await resp.write(Buffer.concat([frame(query('fine.test', 8)), frame(r)]));
    await resp.until(() => resp.closed);

    const zero = await Client.connect(port);
    await zero.write(Buffer.from([0, 0]));
    await zero.until(() => zero.closed);
    expect(l.stats().badFrames).toBe(3);

    // Random bytes: whatever the stream says, the listener survives and keeps serving.
    for (let i = 0; i < 20; i++) {
      const g = await Client.connect(port);
      const junk = Buffer.alloc(200);
      for (let j = 0; j < junk.length; j++) junk[j] = (Math.random() * 256) | 0;
      await g.write(junk);
      g.sock.destroy();
    }
    const ok = await Client.connect(port);
    await ok.write(frame(query('still-alive.test', 77)));
    await ok.until(() => ok.msgs.length === 1);
    expect(ok.msgs[0]!.id).toBe(77);
  });

  it('survives a client reset with queries in flight', async () => {
    const { l, port } = await listener();
    const c = await Client.connect(port);
    await c.write(frame(query('100ms.reset.test', 1)));
    c.sock.resetAndDestroy();
    await sleep(150);
    expect(l.stats()).toMatchObject({ queries: 1, inflight: 0, connections: 0 });
  });

  it('rejects bad options and a busy port', async () => {
    expect(() => new TcpListener(echo, { maxMessageSize: 70000 })).toThrow(RangeError);
    expect(() => new TcpListener(echo, { idleTimeoutMs: 0 })).toThrow(RangeError);
    expect(() => new TcpListener(echo, { maxPerClient: 0 })).toThrow(RangeError);
    expect(() => new TcpListener(echo, { pressureShare: 1.5 })).toThrow(RangeError);
    const { port } = await listener();
    const second = new TcpListener(echo);
    await expect(second.listen({ port, host: '127.0.0.1' })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await second.close();
  });
});

describe('TcpListener + Forwarder + cache: TC=1 over UDP, the full answer over TCP', () => {
  it('serves the same cached answer truncated to a UDP client and whole to a TCP client', async () => {
    // Upstream: truncates over UDP, full over TCP (120 A records, about 3 KB).
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const port = udp.address().port;
    const big = (qm: Buffer, tc: boolean) => {
      const d = dnsPacket.decode(qm);
      const name = d.questions![0]!.name;
      return dnsPacket.encode({
        type: 'response',
        id: d.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0),
        questions: d.questions,
        answers: tc ? [] : Array.from({ length: 120 }, (_, i) => ({ type: 'A', name, ttl: 300, data: `198.18.2.${i}` }) as dnsPacket.Answer),
      });
    };
    udp.on('message', (m, from) => udp.send(big(m, true), from.port, from.address));
    const up = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', (d) => s.end(frame(big(d.subarray(2, 2 + d.readUInt16BE(0)), false))));
    });
    await new Promise<void>((r) => up.listen(port, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => up.close(() => r())));
    cleanups.push(() => {
      udp.close();
    });

    const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port, family: 4 }] });
    cleanups.push(() => fwd.close());
    const cache = new DnsCache({ maxEntries: 100 });
    const key = new Uint8Array(MAX_KEY_LEN);

    /** What a server does with one query: cache hit, else forwarder then cache, then the reply writer. */
    async function serve(qm: Uint8Array, tcp: boolean): Promise<Uint8Array> {
      const v = new MessageView();
      expect(v.parse(qm)).toBe(0);
      const n = v.writeKey(key);
      const out = new Uint8Array(65535);
      let a = cache.get(key, n);
      if (!a) {
        try {
          const m = await fwd.resolve({ name: qm.subarray(v.qnamePos, v.qnamePos + v.qnameLen), qtype: v.qtype, qclass: v.qclass, dnssecOk: v.dnssecOk, checkingDisabled: v.cd });
          a = cache.insertResponse(m);
        } catch {
          return out.slice(0, writeRcodeReply(v, RCODE_SERVFAIL, out, 0, { udpSize: 1232, tcp }));
        }
      }
      return out.slice(0, writeReply(v, a, cache.clock(), out, 0, { udpSize: 1232, tcp }));
    }

    // UDP client (EDNS 1232): gets TC=1.
    const viaUdp = dnsPacket.decode(Buffer.from(await serve(query('BIG.test', 0x1111, 'A', 1232), false)));
    expect(viaUdp.flag_tc).toBe(true);
    expect(viaUdp.id).toBe(0x1111);
    expect(fwd.stats().tcpRetries).toBe(1);

    // The same client retries over our TCP listener: full answer, from the cache.
    const { l, port: tport } = await listener((qm) => serve(qm, true));
    const c = await Client.connect(tport);
    await c.write(frame(query('big.TEST', 0x2222, 'A', 1232)));
    await c.until(() => c.msgs.length === 1);
    const full = c.msgs[0]!;
    expect(full.id).toBe(0x2222);
    expect(full.flag_tc).toBe(false);
    expect(full.answers).toHaveLength(120);
    expect(full.questions![0]!.name).toBe('big.TEST');
    expect(fwd.stats().sent).toBe(1); // served from the cache
    expect(l.stats().responses).toBe(1);
  });
});

/** A listener on a clock the test moves; deadlines are checked only when the test sweeps. */
async function clocked(opts: TcpListenerOptions = {}, handler: TcpHandler = echo) {
  let t = 1_000_000;
  const r = await listener(handler, { sweepIntervalMs: 2_000_000_000, clock: () => t, ...opts });
  return {
    ...r,
    /** Moves the clock to `ms` after the start and sweeps. */
    at(ms: number) {
      t = 1_000_000 + ms;
      r.l.sweep();
    },
  };
}

/** Waits (real time) for the listener to notice what a client did. */
async function settle(pred: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > end) throw new Error('timed out waiting');
    await sleep(2);
  }
}

describe('TcpListener: slots that cannot be held (fake clock)', () => {
  it('idle: FIN at idleTimeoutMs, then the socket destroyed closeGraceMs later if the peer keeps it open', async () => {
    const { l, port, at } = await clocked({ idleTimeoutMs: 10_000, closeGraceMs: 1000 });
    const c = await Client.connect(port, '127.0.0.1', { allowHalfOpen: true }); // ignores our FIN
    let gotFin = false;
    c.sock.on('end', () => (gotFin = true));
    await settle(() => l.stats().connections === 1);
    at(9_999);
    await sleep(20);
    expect(gotFin).toBe(false);
    at(10_000);
    await c.until(() => gotFin);
    expect(l.stats()).toMatchObject({ idleClosed: 1, connections: 1 }); // half-open: still holds the slot
    at(10_999);
    await sleep(20);
    expect(c.closed).toBe(false);
    at(11_000);
    expect(l.stats()).toMatchObject({ closeTimeouts: 1, connections: 0 }); // freed at once
    // The kernel holds nothing for us either: the peer's next write meets a reset.
    c.sock.write(frame(query('late.test', 1)));
    await c.until(() => c.closed);
  });

  it('idle time counts from the last answer, and a query in flight is not idleness', async () => {
    let release: () => void = () => {};
    const gate: TcpHandler = (q) => new Promise((r) => (release = () => r(echo(q) as unknown as Uint8Array)));
    const { l, port, at } = await clocked({ idleTimeoutMs: 1000 }, async (q) => (await gate(q)) as Uint8Array);
    const c = await Client.connect(port);
    await c.write(frame(query('x.test', 1)));
    await settle(() => l.stats().inflight === 1);
    at(5000);
    expect(l.stats().idleClosed).toBe(0);
    release();
    await c.until(() => c.msgs.length === 1);
    at(5500);
    expect(l.stats().idleClosed).toBe(0);
    at(6000 + 5); // the answer went out at 5000 (the clock's time then)
    expect(l.stats().idleClosed).toBe(1);
    await c.until(() => c.closed);
  });

  it('slowloris: a message not whole within messageTimeoutMs of its first byte closes the connection', async () => {
    const { l, port, at } = await clocked({ messageTimeoutMs: 3000 });
    const c = await Client.connect(port);
    const q = frame(query('slow.test', 5));
    // A whole message first: answered, and no deadline left running.
    await c.write(q);
    await c.until(() => c.msgs.length === 1);
    at(2900);
    at(5000);
    expect(c.closed).toBe(false);
    // Then one byte every second, from 5000 on.
    let i = 0;
    for (; i < 3; i++) {
      at(5000 + i * 1000);
      await c.write(q.subarray(i, i + 1));
      await settle(() => l.stats().connections === 1);
      await sleep(5);
    }
    at(7999);
    expect(l.stats().messageTimeouts).toBe(0);
    at(8000);
    expect(l.stats()).toMatchObject({ messageTimeouts: 1, connections: 0 });
    await c.until(() => c.closed);
  });

  it('a client that never reads: replies pending past writeTimeoutMs close the connection', async () => {
    const big = new Uint8Array(60_000);
    big[5] = 1;
    const { l, port, at } = await clocked({ writeTimeoutMs: 5000, maxPipelined: 64 }, async () => big);
    const c = await Client.connect(port);
    c.sock.pause(); // never reads
    const many = Buffer.concat(Array.from({ length: 400 }, (_, i) => frame(query(`r${i}.test`, i))));
    c.sock.write(many);
    // Loopback buffers take a few MB; then replies queue in the listener.
    await settle(() => l.stats().responses > 10 && (l as unknown as { conns: Set<{ sock: net.Socket }> }).conns.values().next().value!.sock.writableLength > 0, 5000);
    at(0);
    at(4999);
    expect(l.stats().writeTimeouts).toBe(0);
    at(5000);
    expect(l.stats()).toMatchObject({ writeTimeouts: 1, connections: 0 });
  });

  it('a client that reads, however slowly, is not reset: the write deadline starts again when replies leave', async () => {
    const { l, port, at } = await clocked({ writeTimeoutMs: 5000 }, bigAnswer);
    const c = await Client.connect(port);
    c.sock.pause();
    c.sock.removeAllListeners('data'); // the answers are not DNS the test decodes
    c.sock.write(Buffer.concat(Array.from({ length: 400 }, (_, i) => frame(query(`s${i}.test`, i)))));
    const pending = () => serverSocks(l)[0]?.writableLength ?? 0;
    await settle(() => pending() > 0, 5000);
    at(0);
    at(4000);
    // It reads for a while (at 4000 on the listener's clock), then stops again.
    const before = l.stats().responses;
    c.sock.resume();
    await settle(() => l.stats().responses >= before + 20, 5000);
    c.sock.pause();
    await sleep(50);
    await settle(() => pending() > 0, 5000);
    at(6000); // 6 s since replies began to wait, 2 s since they last left
    expect(l.stats()).toMatchObject({ writeTimeouts: 0, connections: 1 });
    at(8999);
    expect(l.stats().writeTimeouts).toBe(0);
    at(9000);
    expect(l.stats()).toMatchObject({ writeTimeouts: 1, connections: 0 });
  });

  it('time the listener kept a connection paused does not count against the message it had begun', async () => {
    let release: () => void = () => {};
    const gate: TcpHandler = (q) => new Promise((r) => (release = () => r(echo(q))));
    const { l, port, at } = await clocked({ messageTimeoutMs: 3000, maxPipelined: 1 }, gate);
    const c = await Client.connect(port);
    const second = frame(query('second.test', 2));
    // One whole query (in flight: maxPipelined reached, reading paused) and the start of the next.
    await c.write(Buffer.concat([frame(query('first.test', 1)), second.subarray(0, 5)]));
    await settle(() => l.stats().inflight === 1);
    at(10_000); // paused all this while: not the client's delay
    expect(l.stats().messageTimeouts).toBe(0);
    release();
    await c.until(() => c.msgs.length === 1);
    at(10_001);
    expect(l.stats()).toMatchObject({ messageTimeouts: 0, connections: 1 });
    at(12_999);
    expect(l.stats().messageTimeouts).toBe(0);
    at(13_000); // 3 s since reading resumed with the message still partial
    expect(l.stats()).toMatchObject({ messageTimeouts: 1, connections: 0 });
  });

  it('per client network: the (maxPerClient+1)th connection from one /24 is refused, another /24 still gets in', async () => {
    const { l, port } = await clocked({ maxPerClient: 2 });
    const a = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.2' });
    const b = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.3' });
    const c = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.4' });
    await c.until(() => c.closed);
    const d = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.1.2' });
    await d.write(frame(query('other-net.test', 4)));
    await d.until(() => d.msgs.length === 1);
    expect(l.stats()).toMatchObject({ rejectedClient: 1, connections: 3, clients: 2 });
    for (const x of [a, b]) expect(x.closed).toBe(false);
    a.sock.destroy();
    await settle(() => l.stats().connections === 2);
    const e = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.5' }); // the slot came back
    await e.write(frame(query('again.test', 5)));
    await e.until(() => e.msgs.length === 1);
  });

  it('resets a denied source at accept (the edge access list): it holds no slot, evicts no one and is counted', async () => {
    // The service's wiring: the main thread's EdgeGuard answers admit() from its access list.
    const policy: EdgePolicy = {
      acl: AccessList.build(parseAclList('default'), parseAclList('127.0.0.64/28')),
      rrl: null,
      guardedPorts: new Set(),
      udpSize: 1232,
    };
    const guard = new EdgeGuard({ handle: () => 0 }, policy, new StatsBlock());
    const { l, port } = await clocked({ maxConnections: 2, maxPerClient: 3, admit: (c) => guard.admits(c) });
    const a = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.2' });
    const b = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.3' });
    await settle(() => l.stats().connections === 2);
    // Two idle connections fill the listener; denied ones neither evict them nor count per client.
    // The reset may beat the client's own 'connect': wait for the close, whatever came first.
    for (let i = 0; i < 5; i++) {
      const d = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${65 + i}` });
      d.on('error', () => {});
      cleanups.push(() => {
        d.destroy();
      });
      let closed = false;
      await Promise.race([new Promise<void>((r) => d.on('close', () => r(void (closed = true)))), sleep(2000)]);
      expect(closed, `denied connection ${i} reset`).toBe(true);
    }
    expect(l.stats()).toMatchObject({ denied: 5, accepted: 2, evicted: 0, rejected: 0, rejectedClient: 0, connections: 2 });
    for (const x of [a, b]) {
      await x.write(frame(query('still.test', 1)));
      await x.until(() => x.msgs.length === 1);
    }
    // A reload that lifts the deny applies to the next connection.
    guard.setPolicy({ ...policy, acl: AccessList.build(parseAclList('default'), []) });
    const c = await Client.connect(port, '127.0.0.1', { localAddress: '127.0.0.66' });
    await settle(() => l.stats().evicted === 1);
    expect(c.closed).toBe(false);
    expect(l.stats().denied).toBe(5);
  });

  it('at maxConnections a new connection takes the slot of the least recently active idle one; refused only when all are busy', async () => {
    const { l, port } = await clocked({ maxConnections: 3, maxPerClient: 100 });
    const busy = await Client.connect(port);
    await busy.write(frame(query('600ms.busy.test', 1))); // in flight: never evicted
    const older = await Client.connect(port);
    await older.write(frame(query('x.test', 2)));
    await older.until(() => older.msgs.length === 1);
    const newer = await Client.connect(port);
    await newer.write(frame(query('y.test', 3)));
    await newer.until(() => newer.msgs.length === 1);
    await older.write(frame(query('z.test', 4))); // older is now the more recently active
    await older.until(() => older.msgs.length === 2);
    const fresh = await Client.connect(port);
    await fresh.write(frame(query('fresh.test', 5)));
    await fresh.until(() => fresh.msgs.length === 1);
    await newer.until(() => newer.closed);
    expect(older.closed).toBe(false);
    expect(l.stats()).toMatchObject({ evicted: 1, connections: 3, rejected: 0 });
    // Everyone busy: the next one is refused.
    await older.write(frame(query('500ms.o.test', 6)));
    await fresh.write(frame(query('500ms.f.test', 7)));
    await settle(() => l.stats().inflight === 3);
    const late = await Client.connect(port);
    await late.until(() => late.closed);
    expect(l.stats()).toMatchObject({ rejected: 1, evicted: 1 });
    await busy.until(() => busy.msgs.length === 1, 3000);
  });

  it('connections that wait at maxInflight hold nothing in flight: a new connection evicts one of them, not a busy one', async () => {
    const { l, port } = await clocked({ maxConnections: 4, maxPerClient: 100, maxInflight: 2, maxInflightPerClient: 2 });
    const cs: Client[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await Client.connect(port);
      await c.write(frame(query(`700ms.held${i}.test`, 10 + i)));
      cs.push(c);
    }
    await settle(() => l.stats().inflight === 2 && l.stats().connections === 4);
    const fresh = await Client.connect(port);
    await settle(() => l.stats().evicted === 1);
    expect(l.stats()).toMatchObject({ rejected: 0, connections: 4, inflight: 2 });
    // The two in flight are answered; the fresh connection is served once there is room.
    await fresh.write(frame(query('fresh.test', 99)));
    await fresh.until(() => fresh.msgs.length === 1, 3000);
    await Promise.all(cs.slice(0, 2).map((c) => c.until(() => c.msgs.length === 1, 3000)));
  });

  it('under pressure (over half of maxConnections open) idle connections get pressureTimeoutMs, not idleTimeoutMs', async () => {
    const { l, port, at } = await clocked({ maxConnections: 10, idleTimeoutMs: 10_000, pressureTimeoutMs: 500, messageTimeoutMs: 3000 });
    const cs: Client[] = [];
    for (let i = 0; i < 5; i++) cs.push(await Client.connect(port));
    await settle(() => l.stats().connections === 5);
    at(600);
    expect(l.stats()).toMatchObject({ pressure: 0, idleClosed: 0 }); // 5 of 10: not over half
    const late = await Client.connect(port);
    const slow = await Client.connect(port);
    await slow.write(Buffer.from([0])); // a message begun at 600
    await settle(() => l.stats().connections === 7);
    expect(l.stats().pressure).toBe(1);
    at(600); // the first five have been idle 600 ms: over the 500 of pressure
    expect(l.stats()).toMatchObject({ idleClosed: 5, messageTimeouts: 0 });
    expect(late.closed).toBe(false);
    // The five close their side too; two left: no pressure any more, the usual timeouts again.
    await settle(() => l.stats().connections === 2);
    expect(l.stats().pressure).toBe(0);
    at(3599);
    expect(l.stats().messageTimeouts).toBe(0);
    at(3600);
    expect(l.stats()).toMatchObject({ messageTimeouts: 1, idleClosed: 5, connections: 1 });
    for (const c of cs) await c.until(() => c.closed);
  });
});

describe('TcpListener: connections the kernel refused before accept', () => {
  it('counts SYNs dropped on a full accept queue (SO_MEMINFO drops of the real socket)', async () => {
    const { socketDrops } = loadAddon();
    const l = new TcpListener(echo, { socketDrops });
    cleanups.push(() => l.close());
    const { port } = await l.listen({ port: 0, host: '127.0.0.1', backlog: 1 });
    expect(l.kernelDrops()).toBe(0);
    // Another process opens 20 connections while this thread's event loop is held, so
    // nothing is accepted: past the queue of backlog + 1 the kernel drops them. The
    // child says it has sent them by writing a file (the held loop reads no pipe), and
    // exits before a dropped SYN would be sent again (1 s).
    const flag = join(mkdtempSync(join(tmpdir(), 'hx-tcp-')), 'sent');
    cleanups.push(() => rmSync(dirname(flag), { recursive: true, force: true }));
    const script = `const net = require('node:net'); for (let i = 0; i < 20; i++) net.connect(${port}, '127.0.0.1').on('error', () => {});
      setTimeout(() => { require('node:fs').writeFileSync(${JSON.stringify(flag)}, ''); setTimeout(() => process.exit(0), 300); }, 100);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    const hold = new Int32Array(new SharedArrayBuffer(4));
    const deadline = Date.now() + 20_000;
    while (!existsSync(flag) && Date.now() < deadline) Atomics.wait(hold, 0, 0, 5);
    expect(existsSync(flag)).toBe(true);
    const dropped = l.kernelDrops();
    expect(dropped).toBeGreaterThanOrEqual(10);
    expect(dropped).toBeLessThanOrEqual(20);
    await exited;
    // Kept when the socket closes, never lower.
    await l.unlisten('127.0.0.1');
    expect(l.kernelDrops()).toBe(dropped);
  });

  it('keeps the last count when a read fails, and reads 0 without a reader', async () => {
    let next: number | Error = 5;
    const l = new TcpListener(echo, { socketDrops: () => { if (next instanceof Error) throw next; return next; } });
    cleanups.push(() => l.close());
    await l.listen({ port: 0, host: '127.0.0.1' });
    expect(l.kernelDrops()).toBe(5);
    next = new Error('EBADF');
    expect(l.kernelDrops()).toBe(5);
    next = 7;
    expect(l.kernelDrops()).toBe(7);
    await l.close();
    next = 0;
    expect(l.kernelDrops()).toBe(7);
    const plain = new TcpListener(echo);
    cleanups.push(() => plain.close());
    await plain.listen({ port: 0, host: '127.0.0.1' });
    expect(plain.kernelDrops()).toBe(0);
  });
});
