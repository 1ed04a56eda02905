/**
 * Zero-copy view over one DNS message in caller memory: a Node Buffer, a
 * plain Uint8Array, or a window onto AF_XDP UMEM. `parse` validates the whole
 * message strictly and cheaply, records where everything is, and never
 * throws or allocates; fields are plain numbers on the (reusable) view.
 *
 * Positions named `*Pos` are absolute indices into `buf`. Compression
 * pointers are relative to `base`, the first byte of the message.
 */
import {
  EDNS_DO,
  KEY_CD,
  KEY_DO,
  FLAG_AD,
  FLAG_CD,
  FLAG_QR,
  FLAG_RD,
  FLAG_TC,
  HEADER_LEN,
  MAX_KEY_LEN,
  MAX_LABEL,
  MAX_NAME_WIRE,
  OPCODE_MASK,
  OPCODE_SHIFT,
  RCODE_MASK,
  RDATA_OPAQUE,
  RDATA_PREF_NAME,
  RDATA_SOA,
  RDATA_SRV,
  RDATA_TWO_NAMES,
  RR_FIXED_LEN,
  TYPE_OPT,
  rdataLayout,
  type Section,
} from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { copyNameLower, nameToText, scanName, skipName } from './name.js';
import { validOptions } from './opt.js';

const EMPTY = new Uint8Array(0);

function u16(b: Uint8Array, p: number): number {
  return (b[p]! << 8) | b[p + 1]!;
}

/** ASCII A-Z -> a-z without a branch or a table load. */
function lower(c: number): number {
  return c | ((((0x40 - c) & (c - 0x5b)) >>> 26) & 0x20);
}

/**
 * Lowercased copy of a question name without its root byte (n bytes; length
 * bytes are below 0x41 and pass unchanged), four bytes per round. It may
 * copy up to three bytes past n: in a parsed message those are the root
 * byte and qtype/qclass, which the callers overwrite right after.
 */
function lowerCopy(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  for (let i = 0; i < n; i += 4) {
    const s = from + i;
    const d = to + i;
    dst[d] = lower(src[s]!);
    dst[d + 1] = lower(src[s + 1]!);
    dst[d + 2] = lower(src[s + 2]!);
    dst[d + 3] = lower(src[s + 3]!);
  }
}

/**
 * Checks the names inside RDATA for the types that may carry them, and that
 * they fill the RDATA exactly. Returns 0 or a DnsErrorCode.
 */
function checkRdata(buf: Uint8Array, base: number, msgEnd: number, type: number, rd: number, rdEnd: number): number {
  const layout = rdataLayout(type);
  if (layout === RDATA_OPAQUE) return 0;
  const p = rd + (layout === RDATA_PREF_NAME ? 2 : layout === RDATA_SRV ? 6 : 0);
  if (p >= rdEnd) return DnsErrorCode.BAD_RDATA;
  let r = scanName(buf, base, rdEnd, msgEnd, p);
  if (r < 0) return r === -DnsErrorCode.TRUNCATED ? DnsErrorCode.BAD_RDATA : -r;
  if (layout === RDATA_TWO_NAMES || layout === RDATA_SOA) {
    if (r >= rdEnd) return DnsErrorCode.BAD_RDATA;
    r = scanName(buf, base, rdEnd, msgEnd, r);
    if (r < 0) return r === -DnsErrorCode.TRUNCATED ? DnsErrorCode.BAD_RDATA : -r;
    if (layout === RDATA_SOA) r += 20;
  }
  return r === rdEnd ? 0 : DnsErrorCode.BAD_RDATA;
}

export class MessageView {
  buf: Uint8Array = EMPTY;
  /** Absolute position of the first header byte. */
  base = 0;
  /** Absolute position just past the message. */
  end = 0;
  /** 0 after a successful parse, else the DnsErrorCode of the failure. */
  error = 0;
  /** Absolute position where the failure was seen, or -1. */
  errorPos = -1;

