/**
 * Encodes a cached answer into the key and value of the BPF hot map, byte for byte as
 * bpf/heimdall.h lays them out (offsets come from the addon, never from a copy here).
 *
 * The value carries the records with each TTL field holding the TTL at the answer's
 * origin, the offsets of those fields, and the ones' complement sum of the records with
 * the TTL fields zero as they sit in the reply, so the XDP program can count the TTLs
 * down and finish the UDP checksum without reading the records twice.
 */
import { KEY_CD, KEY_DO } from '../dns/constants.js';
import type { CachedAnswer } from '../dns/answer.js';
import type { Layout } from '../native/addon.js';
import { HeimdallError } from '../errors.js';
import { responseToken } from '../edge/rrl.js';

export interface HotEntry {
  key: Buffer;
  value: Buffer;
  /** The class asked for: true for struct hot_small (table hot_slots), false for struct hot_value (hot_map). The addon may still put a small one in hot_map when its window of slots is full: hotPut says which took it. */
  small: boolean;
}

/**
 * Whether an answer fits the small class (bpf/heimdall.h struct hot_small): a name, records
 * and record count no larger than its room. The common answer does; it then takes 312
 * bytes of kernel memory instead of 1,256, and a hit on it reads three cache lines.
 */
export function hotSmallFits(a: CachedAnswer, layout: Layout): boolean {
  return a.qnameLen <= layout.HOT_SMALL_NAME_MAX && a.records.length <= layout.HOT_SMALL_RECORDS_MAX && a.ttls.length <= layout.HOT_SMALL_RR_MAX;
}

/** Why an answer cannot live in the hot map, or null when it can. */
export function hotUnfitReason(a: CachedAnswer, layout: Layout): string | null {
  if (a.qnameLen > layout.HOT_NAME_MAX) return `name longer than ${layout.HOT_NAME_MAX} bytes`;
  if (a.records.length > layout.HOT_RECORDS_MAX) return `records larger than ${layout.HOT_RECORDS_MAX} bytes`;
  if (a.ttls.length > layout.HOT_RR_MAX) return `more than ${layout.HOT_RR_MAX} records`;
  if (a.rcode > 15) return 'extended RCODE';
  return null;
}

/** A 64-bit constant as two unsigned 32-bit halves. */
interface Halves {
  hi: number;
  lo: number;
}

const halvesOf = new WeakMap<Layout, { mul1: Halves; mul2: Halves }>();

function halves(x: bigint): Halves {
  return { hi: Number((x >> 32n) & 0xffffffffn), lo: Number(x & 0xffffffffn) };
}

/** The seed of the last hash, split (a process has one: the program's). */
let lastSeed: bigint | undefined;
let lastSeedHalves: Halves = { hi: 0, lo: 0 };

/** The high 32 bits of the 64-bit product of two unsigned 32-bit numbers. */
function mulHi32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const lh = a0 * b1;
  const hl = a1 * b0;
  const mid = ((a0 * b0) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (a1 * b1 + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 0x10000)) >>> 0;
}

/**
 * hot_key.name_hash of a lowercased wire name, as bpf/heimdall.h defines it and the XDP
 * program computes it: little-endian 64-bit words, the last zero padded, mixed into a
 * seeded multiply-xorshift, all modulo 2^64. Computed on 32-bit halves: with BigInt
 * every byte cost an allocation, and the main thread hashes each name it promotes (a
 * Zipf round promotes thousands a second). Written into `out` at `at`, little-endian.
 */
