/**
 * The cached-answer representation shared by the userspace reply writer and
 * the XDP hot-map encoder, and its construction from a validated upstream
 * response.
 *
 * The stored records are those the scrubber (scrub.ts) keeps of the
 * response's answer, authority and additional sections, rebuilt by it (the
 * OPT dropped), so that a hit costs one copy and a TTL patch. Their
 * compression pointers land only on the question name or on names earlier in
 * the records, so they stay valid wherever the records are placed right after
 * a question of the same name (any case): message offset 12 + qnameLen + 4,
 * whatever TTLs are written into them and whatever suffix of them is cut.
 */
import {
  KEY_CD,
  KEY_DO,
  HEADER_LEN,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_SERVFAIL,
  TYPE_ANY,
  TYPE_AXFR,
  TYPE_IXFR,
  TYPE_OPT,
  TYPE_RRSIG,
  TYPE_SOA,
  TYPE_TKEY,
  TYPE_TSIG,
  OPCODE_QUERY,
} from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { isScrubbed, scrubResponse } from './scrub.js';
import { MessageView, RecordCursor } from './view.js';

export interface CachedAnswer {
  /** Cache key bytes: lowercased wire qname, then qtype (2, BE), qclass (2, BE), DO (1). */
  key: Uint8Array;
  /** Wire length of the qname including the root label. */
  qnameLen: number;
  qtype: number;
  qclass: number;
  dnssecOk: boolean;
  /** 0..15 (NOERROR, NXDOMAIN, SERVFAIL ...). */
  rcode: number;
  /** Upstream set AD. */
  authenticData: boolean;
  /** Counts of the stored records (OPT never stored). */
  ancount: number;
  nscount: number;
  arcount: number;
  /**
   * Answer + authority + additional RRs (no OPT) in wire form, valid when
   * placed at message offset 12 + qnameLen + 4.
   */
  records: Uint8Array;
  /** Offset within `records` of each RR's 32-bit TTL field, in record order. */
  ttlOffsets: Uint16Array;
  /** Each RR's TTL as stored, already clamped to the entry lifetime. */
  ttls: Uint32Array;
  /** Monotonic ns when the upstream answered (TTLs decrement from here). */
  originNs: number;
  /** originNs + lifetime. */
  expiresNs: number;
  /** NXDOMAIN or NODATA. */
  negative: boolean;
  /**
   * Monotonic ns when the answer's earliest RRSIG expires; Infinity (or absent) when it
   * holds none.
   * The lifetime ends there at the latest, and so does serving it stale (RFC 8767): a
   * stale answer past it would hand a validator downstream signatures that no longer
   * validate.
   */
  signaturesExpireNs?: number;
}

/** TTL rules, all in seconds. */
export interface TtlPolicy {
  /** Floor applied to every lifetime (cache-min-ttl). */
  minTtl: number;
  /** Ceiling for positive answers (cache-max-ttl). */
  maxTtl: number;
  /** Ceiling for negative answers (RFC 2308 5: one to three hours is sensible). */
  negativeMaxTtl: number;
  /** Lifetime of SERVFAIL answers; 0 means never cache them (RFC 9520 asks for 1 s .. 5 min). */
  servfailTtl: number;
}

export const DEFAULT_TTL_POLICY: Readonly<TtlPolicy> = Object.freeze({
  minTtl: 0,
  maxTtl: 86_400,
  negativeMaxTtl: 3_600,
  servfailTtl: 5,
});

export const NS_PER_SEC = 1e9;

/** Resolves a partial policy against the defaults and checks it. */
export function resolveTtlPolicy(p?: Partial<TtlPolicy>): TtlPolicy {
  const r: TtlPolicy = { ...DEFAULT_TTL_POLICY, ...p };
  for (const k of ['minTtl', 'maxTtl', 'negativeMaxTtl', 'servfailTtl'] as const) {
    const v = r[k];
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
      throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, `ttl policy ${k}=${String(v)}`);
    }
  }
  return r;
}

/** Seconds of life left at `nowNs` (0 once expired). */
export function remainingSeconds(a: CachedAnswer, nowNs: number): number {
  return nowNs >= a.expiresNs ? 0 : Math.ceil((a.expiresNs - nowNs) / NS_PER_SEC);
}

export function isExpired(a: CachedAnswer, nowNs: number): boolean {
  return nowNs >= a.expiresNs;
}

