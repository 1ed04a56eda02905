/**
 * The scrubber: what of an upstream response may be cached and served, and the
 * message rebuilt from it in a form every later path can rely on.
 *
 * Rules (the ideas of Unbound's scrubber, for a forwarder that does not know zone cuts):
 *
 * - answer: RRsets owned by the query name or a name of its CNAME/DNAME chain (RRSIGs
 *   included), and the DNAMEs that make the chain. The chain is followed from the
 *   query name through the CNAMEs (and DNAME substitutions) found in the answer
 *   section, at most 16 links, unless the question is for CNAME, DNAME or ANY.
 * - authority: SOA, NS and DS (and their RRSIGs) owned by the chain's last name or an
 *   ancestor of it; NSEC and NSEC3 (and their RRSIGs) owned by a name in a zone the
 *   chain is in. A zone here is the owner of such a SOA or the signer of an RRSIG in
 *   the answer or authority that is an ancestor of a chain name: denial proofs live at
 *   the predecessor name or at hashed names, never at an ancestor of the query name.
 * - additional: A and AAAA (and their RRSIGs) of names a kept NS, MX or SRV points at.
 *   The OPT is kept, without its options (cookies and padding are per hop).
 *
 * Minimal responses (on by default for the forwarder) keep less: the answer section;
 * for a negative answer the SOA; NSEC/NSEC3 (and RRSIGs) only when DNSSEC was asked
 * for (they prove a denial or a wildcard expansion); no additional records.
 *
 * The rebuilt message has the same header (new counts) and question bytes; every
 * record is written afresh: names decompressed and compressed again only against the
 * question name and names written earlier in the rebuilt message (pointers land only on
 * the start of a name's label, never in a TTL, header or opaque RDATA), RDATA names of
 * types other than those of RFC 1035 written whole (RFC 3597 4), and the OPT last. A
 * message built this way parses wherever its records are placed after a question with
 * the same name in any case, whatever TTLs are later written into it: the property the
 * cache, the reply writer and the XDP hot entry rely on.
 */
import { Buffer } from 'node:buffer';
import {
  HEADER_LEN,
  MAX_MESSAGE_LEN,
  MAX_NAME_WIRE,
  RCODE_NOERROR,
  RDATA_OPAQUE,
  RDATA_PREF_NAME,
  RDATA_SOA,
  RDATA_SRV,
  RDATA_TWO_NAMES,
  RR_FIXED_LEN,
  TYPE_A,
  TYPE_AAAA,
  TYPE_ANY,
  TYPE_CNAME,
  TYPE_DNAME,
  TYPE_DS,
  TYPE_MB,
  TYPE_MD,
  TYPE_MF,
  TYPE_MG,
  TYPE_MINFO,
  TYPE_MR,
  TYPE_MX,
  TYPE_NS,
  TYPE_NSEC,
  TYPE_NSEC3,
  TYPE_OPT,
  TYPE_PTR,
  TYPE_RRSIG,
  TYPE_SOA,
  TYPE_SRV,
  rdataLayout,
} from './constants.js';
import { DnsError, DnsErrorCode } from './errors.js';
import { copyNameLower, skipName } from './name.js';
import { MessageView, RecordCursor } from './view.js';

/** Index of each section in the `dropped` counts. */
export const SCRUB_ANSWER = 0;
export const SCRUB_AUTHORITY = 1;
export const SCRUB_ADDITIONAL = 2;

export interface ScrubOptions {
  /** Keep only what a minimal response needs (see the module comment). Default false. */
  minimal?: boolean;
  /** DNSSEC records are wanted (minimal keeps NSEC/NSEC3); default: the response's DO bit. */
  dnssecOk?: boolean;
  /** Records removed by the rules (not by minimal), added per section at SCRUB_* indices. */
  dropped?: { [i: number]: number };
}

/** Longest CNAME/DNAME chain followed. */
const MAX_CHAIN = 16;

interface Rec {
  section: number;
  type: number;
  /** Absolute position of class, TTL (copied as they are). */
  fixedPos: number;
  rdPos: number;
  rdLen: number;
  /** Owner, decompressed, as received (case kept). */
  owner: Uint8Array;
  /** Owner lowercased, as a latin1 string: the comparison key. */
  ownerKey: string;
  /** Lowercased key of the name an NS, CNAME, DNAME, MX or SRV points at; '' otherwise. */
  targetKey: string;
  /** RRSIG: type covered and signer key; else 0 and ''. */
  covered: number;
  signerKey: string;
}

