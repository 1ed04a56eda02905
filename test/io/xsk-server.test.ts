/**
 * XskServer against the fake kernel (no root): real query frames in, the engine answers
 * in place, reply frames out; and every frame sent or released on every path (hit, miss,
 * miss that fails, bad frame, handler that throws, TX ring full, stop with misses
 * waiting); a miss never holds a frame, so misses beyond the UMEM's size leave the fill
 * ring stocked; the kernel's XDP_STATISTICS become counters.
 */
import { describe, expect, it } from 'vitest';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { StatsBlock } from '../../src/engine/stats.js';
import { XskServer, type FrameHandler } from '../../src/io/xsk-server.js';
import { checkInvariant, openFake, type FakeKernel } from '../helpers/fake-xsk.js';
import { buildFrame, ipBytes, parseFrame, CLIENT4, CLIENT6, SERVER4, SERVER6 } from '../helpers/frames.js';
import { decode, query, response } from '../helpers/dns.js';

const wwwA = response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: '198.18.1.1' }] });

function nameText(wire: Uint8Array): string {
  const labels: string[] = [];
  for (let p = 0; wire[p]! > 0; p += wire[p]! + 1) labels.push(Buffer.from(wire.subarray(p + 1, p + 1 + wire[p]!)).toString('latin1'));
  return labels.join('.');
}

