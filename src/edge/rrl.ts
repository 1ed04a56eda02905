/**
 * Response rate limiting (RRL), the userspace half. The buckets are the XDP program's
 * `rrl` map, mmapped (bpf/heimdall.h: struct rrl_bucket and rrl_index()), so an answer
 * costs its client network the same whether XDP or an engine sent it, and a name that
 * moves between the paths keeps its limit. Tests run it over a plain ArrayBuffer.
 *
 * A response is classified (answer, NODATA, NXDOMAIN, error) into a 32-bit token: the
 * class in the top byte, a hash of what makes two responses "the same" below it (the
 * question for answers and NODATA, the zone for NXDOMAIN so that a random-subdomain
 * flood is one class, nothing for errors). Over the limit a response is dropped, except
 * every slip-th, which goes out truncated (TC=1, question only) so that a real client
 * behind a spoofed flood retries over TCP, which cannot be spoofed.
 */
import type { Addr } from '../net/addr.js';
import { CLIENT_PREFIX_V4, CLIENT_PREFIX_V6 } from '../net/addr.js';

/** From bpf/heimdall.h; the addon's layout carries the same numbers and a test compares them. */
export const RRL_MUL1 = 0x9e3779b1;
export const RRL_MUL2 = 0x85ebca6b;
/** Balance unit 2^10 ns, stamp unit 2^20 ns; a second of credit; the longest window. */
export const RRL_UNIT_SHIFT = 10;
export const RRL_STAMP_SHIFT = 20;
export const RRL_BURST = 976562;
/**
 * A stamp leading now by fewer than this many units (~4.3 s) is "ahead" (precise clock
 * here, coarse one in the program): no credit. Any other gap earns credit up to the
 * burst, however long it is (bpf/heimdall.h says why).
 */
export const RRL_STAMP_AHEAD = 4096;
export const RRL_WINDOW_MAX = 600;
const STAMP_UNIT_NS = 2 ** RRL_STAMP_SHIFT;
const CREDIT_PER_STAMP = 2 ** (RRL_STAMP_SHIFT - RRL_UNIT_SHIFT);
export const RRL_CLASS = { answer: 0x01, nodata: 0x02, nxdomain: 0x03, error: 0x04, all: 0x05 } as const;
export const RRL_TOKEN_ERROR = RRL_CLASS.error << 24;
export const RRL_TOKEN_ALL = RRL_CLASS.all << 24;
/** Bytes per bucket: balance (s32), stamp (u32), limited (u32), pad. */
export const RRL_BUCKET_BYTES = 16;

export const SEND = 0;
export const DROP = 1;
export const SLIP = 2;
export type Verdict = typeof SEND | typeof DROP | typeof SLIP;

export interface RrlSettings {
  /** Responses per second per (client network, class); 0 turns rate limiting off. */
  rate: number;
  /** Every slip-th limited response is sent truncated; 0: never. */
  slip: number;
  /** Seconds a flood stays limited after it stops (the debt a bucket may run up). */
  window: number;
  /** Responses per second per client network over every class; 0: no such ceiling. */
  allRate: number;
  v4Prefix: number;
  v6Prefix: number;
}

/**
 * The defaults, and why. 1000 responses/s of one answer to one /24: a /24 of 5,000
 * users at a busy hour asks about 1 query/s per user in all, of which the most asked
 * name is a few percent (resolver traces put the top name at 1-5%), so at most about
 * 250/s of one identical answer; 1000 is four times that. A spoofed flood still gets at
 * most 1000 answers/s plus slips (truncated, no larger than the query) per victim
 * network and name, where it got every packet. Slip 2 and a 15 s window are BIND's.
 */
export const RRL_DEFAULTS: RrlSettings = { rate: 1000, slip: 2, window: 15, allRate: 0, v4Prefix: CLIENT_PREFIX_V4, v6Prefix: CLIENT_PREFIX_V6 };

/** The XDP program's runtime fields for these settings (struct heimdall_runtime, in RRL units). */
export function rrlRuntime(s: RrlSettings): { rrlCost: number; rrlAllCost: number; rrlDebt: number; rrlSlip: number; rrlV4Prefix: number; rrlV6Prefix: number } {
  return {
    // Rounded down, so that a burst holds `rate` whole responses.
    rrlCost: s.rate > 0 ? Math.max(1, Math.floor(RRL_BURST / s.rate)) : 0,
    rrlAllCost: s.allRate > 0 ? Math.max(1, Math.floor(RRL_BURST / s.allRate)) : 0,
    rrlDebt: Math.round(Math.min(s.window, RRL_WINDOW_MAX) * RRL_BURST),
    rrlSlip: s.slip,
    rrlV4Prefix: s.v4Prefix,
    rrlV6Prefix: s.v6Prefix,
  };
}