const view = new MessageView();
const cursor = new RecordCursor();
const scratch = new Uint8Array(MAX_MESSAGE_LEN + 2048);
const nameBuf = new Uint8Array(MAX_NAME_WIRE);

/** Decompressed copy of a validated name at `pos` (case kept). */
function readName(buf: Uint8Array, base: number, pos: number): Uint8Array {
  let p = pos;
  let o = 0;
  for (;;) {
    const len = buf[p]!;
    if (len >= 0xc0) {
      p = base + (((len & 0x3f) << 8) | buf[p + 1]!);
      continue;
    }
    nameBuf[o++] = len;
    if (len === 0) return nameBuf.slice(0, o);
    for (let i = 1; i <= len; i++) nameBuf[o++] = buf[p + i]!;
    p += len + 1;
  }
}

const keyBuf = Buffer.alloc(MAX_NAME_WIRE);

/** Lowercased latin1 key of wire name bytes [from, end). */
function keyOf(w: Uint8Array, from = 0): string {
  const n = w.length - from;
  for (let i = 0; i < n; i++) {
    const c = w[from + i]!;
    keyBuf[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return keyBuf.toString('latin1', 0, n);
}

/** The lowercased key of a validated name at `pos`, without an intermediate copy. */
function keyAt(buf: Uint8Array, base: number, pos: number): string {
  return keyBuf.toString('latin1', 0, copyNameLower(buf, base, pos, keyBuf, 0));
}

/** True when `a` is `b` or an ancestor of it (both keys of whole wire names). */
export function isAtOrAbove(a: string, b: string): boolean {
  if (a.length > b.length) return false;
  let off = 0;
  for (;;) {
    if (b.length - off === a.length) return b.endsWith(a);
    if (b.length - off < a.length) return false;
    off += b.charCodeAt(off) + 1;
  }
}

/**
 * The target of a DNAME substitution: `name` with its suffix `owner` replaced by
 * `target` (keys), or null when the result would be longer than a name may be.
 */
function substitute(name: string, owner: string, target: string): string | null {
  const out = name.slice(0, name.length - owner.length) + target;
  return out.length > MAX_NAME_WIRE ? null : out;
}

/** The signer name of RRSIG RDATA, as a key, or '' when it is not a plain name inside the RDATA. */
function signerOf(buf: Uint8Array, rd: number, rdLen: number): string {
  let p = rd + 18;
  const end = rd + rdLen;
  let s = '';
  for (;;) {
    if (p >= end) return '';
    const len = buf[p]!;
    if (len > 63) return '';
    s += String.fromCharCode(len);
    if (len === 0) return s.length <= MAX_NAME_WIRE ? s : '';
    if (p + 1 + len > end) return '';
    for (let i = 1; i <= len; i++) {
      const c = buf[p + i]!;
      s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c | 0x20 : c);
    }
    p += len + 1;
  }
}

/** Names that are one bare pointer, by target: most owners point at the question or an earlier owner. */
const byTarget = new Map<number, { wire: Uint8Array; key: string }>();

function ownerAt(msg: Uint8Array, base: number, pos: number): { wire: Uint8Array; key: string } {
  const b = msg[pos]!;
  const target = b >= 0xc0 ? ((b & 0x3f) << 8) | msg[pos + 1]! : -1;
  if (target >= 0) {
    const hit = byTarget.get(target);
    if (hit !== undefined) return hit;
  }
  const wire = readName(msg, base, pos);
  const n = { wire, key: keyOf(wire) };
  if (target >= 0) byTarget.set(target, n);
  return n;
}

function collect(msg: Uint8Array, base: number): Rec[] {
  const recs: Rec[] = [];
  byTarget.clear();
  for (let s = 0; s < 3; s++) {
    view.records(s as 0 | 1 | 2, cursor);
    while (cursor.next()) {
      const type = cursor.type;
      if (type === TYPE_OPT) continue;
      const owner = ownerAt(msg, base, cursor.pos);
      let targetKey = '';
      const layout = rdataLayout(type);
      if (type === TYPE_NS || type === TYPE_CNAME || type === TYPE_DNAME || type === TYPE_MX || type === TYPE_SRV) {
        const at = cursor.rdataPos + (layout === RDATA_PREF_NAME ? 2 : layout === RDATA_SRV ? 6 : 0);
        targetKey = keyAt(msg, base, at);
      }
      let covered = 0;
      let signerKey = '';
      if (type === TYPE_RRSIG && cursor.rdLength >= 18) {
        covered = (msg[cursor.rdataPos]! << 8) | msg[cursor.rdataPos + 1]!;
        signerKey = signerOf(msg, cursor.rdataPos, cursor.rdLength);
      }
      recs.push({
        section: s,
        type,
        fixedPos: cursor.ttlPos - 2,
        rdPos: cursor.rdataPos,
        rdLen: cursor.rdLength,
        owner: owner.wire,
        ownerKey: owner.key,
        targetKey,
        covered,
        signerKey,
      });
    }
  }
  return recs;
}

function inZone(zones: Set<string>, key: string): boolean {
  for (const z of zones) if (isAtOrAbove(z, key)) return true;
  return false;
}

/** Which records the rules keep (and minimal keeps), as a parallel array of flags: 0 drop (rules), 1 keep, 2 drop (minimal). */
function classify(recs: Rec[], qnameKey: string, qtype: number, rcode: number, minimal: boolean, dnssec: boolean): Uint8Array {
  const verdict = new Uint8Array(recs.length);
  // The chain, from the query name.
  const chain = new Set<string>([qnameKey]);
  const chainList = [qnameKey];
  const dnameOwners = new Set<string>();
  const follow = qtype !== TYPE_CNAME && qtype !== TYPE_DNAME && qtype !== TYPE_ANY;
  let last = qnameKey;
  for (let hop = 0; follow && hop < MAX_CHAIN; hop++) {
    let next: string | null = null;
    for (const r of recs) {
      if (r.section !== 0) break;
      if (r.type === TYPE_DNAME && r.ownerKey !== last && isAtOrAbove(r.ownerKey, last)) {
        dnameOwners.add(r.ownerKey);
        if (next === null) next = substitute(last, r.ownerKey, r.targetKey);
      }
    }
    for (const r of recs) {
      if (r.section !== 0) break;
      if (r.type === TYPE_CNAME && r.ownerKey === last) {
        next = r.targetKey; // an explicit CNAME wins over the substitution
        break;
      }
    }
    if (next === null || chain.has(next)) break;
    chain.add(next);
    chainList.push(next);
    last = next;
  }
  // Zones the chain is in: SOA owners above the last name, signers above a chain name.
  const zones = new Set<string>();
  for (const r of recs) {
    if (r.section === 2) break;
    if (r.type === TYPE_SOA && r.section === 1 && isAtOrAbove(r.ownerKey, last)) zones.add(r.ownerKey);
    if (r.type === TYPE_RRSIG && r.signerKey !== '' && !zones.has(r.signerKey)) {
      for (const c of chainList) {
        if (isAtOrAbove(r.signerKey, c)) {
          zones.add(r.signerKey);
          break;
        }
      }
    }
  }
  let positive = false;
  for (const r of recs) {
    if (r.section !== 0) break;
    if (chain.has(r.ownerKey) && (r.type === qtype || qtype === TYPE_ANY)) positive = true;
  }
  positive = positive && rcode === RCODE_NOERROR;
  const targets = new Set<string>();
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    let keep = false;
    let minimalKeep = true;
    if (r.section === 0) {
      keep =
        chain.has(r.ownerKey) ||
        (r.type === TYPE_DNAME && dnameOwners.has(r.ownerKey)) ||
        (r.type === TYPE_RRSIG && r.covered === TYPE_DNAME && dnameOwners.has(r.ownerKey));
    } else if (r.section === 1) {
      const t = r.type === TYPE_RRSIG ? r.covered : r.type;
      if (t === TYPE_SOA || t === TYPE_NS || t === TYPE_DS) {
        keep = isAtOrAbove(r.ownerKey, last);
        minimalKeep = t === TYPE_SOA && !positive;
      } else if (t === TYPE_NSEC || t === TYPE_NSEC3) {
        keep = inZone(zones, r.ownerKey);
        minimalKeep = dnssec;
      }
    } else {
      // Filled in below, once the kept NS, MX and SRV are known.
      continue;
    }
    verdict[i] = keep ? (minimal && !minimalKeep ? 2 : 1) : 0;
    if (keep && (r.type === TYPE_NS || r.type === TYPE_MX || r.type === TYPE_SRV)) targets.add(r.targetKey);
  }
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.section !== 2) continue;
    const t = r.type === TYPE_RRSIG ? r.covered : r.type;
    const keep = (t === TYPE_A || t === TYPE_AAAA) && targets.has(r.ownerKey);
    verdict[i] = keep ? (minimal ? 2 : 1) : 0;
  }
  return verdict;
}

