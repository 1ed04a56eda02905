/**
 * Reply writer: builds a response to a parsed query from a CachedAnswer,
 * into caller memory at a given offset (a UMEM frame, in place over the
 * query, is the intended use).
 *
 * Layout: header (query ID; QR, RA; opcode, RD, CD echoed; AD only when the
 * upstream set it and the client asked with DO or AD, RFC 6840 5.8; never AA)
 * | the query's question bytes as received (0x20 case kept) | the cached
 * records with TTLs set to what is left of their life | an OPT if and only if
 * the query had one.
 *
 * When the reply would exceed the client's limit (its EDNS UDP size, at
 * least 512, or 512 without EDNS; capped by our own size and the caller's
 * maxLen), whole RRsets are dropped from the end. Dropping anything from the
 * answer or authority section sets TC=1; dropping only additional data does
 * not (RFC 2181 9). The OPT is always kept (RFC 6891 7). Because only a
 * suffix is cut and compression pointers point backwards, the kept records'
 * pointers remain valid.
 */
import type { CachedAnswer } from './answer.js';
import {
  CLASSIC_UDP_LIMIT,
  FLAG_AA,
  FLAG_AD,
  FLAG_CD,
  FLAG_QR,
  FLAG_RA,
  FLAG_RD,
  FLAG_TC,
  HEADER_LEN,
  MAX_MESSAGE_LEN,
  MAX_NAME_WIRE,
  OPCODE_MASK,
  OPT_RR_LEN,
  RCODE_FORMERR,
  RCODE_MASK,
  RR_FIXED_LEN,
  TYPE_OPT,
} from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { writeOpt } from './opt.js';
import { MessageView, RecordCursor } from './view.js';

export interface ReplyOptions {
  /** Our EDNS UDP payload size, advertised in the OPT we send back (e.g. 1232); also caps UDP replies. */
  udpSize: number;
  /** Hard cap on the reply length (room in the frame, or a TCP limit). */
  maxLen?: number;
  /** Reply goes over TCP: no UDP size limits, only maxLen and 65535. */
  tcp?: boolean;
  /** TTL put on records of an answer served after expiry (RFC 8767 serve-stale). Default 30. */
  staleTtl?: number;
}

/** The largest reply allowed for this query and these options, before the room in `out`. */
export function replyLimit(q: MessageView, opts: ReplyOptions): number {
  let limit: number;
  if (opts.tcp === true) {
    limit = MAX_MESSAGE_LEN;
  } else if (q.optPos >= 0) {
    limit = Math.max(CLASSIC_UDP_LIMIT, Math.min(q.udpSize, opts.udpSize));
  } else {
    limit = CLASSIC_UDP_LIMIT;
  }
  if (opts.maxLen !== undefined && opts.maxLen < limit) limit = opts.maxLen;
  return limit;
}

/**
 * Header + question. The question is copied from the query unless it is
 * already in place (same bytes of the same memory).
 */
function writeHead(q: MessageView, out: Uint8Array, o: number, flags: number, an: number, ns: number, ar: number): number {
  out[o] = q.id >>> 8;
  out[o + 1] = q.id & 0xff;
  out[o + 2] = flags >>> 8;
  out[o + 3] = flags & 0xff;
  out[o + 4] = 0;
  out[o + 5] = 1;
  out[o + 6] = an >>> 8;
  out[o + 7] = an & 0xff;
  out[o + 8] = ns >>> 8;
  out[o + 9] = ns & 0xff;
  out[o + 10] = ar >>> 8;
  out[o + 11] = ar & 0xff;
  const src = q.buf;
  const from = q.qnamePos;
  const to = o + HEADER_LEN;
  const n = q.qnameLen + 4;
  const sameMemory = src.buffer === out.buffer;
  const srcAbs = src.byteOffset + from;
  const dstAbs = out.byteOffset + to;
  if (!sameMemory || srcAbs !== dstAbs) {
    if (sameMemory && dstAbs > srcAbs) {
      for (let i = n - 1; i >= 0; i--) out[to + i] = src[from + i]!;
    } else {
      for (let i = 0; i < n; i++) out[to + i] = src[from + i]!;
    }
  }
  return to + n;
}

function baseFlags(q: MessageView): number {
  return FLAG_QR | FLAG_RA | (q.flags & (OPCODE_MASK | FLAG_RD | FLAG_CD));
}

/**
 * Header and question of an answer reply, for a writer that copies the records itself
 * (the shared cache's hit path, src/engine/shared-cache.ts): the same flags as
 * writeReply (AD only when the upstream set it and the client sent AD or DO). Returns
 * the offset after the question, where the records go.
 */
