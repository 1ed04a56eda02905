/**
 * Encodes a cached answer into the key and value of the BPF hot map, byte for byte as
 * bpf/heimdall.h lays them out (offsets come from the addon, never from a copy here).
 *
 * The value carries the records with each TTL field holding the TTL at the answer's
 * origin, the offsets of those fields, and the ones' complement sum of the records with
 * the TTL fields zero as they sit in the reply, so the XDP program can count the TTLs
 * down and finish the UDP checksum without reading the records twice.
 */
import type { CachedAnswer } from '../dns/answer.js';
import type { Layout } from '../native/addon.js';
import { HeimdallError } from '../errors.js';
import { responseToken } from '../edge/rrl.js';

export interface HotEntry {
  key: Buffer;
  value: Buffer;
  /** The class: true for struct hot_small (map hot_small), false for struct hot_value (hot_map). */
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

const MASK64 = (1n << 64n) - 1n;

/**
 * hot_key.name_hash of a lowercased wire name, as bpf/heimdall.h defines it and the XDP
 * program computes it: little-endian 64-bit words, the last zero padded, mixed into a
 * seeded multiply-xorshift. BigInt is slow, but this runs once per promotion, never
 * per query.
 */
export function hotNameHash(name: Uint8Array, seed: bigint, layout: Layout): bigint {
  const n = name.length;
  let h = seed & MASK64;
  for (let o = 0; o < n; o += 8) {
    let w = 0n;
    for (let i = Math.min(7, n - o - 1); i >= 0; i--) w = (w << 8n) | BigInt(name[o + i]!);
    h = ((h ^ w) * layout.HOT_HASH_MUL1) & MASK64;
    h ^= h >> 29n;
  }
  h ^= BigInt(n);
  h = (h * layout.HOT_HASH_MUL2) & MASK64;
  h ^= h >> 32n;
  return h;
}

/**
 * The hot-map key for a cache key (lowercased wire name, QTYPE, QCLASS, DO byte: see
 * src/dns/key.ts), laid out as struct hot_key: the name's seeded hash and the rest.
 */
export function hotKeyFromCacheKey(cacheKey: Uint8Array, layout: Layout, seed: bigint, out: Buffer = Buffer.alloc(layout.key.size)): Buffer {
  const k = layout.key;
  const n = cacheKey.length - 5;
  if (n < 1 || n > layout.HOT_NAME_MAX) throw new HeimdallError('E_NOT_HOT_CACHEABLE', `name length ${n} does not fit the hot key`);
  out.fill(0);
  out.writeBigUInt64LE(hotNameHash(cacheKey.subarray(0, n), seed, layout), k.name_hash!);
  out[k.qtype!] = cacheKey[n]!;
  out[k.qtype! + 1] = cacheKey[n + 1]!;
  out[k.qclass!] = cacheKey[n + 2]!;
  out[k.qclass! + 1] = cacheKey[n + 3]!;
  out[k.flags!] = cacheKey[n + 4] ? layout.HOT_KEY_DO : 0;
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
  const msg = new Uint8Array(12 + a.qnameLen + 4 + a.records.length);
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
  return responseToken(msg, 0, msg.length);
}

export function encodeHotEntry(a: CachedAnswer, hitSlot: number, layout: Layout, seed: bigint): HotEntry {
  const why = hotUnfitReason(a, layout);
  if (why) throw new HeimdallError('E_NOT_HOT_CACHEABLE', `answer not fit for the hot map: ${why}`);
  const v = layout.value; // the head's offsets, the same in both classes
  const small = hotSmallFits(a, layout);
  const room = small ? layout.small : layout.value;
  const value = Buffer.alloc(room.size);
  // The records carry each TTL at origin_ns in its own field (the program reads it back
  // from the reply); their checksum is taken with those fields zero, as the program adds
  // the TTLs it writes.
  const records = Buffer.from(a.records);
  for (const off of a.ttlOffsets) records.writeUInt32BE(0, off);
  const csum = recordsChecksum(records, a.qnameLen);
  for (let i = 0; i < a.ttls.length; i++) records.writeUInt32BE(a.ttls[i]!, a.ttlOffsets[i]!);

  value.writeBigUInt64LE(BigInt(Math.round(a.originNs)), v.origin_ns!);
  value.writeBigUInt64LE(BigInt(Math.round(a.expiresNs)), v.expires_ns!);
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
  records.copy(value, room.records!);
  value.set(a.key.subarray(0, a.qnameLen), room.name!); // the program checks the query's name against it
  return { key: hotKeyFromCacheKey(a.key, layout, seed), value, small };
}
