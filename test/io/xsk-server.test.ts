/**
 * XskServer against the fake kernel (no root): real query frames in, the engine answers
 * in place, reply frames out; and every frame sent or released on every path (hit, miss,
 * miss that fails, bad frame, handler that throws, TX ring full, stop with misses held).
 */
import { describe, expect, it } from 'vitest';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { StatsBlock } from '../../src/engine/stats.js';
import { XskServer, type FrameHandler } from '../../src/io/xsk-server.js';
import { checkInvariant, openFake, type FakeKernel } from '../helpers/fake-xsk.js';
import { buildFrame, parseFrame, CLIENT4, SERVER4 } from '../helpers/frames.js';
import { decode, query, response } from '../helpers/dns.js';

const wwwA = response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: '198.18.1.1' }] });

/** A resolver whose answers the test releases by hand. */
function gated(): Resolver & { release(msg: Uint8Array | Error): void; waiting: number } {
  const waiters: { resolve(m: Uint8Array): void; reject(e: Error): void }[] = [];
  return {
    get waiting() {
      return waiters.length;
    },
    resolve: () => new Promise<Uint8Array>((resolve, reject) => waiters.push({ resolve, reject })),
    release(m) {
      for (const w of waiters.splice(0)) m instanceof Error ? w.reject(m) : w.resolve(m);
    },
  };
}

function setup(handler?: (engine: DnsEngine) => FrameHandler) {
  const resolver = gated();
  const stats = new StatsBlock();
  const engine = new DnsEngine({ resolver, cacheSize: 64, stats });
  const { sock, k } = openFake({ ringSize: 64, frameCount: 128, batchSize: 16 });
  const server = new XskServer(sock, handler ? handler(engine) : engine, stats);
  return { resolver, stats, engine, sock, k, server };
}

function replies(k: FakeKernel): ReturnType<typeof parseFrame>[] {
  const u = new Uint8Array(k.buf);
  return k.txQ.map(([a, len]) => parseFrame(Buffer.from(u.subarray(a, a + len))));
}

const flush = () => new Promise((r) => setImmediate(r));

describe('XskServer (fake kernel)', () => {
  it('answers a cache hit in the same frame, addresses swapped, ID kept', () => {
    const { engine, sock, k, server } = setup();
    engine.cache.insertResponse(wwwA);
    k.deliverBytes(buildFrame(query('WWW.example.com', 'A', { id: 4321 })));
    server.drain();
    const [r] = replies(k);
    expect(r).toBeDefined();
    expect(r!.udpChecksumOk).toBe(true);
    expect(r!.src.equals(Buffer.from(SERVER4.split('.').map(Number)))).toBe(true);
    expect(r!.dst.equals(Buffer.from(CLIENT4.split('.').map(Number)))).toBe(true);
    const d = decode(r!.dns);
    expect(d.id).toBe(4321);
    expect(d.questions![0]!.name).toBe('WWW.example.com');
    expect(d.answers![0]!.data).toBe('198.18.1.1');
    checkInvariant(sock, k);
  });

  it('holds a miss\'s frame until the upstream answers, then sends the reply from it', async () => {
    const { resolver, sock, k, server, stats } = setup();
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 9 })));
    server.drain();
    expect(server.pending).toBe(1);
    expect(sock.accounting().held).toBe(1);
    expect(k.txQ.length).toBe(0);
    resolver.release(wwwA);
    await flush();
    expect(server.pending).toBe(0);
    const [r] = replies(k);
    expect(decode(r!.dns).id).toBe(9);
    expect(stats.get('upstreamAnswers')).toBe(1);
    checkInvariant(sock, k);
  });

  it('answers SERVFAIL when the upstream fails, from the held frame', async () => {
    const { resolver, sock, k, server } = setup();
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 10 })));
    server.drain();
    resolver.release(new Error('no upstream'));
    await flush();
    expect(decode(replies(k)[0]!.dns).rcode).toBe('SERVFAIL');
    checkInvariant(sock, k);
  });

  it('releases and counts frames it cannot parse, and frames the handler throws on', () => {
    const { sock, k, server, stats } = setup((e) => ({
      handle: (...a) => {
        if (a[2] === 30) throw new Error('handler failed');
        return e.handle(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
      },
    }));
    k.deliverBytes(Buffer.alloc(20)); // not IP
    k.deliverBytes(buildFrame(new Uint8Array(30))); // the handler throws on a 30-byte message
    server.drain();
    expect(stats.get('badFrames')).toBe(2);
    expect(k.txQ.length).toBe(0);
    expect(sock.accounting().held).toBe(0);
    checkInvariant(sock, k);
  });

  it('releases and counts replies neither the TX ring nor the send queue has room for', () => {
    const { engine, sock, k, server, stats } = setup();
    engine.cache.insertResponse(wwwA);
    k.txLimit = 0; // the kernel takes nothing: 16 replies (a batch) queue, the rest are dropped
    for (let i = 0; i < 20; i++) k.deliverBytes(buildFrame(query('www.example.com', 'A')));
    server.drain();
    server.drain();
    expect(stats.get('txFull')).toBe(4);
    expect(sock.accounting().held).toBe(0);
    expect(sock.accounting().txQueued).toBe(16);
    checkInvariant(sock, k);
    k.txLimit = undefined;
    server.drain();
    expect(k.txQ.length).toBe(16);
    checkInvariant(sock, k);
  });

  it('stop() waits for held misses, answers them, then closes with nothing outstanding', async () => {
    const { resolver, sock, k, server, stats } = setup();
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 11 })));
    server.drain();
    const stopped = server.stop(2000);
    setTimeout(() => resolver.release(wwwA), 50);
    await stopped;
    expect(k.closed).toBe(true);
    expect(sock.closed).toBe(true);
    expect(k.txQ.length).toBe(1);
    expect(stats.get('framesInUse')).toBe(1); // the reply still on the TX ring at close
  });
});