function writeHotNameHash(name: Uint8Array, n: number, seed: bigint, layout: Layout, out: Buffer, at: number): void {
  let m = halvesOf.get(layout);
  if (m === undefined) {
    m = { mul1: halves(layout.HOT_HASH_MUL1), mul2: halves(layout.HOT_HASH_MUL2) };
    halvesOf.set(layout, m);
  }
  const { mul1, mul2 } = m;
  if (seed !== lastSeed) {
    lastSeed = seed;
    lastSeedHalves = halves(seed);
  }
  let hi = lastSeedHalves.hi;
  let lo = lastSeedHalves.lo;
  for (let o = 0; o < n; o += 8) {
    // The word: bytes o..o+7, little-endian, zero past the name's end.
    let wlo = 0;
    let whi = 0;
    for (let i = Math.min(7, n - o - 1); i >= 0; i--) {
      if (i >= 4) whi = (whi << 8) | name[o + i]!;
      else wlo = (wlo << 8) | name[o + i]!;
    }
    const xlo = (lo ^ wlo) >>> 0;
    const xhi = (hi ^ whi) >>> 0;
    // (x * mul1) mod 2^64, then h ^= h >> 29.
    lo = Math.imul(xlo, mul1.lo) >>> 0;
    hi = (mulHi32(xlo, mul1.lo) + Math.imul(xlo, mul1.hi) + Math.imul(xhi, mul1.lo)) >>> 0;
    lo = (lo ^ ((lo >>> 29) | (hi << 3))) >>> 0;
    hi = (hi ^ (hi >>> 29)) >>> 0;
  }
  lo = (lo ^ n) >>> 0; // n < 256: the low word only
  const plo = Math.imul(lo, mul2.lo) >>> 0;
  hi = (mulHi32(lo, mul2.lo) + Math.imul(lo, mul2.hi) + Math.imul(hi, mul2.lo)) >>> 0;
  lo = (plo ^ hi) >>> 0; // h ^= h >> 32
  out.writeUInt32LE(lo, at);
  out.writeUInt32LE(hi, at + 4);
}

/** hot_key.name_hash of a lowercased wire name (see writeHotNameHash), as a BigInt. */
export function hotNameHash(name: Uint8Array, seed: bigint, layout: Layout): bigint {
  const b = Buffer.alloc(8);
  writeHotNameHash(name, name.length, seed, layout, b, 0);
  return b.readBigUInt64LE(0);
}

/**
 * The hot-map key for a cache key (lowercased wire name, QTYPE, QCLASS, DO and CD byte: see
 * src/dns/key.ts), laid out as struct hot_key: the name's seeded hash and the rest.
 */
export function hotKeyFromCacheKey(cacheKey: Uint8Array, layout: Layout, seed: bigint, out: Buffer = Buffer.alloc(layout.key.size)): Buffer {
  const k = layout.key;
  const n = cacheKey.length - 5;
  if (n < 1 || n > layout.HOT_NAME_MAX) throw new HeimdallError('E_NOT_HOT_CACHEABLE', `name length ${n} does not fit the hot key`);
  out.fill(0);
  writeHotNameHash(cacheKey, n, seed, layout, out, k.name_hash!);
  out[k.qtype!] = cacheKey[n]!;
  out[k.qtype! + 1] = cacheKey[n + 1]!;
  out[k.qclass!] = cacheKey[n + 2]!;
  out[k.qclass! + 1] = cacheKey[n + 3]!;
  const f = cacheKey[n + 4]!;
  out[k.flags!] = (f & KEY_DO ? layout.HOT_KEY_DO : 0) | (f & KEY_CD ? layout.HOT_KEY_CD : 0);
  out[k.name_len!] = n;
  return out;
}

