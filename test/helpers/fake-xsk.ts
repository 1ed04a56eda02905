/**
 * A fake native AF_XDP socket that plays the kernel (fill ring -> RX ring, TX ring ->
 * completion ring) over a plain ArrayBuffer, so the frame accounting of src/io/xsk.ts
 * and the XskServer loop can be tested without root.
 */
import { expect } from 'vitest';
import type { NativeAddon } from '../../src/native/addon.js';
import { TX_REFUSED, type NativeXskOptions, type NativeXskSocket, type NativeXskStats } from '../../src/native/xsk-types.js';
import { XskSocket, type XskOptions } from '../../src/io/xsk.js';

export const HEADROOM = 256; // where the kernel puts received data in a frame (XDP_PACKET_HEADROOM)

export class FakeKernel implements NativeXskSocket {
  fd = 99;
  buf: ArrayBuffer;
  fillQ: number[] = [];
  rxQ: [number, number][] = [];
  txQ: [number, number][] = [];
  compQ: number[] = [];
  /** Most entries the next fill()/tx() accepts (a full ring), unlimited when undefined. */
  fillLimit?: number;
  txLimit?: number;
  cb: ((err?: Error) => void) | null = null;
  closed = false;
  calls = { fill: 0, rx: 0, tx: 0, complete: 0 };

  constructor(
    readonly ifname: string,
    readonly queueId: number,
    readonly o: NativeXskOptions,
  ) {
    this.buf = new ArrayBuffer(o.frameSize * o.frameCount);
  }
  private live(): void {
    if (this.closed) throw new Error('XskSocket is closed');
  }
  umem(): ArrayBuffer {
    this.live();
    return this.buf;
  }
  registeredWith = -1;
  /** Registration must come after the fill ring is stocked. */
  filledAtRegister = -1;
  register(fd: number): void {
    this.live();
    this.registeredWith = fd;
    this.filledAtRegister = this.fillQ.length;
  }
  fill(addrs: Uint32Array, n: number, offset = 0): number {
    this.live();
    this.calls.fill++;
    const k = Math.min(n, this.o.ringSize - this.fillQ.length, this.fillLimit ?? Infinity);
    for (let i = 0; i < k; i++) {
      const a = addrs[offset + i]!;
      if (a % this.o.frameSize !== 0 || a >= this.buf.byteLength) throw new RangeError(`fill address ${a}`);
      this.fillQ.push(a);
    }
    return k;
  }
  rx(out: Uint32Array, max: number): number {
    this.live();
    this.calls.rx++;
    const n = Math.min(max, this.rxQ.length);
    for (let i = 0; i < n; i++) [out[2 * i], out[2 * i + 1]] = this.rxQ.shift()!;
    return n;
  }
  /**
   * Copy mode's kick: when set, a tx() call that finds entries on the TX ring (as the addon
   * kicks whenever the kernel has not taken them all, even for n = 0) transmits them,
   * unless `refuseKicks` says to refuse it (EAGAIN with no progress: they stay on the ring).
   */
  kickTransmits = false;
  refuseKicks = 0;
  /** Kicks made (tx() calls that found the TX ring non-empty). */
  kicks = 0;
  tx(descs: Uint32Array, n: number): number {
    this.live();
    this.calls.tx++;
    const k = Math.min(n, this.o.ringSize - this.txQ.length, this.txLimit ?? Infinity);
    for (let i = 0; i < k; i++) this.txQ.push([descs[2 * i]!, descs[2 * i + 1]!]);
    let refused = false;
    if (this.txQ.length > 0) {
      this.kicks++;
      if (this.refuseKicks > 0) {
        this.refuseKicks--;
        refused = true;
      } else if (this.kickTransmits) this.transmit();
    }
    return k | (refused ? TX_REFUSED : 0);
  }
  txWaiting(): number {
    this.live();
    return this.txQ.length;
  }
  complete(out: Uint32Array, max: number): number {
    this.live();
    this.calls.complete++;
    const n = Math.min(max, this.compQ.length);
    for (let i = 0; i < n; i++) out[i] = this.compQ.shift()!;
    return n;
  }
  poll(cb: (err?: Error) => void): void {
    this.cb = cb;
  }
  stopPoll(): void {
    this.cb = null;
  }
  /** What stats() reports as the kernel's XDP_STATISTICS; tests set fields. */
  kstats: Partial<NativeXskStats> = {};
  stats(): NativeXskStats {
    this.live();
    return {
      rxDropped: 0, rxInvalidDescs: 0, txInvalidDescs: 0, rxRingFull: 0, rxFillRingEmptyDescs: 0, txRingEmptyDescs: 0,
      rxPackets: 0, txPackets: 0, filled: 0, completed: 0, txKicks: 0, fillKicks: 0, kickErrors: 0, lastKickErrno: 0, pollWakeups: 0,
      ...this.kstats,
    };
  }
  describe(): ReturnType<NativeXskSocket['describe']> {
    return { mode: 'copy', open: !this.closed } as ReturnType<NativeXskSocket['describe']>;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    structuredClone(this.buf, { transfer: [this.buf] }); // detach, as napi_detach_arraybuffer does
  }

  /** A packet arrives: the kernel takes a fill frame and posts it on the RX ring. */
  deliver(len = 80): boolean {
    const a = this.fillQ.shift();
    if (a === undefined) return false;
    this.rxQ.push([a + HEADROOM, len]);
    return true;
  }
  /** A packet with these bytes arrives (written where the kernel writes received data). */
  deliverBytes(frame: Uint8Array): boolean {
    const a = this.fillQ.shift();
    if (a === undefined) return false;
    new Uint8Array(this.buf).set(frame, a + HEADROOM);
    this.rxQ.push([a + HEADROOM, frame.length]);
    return true;
  }
  /** The kernel sends everything on the TX ring and completes it. */
  transmit(): number {
    const n = this.txQ.length;
    for (const [a] of this.txQ.splice(0)) this.compQ.push(a);
    return n;
  }
}

export function fakeAddon(): { addon: NativeAddon; last: () => FakeKernel } {
  let last: FakeKernel | null = null;
  const XskSocketCtor = function (this: unknown, ifname: string, q: number, o: NativeXskOptions) {
    last = new FakeKernel(ifname, q, o);
    return last;
  };
  const addon = { layout: { MAX_QUEUES: 64 }, XskSocket: XskSocketCtor } as unknown as NativeAddon;
  return { addon, last: () => last! };
}

export function openFake(o: Partial<XskOptions> = {}): { sock: XskSocket; k: FakeKernel } {
  const f = fakeAddon();
  const sock = XskSocket.open({ ifname: 'veth0', queueId: 0, ringSize: 64, frameCount: 128, batchSize: 16, ...o }, f.addon);
  return { sock, k: f.last() };
}


/** Every frame in exactly one place, and the fake kernel holding what the accounting says it holds. */
export function checkInvariant(sock: XskSocket, k: FakeKernel): void {
  const a = sock.accounting();
  expect(a.free + a.fill + a.held + a.txQueued + a.tx).toBe(a.total);
  expect(a.anomalies).toBe(0);
  // What the kernel holds matches what the accounting says it holds.
  expect(k.fillQ.length + k.rxQ.length).toBe(a.fill);
  expect(k.txQ.length + k.compQ.length).toBe(a.tx);
}
