/**
 * The native AF_XDP socket (addon/xsk.cc) as a TypeScript interface, so the frame
 * accounting in src/io/xsk.ts can be driven by a fake in unprivileged tests.
 *
 * Ring calls are batched: each takes a caller-owned Uint32Array and a count, handles
 * many descriptors in one native call and allocates nothing. UMEM addresses are byte
 * offsets into umem() and always fit in 31 bits (the UMEM is at most 1 GiB).
 */

export type XskBindMode = 'copy' | 'zerocopy' | 'auto';

export interface NativeXskOptions {
  /** Bytes per UMEM frame: 2048 or 4096. */
  frameSize: number;
  /** Frames in the UMEM; frameCount * frameSize at most 1 GiB. */
  frameCount: number;
  /** Entries of each of the four rings (fill, completion, RX, TX): a power of two, 64..16384. */
  ringSize: number;
  /** 'auto' tries zero-copy first, then copy (veth has copy only). */
  mode: XskBindMode;
  /** Bind with XDP_USE_NEED_WAKEUP: syscalls only when the kernel asks for them. */
  needWakeup: boolean;
}

/** struct xdp_statistics (XDP_STATISTICS) and the socket's own counters. */
export interface NativeXskStats {
  /** Kernel: dropped for reasons other than an invalid descriptor. */
  rxDropped: number;
  rxInvalidDescs: number;
  txInvalidDescs: number;
  /** Kernel: dropped because the RX ring was full. */
  rxRingFull: number;
  /** Kernel: a packet found the fill ring empty. */
  rxFillRingEmptyDescs: number;
  txRingEmptyDescs: number;
  /** Descriptors taken from the RX ring by rx(). */
  rxPackets: number;
  /** Descriptors put on the TX ring by tx(). */
  txPackets: number;
  /** Addresses put on the fill ring by fill(). */
  filled: number;
  /** Addresses taken from the completion ring by complete(). */
  completed: number;
  /** sendto() calls made to start transmission. */
  txKicks: number;
  /** recvfrom() calls made because the fill ring asked for a wakeup. */
  fillKicks: number;
  /** Kicks that failed with something other than EAGAIN/EBUSY. */
  kickErrors: number;
  lastKickErrno: number;
  /** Times the poll callback ran. */
  pollWakeups: number;
}

export interface NativeXskDescription {
  open: boolean;
  fd: number;
  ifindex: number;
  queueId: number;
  /** The mode the kernel bound (XDP_OPTIONS), not the one asked for. */
  mode: 'copy' | 'zerocopy';
  frameSize: number;
  frameCount: number;
  ringSize: number;
  umemBytes: number;
  needWakeup: boolean;
  registered: boolean;
  /** XDP_MAX_TX_SKB_BUDGET in effect (Linux 6.17+), 0 when the kernel lacks it. */
  txBudget: number;
  polling: boolean;
}

export interface NativeXskSocket {
  /** The socket's fd, -1 once closed. */
  readonly fd: number;
  /** The UMEM as an external ArrayBuffer (no copy); detached by close(). */
  umem(): ArrayBuffer;
  /**
   * Puts the socket into the XSKMAP (XdpProgram.describe().xsksMapFd of this process) at
   * its queue; XDP redirects the queue's traffic here from then on, so fill first.
   */
  register(xsksMapFd: number): void;
  /** Puts addrs[offset .. offset+n) on the fill ring (frame starts only); returns how many fit. */
  fill(addrs: Uint32Array, n: number, offset?: number): number;
  /** Takes up to max RX descriptors as pairs (addr, len) into out; returns the count. */
  rx(out: Uint32Array, max: number): number;
  /**
   * Submits n pairs (addr, len) from descs to the TX ring and kicks if needed; returns how
   * many fit, plus TX_REFUSED when the kernel refused the kick without taking anything.
   */
  tx(descs: Uint32Array, n: number): number;
  /** Descriptors on the TX ring the kernel has not taken (a refused kick's; zero-copy: not yet reached). */
  txWaiting(): number;
  /** Takes up to max transmitted addresses from the completion ring into out; returns the count. */
  complete(out: Uint32Array, max: number): number;
  /** Calls cb() when RX descriptors wait (level triggered), cb(err) once on a socket error. */
  poll(cb: (err?: Error) => void): void;
  stopPoll(): void;
  stats(): NativeXskStats;
  describe(): NativeXskDescription;
  /** Detaches the UMEM buffer, stops polling, closes the socket and frees the UMEM. Idempotent. */
  close(): void;
}

export type NativeXskSocketConstructor = new (ifname: string, queueId: number, options: NativeXskOptions) => NativeXskSocket;

/** The flag tx() adds to its count when the kernel refused the kick (copy mode: the device queue full). */
export const TX_REFUSED = 1 << 20;
