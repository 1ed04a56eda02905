/**
 * Cache keys: lowercased wire qname | qtype (2, BE) | qclass (2, BE) | DO (1).
 * Built by MessageView.writeKey into a reusable buffer; hashed here without
 * allocating. Text forms are for logs and tools only.
 */
import { MAX_KEY_LEN } from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { nameToText, textToWire } from './name.js';

/**
 * Hash of key bytes, four bytes per round with Murmur3-style mixing and
 * finalisation. The result has 30 bits so that it is always a small integer
 * to V8 (a wider one would be boxed when returned: an allocation per lookup).
 */
export function keyHash(key: Uint8Array, pos: number, len: number): number {
  let h = 0x811c9dc5 ^ len;
  let i = pos;
  const end = pos + len;
  for (; i + 4 <= end; i += 4) {
    let w = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
    w = Math.imul(w, 0xcc9e2d51);
    w = (w << 15) | (w >>> 17);
    h ^= Math.imul(w, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let w = 0;
  for (let sh = 0; i < end; i++, sh += 8) w |= key[i]! << sh;
  w = Math.imul(w, 0xcc9e2d51);
  w = (w << 15) | (w >>> 17);
  h ^= Math.imul(w, 0x1b873593);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h ^ (h >>> 30)) & 0x3fffffff;
}

/** Byte equality of a stored key against `len` bytes of `probe` at `pos`. */
export function keyEquals(stored: Uint8Array, probe: Uint8Array, pos: number, len: number): boolean {
  if (stored.length !== len) return false;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    if (
      stored[i] !== probe[pos + i] ||
      stored[i + 1] !== probe[pos + i + 1] ||
      stored[i + 2] !== probe[pos + i + 2] ||
      stored[i + 3] !== probe[pos + i + 3]
    ) {
      return false;
    }
  }
  for (; i < len; i++) if (stored[i] !== probe[pos + i]) return false;
  return true;
}

/** A fresh buffer big enough for any key. */
export function newKeyBuffer(): Uint8Array {
  return new Uint8Array(MAX_KEY_LEN);
}

/** Key bytes from parts (tools and tests). `name` is presentation text or wire bytes. */
export function makeKey(name: string | Uint8Array, qtype: number, qclass: number, dnssecOk: boolean): Uint8Array {
  const wire = typeof name === 'string' ? textToWire(name) : name;
  const out = new Uint8Array(wire.length + 5);
  for (let i = 0; i < wire.length; i++) {
    const c = wire[i]!;
    out[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  const n = wire.length;
  out[n] = qtype >>> 8;
  out[n + 1] = qtype & 0xff;
  out[n + 2] = qclass >>> 8;
  out[n + 3] = qclass & 0xff;
  out[n + 4] = dnssecOk ? 1 : 0;
  return out;
}

export interface KeyParts {
  name: string;
  qtype: number;
  qclass: number;
  dnssecOk: boolean;
}

/** Splits key bytes back into parts (logs and tools). Throws DnsError on malformed keys. */
export function parseKey(key: Uint8Array): KeyParts {
  if (key.length < 6) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'key too short');
  const n = key.length - 5;
  // The name inside a key is uncompressed; nameToText needs a message
  // frame, and a base of -12 makes any pointer land before the header bound.
  const name = nameToText(key, -12, n, 0);
  return {
    name,
    qtype: (key[n]! << 8) | key[n + 1]!,
    qclass: (key[n + 2]! << 8) | key[n + 3]!,
    dnssecOk: key[n + 4] === 1,
  };
}

/** 'example.com/1/1/do' style text for logs. */
/**
 * The question a key stands for, as the forwarder takes it: the lowercased wire name
 * (a view into the key), qtype, qclass and DO.
 */
export function questionOfKey(key: Uint8Array): { name: Uint8Array; qtype: number; qclass: number; dnssecOk: boolean } {
  const n = key.length - 5;
  if (n < 1) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'key too short');
  return { name: key.subarray(0, n), qtype: (key[n]! << 8) | key[n + 1]!, qclass: (key[n + 2]! << 8) | key[n + 3]!, dnssecOk: (key[n + 4]! & 1) !== 0 };
}

export function keyToText(key: Uint8Array): string {
  try {
    const k = parseKey(key);
    return `${k.name}/${k.qtype}/${k.qclass}${k.dnssecOk ? '/do' : ''}`;
  } catch {
    return `<bad key ${key.length}B>`;
  }
}

/** Latin-1 string of the key bytes, for Maps on cold paths (promotion, tools). */
export function keyString(key: Uint8Array, pos = 0, len = key.length - pos): string {
  return Buffer.from(key.buffer, key.byteOffset + pos, len).toString('latin1');
}
