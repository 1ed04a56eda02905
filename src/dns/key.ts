/**
 * Cache keys: lowercased wire qname | qtype (2, BE) | qclass (2, BE) | flags (1: DO and CD,
 * constants.ts KEY_DO and KEY_CD).
 * Built by MessageView.writeKey into a reusable buffer; hashed here without
 * allocating. Text forms are for logs and tools only.
 */
import { randomFillSync } from 'node:crypto';
import { KEY_CD, KEY_DO, MAX_KEY_LEN } from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { nameToText, textToWire } from './name.js';

/**
 * The key of keyHash: 64 random bits per process. Every structure indexed by keyHash
 * (the shared cache's buckets, the fetch table's, the ask table's) is reachable by
 * anyone who can get a name asked, and a chained table indexed by an unkeyed hash can be
 * filled with names an attacker chose offline to share one bucket: every lookup there
 * then walks the whole chain. With the key unknown outside the process, where a name
 * lands cannot be worked out from outside. Threads that share a table share its key:
 * the creator records it in the table's header and every view adopts it
 * (useHashKey), before anything on that thread is hashed.
 */
const hashKey = new Int32Array(2);
randomFillSync(hashKey);
/** Whether this thread's key is in a table's header (adopted or recorded): no other key may follow. */
let adopted = false;

/** This thread's hash key (two 32-bit words). */
export function hashKeyWords(): readonly [number, number] {
  return [hashKey[0]!, hashKey[1]!];
}

/**
 * This thread's hash key, for the header of a table it creates. The key is then fixed
 * for this thread, as adopting one fixes it: its table's buckets are where this key put
 * them, so a later view of a table made under another key must throw, not switch keys
 * under it.
 */
export function recordHashKey(): readonly [number, number] {
  adopted = true;
  return hashKeyWords();
}

/**
 * Makes k0, k1 this thread's hash key: a view of a table another thread created calls
 * it with the key in that table's header. A thread's tables must share one key (their
 * hashes travel between them), so a second, different key is an error.
 */
export function useHashKey(k0: number, k1: number): void {
  if (hashKey[0] === (k0 | 0) && hashKey[1] === (k1 | 0)) {
    adopted = true;
    return;
  }
  if (adopted) throw new Error('this thread already hashes with another table\'s key');
  hashKey[0] = k0;
  hashKey[1] = k1;
  adopted = true;
}

/** Tests only: a chosen key, replacing whatever this thread had. */
export function setHashKeyForTest(k0: number, k1: number): void {
  hashKey[0] = k0;
  hashKey[1] = k1;
  adopted = false;
}

/**
 * Keyed hash of key bytes: HalfSipHash's round function (32-bit words, as the Linux
 * kernel's hsiphash uses for its hash tables), one round per four bytes and three to
 * finish, keyed with hashKey. The result has 30 bits so that it is always a small integer
 * to V8 (a wider one would be boxed when returned: an allocation per lookup).
 */
export function keyHash(key: Uint8Array, pos: number, len: number): number {
  const k0 = hashKey[0]!;
  const k1 = hashKey[1]!;
  let v0 = k0;
  let v1 = k1;
  let v2 = k0 ^ 0x6c796765;
  let v3 = k1 ^ 0x74656462;
  const words = len >>> 2;
  let i = pos;
  // Rounds 0..words-1 take the key's words, round `words` its last bytes with the length
  // in the top byte, the three after it finish (with v2 flipped first, as SipHash does).
  for (let r = 0; r < words + 4; r++) {
    let m = 0;
    if (r < words) {
      m = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24);
      i += 4;
    } else if (r === words) {
      m = len << 24;
      for (let sh = 0; sh < 24 && i < pos + len; i++, sh += 8) m |= key[i]! << sh;
    } else if (r === words + 1) {
      v2 ^= 0xff;
    }
    v3 ^= m;
    v0 = (v0 + v1) | 0;
    v1 = (v1 << 5) | (v1 >>> 27);
    v1 ^= v0;
    v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0;
    v3 = (v3 << 8) | (v3 >>> 24);
    v3 ^= v2;
    v0 = (v0 + v3) | 0;
    v3 = (v3 << 7) | (v3 >>> 25);
    v3 ^= v0;
    v2 = (v2 + v1) | 0;
    v1 = (v1 << 13) | (v1 >>> 19);
    v1 ^= v2;
    v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  const h = v1 ^ v3;
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
export function makeKey(name: string | Uint8Array, qtype: number, qclass: number, dnssecOk: boolean, checkingDisabled = false): Uint8Array {
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
  out[n + 4] = (dnssecOk ? KEY_DO : 0) | (checkingDisabled ? KEY_CD : 0);
  return out;
}

export interface KeyParts {
  name: string;
  qtype: number;
  qclass: number;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

/** Splits key bytes back into parts (logs and tools). Throws DnsError on malformed keys. */
export function parseKey(key: Uint8Array): KeyParts {
  if (key.length < 6) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'key too short');
  const q = questionOfKey(key);
  // The name inside a key is uncompressed; nameToText needs a message
  // frame, and a base of -12 makes any pointer land before the header bound.
  return { name: nameToText(key, -12, q.name.length, 0), qtype: q.qtype, qclass: q.qclass, dnssecOk: q.dnssecOk, checkingDisabled: q.checkingDisabled };
}

/**
 * The question a key stands for, as the forwarder takes it: the lowercased wire name
 * (a view into the key), qtype, qclass, DO and CD.
 */
export function questionOfKey(key: Uint8Array): { name: Uint8Array; qtype: number; qclass: number; dnssecOk: boolean; checkingDisabled: boolean } {
  const n = key.length - 5;
  if (n < 1) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'key too short');
  const f = key[n + 4]!;
  return { name: key.subarray(0, n), qtype: (key[n]! << 8) | key[n + 1]!, qclass: (key[n + 2]! << 8) | key[n + 3]!, dnssecOk: (f & KEY_DO) !== 0, checkingDisabled: (f & KEY_CD) !== 0 };
}

/** 'example.com/1/1/do' style text for logs. */
export function keyToText(key: Uint8Array): string {
  try {
    const k = parseKey(key);
    return `${k.name}/${k.qtype}/${k.qclass}${k.dnssecOk ? '/do' : ''}${k.checkingDisabled ? '/cd' : ''}`;
  } catch {
    return `<bad key ${key.length}B>`;
  }
}

/** Latin-1 string of the key bytes, for Maps on cold paths (promotion, tools). */
export function keyString(key: Uint8Array, pos = 0, len = key.length - pos): string {
  return Buffer.from(key.buffer, key.byteOffset + pos, len).toString('latin1');
}
