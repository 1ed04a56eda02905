/**
 * EDNS0 OPT pseudo-record (RFC 6891): option validation and iteration over
 * the RDATA, and the fixed 11-byte OPT the reply writer appends.
 *
 * OPT layout after its owner name (which must be the root, one zero byte):
 *   type=41 (2) | class = requestor's UDP payload size (2)
 *   | extended rcode high bits (1) | version (1) | flags, DO = 0x8000 (2)
 *   | rdlength (2) | options: { code (2) | length (2) | data }*
 */
import { OPT_RR_LEN, TYPE_OPT } from './constants.js';

/** True if the OPT RDATA at [pos, pos + len) is a whole number of well-formed options. */
export function validOptions(buf: Uint8Array, pos: number, len: number): boolean {
  let p = pos;
  const end = pos + len;
  while (p < end) {
    if (p + 4 > end) return false;
    const optLen = (buf[p + 2]! << 8) | buf[p + 3]!;
    p += 4 + optLen;
  }
  return p === end;
}

/**
 * Reusable cursor over the options of an OPT record. Call `reset` with the
 * RDATA span (as a MessageView exposes it), then `next()` until it returns false.
 */
export class OptionCursor {
  code = 0;
  /** Absolute position of the option data. */
  dataPos = 0;
  dataLen = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private p = 0;
  private end = 0;

  reset(buf: Uint8Array, rdataPos: number, rdataLen: number): this {
    this.buf = buf;
    this.p = rdataPos;
    this.end = rdataPos + rdataLen;
    return this;
  }

  next(): boolean {
    const b = this.buf;
    const p = this.p;
    if (p + 4 > this.end) return false;
    this.code = (b[p]! << 8) | b[p + 1]!;
    this.dataLen = (b[p + 2]! << 8) | b[p + 3]!;
    this.dataPos = p + 4;
    if (this.dataPos + this.dataLen > this.end) return false;
    this.p = this.dataPos + this.dataLen;
    return true;
  }
}

/**
 * Writes an OPT record with no options at `pos`: our UDP payload size, the
 * high 8 bits of an extended rcode, EDNS version 0 and the DO bit as given.
 * Returns the bytes written (always OPT_RR_LEN).
 */
export function writeOpt(out: Uint8Array, pos: number, udpSize: number, extRcodeHigh: number, dnssecOk: boolean): number {
  out[pos] = 0;
  out[pos + 1] = TYPE_OPT >>> 8;
  out[pos + 2] = TYPE_OPT & 0xff;
  out[pos + 3] = (udpSize >>> 8) & 0xff;
  out[pos + 4] = udpSize & 0xff;
  out[pos + 5] = extRcodeHigh & 0xff;
  out[pos + 6] = 0;
  out[pos + 7] = dnssecOk ? 0x80 : 0;
  out[pos + 8] = 0;
  out[pos + 9] = 0;
  out[pos + 10] = 0;
  return OPT_RR_LEN;
}
