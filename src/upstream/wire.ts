/**
 * The forwarder's side of the wire: the question it is asked, the query it
 * builds from it, and the check that a message is the answer to that query.
 * Parsing is the DNS core's MessageView; nothing here trusts a length or a
 * count the parser has not validated.
 */
import {
  CLASSIC_UDP_LIMIT,
  FLAG_AD,
  FLAG_CD,
  FLAG_RD,
  HEADER_LEN,
  MAX_MESSAGE_LEN,
  OPCODE_QUERY,
  OPT_RR_LEN,
} from '../dns/constants.js';
import { scanName, wireNamesEqual } from '../dns/name.js';
import { OptionCursor, writeOpt } from '../dns/opt.js';
import type { MessageView } from '../dns/view.js';
import { UpstreamError } from './errors.js';

/** What the forwarder is asked to resolve. */
export interface Question {
  /** Uncompressed wire qname (any case; copied, so it may point into a reused frame). */
  name: Uint8Array;
  qtype: number;
  qclass: number;
  /** DO bit for the OPT we send. */
  dnssecOk: boolean;
  /** CD bit for the header we send. */
  checkingDisabled?: boolean;
  /**
   * Set on the question as sent to one upstream (guard.ts), never by the forwarder's
   * callers. The answer must echo `name` byte for byte (0x20 case randomisation).
   */
  exactCase?: boolean;
  /** Our DNS client cookie for this upstream (8 bytes, RFC 7873): sent, and checked in the answer. */
  clientCookie?: Uint8Array;
  /** The server cookie this upstream gave us last (8-32 bytes): sent with ours. */
  serverCookie?: Uint8Array;
  /** This upstream has given us a server cookie: an answer without a COOKIE option is refused. */
  cookieRequired?: boolean;
}

/** Throws UPSTREAM_BAD_QUERY unless `q` is a plain wire name and 16-bit type and class. */
export function checkQuestion(q: Question): void {
  if (q === null || typeof q !== 'object' || !(q.name instanceof Uint8Array)) {
    throw new UpstreamError('UPSTREAM_BAD_QUERY', 'question needs name (wire bytes), qtype, qclass');
  }
  for (const [k, v] of [
    ['qtype', q.qtype],
    ['qclass', q.qclass],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new UpstreamError('UPSTREAM_BAD_QUERY', `${k} ${String(v)} is not a 16-bit number`);
  }
  // A base of -HEADER_LEN makes every compression pointer land before the header bound: only plain names pass.
  const n = q.name.length;
  const end = n === 0 ? -1 : scanName(q.name, -HEADER_LEN, n, n, 0);
  if (end !== n) throw new UpstreamError('UPSTREAM_BAD_QUERY', 'name is not an uncompressed wire name of at most 255 bytes');
}

/**
 * Coalescing key: the name lowercased (ASCII only, as the cache key), type,
 * class, and the DO and CD bits, as a latin1 string for a Map.
 */
export function questionKey(q: Question): string {
  let s = '';
  const name = q.name;
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c | 0x20 : c);
  }
  return s + String.fromCharCode(q.qtype >>> 8, q.qtype & 0xff, q.qclass >>> 8, q.qclass & 0xff, (q.dnssecOk ? 1 : 0) | (q.checkingDisabled === true ? 2 : 0));
}

/** Checks the EDNS UDP size we advertise; 512..65535. */
export function checkUdpSize(n: number): number {
  if (!Number.isInteger(n) || n < CLASSIC_UDP_LIMIT || n > MAX_MESSAGE_LEN) {
    throw new UpstreamError('UPSTREAM_BAD_CONFIG', `udpSize must be an integer in 512..65535, got ${String(n)}`);
  }
  return n;
}

/** EDNS option code of DNS cookies (RFC 7873). */
export const OPTION_COOKIE = 10;
export const CLIENT_COOKIE_LEN = 8;
/** Server cookies are 8 to 32 bytes (RFC 7873 4.2). */
export const SERVER_COOKIE_MIN = 8;
export const SERVER_COOKIE_MAX = 32;

/**
 * Our query: ID, RD=1, AD=1 (RFC 6840 5.7: tell a validating upstream we
 * want the AD bit), CD as asked; the question; an OPT with our UDP size and
 * the DO bit as asked, and a COOKIE option when the question carries a client cookie.
 */
