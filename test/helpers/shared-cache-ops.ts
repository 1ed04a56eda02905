/**
 * Synthetic answers for the shared cache's tests: cheap to build in any thread, and
 * self-describing, so a reader can tell a whole entry from a torn one. Entry `i`,
 * version `v` holds `n` A records whose RDATA is (i >> 8, i & 255, v >> 8, v & 255):
 * a reply whose records disagree with its key, or with each other, was read from a
 * half-written slot.
 */
import type { CachedAnswer } from '../../src/dns/answer.js';
import { makeKey } from '../../src/dns/key.js';
import { MessageView } from '../../src/dns/view.js';
import { mulberry32 } from '../../scripts/bench/rng.js';

export const REC_LEN = 16; // pointer to the question (2) + type, class, TTL, rdlength (10) + RDATA (4)

export function nameOf(i: number): string {
  return `k${i}.shc.test.`;
}

export function keyOf(i: number, dnssecOk = false): Uint8Array {
  return makeKey(nameOf(i), 1, 1, dnssecOk);
}

export function synth(i: number, v: number, n: number, ttlSec: number, nowNs: number): CachedAnswer {
  const key = keyOf(i);
  const records = new Uint8Array(n * REC_LEN);
  const ttlOffsets = new Uint16Array(n);
  const ttls = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const p = j * REC_LEN;
    records.set([0xc0, 0x0c, 0, 1, 0, 1, ttlSec >>> 24, (ttlSec >>> 16) & 255, (ttlSec >>> 8) & 255, ttlSec & 255, 0, 4, i >> 8, i & 255, v >> 8, v & 255], p);
    ttlOffsets[j] = p + 6;
    ttls[j] = ttlSec;
  }
  return {
    key, qnameLen: key.length - 5, qtype: 1, qclass: 1, dnssecOk: false, rcode: 0, authenticData: false,
    ancount: n, nscount: 0, arcount: 0, records, ttlOffsets, ttls,
    originNs: nowNs, expiresNs: nowNs + ttlSec * 1e9, negative: false,
  };
}

/** A query for entry i (plain, no EDNS) parsed into `view`; the key goes into `key`. */
export function queryFor(i: number, view: MessageView, key: Uint8Array, id = 1): Uint8Array {
  const k = keyOf(i);
  const qlen = k.length - 5;
  const msg = new Uint8Array(12 + qlen + 4);
  msg[0] = id >> 8;
  msg[1] = id & 255;
  msg[2] = 1; // RD
  msg[5] = 1;
  msg.set(k.subarray(0, qlen + 4), 12);
  const err = view.parse(msg, 0, msg.length, key);
  if (err !== 0) throw new Error(`query ${i} does not parse: ${err}`);
  return msg;
}

/**
 * Checks a reply to entry i written at out[0, len): every record names entry i and the
 * same version. Returns that version, or -1 when the reply mixes entries (torn).
 */
export function versionInReply(i: number, out: Uint8Array, len: number): number {
  const an = (out[6]! << 8) | out[7]!;
  const base = 12 + keyOf(i).length - 5 + 4;
  if (an === 0 || base + an * REC_LEN !== len) return -1;
  let v = -1;
  for (let j = 0; j < an; j++) {
    const p = base + j * REC_LEN + 12;
    if (((out[p]! << 8) | out[p + 1]!) !== i) return -1;
    const w = (out[p + 2]! << 8) | out[p + 3]!;
    if (v >= 0 && w !== v) return -1;
    v = w;
  }
  return v;
}

/** The version an answer copy holds, or -1 if its records disagree. */
export function versionOf(i: number, a: CachedAnswer): number {
  let v = -1;
  for (let j = 0; j < a.ancount; j++) {
    const p = j * REC_LEN + 12;
    const r = a.records;
    if (((r[p]! << 8) | r[p + 1]!) !== i) return -1;
    const w = (r[p + 2]! << 8) | r[p + 3]!;
    if (v >= 0 && w !== v) return -1;
    v = w;
  }
  return v;
}

/** A small seeded PRNG for worker threads, where fast-check is not at hand (the benchmarks' mulberry32). */
export const prng = mulberry32;
