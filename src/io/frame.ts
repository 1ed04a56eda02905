/**
 * Ethernet / 802.1Q / IPv4 / IPv6 / UDP in TypeScript, over a frame in UMEM: find the
 * DNS message of a received frame, and turn the frame into the reply once the DNS part
 * has been written in place. No allocation: results go into a reusable FrameInfo.
 *
 * The UDP checksum is always computed in full: frames from a local veth client carry
 * only a partial checksum, so an incremental update would be wrong.
 */

import type { Addr } from '../net/addr.js';

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;
const ETH_P_8021AD = 0x88a8;
const IPPROTO_UDP = 17;
const REPLY_HOP_LIMIT = 64;

export class FrameInfo {
  /** Offset of the IP header from the frame start. */
  l3 = 0;
  /** Offset of the UDP header. */
  l4 = 0;
  /** Offset and length of the DNS message. */
  dns = 0;
  dnsLen = 0;
  ipv6 = false;
}

/**
 * Parses buf[off, off+len) down to the DNS message of a UDP datagram. Returns false for
 * anything else (the XDP program only redirects UDP to served ports, so a false here
 * means a malformed frame, counted and dropped by the caller). It refuses what the
 * program's own parser (bpf/parsing.h) sends to the kernel instead, so the workers never
 * depend on that gate alone: IPv4 with options (a reply would echo them, source routes
 * included) or fragment bits, IP lengths beyond the frame, and a UDP length beyond the IP
 * payload. The IPv4 header checksum is left to the program. A frame sent to a broadcast
 * or multicast Ethernet address (destination group bit) is refused too, as the program
 * drops it (DROP_L2_GROUP): finishReply() swaps the MACs, and the reply would come from
 * the group address.
 */
export function parseFrame(buf: Uint8Array, off: number, len: number, info: FrameInfo): boolean {
  const end = off + len;
  if (len < 14 || (buf[off]! & 1) !== 0) return false;
  let p = off + 12;
  let type = (buf[p]! << 8) | buf[p + 1]!;
  p += 2;
  for (let i = 0; i < 2 && (type === ETH_P_8021Q || type === ETH_P_8021AD); i++) {
    if (p + 4 > end) return false;
    type = (buf[p + 2]! << 8) | buf[p + 3]!;
    p += 4;
  }
  info.l3 = p - off;
  let udp: number;
  let ipPayload: number;
  if (type === ETH_P_IP) {
    // Version 4 and a 20-byte header (IHL 5), nothing else.
    if (p + 20 > end || buf[p] !== 0x45 || buf[p + 9] !== IPPROTO_UDP) return false;
    if (((buf[p + 6]! << 8) | buf[p + 7]!) & 0x3fff) return false; // MF, or a fragment offset
    const total = (buf[p + 2]! << 8) | buf[p + 3]!;
    if (total < 28 || p + total > end) return false;
    udp = p + 20;
    ipPayload = total - 20;
    info.ipv6 = false;
  } else if (type === ETH_P_IPV6) {
    if (p + 40 > end || buf[p]! >> 4 !== 6 || buf[p + 6] !== IPPROTO_UDP) return false;
    ipPayload = (buf[p + 4]! << 8) | buf[p + 5]!;
    udp = p + 40;
    if (udp + ipPayload > end) return false;
    info.ipv6 = true;
  } else {
    return false;
  }
  if (udp + 8 > end) return false;
  const ulen = (buf[udp + 4]! << 8) | buf[udp + 5]!;
  if (ulen < 8 || ulen > ipPayload) return false;
  info.l4 = udp - off;
  info.dns = udp + 8 - off;
  info.dnsLen = ulen - 8;
  return true;
}

/** Copies the source address and port of a frame parseFrame accepted into `into` (IPv4 in bytes 0..3). */
export function readSource(buf: Uint8Array, off: number, info: FrameInfo, into: Addr): void {
  const ip = off + info.l3;
  const b = into.bytes;
  if (info.ipv6) {
    into.family = 6;
    for (let i = 0; i < 16; i++) b[i] = buf[ip + 8 + i]!;
  } else {
    into.family = 4;
    for (let i = 0; i < 4; i++) b[i] = buf[ip + 12 + i]!;
    for (let i = 4; i < 16; i++) b[i] = 0;
  }
  const udp = off + info.l4;
  into.port = (buf[udp]! << 8) | buf[udp + 1]!;
}