/** RDATA names that may be compressed on output: the RFC 1035 types (RFC 3597 4). */
function compressible(type: number): boolean {
  switch (type) {
    case TYPE_NS:
    case TYPE_MD:
    case TYPE_MF:
    case TYPE_CNAME:
    case TYPE_SOA:
    case TYPE_MB:
    case TYPE_MG:
    case TYPE_MR:
    case TYPE_PTR:
    case TYPE_MINFO:
    case TYPE_MX:
      return true;
    default:
      return false;
  }
}

function lowerByte(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/** True when the (possibly compressed) name at out[pos] equals w[off..] ignoring ASCII case. */
function sameName(out: Uint8Array, pos: number, w: Uint8Array, off: number): boolean {
  let p = pos;
  let q = off;
  for (;;) {
    let len = out[p]!;
    while (len >= 0xc0) {
      p = ((len & 0x3f) << 8) | out[p + 1]!;
      len = out[p]!;
    }
    if (len !== w[q]) return false;
    if (len === 0) return true;
    for (let i = 1; i <= len; i++) if (lowerByte(out[p + i]!) !== lowerByte(w[q + i]!)) return false;
    p += len + 1;
    q += len + 1;
  }
}

const labelOffs = new Int32Array(128);
const suffixHash = new Int32Array(128);

/**
 * Writes records into `out` with a compression table of its own: the hash of every
 * name suffix written inline below 0x4000, and where it is; a hit is checked byte by
 * byte before a pointer is written.
 */
class Writer {
  p = 0;
  private readonly hashes: number[] = [];
  private readonly positions: number[] = [];
  constructor(readonly out: Uint8Array) {}

  /** Label offsets of `w` into labelOffs and suffix hashes (lowercased) into suffixHash; returns the label count. */
  private static labels(w: Uint8Array): number {
    let n = 0;
    let off = 0;
    while (w[off] !== 0) {
      labelOffs[n++] = off;
      off += w[off]! + 1;
    }
    let h = 0x811c9dc5;
    for (let i = n - 1; i >= 0; i--) {
      const o = labelOffs[i]!;
      const end = o + w[o]! + 1;
      for (let j = o; j < end; j++) h = Math.imul(h ^ lowerByte(w[j]!), 0x01000193);
      suffixHash[i] = h;
    }
    return n;
  }

  private find(hash: number, w: Uint8Array, off: number): number {
    const hs = this.hashes;
    for (let i = 0; i < hs.length; i++) {
      if (hs[i] === hash && sameName(this.out, this.positions[i]!, w, off)) return this.positions[i]!;
    }
    return -1;
  }

  /** Makes the first `upTo` suffixes of the name written at `pos` targets (pointers reach 0x3fff). */
  private remember(pos: number, upTo: number): void {
    for (let i = 0; i < upTo; i++) {
      const at = pos + labelOffs[i]!;
      if (at >= 0x4000) return;
      this.hashes.push(suffixHash[i]!);
      this.positions.push(at);
    }
  }

  /** Registers a name already in `out` at `pos` (the question). */
  known(w: Uint8Array, pos: number): void {
    this.remember(pos, Writer.labels(w));
  }

  name(w: Uint8Array, compress: boolean): void {
    const out = this.out;
    const n = Writer.labels(w);
    const start = this.p;
    if (compress) {
      for (let i = 0; i < n; i++) {
        const off = labelOffs[i]!;
        const at = this.find(suffixHash[i]!, w, off);
        if (at >= 0) {
          for (let k = 0; k < off; k++) out[start + k] = w[k]!;
          out[start + off] = 0xc0 | (at >>> 8);
          out[start + off + 1] = at & 0xff;
          this.p = start + off + 2;
          this.remember(start, i);
          return;
        }
      }
    }
    for (let k = 0; k < w.length; k++) out[start + k] = w[k]!;
    this.p = start + w.length;
    this.remember(start, n);
  }

  bytes(src: Uint8Array, from: number, n: number): void {
    const out = this.out;
    const p = this.p;
    if (n > 64) out.set(src.subarray(from, from + n), p);
    else for (let k = 0; k < n; k++) out[p + k] = src[from + k]!;
    this.p += n;
  }
}

/** Messages this module built, so that the next step does not rebuild them again. */
const rebuilt = new WeakSet<Uint8Array>();

/**
 * True when `msg` is a message scrubResponse returned (so it already keeps the rules
 * and the rebuilt form). Such a message must not be changed beyond its header (ID,
 * flags): answerFromResponse trusts it without scrubbing it a second time.
 */
export function isScrubbed(msg: Uint8Array): boolean {
  return rebuilt.has(msg);
}

/**
 * Scrubs and rebuilds a response: see the module comment. Returns a new message;
 * throws DnsError when `msg` does not parse or the rebuilt message would not fit
 * 65535 bytes. The result is remembered (isScrubbed): change at most its header.
 */
export function scrubResponse(msg: Uint8Array, opts: ScrubOptions = {}): Uint8Array {
  const v = view;
  const e = v.parse(msg, 0, msg.length);
  if (e !== 0) throw new DnsError(e, v.errorPos);
  const recs = collect(msg, 0);
  const qnameKey = keyOf(msg.subarray(v.qnamePos, v.qnamePos + v.qnameLen));
  const dnssec = opts.dnssecOk ?? v.dnssecOk;
  const verdict = classify(recs, qnameKey, v.qtype, v.rcode, opts.minimal === true, dnssec);
  const dropped = opts.dropped;

  const out = scratch;
  const w = new Writer(out);
  const qEnd = HEADER_LEN + v.qnameLen + 4;
  out.set(msg.subarray(0, qEnd), 0);
  w.p = qEnd;
  w.known(msg.subarray(HEADER_LEN, HEADER_LEN + v.qnameLen), HEADER_LEN);
  const counts = [0, 0, 0];
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    const verdictI = verdict[i]!;
    if (verdictI !== 1) {
      if (verdictI === 0 && dropped !== undefined) dropped[r.section] = (dropped[r.section] ?? 0) + 1;
      continue;
    }
    // Worst case of this record: owner and two names whole, the fixed part, the rest of the RDATA.
    if (w.p + 3 * MAX_NAME_WIRE + RR_FIXED_LEN + r.rdLen > MAX_MESSAGE_LEN) {
      throw new DnsError(DnsErrorCode.NOT_CACHEABLE, -1, 'response too long once rebuilt');
    }
    counts[r.section]!++;
    w.name(r.owner, true);
    out[w.p] = r.type >>> 8;
    out[w.p + 1] = r.type & 0xff;
    w.p += 2;
    w.bytes(msg, r.fixedPos, 6); // class, TTL
    const lenPos = w.p;
    w.p += 2;
    const rdStart = w.p;
    const layout = rdataLayout(r.type);
    if (layout === RDATA_OPAQUE) {
      w.bytes(msg, r.rdPos, r.rdLen);
    } else {
      const c = compressible(r.type);
      const fixed = layout === RDATA_PREF_NAME ? 2 : layout === RDATA_SRV ? 6 : 0;
      w.bytes(msg, r.rdPos, fixed);
      let p = r.rdPos + fixed;
      const first = readName(msg, 0, p);
      w.name(first, c);
      if (layout === RDATA_TWO_NAMES || layout === RDATA_SOA) {
        p = skipName(msg, p);
        w.name(readName(msg, 0, p), c);
        if (layout === RDATA_SOA) w.bytes(msg, skipName(msg, p), 20);
      }
    }
    const rdLen = w.p - rdStart;
    out[lenPos] = rdLen >>> 8;
    out[lenPos + 1] = rdLen & 0xff;
  }
  let ar = counts[2]!;
  if (v.optPos >= 0) {
    if (w.p + 11 > MAX_MESSAGE_LEN) throw new DnsError(DnsErrorCode.NOT_CACHEABLE, -1, 'response too long once rebuilt');
    out[w.p++] = 0;
    w.bytes(msg, v.optPos + 1, 8); // type, UDP size, extended rcode, version, flags
    out[w.p] = 0;
    out[w.p + 1] = 0;
    w.p += 2;
    ar++;
  }
  for (let s = 0; s < 3; s++) {
    const n = s === 2 ? ar : counts[s]!;
    out[6 + 2 * s] = n >>> 8;
    out[7 + 2 * s] = n & 0xff;
  }
  const result = out.slice(0, w.p);
  rebuilt.add(result);
  return result;
}