/** Sum of big-endian 16-bit words of bytes, as if they started at an even offset. */
function wordSum(bytes: Uint8Array): number {
  let sum = 0;
  const n = bytes.length;
  for (let i = 0; i + 1 < n; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (n & 1) sum += bytes[n - 1]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The 16-bit checksum contribution of the records placed right after the question:
 * UDP offset 8 + 12 + qnameLen + 4, so an odd name length puts them at an odd offset
 * and their sum is byte-swapped (RFC 1071).
 */
export function recordsChecksum(records: Uint8Array, qnameLen: number): number {
  const s = fold(wordSum(records));
  return qnameLen & 1 ? ((s << 8) | (s >> 8)) & 0xffff : s;
}

/**
 * The rate-limit token of the reply this answer makes (src/edge/rrl.ts responseToken),
 * from the message it stands for: header, question and records.
 */
export function answerToken(a: CachedAnswer): number {
  const len = 12 + a.qnameLen + 4 + a.records.length;
  if (tokenScratch.length < len) tokenScratch = new Uint8Array(Math.max(len, 2 * tokenScratch.length));
  const msg = tokenScratch;
  msg.fill(0, 0, 12);
  msg[3] = a.rcode & 0x0f;
  msg[5] = 1;
  msg[6] = a.ancount >> 8;
  msg[7] = a.ancount & 0xff;
  msg[8] = a.nscount >> 8;
  msg[9] = a.nscount & 0xff;
  msg[10] = a.arcount >> 8;
  msg[11] = a.arcount & 0xff;
  msg.set(a.key.subarray(0, a.qnameLen + 4), 12);
  msg.set(a.records, 12 + a.qnameLen + 4);
  return responseToken(msg, 0, len);
}
/** answerToken's message, reused (this thread's; responseToken keeps nothing of it). */
let tokenScratch = new Uint8Array(2048);

/** Buffers encodeHotEntry may write into instead of allocating: one per class, and the key. */
export interface HotScratch {
  key: Buffer;
  small: Buffer;
  large: Buffer;
}

/** Scratch buffers of the layout's sizes (FastPath keeps one set for all its writes). */
export function hotScratch(layout: Layout): HotScratch {
  return { key: Buffer.alloc(layout.key.size), small: Buffer.alloc(layout.small.size), large: Buffer.alloc(layout.value.size) };
}

/** A non-negative integer below 2^64 (as exact as a double holds it), little-endian. */
function writeU64(b: Buffer, x: number, at: number): void {
  if (!(x >= 0 && x < 2 ** 64)) throw new RangeError(`${x} is not a 64-bit unsigned integer`);
  const hi = Math.floor(x / 0x100000000);
  b.writeUInt32LE(x - hi * 0x100000000, at);
  b.writeUInt32LE(hi >>> 0, at + 4);
}

/**
 * The hot map's key and value for an answer. With `scratch`, both are written into its
 * buffers (valid until its next use) instead of fresh ones: a promotion burst on the main
 * thread allocated five buffers per name, and on this VM the fresh pages behind them cost
 * more than the encoding (docs/BENCHMARKS.md, "The XDP path's learning burst").
 * `key`: the answer's hot key when the caller has it already (hotKeyFromCacheKey).
 */
export function encodeHotEntry(a: CachedAnswer, hitSlot: number, layout: Layout, seed: bigint, key?: Buffer, scratch?: HotScratch): HotEntry {
  const why = hotUnfitReason(a, layout);
  if (why) throw new HeimdallError('E_NOT_HOT_CACHEABLE', `answer not fit for the hot map: ${why}`);
  const v = layout.value; // the head's offsets, the same in both classes
  const small = hotSmallFits(a, layout);
  const room = small ? layout.small : layout.value;
  let value: Buffer;
  if (scratch === undefined) value = Buffer.alloc(room.size);
  else {
    value = small ? scratch.small : scratch.large;
    value.fill(0);
  }
  // The records carry each TTL at origin_ns in its own field (the program reads it back
  // from the reply); their checksum is taken with those fields zero, as the program adds
  // the TTLs it writes. They are written in place, in the value.
  const records = value.subarray(room.records!, room.records! + a.records.length);
  records.set(a.records);
  for (const off of a.ttlOffsets) records.writeUInt32BE(0, off);
  const csum = recordsChecksum(records, a.qnameLen);
  for (let i = 0; i < a.ttls.length; i++) records.writeUInt32BE(a.ttls[i]!, a.ttlOffsets[i]!);

  writeU64(value, Math.round(a.originNs), v.origin_ns!);
  writeU64(value, Math.round(a.expiresNs), v.expires_ns!);
  value.writeUInt32LE(hitSlot, v.hit_slot!);
  value.writeUInt16LE((a.rcode & layout.HOT_VAL_RCODE_MASK) | (a.authenticData ? layout.HOT_VAL_AD : 0), v.flags!);
  value.writeUInt16LE(a.ancount, v.ancount!);
  value.writeUInt16LE(a.nscount, v.nscount!);
  value.writeUInt16LE(a.arcount, v.arcount!);
  value.writeUInt16LE(records.length, v.records_len!);
  value.writeUInt16LE(a.ttls.length, v.rr_count!);
  value.writeUInt16LE(csum, v.records_csum!);
  value.writeUInt32LE(answerToken(a), v.rrl_token!);
  for (let i = 0; i < a.ttls.length; i++) value.writeUInt16LE(a.ttlOffsets[i]!, room.ttl_off! + 2 * i);
  value.set(a.key.subarray(0, a.qnameLen), room.name!); // the program checks the query's name against it
  return { key: key ?? hotKeyFromCacheKey(a.key, layout, seed, scratch?.key), value, small };
}
