/**
 * Wire-format constants of the DNS core: header layout, limits, and the few
 * type / class / rcode numbers the core reasons about. Everything else is
 * carried through as an opaque number.
 */

/** Fixed DNS header length (RFC 1035 4.1.1). */
export const HEADER_LEN = 12;
/** Longest name on the wire, root label included (RFC 1035 2.3.4). */
export const MAX_NAME_WIRE = 255;
/** Longest label (RFC 1035 2.3.4); also the largest value a plain label byte can hold. */
export const MAX_LABEL = 63;
/**
 * Most compression pointers followed while reading one name. Real encoders
 * point at the longest known suffix, so chains stay short; 32 leaves room for
 * deep names while bounding the work per name.
 */
export const MAX_POINTER_HOPS = 32;
/** Fixed part of a resource record after its owner name: type, class, ttl, rdlength. */
export const RR_FIXED_LEN = 10;
/** Size of the OPT record the reply writer appends: root name + 10 fixed bytes, no options. */
export const OPT_RR_LEN = 11;
/**
 * The EDNS UDP payload size heimdall-xdp advertises and serves by default: 1232 bytes
 * keeps a reply within one packet on an IPv6 path with the minimum MTU of 1280 (the
 * figure DNS Flag Day 2020 settled on).
 */
export const EDNS_UDP_SIZE = 1232;

/** The largest EDNS UDP payload size the service can be set to serve (--udp-size): no UDP reply is longer. */
export const MAX_EDNS_UDP_SIZE = 4096;

/** Largest payload a client without EDNS may receive over UDP (RFC 1035 4.2.1). */
export const CLASSIC_UDP_LIMIT = 512;
/** Largest DNS message (TCP length prefix is 16 bits). */
export const MAX_MESSAGE_LEN = 65535;
/** Largest key: a 255-byte name plus type(2), class(2) and the flags byte(1). */
export const MAX_KEY_LEN = MAX_NAME_WIRE + 5;
/**
 * The key's last byte: the query's DO and CD bits. Both select a different answer: DO
 * whether DNSSEC records come with it, CD whether the upstream validated it. An answer
 * fetched with CD=1 is whatever the upstream holds, bogus data included, so it is only
 * ever given to queries that asked with CD=1 themselves (RFC 4035 3.2.2); a CD=0
 * SERVFAIL (validation failed upstream) likewise only to CD=0 queries.
 */
export const KEY_DO = 0x01;
export const KEY_CD = 0x02;

// Header flag bits, in the 16-bit word at offset 2.
export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;
export const FLAG_Z = 0x0040;
export const FLAG_AD = 0x0020;
export const FLAG_CD = 0x0010;
export const OPCODE_SHIFT = 11;
export const OPCODE_MASK = 0x7800;
export const RCODE_MASK = 0x000f;

/** EDNS0 DO bit within the 16-bit flags part of the OPT TTL field (RFC 3225). */
export const EDNS_DO = 0x8000;

export const OPCODE_QUERY = 0;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;
/** Extended rcode 16, carried partly in the OPT record (RFC 6891 9). */
export const RCODE_BADVERS = 16;
/** Extended rcode 23: the server cookie was missing or wrong, a fresh one is in the answer (RFC 7873 8). */
export const RCODE_BADCOOKIE = 23;

export const CLASS_IN = 1;

export const TYPE_A = 1;
export const TYPE_NS = 2;
export const TYPE_MD = 3;
export const TYPE_MF = 4;
export const TYPE_CNAME = 5;
export const TYPE_SOA = 6;
export const TYPE_MB = 7;
export const TYPE_MG = 8;
export const TYPE_MR = 9;
export const TYPE_PTR = 12;
export const TYPE_MINFO = 14;
export const TYPE_MX = 15;
export const TYPE_TXT = 16;
export const TYPE_RP = 17;
export const TYPE_AFSDB = 18;
export const TYPE_RT = 21;
export const TYPE_AAAA = 28;
export const TYPE_SRV = 33;
export const TYPE_KX = 36;
export const TYPE_DNAME = 39;
export const TYPE_OPT = 41;
export const TYPE_DS = 43;
export const TYPE_RRSIG = 46;
export const TYPE_NSEC = 47;
export const TYPE_NSEC3 = 50;
export const TYPE_TKEY = 249;
export const TYPE_TSIG = 250;
export const TYPE_IXFR = 251;
export const TYPE_AXFR = 252;
export const TYPE_ANY = 255;

/** Message sections, as indices. */
export const SECTION_ANSWER = 0;
export const SECTION_AUTHORITY = 1;
export const SECTION_ADDITIONAL = 2;
export type Section = typeof SECTION_ANSWER | typeof SECTION_AUTHORITY | typeof SECTION_ADDITIONAL;

/**
 * How the names inside a record's RDATA are laid out, for the types whose
 * RDATA may carry compressed names on the wire (RFC 1035 and RFC 3597 4, plus
 * the later types that implementations are known to compress). Other types
 * are opaque bytes.
 */
export const RDATA_OPAQUE = 0;
/** RDATA is exactly one name (NS, CNAME, PTR, DNAME, MB, MD, MF, MG, MR). */
export const RDATA_NAME = 1;
/** A 16-bit preference, then one name (MX, AFSDB, RT, KX). */
export const RDATA_PREF_NAME = 2;
/** Two names (MINFO, RP). */
export const RDATA_TWO_NAMES = 3;
/** Two names, then five 32-bit numbers (SOA). */
export const RDATA_SOA = 4;
/** Priority, weight, port, then one name (SRV). */
export const RDATA_SRV = 5;

export function rdataLayout(type: number): number {
  switch (type) {
    case TYPE_NS:
    case TYPE_MD:
    case TYPE_MF:
    case TYPE_CNAME:
    case TYPE_MB:
    case TYPE_MG:
    case TYPE_MR:
    case TYPE_PTR:
    case TYPE_DNAME:
      return RDATA_NAME;
    case TYPE_MX:
    case TYPE_AFSDB:
    case TYPE_RT:
    case TYPE_KX:
      return RDATA_PREF_NAME;
    case TYPE_MINFO:
    case TYPE_RP:
      return RDATA_TWO_NAMES;
    case TYPE_SOA:
      return RDATA_SOA;
    case TYPE_SRV:
      return RDATA_SRV;
    default:
      return RDATA_OPAQUE;
  }
}