export function writeAnswerHead(q: MessageView, out: Uint8Array, o: number, rcode: number, ad: boolean, tc: boolean, an: number, ns: number, ar: number): number {
  let flags = baseFlags(q) | (rcode & 0xf);
  if (ad && ((q.flags & FLAG_AD) !== 0 || q.dnssecOk)) flags |= FLAG_AD;
  if (tc) flags |= FLAG_TC;
  return writeHead(q, out, o, flags, an, ns, ar);
}

/**
 * Writes the reply to `q` from `a` at out[outOffset..] and returns its
 * length. `q` must be a successfully parsed query whose key matched `a`.
 * Throws DnsError BUFFER_TOO_SMALL when not even header, question and OPT
 * fit, BAD_ARGUMENT when the question does not match the answer's shape.
 */
export function writeReply(
  q: MessageView,
  a: CachedAnswer,
  nowNs: number,
  out: Uint8Array,
  outOffset: number,
  opts: ReplyOptions,
): number {
  if (q.qnameLen !== a.qnameLen) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'question does not match answer');
  let limit = replyLimit(q, opts);
  const room = out.length - outOffset;
  if (room < limit) limit = room;
  const hasOpt = q.optPos >= 0;
  const fixed = HEADER_LEN + a.qnameLen + 4 + (hasOpt ? OPT_RR_LEN : 0);
  if (fixed > limit) throw new DnsError(DnsErrorCode.BUFFER_TOO_SMALL, -1, `need ${fixed}, have ${limit}`);

  const records = a.records;
  let keepBytes = records.length;
  let keepRecords = a.ttlOffsets.length;
  let tc = false;
  if (fixed + keepBytes > limit) {
    keepRecords = truncationPoint(a, limit - fixed);
    keepBytes = keepRecords === 0 ? 0 : recordEnd(a, keepRecords - 1);
    tc = keepRecords < a.ancount + a.nscount;
  }
  const an = Math.min(keepRecords, a.ancount);
  const ns = Math.min(keepRecords - an, a.nscount);
  const ar = keepRecords - an - ns;

  let flags = baseFlags(q) | (a.rcode & 0xf);
  if (a.authenticData && ((q.flags & FLAG_AD) !== 0 || q.dnssecOk)) flags |= FLAG_AD;
  if (tc) flags |= FLAG_TC;
  let p = writeHead(q, out, outOffset, flags, an, ns, ar + (hasOpt ? 1 : 0));

  if (keepBytes === records.length) {
    out.set(records, p);
  } else {
    for (let i = 0; i < keepBytes; i++) out[p + i] = records[i]!;
  }

  // TTLs: stored value minus whole seconds elapsed since the upstream answered.
  const offs = a.ttlOffsets;
  const ttls = a.ttls;
  if (nowNs >= a.expiresNs) {
    const stale = opts.staleTtl ?? 30;
    for (let i = 0; i < keepRecords; i++) {
      const v = Math.min(ttls[i]!, stale);
      const t = p + offs[i]!;
      out[t] = v >>> 24;
      out[t + 1] = (v >>> 16) & 0xff;
      out[t + 2] = (v >>> 8) & 0xff;
      out[t + 3] = v & 0xff;
    }
  } else {
    const elapsed = nowNs > a.originNs ? Math.floor((nowNs - a.originNs) / 1e9) : 0;
    for (let i = 0; i < keepRecords; i++) {
      const left = ttls[i]! - elapsed;
      const v = left > 0 ? left : 0;
      const t = p + offs[i]!;
      out[t] = v >>> 24;
      out[t + 1] = (v >>> 16) & 0xff;
      out[t + 2] = (v >>> 8) & 0xff;
      out[t + 3] = v & 0xff;
    }
  }
  p += keepBytes;
  if (hasOpt) p += writeOpt(out, p, opts.udpSize, 0, q.dnssecOk);
  return p - outOffset;
}

/**
 * Writes a reply carrying only an rcode (REFUSED, SERVFAIL, NOTIMP, or
 * BADVERS = 16 for EDNS queries): header, the question as received, and an
 * OPT when the query had one (required for extended rcodes). Returns its length.
 */