const scratchView = new MessageView();
const scratchCursor = new RecordCursor();

function readU32(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

/** RFC 2181 8: a TTL with the top bit set is treated as zero. */
function wireTtl(v: number): number {
  return v > 0x7fffffff ? 0 : v;
}

function notCacheable(why: string): DnsError {
  return new DnsError(DnsErrorCode.NOT_CACHEABLE, -1, why);
}

/**
 * Lays out the five arrays of an answer in one ArrayBuffer (one allocation
 * and one backing store per entry instead of four).
 */
function allocArrays(keyLen: number, recLen: number, n: number): {
  key: Uint8Array;
  records: Uint8Array;
  ttlOffsets: Uint16Array;
  ttls: Uint32Array;
} {
  const recOff = keyLen;
  const offOff = (recOff + recLen + 1) & ~1;
  const ttlOff = (offOff + 2 * n + 3) & ~3;
  const ab = new ArrayBuffer(ttlOff + 4 * n);
  return {
    key: new Uint8Array(ab, 0, keyLen),
    records: new Uint8Array(ab, recOff, recLen),
    ttlOffsets: new Uint16Array(ab, offOff, n),
    ttls: new Uint32Array(ab, ttlOff, n),
  };
}

/**
 * Builds a CachedAnswer from a full upstream response (already matched to
 * our query by ID, source and question). The OPT record is dropped; records
 * that followed it get their compression pointers shifted. Throws DnsError:
 * the parse codes for malformed input, NOT_CACHEABLE for responses that must
 * not be stored (TC, REFUSED and other rcodes, zone transfers, TSIG, a
 * zero lifetime, a negative answer without SOA).
 *
 * `dnssecOk` is the DO bit of the query we sent upstream; by default the
 * DO bit echoed in the response's OPT. `checkingDisabled` likewise its CD bit; by
 * default the CD bit the response's header echoes. Both go into the key (key.ts).
 */
export function answerFromResponse(
  msg: Uint8Array,
  nowNs: number,
  policy?: Partial<TtlPolicy>,
  dnssecOk?: boolean,
  checkingDisabled?: boolean,
): CachedAnswer {
  const pol = resolveTtlPolicy(policy);
  // Parse a plain Uint8Array view even when given a Node Buffer, so that the
  // per-packet parser only ever sees one array shape (UMEM views) and its
  // element loads stay monomorphic.
  if (Object.getPrototypeOf(msg) !== Uint8Array.prototype) msg = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
  // Scrubbed and rebuilt first: only records the rules allow, names that stay valid
  // wherever the records are placed after the question (scrub.ts). The forwarder's
  // answers come scrubbed already (one rebuild per miss, not two).
  if (!isScrubbed(msg)) msg = scrubResponse(msg);
  const v = scratchView;
  const e = v.parse(msg, 0, msg.length);
  if (e !== 0) throw new DnsError(e, v.errorPos);
  if (!v.qr) throw new DnsError(DnsErrorCode.BAD_DIRECTION, 2, 'not a response');
  if (v.opcode !== OPCODE_QUERY) throw notCacheable(`opcode ${v.opcode}`);
  if (v.tc) throw notCacheable('truncated');
  const rcode = v.rcode;
  if (rcode !== RCODE_NOERROR && rcode !== RCODE_NXDOMAIN && rcode !== RCODE_SERVFAIL) {
    throw notCacheable(`rcode ${rcode}`);
  }
  const qtype = v.qtype;
  if (qtype === TYPE_AXFR || qtype === TYPE_IXFR || qtype === TYPE_OPT || qtype === TYPE_TSIG || qtype === TYPE_TKEY) {
    throw notCacheable(`qtype ${qtype}`);
  }

  // One pass over all records: TTL minimum, SOA for negative caching, TSIG.
  const c = scratchCursor;
  let minTtl = 0x7fffffff;
  let soaMin = -1;
  // Seconds until the earliest RRSIG expires (RFC 4034 3.1.5: serial-number arithmetic on
  // the wall clock): nothing is kept past it, or a validator downstream gets signatures
  // that no longer validate. A validating upstream caps its TTLs so already; this holds
  // for any upstream.
  let sigLeft = 0x7fffffff;
  const wallSec = Math.floor(Date.now() / 1000);
  let hasQtype = false;
  let n = 0;
  for (let s = 0; s < 3; s++) {
    v.records(s as 0 | 1 | 2, c);
    while (c.next()) {
      if (c.type === TYPE_OPT) continue;
      if (c.type === TYPE_TSIG || c.type === TYPE_TKEY) throw notCacheable('transaction signature');
      n++;
      const ttl = wireTtl(c.ttl);
      if (ttl < minTtl) minTtl = ttl;
      if (s === 0 && (c.type === qtype || qtype === TYPE_ANY)) hasQtype = true;
      if (c.type === TYPE_RRSIG && c.rdLength >= 12) {
        const left = (readU32(msg, c.rdataPos + 8) - wallSec) | 0;
        if (left < sigLeft) sigLeft = left;
      }
      if (s === 1 && c.type === TYPE_SOA) {
        // RFC 2308 5: negative TTL = min(SOA TTL, SOA MINIMUM).
        const m = Math.min(ttl, wireTtl(readU32(msg, c.rdataPos + c.rdLength - 4)));
        soaMin = soaMin < 0 ? m : Math.min(soaMin, m);
      }
    }
  }

  let lifetime: number;
  let negative = false;
  if (rcode === RCODE_SERVFAIL) {
    lifetime = n > 0 ? Math.min(pol.servfailTtl, minTtl) : pol.servfailTtl;
  } else if (rcode === RCODE_NXDOMAIN || !hasQtype) {
    negative = true;
    if (soaMin < 0 && v.ancount === 0) throw notCacheable('negative answer without SOA');
    const base = soaMin < 0 ? minTtl : Math.min(minTtl, soaMin);
    lifetime = Math.min(Math.max(base, pol.minTtl), pol.negativeMaxTtl);
  } else {
    lifetime = Math.min(Math.max(minTtl, pol.minTtl), pol.maxTtl);
  }
  if (sigLeft < lifetime) lifetime = sigLeft;
  if (!(lifetime > 0)) throw notCacheable(sigLeft <= 0 ? 'signature expired' : 'zero lifetime');

  // Record bytes: the rebuilt message has its OPT (if any) last, so they are
  // [answerPos, optPos or end), and every name in them is self-contained (scrub.ts).
  const recStart = v.answerPos;
  const recEnd = v.optPos < 0 ? v.end : v.optPos;
  const keyLen = v.qnameLen + 5;
  const arr = allocArrays(keyLen, recEnd - recStart, n);
  const records = arr.records;
  records.set(msg.subarray(recStart, recEnd), 0);
  let i = 0;
  for (let s = 0; s < 3; s++) {
    v.records(s as 0 | 1 | 2, c);
    while (c.next()) {
      if (c.type === TYPE_OPT) continue;
      const rel = c.ttlPos - recStart;
      const ttl = Math.min(Math.max(wireTtl(c.ttl), pol.minTtl), lifetime);
      arr.ttlOffsets[i] = rel;
      arr.ttls[i] = ttl;
      writeU32(records, rel, ttl);
      i++;
    }
  }

  const key = arr.key;
  v.writeKey(key, 0);
  key[keyLen - 1] = ((dnssecOk ?? v.dnssecOk) ? KEY_DO : 0) | ((checkingDisabled ?? v.cd) ? KEY_CD : 0);

  return {
    key,
    qnameLen: v.qnameLen,
    qtype,
    qclass: v.qclass,
    dnssecOk: (key[keyLen - 1]! & KEY_DO) !== 0,
    rcode,
    authenticData: v.ad,
    ancount: v.ancount,
    nscount: v.nscount,
    arcount: v.arcount - (v.optPos < 0 ? 0 : 1),
    records,
    ttlOffsets: arr.ttlOffsets,
    ttls: arr.ttls,
    originNs: nowNs,
    expiresNs: nowNs + lifetime * NS_PER_SEC,
    negative,
    signaturesExpireNs: sigLeft < 0x7fffffff ? nowNs + sigLeft * NS_PER_SEC : Infinity,
  };
}

/** Base offset of the records inside a reply to this answer's question. */
export function recordsBase(a: CachedAnswer): number {
  return HEADER_LEN + a.qnameLen + 4;
}

/** Bytes of typed-array payload an answer holds (key, records, TTL tables). */
export function answerPayloadBytes(a: CachedAnswer): number {
  return a.key.length + a.records.length + a.ttlOffsets.byteLength + a.ttls.byteLength;
}
