/**
 * Builds Ethernet frames around DNS messages (VLAN tags, IPv4 with or without options
 * and fragments, IPv6 with or without extension headers, full or partial UDP checksums)
 * and parses the frames the program sends back.
 */
import { isIPv4 } from 'node:net';
import { ipv4HeaderChecksum, udpChecksum, udpPartialChecksum } from './checksum.js';

export const CLIENT_MAC = Buffer.from('02aa00000002', 'hex');
export const SERVER_MAC = Buffer.from('02aa00000001', 'hex');
export const CLIENT4 = '198.18.0.2';
export const SERVER4 = '198.18.0.1';
export const CLIENT6 = 'fd00::2';
export const SERVER6 = 'fd00::1';

export function ipBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

export interface FrameOptions {
  ipv6?: boolean;
  /** VLAN IDs, outermost first; the outer tag of two uses 802.1ad. */
  vlans?: number[];
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  /** IPv4 options bytes (a multiple of 4). */
  ipOptions?: Buffer;
  /** IPv4: set More Fragments. */
  fragment?: boolean;
  /** IPv6 next header other than UDP, with a hop-by-hop header inserted. */
  ipv6HopByHop?: boolean;
  /** L4 protocol number instead of UDP. */
  protocol?: number;
  /** Leave the UDP checksum partial, as a veth client with offload sends it. */
  partialChecksum?: boolean;
  /** Corrupt the IPv4 header checksum. */
  badIpChecksum?: boolean;
  /** Bytes of Ethernet padding after the IP packet. */
  trailer?: number;
}

export function buildFrame(dns: Uint8Array, o: FrameOptions = {}): Buffer {
  const v6 = o.ipv6 ?? false;
  const src = ipBytes(o.src ?? (v6 ? CLIENT6 : CLIENT4));
  const dst = ipBytes(o.dst ?? (v6 ? SERVER6 : SERVER4));
  const udpLen = 8 + dns.length;
  const udp = Buffer.alloc(udpLen);
  udp.writeUInt16BE(o.sport ?? 40000, 0);
  udp.writeUInt16BE(o.dport ?? 53, 2);
  udp.writeUInt16BE(udpLen, 4);
  Buffer.from(dns).copy(udp, 8);
  udp.writeUInt16BE(o.partialChecksum ? udpPartialChecksum(src, dst, udpLen) : udpChecksum(src, dst, udp), 6);

  let l3: Buffer;
  if (!v6) {
    const opts = o.ipOptions ?? Buffer.alloc(0);
    const ihl = 5 + opts.length / 4;
    const ip = Buffer.alloc(ihl * 4);
    ip[0] = 0x40 | ihl;
    ip.writeUInt16BE(ihl * 4 + udpLen, 2);
    ip.writeUInt16BE(0x1234, 4);
    ip.writeUInt16BE(o.fragment ? 0x2000 : 0x4000, 6);
    ip[8] = 64;
    ip[9] = o.protocol ?? 17;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    opts.copy(ip, 20);
    ip.writeUInt16BE(ipv4HeaderChecksum(ip) ^ (o.badIpChecksum ? 0x5555 : 0), 10);
    l3 = Buffer.concat([ip, udp]);
  } else {
    const ext = o.ipv6HopByHop ? Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]) : Buffer.alloc(0);
    const ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(ext.length + udpLen, 4);
    ip[6] = o.ipv6HopByHop ? 0 : (o.protocol ?? 17);
    ip[7] = 64;
    src.copy(ip, 8);
    dst.copy(ip, 24);
    l3 = Buffer.concat([ip, ext, udp]);
  }

  const tags: Buffer[] = [];
  const vlans = o.vlans ?? [];
  vlans.forEach((id, i) => {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(id & 0x0fff, 0);
    tags.push(t);
    void i;
  });
  // The EtherType before each tag says what the tag is; the last says the L3 protocol.
  const l3Type = v6 ? 0x86dd : 0x0800;
  const eth = Buffer.alloc(14);
  SERVER_MAC.copy(eth, 0);
  CLIENT_MAC.copy(eth, 6);
  const types = vlans.map((_, i) => (i === 0 && vlans.length > 1 ? 0x88a8 : 0x8100));
  eth.writeUInt16BE(types[0] ?? l3Type, 12);
  const tagged = tags.map((t, i) => {
    const next = Buffer.alloc(2);
    next.writeUInt16BE(types[i + 1] ?? l3Type, 0);
    return Buffer.concat([t.subarray(0, 2), next]);
  });
  return Buffer.concat([eth, ...tagged, l3, Buffer.alloc(o.trailer ?? 0)]);
}

export interface ParsedFrame {
  dstMac: Buffer;
  srcMac: Buffer;
  vlans: number[];
  ipv6: boolean;
  src: Buffer;
  dst: Buffer;
  hopLimit: number;
  ipHeaderChecksumOk: boolean;
  ipLengthOk: boolean;
  sport: number;
  dport: number;
  udpLength: number;
  udpChecksum: number;
  udpChecksumOk: boolean;
  dns: Buffer;
}

/** Parses a frame the program produced; throws if it is not Ethernet/IP/UDP. */
export function parseFrame(f: Buffer): ParsedFrame {
  let off = 14;
  let type = f.readUInt16BE(12);
  const vlans: number[] = [];
  while (type === 0x8100 || type === 0x88a8) {
    vlans.push(f.readUInt16BE(off) & 0x0fff);
    type = f.readUInt16BE(off + 2);
    off += 4;
  }
  let src: Buffer, dst: Buffer, hop: number, ipOk = true, lenOk: boolean, l4: number;
  const ipv6 = type === 0x86dd;
  if (type === 0x0800) {
    const ihl = (f[off]! & 0x0f) * 4;
    const hdr = f.subarray(off, off + ihl);
    ipOk = ipv4HeaderChecksum(hdr) === hdr.readUInt16BE(10);
    src = Buffer.from(f.subarray(off + 12, off + 16));
    dst = Buffer.from(f.subarray(off + 16, off + 20));
    hop = f[off + 8]!;
    l4 = off + ihl;
    lenOk = hdr.readUInt16BE(2) === f.length - off;
  } else if (ipv6) {
    src = Buffer.from(f.subarray(off + 8, off + 24));
    dst = Buffer.from(f.subarray(off + 24, off + 40));
    hop = f[off + 7]!;
    l4 = off + 40;
    lenOk = f.readUInt16BE(off + 4) === f.length - l4;
  } else {
    throw new Error(`not IP: ethertype 0x${type.toString(16)}`);
  }
  const udpLength = f.readUInt16BE(l4 + 4);
  const seg = f.subarray(l4, l4 + udpLength);
  const sum = f.readUInt16BE(l4 + 6);
  return {
    dstMac: Buffer.from(f.subarray(0, 6)),
    srcMac: Buffer.from(f.subarray(6, 12)),
    vlans,
    ipv6,
    src,
    dst,
    hopLimit: hop,
    ipHeaderChecksumOk: ipOk,
    ipLengthOk: lenOk && l4 + udpLength === f.length,
    sport: f.readUInt16BE(l4),
    dport: f.readUInt16BE(l4 + 2),
    udpLength,
    udpChecksum: sum,
    udpChecksumOk: sum === udpChecksum(src, dst, seg),
    dns: Buffer.from(f.subarray(l4 + 8, l4 + udpLength)),
  };
}