export function writeRcodeReply(q: MessageView, rcode: number, out: Uint8Array, outOffset: number, opts: ReplyOptions): number {
  const hasOpt = q.optPos >= 0;
  if (rcode > 15 && !hasOpt) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, 'extended rcode needs EDNS');
  const need = HEADER_LEN + q.qnameLen + 4 + (hasOpt ? OPT_RR_LEN : 0);
  let limit = replyLimit(q, opts);
  if (out.length - outOffset < limit) limit = out.length - outOffset;
  if (need > limit) throw new DnsError(DnsErrorCode.BUFFER_TOO_SMALL, -1, `need ${need}, have ${limit}`);
  const flags = baseFlags(q) | (rcode & 0xf);
  let p = writeHead(q, out, outOffset, flags, 0, 0, hasOpt ? 1 : 0);
  if (hasOpt) p += writeOpt(out, p, opts.udpSize, rcode >>> 4, q.dnssecOk);
  return p - outOffset;
}

/**
 * FORMERR for a message that failed to parse: header only, ID, opcode, RD
 * and CD taken from the raw bytes. Returns 12, or 0 when the input has no
 * full header or is itself a response (then drop it: never answer an answer).
 */
export function writeFormErr(buf: Uint8Array, offset: number, length: number, out: Uint8Array, outOffset: number): number {
  if (length < HEADER_LEN || offset < 0 || offset + length > buf.length) return 0;
  if (out.length - outOffset < HEADER_LEN) throw new DnsError(DnsErrorCode.BUFFER_TOO_SMALL, -1);
  const f = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  if ((f & FLAG_QR) !== 0) return 0;
  const flags = FLAG_QR | FLAG_RA | (f & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | RCODE_FORMERR;
  const id0 = buf[offset]!;
  const id1 = buf[offset + 1]!;
  out[outOffset] = id0;
  out[outOffset + 1] = id1;
  out[outOffset + 2] = flags >>> 8;
  out[outOffset + 3] = flags & 0xff;
  for (let i = 4; i < HEADER_LEN; i++) out[outOffset + i] = 0;
  return HEADER_LEN;
}

/** The question of a query being relayed, kept aside while `out` may overwrite it. */
const relayQuestion = new Uint8Array(MAX_NAME_WIRE + 4);
/** The upstream message being relayed, parsed (relays are rare: not a per-packet cost). */
const relayView = new MessageView();
const relayCursor = new RecordCursor();

/**
 * Relays an upstream message that is not cached (REFUSED, NOTIMP, a TTL-0 answer,
 * class CH, a truncated answer, ...) as the reply to `q`: the upstream's records under the
 * query's ID and question bytes (0x20 case kept), RD and CD echoed, QR and RA set, AA and
 * Z cleared, TC kept (the client must retry over TCP), the RCODE kept. The upstream's OPT
 * is its own (its UDP size, its options) and never goes out: the reply carries ours when
 * the query had one, none when it had none (RFC 6891 7), as every other reply does. A TTL
 * with its top bit set goes out as 0 (RFC 2181 8). Cut to header and question with TC=1
 * when over the client's limit. Everything it needs of the query is read before anything
 * is written, so `out` may be the query's own memory (an AF_XDP frame answered in place).
 * Returns the length, or 0 when `msg` cannot be relayed (shorter than its question,
 * unparsable, or an OPT that is not its last record): the caller answers SERVFAIL instead.
 */
export function writeRelayed(q: MessageView, msg: Uint8Array, out: Uint8Array, outOffset: number, opts: ReplyOptions): number {
  const qlen = q.questionLen;
  const qEnd = HEADER_LEN + qlen;
  if (msg.length < qEnd) return 0;
  const m = relayView;
  if (m.parse(msg, 0, msg.length) !== 0) return 0;
  let body = msg.length;
  let arcount = (msg[10]! << 8) | msg[11]!;
  if (m.optPos >= 0) {
    // The scrubber writes the OPT last (scrub.ts); anything else is not ours to cut.
    if (m.optRdataPos + m.optRdataLen !== msg.length) return 0;
    body = m.optPos;
    arcount--;
  }
  const optLen = q.optPos >= 0 ? OPT_RR_LEN : 0;
  // An extended RCODE lives in the OPT: without one of ours to carry it, it cannot go out.
  if (m.extRcodeHigh !== 0 && optLen === 0) return 0;
  let limit = replyLimit(q, opts);
  if (out.length - outOffset < limit) limit = out.length - outOffset;
  if (qEnd + optLen > limit) throw new DnsError(DnsErrorCode.BUFFER_TOO_SMALL, -1, `need ${qEnd + optLen}, have ${limit}`);
  relayQuestion.set(q.buf.subarray(q.base + HEADER_LEN, q.base + qEnd));
  let n = body;
  const upstream = (msg[2]! << 8) | msg[3]!;
  let flags = baseFlags(q) | (upstream & (FLAG_TC | RCODE_MASK));
  if ((upstream & FLAG_AD) !== 0 && ((q.flags & FLAG_AD) !== 0 || q.dnssecOk)) flags |= FLAG_AD;
  if (n + optLen > limit) {
    n = qEnd;
    flags |= FLAG_TC;
  }
  out.set(msg.subarray(0, n), outOffset);
  out.set(relayQuestion.subarray(0, qlen), outOffset + HEADER_LEN);
  out[outOffset] = q.id >>> 8;
  out[outOffset + 1] = q.id & 0xff;
  out[outOffset + 2] = flags >>> 8;
  out[outOffset + 3] = flags & 0xff;
  if (n === qEnd) {
    for (let i = 6; i < HEADER_LEN; i++) out[outOffset + i] = 0;
    arcount = 0;
  } else {
    const c = relayCursor;
    for (let s = 0; s < 3; s++) {
      m.records(s as 0 | 1 | 2, c);
      while (c.next()) {
        if (c.type !== TYPE_OPT && (out[outOffset + c.ttlPos]! & 0x80) !== 0) {
          out[outOffset + c.ttlPos] = out[outOffset + c.ttlPos + 1] = out[outOffset + c.ttlPos + 2] = out[outOffset + c.ttlPos + 3] = 0;
        }
      }
    }
  }
  if (optLen > 0) {
    n += writeOpt(out, outOffset + n, opts.udpSize, m.extRcodeHigh, q.dnssecOk);
    arcount++;
  }
  out[outOffset + 10] = arcount >>> 8;
  out[outOffset + 11] = arcount & 0xff;
  return n;
}

// ---- truncation (cold path) ------------------------------------------------

function recordEnd(a: CachedAnswer, i: number): number {
  const t = a.ttlOffsets[i]!;
  const r = a.records;
  return t + 6 + ((r[t + 4]! << 8) | r[t + 5]!);
}

const ownerA = new Uint8Array(MAX_NAME_WIRE + 1);
const ownerB = new Uint8Array(MAX_NAME_WIRE + 1);

/**
 * Lowercased, decompressed owner name of the record starting at `pos` in
 * a.records. Message offsets below the records resolve into the question,
 * whose lowercased bytes (and qtype/qclass after them) are the key's.
 * Returns the wire length, or -1 if the name is not sane.
 */
function ownerName(a: CachedAnswer, pos: number, out: Uint8Array): number {
  const r = a.records;
  const k = a.key;
  const recBase = HEADER_LEN + a.qnameLen + 4;
  let inRecords = true;
  let p = pos;
  let o = 0;
  for (let hops = 0; hops < 128; ) {
    const src = inRecords ? r : k;
    const len = src[p];
    if (len === undefined) return -1;
    if (len >= 0xc0) {
      const t = ((len & 0x3f) << 8) | (src[p + 1] ?? 0);
      if (t >= recBase) {
        inRecords = true;
        p = t - recBase;
      } else if (t >= HEADER_LEN) {
        inRecords = false;
        p = t - HEADER_LEN;
      } else {
        return -1;
      }
      hops++;
      continue;
    }
    if (o + len + 1 > out.length) return -1;
    out[o++] = len;
    if (len === 0) return o;
    for (let i = 1; i <= len; i++) {
      const c = src[p + i] ?? 0;
      out[o++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    p += len + 1;
  }
  return -1;
}

/**
 * Number of leading records to keep so that whole RRsets fit in `budget`
 * bytes. An RRset is a run of records with the same owner, type and class in
 * one section.
 */
function truncationPoint(a: CachedAnswer, budget: number): number {
  const n = a.ttlOffsets.length;
  const r = a.records;
  const b1 = a.ancount;
  const b2 = a.ancount + a.nscount;
  let keep = 0;
  let start = 0;
  let prevOwner = ownerA;
  let curOwner = ownerB;
  let prevLen = -1;
  for (let i = 0; i < n; i++) {
    const t = a.ttlOffsets[i]!;
    const curLen = ownerName(a, start, curOwner);
    let same = i !== b1 && i !== b2 && i > 0 && curLen > 0 && curLen === prevLen;
    if (same) {
      // type and class sit right before the TTL
      const pt = a.ttlOffsets[i - 1]!;
      for (let j = 4; j >= 1 && same; j--) same = r[t - j] === r[pt - j];
      for (let j = 0; j < curLen && same; j++) same = curOwner[j] === prevOwner[j];
    }
    if (!same) {
      // record i opens a new RRset: everything before it is whole
      if (start > budget) return keep;
      keep = i;
    }
    start = recordEnd(a, i);
    const swap = prevOwner;
    prevOwner = curOwner;
    curOwner = swap;
    prevLen = curLen;
  }
  return start > budget ? keep : n;
}
