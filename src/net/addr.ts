/**
 * Client addresses as the edge policy sees them: one 16-byte form for both families
 * (IPv4 in the first four bytes, the rest zero), CIDR prefixes, and the per-prefix key
 * that rate limits and per-client limits count by (a client "network": /24 for IPv4,
 * /56 for IPv6 by default, as BIND's and Knot's RRL do, because one household or
 * customer site gets one such prefix and a spoofer can take any address inside it).
 *
 * The transports see addresses in two shapes, strings from kernel sockets and raw bytes
 * from AF_XDP frames; both become an Addr here. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer) is IPv4.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Addr {
  family: Family;
  /** 16 bytes; IPv4 in bytes 0..3. */
  bytes: Uint8Array;
  /** The peer's UDP or TCP port, where a transport knows it. */
  port?: number;
}

export interface Cidr {
  family: Family;
  bytes: Uint8Array;
  /** Prefix length in bits: 0..32 for IPv4, 0..128 for IPv6. */
  len: number;
  /** As written, normalised (host bits cleared), e.g. "10.0.0.0/8". */
  text: string;
}

const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function parseV4(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return false;
    out[at + i] = Number(p);
  }
  return true;
}

function parseV6(text: string, out: Uint8Array): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const words: number[] = [];
  const push = (list: string[], last: boolean): boolean => {
    for (let i = 0; i < list.length; i++) {
      const g = list[i]!;
      if (last && i === list.length - 1 && g.includes('.')) {
        const v4 = new Uint8Array(4);
        if (!parseV4(g, v4, 0)) return false;
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return false;
        words.push(parseInt(g, 16));
      }
    }
    return true;
  };
  if (!push(head, halves.length === 1)) return false;
  const headWords = words.length;
  if (!push(tail, true)) return false;
  const tailWords = words.length - headWords;
  if (halves.length === 1 ? words.length !== 8 : words.length > 7) return false;
  const full = [...words.slice(0, headWords), ...new Array<number>(8 - words.length).fill(0), ...words.slice(headWords, headWords + tailWords)];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = full[i]! >> 8;
    out[2 * i + 1] = full[i]! & 0xff;
  }
  return true;
}

/** An Addr from its text form (a zone suffix such as %eth0 is ignored), or null. */
export function parseAddr(text: string): Addr | null {
  const bare = text.split('%')[0]!;
  const bytes = new Uint8Array(16);
  if (isIPv4(bare)) return parseV4(bare, bytes, 0) ? { family: 4, bytes } : null;
  if (!isIPv6(bare) || !parseV6(bare, bytes)) return null;
  if (MAPPED_PREFIX.every((b, i) => bytes[i] === b)) {
    const v4 = new Uint8Array(16);
    v4.set(bytes.subarray(12, 16), 0);
    return { family: 4, bytes: v4 };
  }
  return { family: 6, bytes };
}

/** The text form of an Addr (IPv6 in full hex groups, lower case, '::' for the longest zero run). */
export function formatAddr(a: Addr): string {
  if (a.family === 4) return `${a.bytes[0]}.${a.bytes[1]}.${a.bytes[2]}.${a.bytes[3]}`;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((a.bytes[2 * i]! << 8) | a.bytes[2 * i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}

/** Clears every bit of bytes past the first `len`. */
export function maskBytes(bytes: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(16);
  out.set(bytes.subarray(0, 16));
  for (let bit = len; bit < 128; bit++) out[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return out;
}

/** "a.b.c.d/len", "x::y/len" or a bare address (a host prefix); throws an Error naming the text. */
export function parseCidr(text: string): Cidr {
  const t = text.trim();
  const slash = t.indexOf('/');
  const a = parseAddr(slash < 0 ? t : t.slice(0, slash));
  if (!a || t.includes('%')) throw new Error(`'${text}' is not an IPv4 or IPv6 address or prefix`);
  const max = a.family === 4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : t.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) throw new Error(`'${text}': prefix length must be 0 to ${max}`);
  const len = Number(lenText);
  const bytes = maskBytes(a.bytes, len);
  return { family: a.family, bytes, len, text: `${formatAddr({ family: a.family, bytes })}/${len}` };
}

/** A comma-separated list of prefixes (empty text: none); throws an Error naming the bad one. */
export function parseCidrList(text: string): Cidr[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(parseCidr);
}

/** Whether prefix c holds address a. */
export function cidrContains(c: Cidr, a: Addr): boolean {
  if (c.family !== a.family) return false;
  let bit = 0;
  for (; bit + 8 <= c.len; bit += 8) if (a.bytes[bit >> 3] !== c.bytes[bit >> 3]) return false;
  if (bit < c.len) {
    const mask = (0xff00 >> (c.len - bit)) & 0xff;
    if ((a.bytes[bit >> 3]! & mask) !== c.bytes[bit >> 3]) return false;
  }
  return true;
}

/** Default client-network prefix lengths (see the file comment). */
export const CLIENT_PREFIX_V4 = 24;
export const CLIENT_PREFIX_V6 = 56;

/**
 * A string naming the client network of `a` (its first v4Len or v6Len bits), for maps
 * keyed by client prefix: equal for two addresses exactly when they share that prefix.
 */
export function prefixKey(a: Addr, v4Len = CLIENT_PREFIX_V4, v6Len = CLIENT_PREFIX_V6): string {
  const len = a.family === 4 ? v4Len : v6Len;
  const m = maskBytes(a.bytes, len);
  const n = a.family === 4 ? 4 : 16;
  let s = a.family === 4 ? '4:' : '6:';
  for (let i = 0; i < n; i++) s += String.fromCharCode(m[i]!);
  return s;
}