  id = 0;
  /** The 16-bit flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode). */
  flags = 0;
  qdcount = 0;
  ancount = 0;
  nscount = 0;
  arcount = 0;

  /** Length of the key parse() wrote into its keyOut buffer, 0 if none was asked for or parsing failed. */
  keyLen = 0;

  /** Question name: absolute position and wire length (always uncompressed). */
  qnamePos = 0;
  qnameLen = 0;
  qtype = 0;
  qclass = 0;

  /** Absolute start of each section's records. */
  answerPos = 0;
  authorityPos = 0;
  additionalPos = 0;

  /** Absolute start of the OPT record, or -1 when there is none. */
  optPos = -1;
  /** Requestor's UDP payload size as sent (the OPT class field); 0 without OPT. */
  udpSize = 0;
  /** High 8 bits of the extended rcode. */
  extRcodeHigh = 0;
  ednsVersion = 0;
  /** 16-bit EDNS flags (DO = 0x8000). */
  ednsFlags = 0;
  optRdataPos = 0;
  optRdataLen = 0;

  get length(): number {
    return this.end - this.base;
  }
  get qr(): boolean {
    return (this.flags & FLAG_QR) !== 0;
  }
  get opcode(): number {
    return (this.flags & OPCODE_MASK) >>> OPCODE_SHIFT;
  }
  get tc(): boolean {
    return (this.flags & FLAG_TC) !== 0;
  }
  get rd(): boolean {
    return (this.flags & FLAG_RD) !== 0;
  }
  get ad(): boolean {
    return (this.flags & FLAG_AD) !== 0;
  }
  get cd(): boolean {
    return (this.flags & FLAG_CD) !== 0;
  }
  /** Full rcode: header bits plus the OPT's extended bits. */
  get rcode(): number {
    return (this.extRcodeHigh << 4) | (this.flags & RCODE_MASK);
  }
  get hasOpt(): boolean {
    return this.optPos >= 0;
  }
  get dnssecOk(): boolean {
    return (this.ednsFlags & EDNS_DO) !== 0;
  }
  /** Wire length of the question section (name + type + class). */
  get questionLen(): number {
    return this.qnameLen + 4;
  }

  private fail(code: number, pos: number): number {
    this.error = code;
    this.errorPos = pos;
    return code;
  }

