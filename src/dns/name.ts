/**
 * Domain names on the wire: strict validation with compression, lowercased
 * copies for cache keys, and text only for logs and tools.
 *
 * Positions are absolute indices into `buf`; `base` is where the DNS message
 * starts, so a compression pointer with value t refers to `base + t`.
 *
 * Pointer rule: a pointer must land strictly before the start of the label
 * run that contains it, and at or after the end of the header. Each jump
 * therefore moves strictly backwards, so loops are impossible by
 * construction; MAX_POINTER_HOPS bounds the work anyway.
 */
import { HEADER_LEN, MAX_NAME_WIRE, MAX_POINTER_HOPS } from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';

/**
 * Side results of the last successful scanName call, read right after it
 * (the scan itself returns only one number, to stay allocation-free).
 */
export const nameScan = {
  /** Uncompressed wire length of the name, root label included. */
  wireLen: 0,
  /** Number of compression pointers followed. */
  hops: 0,
  /** Absolute position of the first pointer in the inline bytes, or -1. */
  pointerPos: -1,
};

/**
 * Validates the name starting at `pos`. Inline bytes (those at `pos` before
 * any jump) must end by `inlineEnd`; bytes reached through pointers must end
 * by `msgEnd`. Returns the absolute position just after the inline bytes, or
 * the negated DnsErrorCode on failure. Never throws, never allocates.
 */
export function scanName(buf: Uint8Array, base: number, inlineEnd: number, msgEnd: number, pos: number): number {
  let p = pos;
  let limit = inlineEnd;
  let segStart = pos;
  let wire = 1;
  let hops = 0;
  let after = -1;
  for (;;) {
    if (p >= limit) return after < 0 ? -DnsErrorCode.TRUNCATED : -DnsErrorCode.BAD_POINTER;
    const len = buf[p]!;
    if (len === 0) {
      if (after < 0) {
        after = p + 1;
        nameScan.pointerPos = -1;
      }
      nameScan.wireLen = wire;
      nameScan.hops = hops;
      return after;
    }
    if (len < 0x40) {
      wire += len + 1;
      if (wire > MAX_NAME_WIRE) return -DnsErrorCode.NAME_TOO_LONG;
      p += len + 1;
      continue;
    }
    if (len < 0xc0) return -DnsErrorCode.LABEL_TOO_LONG;
    if (p + 1 >= limit) return after < 0 ? -DnsErrorCode.TRUNCATED : -DnsErrorCode.BAD_POINTER;
    const target = base + (((len & 0x3f) << 8) | buf[p + 1]!);
    if (target >= segStart || target < base + HEADER_LEN) return -DnsErrorCode.BAD_POINTER;
    if (++hops > MAX_POINTER_HOPS) return -DnsErrorCode.POINTER_HOPS;
    if (after < 0) {
      after = p + 2;
      nameScan.pointerPos = p;
      limit = msgEnd;
    }
    p = target;
    segStart = target;
  }
}

/**
 * Position just after the inline bytes of an already validated name
 * (the terminating zero or the first pointer). No checks.
 */
export function skipName(buf: Uint8Array, pos: number): number {
  let p = pos;
  for (;;) {
    const len = buf[p]!;
    if (len === 0) return p + 1;
    if (len >= 0xc0) return p + 2;
    p += len + 1;
  }
}

/**
 * Copies an already validated name, decompressed and with ASCII A-Z
 * lowercased, to `out` at `outPos`. Returns the wire length written.
 */
export function copyNameLower(buf: Uint8Array, base: number, pos: number, out: Uint8Array, outPos: number): number {
  let p = pos;
  let o = outPos;
  for (;;) {
    const len = buf[p]!;
    if (len >= 0xc0) {
      p = base + (((len & 0x3f) << 8) | buf[p + 1]!);
      continue;
    }
    out[o++] = len;
    if (len === 0) return o - outPos;
    const stop = p + 1 + len;
    for (let i = p + 1; i < stop; i++) {
      const c = buf[i]!;
      out[o++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    p = stop;
  }
}

/** Case-insensitive equality of two uncompressed wire names stored in byte arrays. */
export function wireNamesEqual(a: Uint8Array, aPos: number, b: Uint8Array, bPos: number, len: number): boolean {
  for (let i = 0; i < len; i++) {
    let x = a[aPos + i]!;
    let y = b[bPos + i]!;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

function labelText(buf: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/**
 * Presentation form of the name at `pos` (for logs and tools only): labels
 * joined by '.', no trailing dot, '.' for the root, with '.', '\' and
 * non-printable bytes escaped as in master files. Throws DnsError if the
 * name is invalid.
 */
export function nameToText(buf: Uint8Array, base: number, end: number, pos: number): string {
  const r = scanName(buf, base, end, end, pos);
  if (r < 0) throw new DnsError(-r, pos);
  let p = pos;
  let s = '';
  for (;;) {
    const len = buf[p]!;
    if (len === 0) return s === '' ? '.' : s;
    if (len >= 0xc0) {
      p = base + (((len & 0x3f) << 8) | buf[p + 1]!);
      continue;
    }
    if (s !== '') s += '.';
    s += labelText(buf, p + 1, p + 1 + len);
    p += len + 1;
  }
}

/**
 * Wire form of a presentation-format name (for tools and tests): escapes
 * '\.', '\\' and '\DDD' are understood; a trailing dot is optional.
 * Throws DnsError on an empty label or a name or label over the limits.
 */
export function textToWire(text: string): Uint8Array {
  if (text === '.' || text === '') return Uint8Array.of(0);
  const out = new Uint8Array(MAX_NAME_WIRE + 1);
  let labelStart = 0;
  let labelLen = 0;
  let o = 1;
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (labelLen === 0) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, `empty label in ${text}`);
      if (labelLen > 63) throw new DnsError(DnsErrorCode.LABEL_TOO_LONG, -1, text);
      out[labelStart] = labelLen;
      labelStart = o++;
      labelLen = 0;
      continue;
    }
    if (c === 0x5c) {
      const d = text.slice(i + 1, i + 4);
      if (/^[0-9]{3}$/.test(d)) {
        c = Number(d);
        i += 3;
      } else {
        c = text.charCodeAt(++i);
      }
    }
    if (!(c >= 0 && c <= 0xff)) throw new DnsError(DnsErrorCode.BAD_ARGUMENT, -1, `bad character in ${text}`);
    if (o >= MAX_NAME_WIRE) throw new DnsError(DnsErrorCode.NAME_TOO_LONG, -1, text);
    out[o++] = c;
    labelLen++;
  }
  if (labelLen > 63) throw new DnsError(DnsErrorCode.LABEL_TOO_LONG, -1, text);
  out[labelStart] = labelLen;
  if (labelLen > 0) out[o++] = 0;
  if (o > MAX_NAME_WIRE) throw new DnsError(DnsErrorCode.NAME_TOO_LONG, -1, text);
  return out.slice(0, o);
}