/**
 * acc plus the sum of the 16-bit words of buf[from, to) taken little-endian, folded to
 * 16 bits; four bytes per load where it can (every L2-L4 header length is even, and UMEM
 * frames are aligned, so the runs summed here start at even offsets). RFC 1071 sums are
 * byte-order independent: a sum of little-endian words, folded, is the big-endian sum
 * with its two bytes swapped; a 32-bit load adds its two 16-bit halves.
 */
function sumLE(buf: Uint8Array, from: number, to: number, acc: number): number {
  let i = from;
  const w = words32(buf);
  if (w !== undefined && (i & 1) === 0) {
    if ((i & 2) !== 0 && i + 2 <= to) {
      acc += buf[i]! | (buf[i + 1]! << 8);
      i += 2;
    }
    const k0 = i >>> 2;
    const k1 = k0 + ((to - i) >>> 2);
    for (let k = k0; k < k1; k++) {
      // Its two 16-bit halves, not the 32-bit word: the sum stays a small integer (a
      // sum of whole words passes 2^32 and made V8 box a number on every call: 16 B a
      // reply in the workers; docs/BENCHMARKS.md, "Allocation on the hit path").
      const x = w[k]!;
      acc += (x & 0xffff) + (x >>> 16);
    }
    i = k1 << 2;
  }
  for (; i + 1 < to; i += 2) acc += buf[i]! | (buf[i + 1]! << 8);
  if (i < to) acc += buf[i]!; // an odd last byte is the high byte of its big-endian word
  // Folded: callers chain the sum through several runs, and a folded one stays small.
  return fold(acc);
}

/**
 * A 32-bit view of the last buffer seen (a worker's UMEM: always the same object), or
 * undefined when the buffer does not start 4-byte aligned. Kept by identity, so no
 * typed-array getter runs per packet.
 */
let viewOf: Uint8Array | undefined;
let view32: Uint32Array | undefined;
function words32(buf: Uint8Array): Uint32Array | undefined {
  if (buf !== viewOf) {
    viewOf = buf;
    view32 = (buf.byteOffset & 3) === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2) : undefined;
  }
  return view32;
}

/** End-around carry down to 16 bits. */
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return s;
}

const bswap16 = (v: number): number => ((v & 0xff) << 8) | (v >>> 8);

function swap(buf: Uint8Array, a: number, b: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = buf[a + i]!;
    buf[a + i] = buf[b + i]!;
    buf[b + i] = t;
  }
}

/**
 * The DNS reply of dnsLen bytes already sits at the DNS offset: swap addresses and
 * ports, set lengths, hop limit and checksums. Returns the reply frame's length.
 */
export function finishReply(buf: Uint8Array, off: number, info: FrameInfo, dnsLen: number): number {
  swap(buf, off, off + 6, 6);
  const ip = off + info.l3;
  const udp = off + info.l4;
  const ulen = 8 + dnsLen;
  let acc = 0; // little-endian word sums from here on; swapped once at the end
  if (info.ipv6) {
    swap(buf, ip + 8, ip + 24, 16);
    buf[ip + 4] = ulen >> 8;
    buf[ip + 5] = ulen & 0xff;
    buf[ip + 7] = REPLY_HOP_LIMIT;
    acc = sumLE(buf, ip + 8, ip + 40, acc);
  } else {
    swap(buf, ip + 12, ip + 16, 4);
    const ihl = (buf[ip]! & 0x0f) * 4;
    const tot = ihl + ulen;
    buf[ip + 2] = tot >> 8;
    buf[ip + 3] = tot & 0xff;
    buf[ip + 6] = buf[ip + 6]! & 0x40; // keep DF, clear MF and fragment offset
    buf[ip + 7] = 0;
    buf[ip + 8] = REPLY_HOP_LIMIT;
    buf[ip + 10] = 0;
    buf[ip + 11] = 0;
    const hc = ~bswap16(fold(sumLE(buf, ip, ip + ihl, 0))) & 0xffff;
    buf[ip + 10] = hc >> 8;
    buf[ip + 11] = hc & 0xff;
    acc = sumLE(buf, ip + 12, ip + 20, acc);
  }
  swap(buf, udp, udp + 2, 2);
  buf[udp + 4] = ulen >> 8;
  buf[udp + 5] = ulen & 0xff;
  buf[udp + 6] = 0;
  buf[udp + 7] = 0;
  acc += bswap16(IPPROTO_UDP) + bswap16(ulen);
  acc = sumLE(buf, udp, udp + ulen, acc);
  let c = ~bswap16(fold(acc)) & 0xffff;
  if (c === 0) c = 0xffff;
  buf[udp + 6] = c >> 8;
  buf[udp + 7] = c & 0xff;
  return info.l4 + ulen;
}