export function buildQuery(q: Question, id: number, udpSize: number): Uint8Array {
  const n = q.name.length;
  const cookieLen = q.clientCookie === undefined ? 0 : CLIENT_COOKIE_LEN + (q.serverCookie?.length ?? 0);
  const optionLen = cookieLen === 0 ? 0 : 4 + cookieLen;
  const out = new Uint8Array(HEADER_LEN + n + 4 + OPT_RR_LEN + optionLen);
  const flags = FLAG_RD | FLAG_AD | (q.checkingDisabled === true ? FLAG_CD : 0) | (OPCODE_QUERY << 11);
  out[0] = id >>> 8;
  out[1] = id & 0xff;
  out[2] = flags >>> 8;
  out[3] = flags & 0xff;
  out[5] = 1; // QDCOUNT
  out[11] = 1; // ARCOUNT: the OPT
  out.set(q.name, HEADER_LEN);
  let p = HEADER_LEN + n;
  out[p++] = q.qtype >>> 8;
  out[p++] = q.qtype & 0xff;
  out[p++] = q.qclass >>> 8;
  out[p++] = q.qclass & 0xff;
  p += writeOpt(out, p, udpSize, 0, q.dnssecOk);
  if (optionLen > 0) {
    out[p - 2] = optionLen >>> 8; // the OPT's RDLENGTH
    out[p - 1] = optionLen & 0xff;
    out[p++] = OPTION_COOKIE >>> 8;
    out[p++] = OPTION_COOKIE & 0xff;
    out[p++] = cookieLen >>> 8;
    out[p++] = cookieLen & 0xff;
    out.set(q.clientCookie!.subarray(0, CLIENT_COOKIE_LEN), p);
    if (q.serverCookie !== undefined) out.set(q.serverCookie, p + CLIENT_COOKIE_LEN);
  }
  return out;
}

/** Where the COOKIE option of a parsed message's OPT is: data position and length, or -1 when there is none. */
export function findCookie(view: MessageView): { pos: number; len: number } | null {
  if (view.optPos < 0) return null;
  const c = cookieCursor.reset(view.buf, view.optRdataPos, view.optRdataLen);
  while (c.next()) if (c.code === OPTION_COOKIE) return { pos: c.dataPos, len: c.dataLen };
  return null;
}
const cookieCursor = new OptionCursor();

/** Why a message was not taken as the answer. Stable numbers, 0 = it is the answer. */
export const Mismatch = {
  NONE: 0,
  /** From another address or port than the upstream we asked. */
  SOURCE: 1,
  /** Another ID than the one we sent. */
  ID: 2,
  /** Right ID, but another question (name case-insensitively, type, class). */
  QUESTION: 3,
  /** Not a well-formed DNS response to a standard query (short, fails MessageView, QR=0, other opcode). */
  MALFORMED: 4,
  /** The question's name in another case than we sent it (0x20). */
  CASE: 5,
  /** A malformed COOKIE option, or not our client cookie echoed. */
  COOKIE: 6,
  /** No COOKIE option from an upstream that gave us a server cookie before. */
  NO_COOKIE: 7,
} as const;
export type MismatchCode = (typeof Mismatch)[keyof typeof Mismatch];

/**
 * Checks that `msg` answers the query with `id` for `q`. Cheap checks first
 * (length, ID) so random garbage costs no parse; then the question, its exact
 * case when `q.exactCase`, and the cookies when `q.clientCookie`. On NONE the
 * view holds the parsed message.
 */
export function matchResponse(view: MessageView, msg: Uint8Array, id: number, q: Question): MismatchCode {
  if (msg.length < HEADER_LEN) return Mismatch.MALFORMED;
  if (((msg[0]! << 8) | msg[1]!) !== id) return Mismatch.ID;
  if (view.parse(msg, 0, msg.length) !== 0) return Mismatch.MALFORMED;
  if (!view.qr || view.opcode !== OPCODE_QUERY) return Mismatch.MALFORMED;
  const n = q.name.length;
  if (view.qnameLen !== n || view.qtype !== q.qtype || view.qclass !== q.qclass) return Mismatch.QUESTION;
  if (!wireNamesEqual(msg, view.qnamePos, q.name, 0, n)) return Mismatch.QUESTION;
  if (q.exactCase === true) {
    const at = view.qnamePos;
    for (let i = 0; i < n; i++) if (msg[at + i] !== q.name[i]) return Mismatch.CASE;
  }
  if (q.clientCookie !== undefined) {
    const c = findCookie(view);
    if (c === null) return q.cookieRequired === true ? Mismatch.NO_COOKIE : Mismatch.NONE;
    // A server that knows cookies answers with ours and its own (RFC 7873 5.3).
    if (c.len < CLIENT_COOKIE_LEN + SERVER_COOKIE_MIN || c.len > CLIENT_COOKIE_LEN + SERVER_COOKIE_MAX) return Mismatch.COOKIE;
    for (let i = 0; i < CLIENT_COOKIE_LEN; i++) if (msg[c.pos + i] !== q.clientCookie[i]) return Mismatch.COOKIE;
  }
  return Mismatch.NONE;
}