// mix(), prefixMask() and word() return their 32 bits as a signed integer (| 0, not
// >>> 0): their callers only combine them bit by bit, and a value past 2^31 leaves a
// function that V8 did not inline as a boxed number, a heap allocation per call (up to
// 9 B a reply in the workers; docs/BENCHMARKS.md, "Allocation on the hit path").
function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, RRL_MUL1);
  return h ^ (h >>> 16);
}

function prefixMask(bits: number): number {
  return bits >= 32 ? -1 : bits <= 0 ? 0 : ~(0xffffffff >>> bits);
}

/** rrl_index() of bpf/heimdall.h. */
export function rrlIndex(seed: number, token: number, famLen: number, w0: number, w1: number, mask: number): number {
  let h = mix(mix(mix(mix(seed | 0, token | 0), famLen), w0 | 0), w1 | 0);
  h ^= h >>> 13;
  h = Math.imul(h, RRL_MUL2);
  h ^= h >>> 16;
  return (h & mask) >>> 0;
}

function word(b: Uint8Array, i: number): number {
  return (b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!;
}

/** Rate limiting over a bucket array (the mmapped BPF map, or any buffer in tests). */
export class RateLimiter {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly mask: number;
  private cost = 0;
  private allCost = 0;
  private debt = 0;
  private settings: RrlSettings;

  constructor(
    region: ArrayBuffer | SharedArrayBuffer,
    buckets: number,
    private readonly seed: number,
    settings: RrlSettings,
  ) {
    if (buckets < 1 || (buckets & (buckets - 1)) !== 0) throw new RangeError('buckets must be a power of two');
    if (region.byteLength < buckets * RRL_BUCKET_BYTES) throw new RangeError('region smaller than its buckets');
    this.i32 = new Int32Array(region, 0, buckets * 4);
    this.u32 = new Uint32Array(region, 0, buckets * 4);
    this.mask = buckets - 1;
    this.settings = settings;
    this.configure(settings);
  }

  configure(s: RrlSettings): void {
    const rt = rrlRuntime(s);
    this.settings = s;
    this.cost = rt.rrlCost;
    this.allCost = rt.rrlAllCost;
    this.debt = rt.rrlDebt;
  }

  get enabled(): boolean {
    return this.cost > 0;
  }

  /** Charges one response of class `token` to the client's network at `nowNs` (CLOCK_MONOTONIC, ns). */
  charge(client: Addr, token: number, nowNs: number): Verdict {
    if (this.cost === 0) return SEND;
    const now = Math.floor(nowNs / STAMP_UNIT_NS) >>> 0;
    let r = this.chargeBucket(client, token, this.cost, now);
    if (this.allCost > 0) {
      const all = this.chargeBucket(client, RRL_TOKEN_ALL, this.allCost, now);
      if (r === SEND) r = all;
    }
    return r;
  }

  /** The bucket of (token, client network), as the XDP program finds it. */
  bucketOf(client: Addr, token: number): number {
    const s = this.settings;
    const b = client.bytes;
    let famLen: number;
    let w0: number;
    let w1 = 0;
    if (client.family === 4) {
      famLen = (4 << 8) | s.v4Prefix;
      w0 = word(b, 0) & prefixMask(s.v4Prefix);
    } else {
      famLen = (6 << 8) | s.v6Prefix;
      w0 = word(b, 0) & prefixMask(s.v6Prefix);
      w1 = s.v6Prefix > 32 ? word(b, 4) & prefixMask(s.v6Prefix - 32) : 0;
    }
    return rrlIndex(this.seed, token, famLen, w0, w1, this.mask);
  }

  /** rrl_charge() of the XDP program, with a real compare-and-swap on the stamp. */
  private chargeBucket(client: Addr, token: number, cost: number, now: number): Verdict {
    const base = this.bucketOf(client, token) * 4;
    const i32 = this.i32;
    const last = Atomics.load(this.u32, base + 1);
    const elapsed = (now - last) >>> 0;
    const ahead = (last - now) >>> 0;
    if ((last === 0 || (elapsed !== 0 && ahead >= RRL_STAMP_AHEAD)) && Atomics.compareExchange(this.u32, base + 1, last, now) === last) {
      const max = RRL_BURST + this.debt;
      const credit = last === 0 ? max : Math.min(max, elapsed * CREDIT_PER_STAMP);
      const bal = Atomics.add(i32, base, credit) + credit;
      if (bal > RRL_BURST) Atomics.sub(i32, base, bal - RRL_BURST);
    }
    const before = Atomics.sub(i32, base, cost);
    if (before >= cost) return SEND;
    if (before - cost < -this.debt) Atomics.add(i32, base, cost);
    const n = (Atomics.add(this.u32, base + 2, 1) + 1) >>> 0;
    const slip = this.settings.slip;
    return slip > 0 && n % slip === 0 ? SLIP : DROP;
  }
}

// ---- response classes -------------------------------------------------------

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a of the name at pos, lowercased and decompressed, into h; -1 when it is not a
 * well-formed name of buf[0, end).
 */
function hashName(buf: Uint8Array, base: number, end: number, pos: number, h: number): number {
  let p = pos;
  for (let jumps = 0; jumps < 64; ) {
    if (p >= end) return -1;
    const len = buf[p]!;
    if (len === 0) return Math.imul(h ^ 0, FNV_PRIME) >>> 0;
    if (len >= 0xc0) {
      if (p + 1 >= end) return -1;
      p = base + (((len & 0x3f) << 8) | buf[p + 1]!);
      jumps++;
      continue;
    }
    if (len > 63 || p + 1 + len > end) return -1;
    h = Math.imul(h ^ len, FNV_PRIME);
    for (let i = 1; i <= len; i++) {
      let c = buf[p + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      h = Math.imul(h ^ c, FNV_PRIME);
    }
    p += len + 1;
  }
  return -1;
}

/** Position past the name at pos (compressed or not), or -1. */
function skipName(buf: Uint8Array, end: number, pos: number): number {
  let p = pos;
  for (let labels = 0; labels < 128; labels++) {
    if (p >= end) return -1;
    const len = buf[p]!;
    if (len === 0) return p + 1;
    if (len >= 0xc0) return p + 2 <= end ? p + 2 : -1;
    if (len > 63) return -1;
    p += len + 1;
  }
  return -1;
}

/**
 * The rate-limit token of a response message buf[off, off+len): what bpf/heimdall.h's
 * RRL_CLASS_* say makes two responses the same. A message that cannot be read is an
 * error-class response.
 */
export function responseToken(buf: Uint8Array, off: number, len: number): number {
  const end = off + len;
  if (len < 12) return RRL_TOKEN_ERROR;
  const rcode = buf[off + 3]! & 0x0f;
  const qd = (buf[off + 4]! << 8) | buf[off + 5]!;
  const an = (buf[off + 6]! << 8) | buf[off + 7]!;
  if ((rcode !== 0 && rcode !== 3) || qd !== 1) return RRL_TOKEN_ERROR;
  const q = off + 12;
  const qEnd = skipName(buf, end, q);
  if (qEnd < 0 || qEnd + 4 > end) return RRL_TOKEN_ERROR;
  let h: number;
  let cls: number;
  if (rcode === 0) {
    cls = an > 0 ? RRL_CLASS.answer : RRL_CLASS.nodata;
    h = hashName(buf, off, end, q, FNV_OFFSET);
    if (h < 0) return RRL_TOKEN_ERROR;
    h = Math.imul(Math.imul(h ^ buf[qEnd]!, FNV_PRIME) ^ buf[qEnd + 1]!, FNV_PRIME) >>> 0;
  } else {
    // NXDOMAIN: by zone, the owner of the SOA the authority section starts with (the
    // root when there is none), found past the answer section (a CNAME chain).
    cls = RRL_CLASS.nxdomain;
    let p = qEnd + 4;
    for (let i = 0; i < an && p >= 0; i++) {
      p = skipName(buf, end, p);
      if (p < 0 || p + 10 > end) return RRL_TOKEN_ERROR;
      p += 10 + ((buf[p + 8]! << 8) | buf[p + 9]!);
    }
    const ns = (buf[off + 8]! << 8) | buf[off + 9]!;
    h = FNV_OFFSET;
    if (ns > 0 && p < end) {
      const t = skipName(buf, end, p);
      if (t >= 0 && t + 2 <= end && ((buf[t]! << 8) | buf[t + 1]!) === 6) h = hashName(buf, off, end, p, FNV_OFFSET);
      else h = Math.imul(h ^ 0, FNV_PRIME) >>> 0;
    } else {
      h = Math.imul(h ^ 0, FNV_PRIME) >>> 0;
    }
    if (h < 0) return RRL_TOKEN_ERROR;
  }
  return ((cls << 24) | (h & 0xffffff)) >>> 0;
}