/** A resolver whose answers the test releases by hand (all, or the first `count` waiting). */
function gated(): Resolver & { release(msg: Uint8Array | Error | ((name: string) => Uint8Array), count?: number): void; waiting: number } {
  const waiters: { name: string; resolve(m: Uint8Array): void; reject(e: Error): void }[] = [];
  return {
    get waiting() {
      return waiters.length;
    },
    resolve: (q) => new Promise<Uint8Array>((resolve, reject) => waiters.push({ name: nameText(q.name), resolve, reject })),
    release(m, count = waiters.length) {
      for (const w of waiters.splice(0, count)) m instanceof Error ? w.reject(m) : w.resolve(typeof m === 'function' ? m(w.name) : m);
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

/** Past the end of this event-loop turn, where the server submits the replies its misses wrote. */
const flush = () => new Promise((r) => setImmediate(() => setImmediate(r)));

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

  it('gives a miss\'s frame back at once and answers from a fresh frame when the upstream does', async () => {
    const { resolver, sock, k, server, stats } = setup();
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 9 })));
    server.drain();
    expect(server.pending).toBe(1);
    expect(stats.get('xskWaiting')).toBe(1); // shared with the main thread, which counts it if this worker dies
    expect(sock.accounting().held).toBe(0);
    expect(stats.get('xskReceived')).toBe(1);
    checkInvariant(sock, k);
    // The frame it arrived in is reused for other traffic meanwhile.
    for (let i = 0; i < 200; i++) {
      k.deliverBytes(Buffer.alloc(20)); // not IP: released at once
      server.drain();
    }
    expect(stats.get('badFrames')).toBe(200);
    resolver.release(wwwA);
    await flush();
    expect(server.pending).toBe(0);
    expect(stats.get('xskWaiting')).toBe(0);
    const [r] = replies(k);
    expect(r!.udpChecksumOk).toBe(true);
    expect(r!.src.equals(Buffer.from(SERVER4.split('.').map(Number)))).toBe(true);
    expect(r!.dst.equals(Buffer.from(CLIENT4.split('.').map(Number)))).toBe(true);
    const d = decode(r!.dns);
    expect(d.id).toBe(9);
    expect(d.questions![0]!.name).toBe('www.example.com');
    expect(d.answers![0]!.data).toBe('198.18.1.1');
    expect(stats.get('upstreamAnswers')).toBe(1);
    checkInvariant(sock, k);
  });

  it('a miss over IPv6 behind two VLAN tags is answered from a fresh frame with its headers intact', async () => {
    const { resolver, sock, k, server } = setup();
    const q = buildFrame(query('www.example.com', 'A', { id: 77 }), { ipv6: true, vlans: [100, 200], sport: 40123 });
    k.deliverBytes(q);
    server.drain();
    expect(sock.accounting().held).toBe(0);
    for (let i = 0; i < 70; i++) {
      k.deliverBytes(Buffer.alloc(20)); // the frames around are reused meanwhile
      server.drain();
    }
    resolver.release(wwwA);
    await flush();
    const [r] = replies(k);
    expect(r!.vlans).toEqual([100, 200]);
    expect(r!.ipv6).toBe(true);
    expect(r!.src.equals(ipBytes(SERVER6))).toBe(true);
    expect(r!.dst.equals(ipBytes(CLIENT6))).toBe(true);
    expect(r!.dport).toBe(40123);
    expect(r!.udpChecksumOk).toBe(true);
    expect(r!.ipLengthOk).toBe(true);
    expect(r!.dstMac.equals(q.subarray(6, 12))).toBe(true);
    expect(decode(r!.dns).id).toBe(77);
    checkInvariant(sock, k);
  });

  it('submits the replies of misses answered in one turn with one TX call, at the end of the turn', async () => {
    const { resolver, sock, k, server, stats } = setup();
    for (let i = 0; i < 12; i++) { // under the batch of 16, which send() submits by itself
      k.deliverBytes(buildFrame(query(`t${i}.example.com`, 'A', { id: 100 + i })));
      server.drain();
    }
    const before = k.calls.tx;
    resolver.release((name) => response(name, 'A', { answers: [{ type: 'A', name, ttl: 60, data: '198.18.1.3' }] }));
    for (let i = 0; i < 20; i++) await Promise.resolve(); // the misses settle in microtasks: written, not submitted
    expect(stats.get('upstreamAnswers')).toBe(12);
    expect(k.txQ.length).toBe(0);
    await flush();
    expect(k.calls.tx - before).toBe(1);
    expect(replies(k).map((r) => decode(r.dns).id).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => 100 + i));
    checkInvariant(sock, k);
  });

  it('keeps the fill ring stocked with more misses waiting than the UMEM has frames', async () => {
    const { resolver, sock, k, server, stats } = setup(); // 128 frames, rings of 64
    for (let i = 0; i < 300; i++) {
      expect(k.deliverBytes(buildFrame(query(`n${i}.example.com`, 'A', { id: i })))).toBe(true);
      server.drain();
    }
    expect(server.pending).toBe(300);
    expect(k.fillQ.length).toBe(64);
    expect(sock.accounting()).toMatchObject({ held: 0, fill: 64, free: 64 });
    checkInvariant(sock, k);
    // Answers come back in groups; the kernel sends between them: every one answered.
    const ids = new Set<number>();
    while (resolver.waiting > 0) {
      resolver.release((name) => response(name, 'A', { answers: [{ type: 'A', name, ttl: 60, data: '198.18.1.2' }] }), 40);
      await flush();
      for (const r of replies(k)) ids.add(decode(r.dns).id);
      k.transmit();
      server.upkeep();
      checkInvariant(sock, k);
    }
    expect(ids.size).toBe(300);
    expect(stats.get('noFrame')).toBe(0);
  });

  it('counts a reply with no free frame to go in as no_frame, and leaks nothing', async () => {
    const { resolver, sock, k, server, stats } = setup(); // 64 frames free beside the fill ring
    for (let i = 0; i < 100; i++) {
      k.deliverBytes(buildFrame(query(`m${i}.example.com`, 'A', { id: i })));
      server.drain();
    }
    resolver.release(new Error('upstream down')); // 100 SERVFAILs at once, nothing transmitted meanwhile
    await flush();
    expect(k.txQ.length).toBe(64);
    expect(stats.get('noFrame')).toBe(36);
    checkInvariant(sock, k);
    k.transmit();
    server.upkeep();
    expect(sock.accounting()).toMatchObject({ held: 0, tx: 0, free: 64, fill: 64 });
  });

  it('publishes the kernel\'s XDP_STATISTICS as counters, adding what grew since the last upkeep', () => {
    const { k, server, stats } = setup();
    k.kstats = { rxDropped: 5, rxRingFull: 2, rxFillRingEmptyDescs: 4, txInvalidDescs: 1 };
    server.upkeep();
    expect([stats.get('xskKernelRxDropped'), stats.get('xskKernelRxRingFull'), stats.get('xskFillRingEmpty'), stats.get('xskKernelTxInvalid')]).toEqual([5, 2, 4, 1]);
    k.kstats = { rxDropped: 9, rxRingFull: 2, rxFillRingEmptyDescs: 4, txInvalidDescs: 1, txRingEmptyDescs: 3 };
    server.upkeep();
    expect([stats.get('xskKernelRxDropped'), stats.get('xskKernelRxRingFull'), stats.get('xskTxRingEmpty')]).toEqual([9, 2, 3]);
  });

  it('kicks replies left on the TX ring again at upkeep when the kernel refused a kick (copy mode)', () => {
    const { engine, sock, k, server } = setup();
    k.kickTransmits = true;
    k.refuseKicks = 1; // EAGAIN with no progress
    engine.cache.insertResponse(wwwA);
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 7 })));
    server.drain();
    expect({ kicks: k.kicks, onRing: k.txQ.length, sent: k.compQ.length }).toEqual({ kicks: 1, onRing: 1, sent: 0 });
    server.upkeep(); // no query comes: the upkeep kicks
    expect({ kicks: k.kicks, onRing: k.txQ.length, sent: k.compQ.length }).toEqual({ kicks: 2, onRing: 0, sent: 1 });
    server.upkeep(); // reclaims; nothing left to kick, so no TX call
    const calls = k.calls.tx;
    server.upkeep();
    expect(k.calls.tx).toBe(calls);
    expect(sock.accounting().tx).toBe(0);
    checkInvariant(sock, k);
  });

  it('kicks replies a refused kick left on the TX ring again within milliseconds, with no query and no upkeep', async () => {
    const { engine, sock, k, server, stats } = setup();
    k.kickTransmits = true;
    k.refuseKicks = 1;
    engine.cache.insertResponse(wwwA);
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 8 })));
    server.drain();
    expect({ onRing: k.txQ.length, sent: k.compQ.length }).toEqual({ onRing: 1, sent: 0 });
    await new Promise((r) => setTimeout(r, 30));
    expect({ onRing: k.txQ.length, sent: k.compQ.length, retries: stats.get('xskTxRetries') }).toEqual({ onRing: 0, sent: 1, retries: 1 });
    checkInvariant(sock, k);
  });

  it('backs off while the kernel keeps refusing (1, 2, 4 ... ms), and stops once the ring is taken', async () => {
    const { engine, k, server, stats } = setup();
    k.kickTransmits = true;
    k.refuseKicks = 1_000;
    engine.cache.insertResponse(wwwA);
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 9 })));
    server.drain();
    await new Promise((r) => setTimeout(r, 200));
    // 1+2+4+...+64 ms: about 7 retries in 200 ms, not one per millisecond.
    const retries = stats.get('xskTxRetries');
    expect(retries).toBeGreaterThanOrEqual(4);
    expect(retries).toBeLessThanOrEqual(9);
    k.refuseKicks = 0;
    await new Promise((r) => setTimeout(r, 150));
    expect(k.txQ.length).toBe(0);
    const after = stats.get('xskTxRetries');
    await new Promise((r) => setTimeout(r, 150));
    expect(stats.get('xskTxRetries')).toBe(after); // nothing waits: no more retries
    await server.stop(0);
  });

  it('counts a miss whose answer came after the socket closed (a stop past its grace) as a worker exit\'s', async () => {
    const { resolver, k, server, stats } = setup();
    k.deliverBytes(buildFrame(query('www.example.com', 'A', { id: 11 })));
    server.drain();
    await server.stop(0); // the grace is over: the socket closes with the miss still waiting
    resolver.release(wwwA);
    await flush();
    expect({ waiting: stats.get('xskWaiting'), abandoned: stats.get('xskAbandoned'), errors: stats.get('xskHandlerErrors') }).toEqual({ waiting: 0, abandoned: 1, errors: 0 });
  });

  it('answers SERVFAIL when the upstream fails', async () => {
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
    expect(stats.get('badFrames')).toBe(1);
    expect(stats.get('xskHandlerErrors')).toBe(1);
    expect(stats.get('xskReceived')).toBe(2);
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

  it('stop() waits for misses on the upstream, answers them, then closes with nothing outstanding', async () => {
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

  it('stop() sends the replies of misses answered in its own turn, before the turn-end flush', async () => {
    const { resolver, k, server, stats } = setup();
    for (let i = 0; i < 3; i++) {
      k.deliverBytes(buildFrame(query(`s${i}.example.com`, 'A', { id: 20 + i })));
      server.drain();
    }
    resolver.release((name) => response(name, 'A', { answers: [{ type: 'A', name, ttl: 60, data: '198.18.1.4' }] }));
    for (let i = 0; i < 20; i++) await Promise.resolve(); // settled and written, flush not yet run
    expect(server.pending).toBe(0);
    expect(stats.get('upstreamAnswers')).toBe(3);
    await server.stop(2000); // nothing pending: closes at once
    expect(k.closed).toBe(true);
    expect(k.txQ.length).toBe(3);
  });
});