  /**
   * Validates the message at buf[offset, offset + length) and records its
   * layout. Returns 0 or a DnsErrorCode (also left in `error`). Header fields
   * are filled in as soon as 12 bytes are there, even when a later check fails,
   * so a FORMERR can still echo the ID.
   *
   * With `keyOut` (at least MAX_KEY_LEN bytes), the cache key (as writeKey
   * makes it) is written there in the same pass and its length left in
   * `keyLen`: the fastest way from a received frame to a cache lookup.
   */
  parse(buf: Uint8Array, offset = 0, length = buf.length - offset, keyOut?: Uint8Array): number {
    this.buf = buf;
    this.base = offset;
    this.end = offset + length;
    this.error = 0;
    this.errorPos = -1;
    this.keyLen = 0;
    this.optPos = -1;
    this.udpSize = 0;
    this.extRcodeHigh = 0;
    this.ednsVersion = 0;
    this.ednsFlags = 0;
    this.optRdataPos = 0;
    this.optRdataLen = 0;
    if (!(offset >= 0 && length >= 0 && offset + length <= buf.length) || (keyOut !== undefined && keyOut.length < MAX_KEY_LEN)) {
      this.end = offset;
      return this.fail(DnsErrorCode.BAD_ARGUMENT, -1);
    }
    if (length < HEADER_LEN) {
      this.qnameLen = this.qtype = this.qclass = 0;
      this.id = 0;
      this.flags = 0;
      this.qdcount = this.ancount = this.nscount = this.arcount = 0;
      return this.fail(DnsErrorCode.SHORT_HEADER, offset);
    }
    const base = offset;
    const end = offset + length;
    this.id = u16(buf, base);
    this.flags = u16(buf, base + 2);
    this.qdcount = u16(buf, base + 4);
    this.ancount = u16(buf, base + 6);
    this.nscount = u16(buf, base + 8);
    this.arcount = u16(buf, base + 10);
    this.qnameLen = this.qtype = this.qclass = 0;
    if (this.qdcount !== 1) return this.fail(DnsErrorCode.QDCOUNT, base + 4);

    // Question name: a pointer here could only point into the header, so
    // the name is plain labels; walk them with a tight loop and leave the
    // exact error code for the rare bad case to scanName.
    const qpos = base + HEADER_LEN;
    this.qnamePos = qpos;
    let p = qpos;
    let wire = 1;
    const k = keyOut;
    for (;;) {
      if (p >= end) return this.fail(DnsErrorCode.TRUNCATED, p);
      const len = buf[p]!;
      if (len === 0) break;
      if (len > MAX_LABEL) {
        const r = scanName(buf, base, end, end, qpos);
        return this.fail(r < 0 ? -r : DnsErrorCode.BAD_POINTER, qpos);
      }
      wire += len + 1;
      if (wire > MAX_NAME_WIRE) return this.fail(DnsErrorCode.NAME_TOO_LONG, qpos);
      p += len + 1;
    }
    p++;
    this.qnameLen = wire;
    if (p + 4 > end) return this.fail(DnsErrorCode.TRUNCATED, p);
    this.qtype = u16(buf, p);
    this.qclass = u16(buf, p + 2);
    p += 4;

    // All records in one loop; section starts are noted on the way.
    const authStart = this.ancount;
    const addStart = authStart + this.nscount;
    const total = addStart + this.arcount;
    this.answerPos = p;
    for (let i = 0; i < total; i++) {
      if (i === authStart) this.authorityPos = p;
      if (i === addStart) this.additionalPos = p;
      if (p >= end) return this.fail(DnsErrorCode.COUNT_MISMATCH, p);
      const rr = p;
      if (buf[p] === 0) {
        p++; // root owner, as every OPT has
      } else {
        p = scanName(buf, base, end, end, p);
        if (p < 0) return this.fail(-p, rr);
      }
      if (p + RR_FIXED_LEN > end) return this.fail(DnsErrorCode.TRUNCATED, p);
      const type = u16(buf, p);
      const rdlen = u16(buf, p + 8);
      const rd = p + RR_FIXED_LEN;
      const rdEnd = rd + rdlen;
      if (rdEnd > end) return this.fail(DnsErrorCode.TRUNCATED, p + 8);
      if (type === TYPE_OPT) {
        if (i < addStart || this.optPos >= 0 || buf[rr] !== 0 || !validOptions(buf, rd, rdlen)) {
          return this.fail(DnsErrorCode.BAD_OPT, rr);
        }
        this.optPos = rr;
        this.udpSize = u16(buf, p + 2);
        this.extRcodeHigh = buf[p + 4]!;
        this.ednsVersion = buf[p + 5]!;
        this.ednsFlags = u16(buf, p + 6);
        this.optRdataPos = rd;
        this.optRdataLen = rdlen;
      } else {
        const e = checkRdata(buf, base, end, type, rd, rdEnd);
        if (e !== 0) return this.fail(e, rd);
      }
      p = rdEnd;
    }
    if (authStart >= total) this.authorityPos = p;
    if (addStart >= total) this.additionalPos = p;
    if (p !== end) return this.fail(DnsErrorCode.TRAILING_DATA, p);
    if (k !== undefined) {
      this.keyLen = wire + 5;
      lowerCopy(buf, qpos, k, 0, wire - 1);
      const t = qpos + wire;
      k[wire - 1] = 0;
      k[wire] = buf[t]!;
      k[wire + 1] = buf[t + 1]!;
      k[wire + 2] = buf[t + 2]!;
      k[wire + 3] = buf[t + 3]!;
      k[wire + 4] = ((this.ednsFlags & EDNS_DO) !== 0 ? KEY_DO : 0) | ((this.flags & FLAG_CD) !== 0 ? KEY_CD : 0);
    }
    return 0;
  }

