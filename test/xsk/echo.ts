/**
 * A tiny DNS "responder" over an XskSocket, for the lab tests: every DNS query frame
 * (IPv4 or IPv6, UDP to the served port) is turned in place into a minimal reply (MACs,
 * addresses and ports swapped, QR and RA set, everything else echoed) and sent back on
 * the TX ring; anything else is released. Checksums are computed in full: a veth client
 * sends only a partial UDP checksum, so an incremental update would be wrong.
 * Nothing here allocates per packet.
 */
import type { XskSocket } from '../../src/xdp/xsk.js';

function sum16(u: Uint8Array, start: number, end: number, acc: number): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += (u[i]! << 8) | u[i + 1]!;
  if (i < end) s += u[i]! << 8;
  return s;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function swap(u: Uint8Array, a: number, b: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = u[a + i]!;
    u[a + i] = u[b + i]!;
    u[b + i] = t;
  }
}

/** Rewrites the query frame at addr into a reply; returns the reply length, 0 if not a query. */
export function echoQuery(u: Uint8Array, addr: number, len: number, port = 53): number {
  if (len < 14 + 20 + 8 + 12) return 0;
  const type = (u[addr + 12]! << 8) | u[addr + 13]!;
  const ip = addr + 14;
  let udp: number;
  let end: number;
  let v6 = false;
  if (type === 0x0800) {
    if (u[ip]! >> 4 !== 4 || u[ip + 9] !== 17) return 0;
    const ihl = (u[ip]! & 0x0f) * 4;
    const total = (u[ip + 2]! << 8) | u[ip + 3]!;
    if ((((u[ip + 6]! << 8) | u[ip + 7]!) & 0x3fff) !== 0) return 0; // fragment
    udp = ip + ihl;
    end = ip + total;
  } else if (type === 0x86dd) {
    if (len < 14 + 40 + 8 + 12 || u[ip + 6] !== 17) return 0;
    v6 = true;
    udp = ip + 40;
    end = udp + ((u[ip + 4]! << 8) | u[ip + 5]!);
  } else {
    return 0;
  }
  if (end > addr + len || udp + 8 + 12 > end) return 0;
  if (((u[udp + 2]! << 8) | u[udp + 3]!) !== port) return 0;
  const dns = udp + 8;
  if (u[dns + 2]! & 0x80) return 0; // a response, not a query

  swap(u, addr, addr + 6, 6);
  swap(u, udp, udp + 2, 2);
  u[dns + 2] = u[dns + 2]! | 0x80; // QR
  u[dns + 3] = (u[dns + 3]! | 0x80) & 0xf0; // RA, RCODE NOERROR
  const udpLen = end - udp;
  let pseudo: number;
  if (v6) {
    swap(u, ip + 8, ip + 24, 16);
    u[ip + 7] = 64;
    pseudo = sum16(u, ip + 8, ip + 40, udpLen + 17);
  } else {
    swap(u, ip + 12, ip + 16, 4);
    u[ip + 8] = 64;
    u[ip + 10] = 0;
    u[ip + 11] = 0;
    const h = ~fold(sum16(u, ip, udp, 0)) & 0xffff;
    u[ip + 10] = h >> 8;
    u[ip + 11] = h & 0xff;
    pseudo = sum16(u, ip + 12, ip + 20, udpLen + 17);
  }
  u[udp + 6] = 0;
  u[udp + 7] = 0;
  let c = ~fold(sum16(u, udp, end, pseudo)) & 0xffff;
  if (c === 0) c = 0xffff;
  u[udp + 6] = c >> 8;
  u[udp + 7] = c & 0xff;
  return end - addr;
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
