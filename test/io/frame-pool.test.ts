/**
 * Frame accounting of src/io/xsk.ts against a fake native socket that plays the
 * kernel (fill ring -> RX ring, TX ring -> completion ring), without root: every frame
 * is in exactly one place through receive / send / flush / reclaim / refill, partial
 * ring acceptance, misuse, kernel surprises and close with frames outstanding.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { XskSocket, type XskOptions } from '../../src/io/xsk.js';
import { FakeKernel, HEADROOM, checkInvariant, fakeAddon, openFake as open } from '../helpers/fake-xsk.js';

/** One batch of the echo loop: reclaim, receive, send everything back, flush, refill. */
function serve(sock: XskSocket): number {
  sock.reclaim();
  const n = sock.receive();
  for (let i = 0; i < n; i++) expect(sock.send(sock.rxDescs[2 * i]!, sock.rxDescs[2 * i + 1]!)).toBe(true);
  sock.flush();
  sock.refill();
  return n;
}

describe('XskSocket frame accounting (fake kernel)', () => {
  it('registers in the XSKMAP only after stocking the fill ring', () => {
    const { k } = open({ xsksMapFd: 7 });
    expect(k.registeredWith).toBe(7);
    expect(k.filledAtRegister).toBe(64);
    expect(open().k.registeredWith).toBe(-1); // not asked to
  });

  it('closes the native socket when registration fails', () => {
    const f = fakeAddon();
    const orig = FakeKernel.prototype.register;
    FakeKernel.prototype.register = () => {
      throw Object.assign(new Error('not the heimdall xsks_map'), { code: 'EINVAL' });
    };
    try {
      expect(() => XskSocket.open({ ifname: 'veth0', queueId: 0, ringSize: 64, xsksMapFd: 3 }, f.addon)).toThrow(/xsks_map/);
      expect(f.last().closed).toBe(true);
    } finally {
      FakeKernel.prototype.register = orig;
    }
  });

  it('fills the fill ring at open and brings every frame back after a batch cycle', () => {
    const { sock, k } = open();
    expect(sock.accounting()).toEqual({ total: 128, free: 64, fill: 64, held: 0, txQueued: 0, tx: 0, anomalies: 0 });
    expect([...k.fillQ].sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, i) => i * 2048)); // lowest frames first
    for (let i = 0; i < 40; i++) k.deliver();
    expect(serve(sock)).toBe(16); // one batch per call, one native call per ring
    expect(k.calls).toMatchObject({ rx: 1, tx: 1 });
    checkInvariant(sock, k);
    while (serve(sock) > 0) checkInvariant(sock, k);
    k.transmit();
    sock.reclaim();
    checkInvariant(sock, k);
    sock.refill();
    expect(sock.accounting()).toEqual({ total: 128, free: 64, fill: 64, held: 0, txQueued: 0, tx: 0, anomalies: 0 });
  });

  it('hands received frames to the caller with the kernel addresses, and maps them to frame starts', () => {
    const { sock, k } = open();
    const frame = k.fillQ[0]!;
    k.deliver(99);
    expect(sock.receive()).toBe(1);
    expect([sock.rxDescs[0], sock.rxDescs[1]]).toEqual([frame + HEADROOM, 99]);
    expect(sock.frameOf(sock.rxDescs[0]!)).toBe(frame);
    expect(sock.accounting()).toMatchObject({ held: 1, fill: 63 });
    sock.release(sock.rxDescs[0]!); // any address inside the frame
    expect(sock.accounting()).toMatchObject({ held: 0, free: 65 });
  });

  it('rejects misuse with RangeError and leaves the accounting untouched', () => {
    const { sock, k } = open();
    k.deliver();
    sock.receive();
    const addr = sock.rxDescs[0]!;
    const before = sock.accounting();
    expect(() => sock.send(addr, 2048)).toThrow(RangeError); // crosses the frame end
    expect(() => sock.send(addr, 0)).toThrow(RangeError);
    expect(() => sock.release(128 * 2048)).toThrow(RangeError); // beyond the UMEM
    expect(() => sock.release(-1)).toThrow(RangeError);
    expect(() => sock.release(4096)).toThrow(/not held/); // on the fill ring
    expect(sock.accounting()).toEqual(before);
    sock.release(addr);
    expect(() => sock.release(addr)).toThrow(/released twice/);
    expect(() => sock.send(addr, 60)).toThrow(RangeError);
    checkInvariant(sock, k);
  });

  it('keeps the frames the fill ring did not take', () => {
    const { sock, k } = open();
    for (let i = 0; i < 10; i++) k.deliver();
    sock.receive();
    for (let i = 0; i < 10; i++) sock.release(sock.rxDescs[2 * i]!);
    k.fillLimit = 3;
    expect(sock.refill()).toBe(3);
    checkInvariant(sock, k);
    k.fillLimit = undefined;
    expect(sock.refill()).toBe(7);
    checkInvariant(sock, k);
    expect(new Set(k.fillQ).size).toBe(64); // no frame given twice
  });

  it('keeps the descriptors the TX ring did not take, in order', () => {
    const { sock, k } = open();
    for (let i = 0; i < 5; i++) k.deliver(60 + i);
    sock.receive();
    for (let i = 0; i < 5; i++) sock.send(sock.rxDescs[2 * i]!, sock.rxDescs[2 * i + 1]!);
    k.txLimit = 2;
    expect(sock.flush()).toBe(2);
    expect(sock.accounting()).toMatchObject({ tx: 2, txQueued: 3 });
    k.txLimit = undefined;
    expect(sock.flush()).toBe(3);
    expect(k.txQ.map(([, len]) => len)).toEqual([60, 61, 62, 63, 64]);
    checkInvariant(sock, k);
  });

  it('flushes a full batch by itself, and refuses (frame still held) when the TX ring is full', () => {
    const { sock, k } = open({ batchSize: 4 });
    const own: number[] = [];
    for (let i = 0; i < 8; i++) own.push(sock.allocFrame());
    k.txLimit = 4;
    for (let i = 0; i < 5; i++) expect(sock.send(own[i]!, 60)).toBe(true); // the 5th flushed the first 4
    expect(k.calls.tx).toBe(1);
    k.txLimit = 0;
    for (let i = 5; i < 8; i++) expect(sock.send(own[i]!, 60)).toBe(true);
    expect(sock.send(sock.allocFrame(), 60)).toBe(false);
    expect(sock.accounting()).toMatchObject({ held: 1, txQueued: 4, tx: 4 });
    checkInvariant(sock, k);
  });

  it('runs out of free frames cleanly', () => {
    const { sock } = open();
    for (let i = 0; i < 64; i++) expect(sock.allocFrame()).toBeGreaterThanOrEqual(0);
    expect(sock.allocFrame()).toBe(-1);
    expect(sock.accounting()).toMatchObject({ free: 0, held: 64 });
  });

  it('counts a completion the accounting did not expect instead of corrupting the free list', () => {
    const { sock, k } = open();
    k.compQ.push(10 * 2048); // a frame that is free, not in flight
    sock.reclaim();
    // Not counted off the frames in flight either: there were none.
    expect(sock.accounting()).toMatchObject({ anomalies: 1, free: 64, tx: 0 });
  });

  it('leaves out an RX descriptor whose frame is not on the fill ring: counted, not handed on, its frame where it was', () => {
    const { sock, k } = open();
    // Frames 0..63 are on the fill ring, 64..127 free (lowest addresses fill first).
    const [a, b] = [k.fillQ[0]!, k.fillQ[1]!];
    k.rxQ.push([100 * 2048 + HEADROOM, 80]); // a free frame
    k.deliver(90); // a good one: frame a
    k.rxQ.push([a + HEADROOM, 70]); // frame a again, now held
    k.rxQ.push([128 * 2048 + HEADROOM, 60]); // outside the UMEM
    k.deliver(50); // a good one: frame b
    expect(sock.receive()).toBe(2);
    expect([...sock.rxDescs.subarray(0, 4)]).toEqual([a + HEADROOM, 90, b + HEADROOM, 50]);
    expect(sock.accounting()).toEqual({ total: 128, free: 64, fill: 62, held: 2, txQueued: 0, tx: 0, anomalies: 3 });
    // The free frame is still free, once: allocating every free frame never yields a held one.
    const got = new Set<number>();
    for (let a = sock.allocFrame(); a >= 0; a = sock.allocFrame()) got.add(a);
    expect(got.size).toBe(64);
    expect(got.has(100 * 2048)).toBe(true);
    expect(got.has(a)).toBe(false);
    sock.release(a + HEADROOM);
    sock.release(b + HEADROOM);
  });

  it('closes with frames held, queued and in flight: views empty, calls refused, last accounting kept', () => {
    const { sock, k } = open();
    const view = sock.umem;
    for (let i = 0; i < 9; i++) k.deliver();
    sock.receive();
    for (let i = 0; i < 3; i++) sock.send(sock.rxDescs[2 * i]!, 60);
    sock.flush();
    for (let i = 3; i < 6; i++) sock.send(sock.rxDescs[2 * i]!, 60);
    const at = sock.accounting();
    expect(at).toMatchObject({ held: 3, txQueued: 3, tx: 3 });
    sock.close();
    sock.close();
    expect(sock.closed).toBe(true);
    expect(k.closed).toBe(true);
    expect(view.byteLength).toBe(0);
    expect(sock.accounting()).toEqual(at);
    expect(() => sock.release(sock.rxDescs[12]!)).toThrow(/closed/);
    expect(() => sock.receive()).toThrow(/closed/);
  });

  it('calls the readable handler with the socket, and errors to onError', () => {
    const { sock, k } = open();
    const seen: unknown[] = [];
    sock.onReadable(
      (s) => seen.push(s),
      (e) => seen.push(e.message),
    );
    k.cb!();
    k.cb!(new Error('ENETDOWN'));
    expect(seen).toEqual([sock, 'ENETDOWN']);
    sock.stopReadable();
    expect(k.cb).toBeNull();
  });

  it('validates options with TypeError/RangeError before reaching the addon', () => {
    const { addon } = fakeAddon();
    const base = { ifname: 'veth0', queueId: 0 };
    expect(() => XskSocket.open(null as unknown as XskOptions, addon)).toThrow(TypeError);
    expect(() => XskSocket.open({ ...base, ifname: 'x'.repeat(16) }, addon)).toThrow(TypeError);
    expect(() => XskSocket.open({ ...base, queueId: 64 }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, queueId: '0' as unknown as number }, addon)).toThrow(TypeError);
    expect(() => XskSocket.open({ ...base, frameSize: 3072 }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, ringSize: 96 }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, ringSize: 32 }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, frameCount: 2 ** 20 }, addon)).toThrow(RangeError); // 2 GiB
    expect(() => XskSocket.open({ ...base, batchSize: 4096, ringSize: 2048 }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, mode: 'turbo' as 'copy' }, addon)).toThrow(RangeError);
    expect(() => XskSocket.open({ ...base, needWakeup: 1 as unknown as boolean }, addon)).toThrow(TypeError);
    expect(() => XskSocket.open({ ...base, xsksMapFd: -2 }, addon)).toThrow(RangeError);
  });

  it('keeps every frame in exactly one place under any sequence of operations', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 80 }) }),
      fc.record({ k: fc.constant('serve' as const), sendEvery: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ k: fc.constant('transmit' as const) }),
      fc.record({ k: fc.constant('reclaim' as const) }),
      fc.record({ k: fc.constant('refill' as const), limit: fc.option(fc.integer({ min: 0, max: 8 })) }),
      fc.record({ k: fc.constant('flush' as const), limit: fc.option(fc.integer({ min: 0, max: 8 })) }),
      fc.record({ k: fc.constant('alloc' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const { sock, k } = open();
        const own: number[] = [];
        for (const o of ops) {
          switch (o.k) {
            case 'deliver':
              for (let i = 0; i < o.n; i++) k.deliver();
              break;
            case 'serve': {
              const n = sock.receive();
              for (let i = 0; i < n; i++) {
                const a = sock.rxDescs[2 * i]!;
                if (i % o.sendEvery === 0 && sock.send(a, 60)) continue;
                sock.release(a);
              }
              break;
            }
            case 'transmit':
              k.transmit();
              break;
            case 'reclaim':
              sock.reclaim();
              break;
            case 'refill':
              k.fillLimit = o.limit ?? undefined;
              sock.refill();
              k.fillLimit = undefined;
              break;
            case 'flush':
              k.txLimit = o.limit ?? undefined;
              sock.flush();
              k.txLimit = undefined;
              break;
            case 'alloc': {
              const a = sock.allocFrame();
              if (a >= 0) own.push(a);
              break;
            }
          }
          checkInvariant(sock, k);
        }
        // Drain: everything comes back, nothing is lost or duplicated.
        for (const a of own) sock.release(a);
        sock.flush();
        k.transmit();
        sock.reclaim();
        for (let n = sock.receive(); n > 0; n = sock.receive()) for (let i = 0; i < n; i++) sock.release(sock.rxDescs[2 * i]!);
        expect(sock.accounting()).toMatchObject({ held: 0, txQueued: 0, tx: 0, anomalies: 0 });
        expect(sock.accounting().free + sock.accounting().fill).toBe(128);
        checkInvariant(sock, k);
      }),
      { numRuns: 200 },
    );
  });
});