  /** parse(), throwing DnsError on failure. */
  parseOrThrow(buf: Uint8Array, offset = 0, length = buf.length - offset): this {
    const e = this.parse(buf, offset, length);
    if (e !== 0) throw new DnsError(e, this.errorPos < 0 ? -1 : this.errorPos - this.base);
    return this;
  }

  /**
   * Writes the cache key of the question into `out` at `outPos` (room for
   * qnameLen + 5 bytes needed): the qname
   * lowercased (ASCII only, so 0x20 mixed case maps to one key), qtype and
   * qclass big-endian, then the flags byte (KEY_DO, KEY_CD). Returns the key length.
   * Only valid after a successful parse; never allocates.
   */
  writeKey(out: Uint8Array, outPos = 0): number {
    const buf = this.buf;
    const n = this.qnameLen;
    const q = this.qnamePos;
    lowerCopy(buf, q, out, outPos, n - 1);
    out[outPos + n - 1] = 0;
    const t = q + n;
    out[outPos + n] = buf[t]!;
    out[outPos + n + 1] = buf[t + 1]!;
    out[outPos + n + 2] = buf[t + 2]!;
    out[outPos + n + 3] = buf[t + 3]!;
    out[outPos + n + 4] = ((this.ednsFlags & EDNS_DO) !== 0 ? KEY_DO : 0) | ((this.flags & FLAG_CD) !== 0 ? KEY_CD : 0);
    return n + 5;
  }

  /** The question name as text (logs and tools only; allocates). */
  qnameText(): string {
    return nameToText(this.buf, this.base, this.end, this.qnamePos);
  }

  /** Name at an absolute position as text (logs and tools only). */
  nameText(pos: number): string {
    return nameToText(this.buf, this.base, this.end, pos);
  }

  /** Lowercased uncompressed copy of the name at `pos` into `out`; returns its wire length. */
  copyName(pos: number, out: Uint8Array, outPos = 0): number {
    return copyNameLower(this.buf, this.base, pos, out, outPos);
  }

  /** Positions the reusable `cursor` before the first record of `section`. */
  records(section: Section, cursor: RecordCursor = new RecordCursor()): RecordCursor {
    const pos = section === 0 ? this.answerPos : section === 1 ? this.authorityPos : this.additionalPos;
    const count = section === 0 ? this.ancount : section === 1 ? this.nscount : this.arcount;
    return cursor.reset(this.buf, pos, count);
  }
}

/**
 * Lazy, allocation-free iteration over the records of one section of a
 * parsed message: `while (c.next()) use(c.type, c.ttl, c.rdataPos ...)`.
 */
export class RecordCursor {
  /** Absolute start of the current record (its owner name). */
  pos = 0;
  type = 0;
  /** Class field as is (for OPT: the UDP payload size). */
  klass = 0;
  /** TTL field as is (for OPT: extended rcode, version and flags). */
  ttl = 0;
  /** Absolute position of the 32-bit TTL field. */
  ttlPos = 0;
  rdataPos = 0;
  rdLength = 0;
  /** Index of the current record within its section. */
  index = -1;
  private buf: Uint8Array = EMPTY;
  private nextPos = 0;
  private remaining = 0;

  reset(buf: Uint8Array, pos: number, count: number): this {
    this.buf = buf;
    this.nextPos = pos;
    this.remaining = count;
    this.index = -1;
    return this;
  }

  next(): boolean {
    if (this.remaining <= 0) return false;
    this.remaining--;
    this.index++;
    const b = this.buf;
    this.pos = this.nextPos;
    const p = skipName(b, this.pos);
    this.type = u16(b, p);
    this.klass = u16(b, p + 2);
    this.ttlPos = p + 4;
    this.ttl = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0;
    this.rdLength = u16(b, p + 8);
    this.rdataPos = p + RR_FIXED_LEN;
    this.nextPos = this.rdataPos + this.rdLength;
    return true;
  }

  /** Absolute position just past the current record. */
  get endPos(): number {
    return this.rdataPos + this.rdLength;
  }
}
