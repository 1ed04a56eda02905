/**
 * A tiny DNS "responder" over an XskSocket, for the lab tests: every DNS query frame
 * (IPv4 or IPv6, UDP to the served port) is turned in place into a minimal reply (MACs,
 * addresses and ports swapped, QR and RA set, everything else echoed) and sent back on
 * the TX ring; anything else is released. The L2-L4 work is the workers' own
 * (src/io/frame.ts), checksums computed in full.
 * Nothing here allocates per packet.
 */
import type { XskSocket } from '../../../src/io/xsk.js';
import { FrameInfo, finishReply, parseFrame } from '../../../src/io/frame.js';

const info = new FrameInfo();

/** Rewrites the query frame at addr into a reply; returns the reply length, 0 if not a query. */
export function echoQuery(u: Uint8Array, addr: number, len: number, port = 53): number {
  if (!parseFrame(u, addr, len, info) || info.dnsLen < 12) return 0;
  const udp = addr + info.l4;
  if (((u[udp + 2]! << 8) | u[udp + 3]!) !== port) return 0;
  const dns = addr + info.dns;
  if (u[dns + 2]! & 0x80) return 0; // a response, not a query
  u[dns + 2] = u[dns + 2]! | 0x80; // QR
  u[dns + 3] = (u[dns + 3]! | 0x80) & 0xf0; // RA, RCODE NOERROR
  return finishReply(u, addr, info, info.dnsLen);
}

export interface EchoCounters {
  replied: number;
  released: number;
  batches: number;
  maxBatch: number;
}

/** The per-socket service routine: one call drains one batch. */
export function makeEchoHandler(counters: EchoCounters, port = 53): (sock: XskSocket) => void {
  return (sock) => {
    sock.reclaim();
    const n = sock.receive();
    const d = sock.rxDescs;
    const u = sock.umem;
    for (let i = 0; i < n; i++) {
      const addr = d[2 * i]!;
      const rlen = echoQuery(u, addr, d[2 * i + 1]!, port);
      if (rlen > 0 && sock.send(addr, rlen)) counters.replied++;
      else {
        sock.release(addr);
        counters.released++;
      }
    }
    sock.flush();
    sock.refill();
    if (n > 0) {
      counters.batches++;
      if (n > counters.maxBatch) counters.maxBatch = n;
    }
  };
}
