/**
 * The one error type of the DNS core. Hot paths return a numeric code
 * (0 = ok) so that hostile traffic costs no allocation; the throwing entry
 * points wrap the same code into a DnsError. Codes are stable: numbers and
 * names never change meaning, new ones are only appended. DnsError is a
 * HeimdallError (src/errors.ts) whose `code` is 'ERR_DNS_*'.
 */
import { HeimdallError } from '../errors.js';

export const DnsErrorCode = {
  OK: 0,
  /** Fewer than 12 bytes: not even a header. */
  SHORT_HEADER: 1,
  /** QDCOUNT is not 1. */
  QDCOUNT: 2,
  /** A name, record header or RDATA runs past the end of the message. */
  TRUNCATED: 3,
  /** Section counts promise more records than the message holds. */
  COUNT_MISMATCH: 4,
  /** Bytes left after the last record the counts announce. */
  TRAILING_DATA: 5,
  /** Label length byte 64..191: over 63, or a reserved label type. */
  LABEL_TOO_LONG: 6,
  /** Name longer than 255 bytes once decompressed. */
  NAME_TOO_LONG: 7,
  /** Compression pointer not strictly backwards, into the header, or outside the message. */
  BAD_POINTER: 8,
  /** Too many compression pointers followed for one name. */
  POINTER_HOPS: 9,
  /** OPT outside the additional section, twice, with a non-root owner, or with broken options. */
  BAD_OPT: 10,
  /** RDATA inconsistent with its type (names not ending at RDLENGTH, SOA too short). */
  BAD_RDATA: 11,
  /** QR bit wrong for the direction (a response where a query belongs, or the reverse). */
  BAD_DIRECTION: 12,
  /** A well-formed response the cache refuses to store (TC, REFUSED, TSIG, no SOA on a negative answer ...). */
  NOT_CACHEABLE: 13,
  /** The output buffer cannot hold even a minimal reply. */
  BUFFER_TOO_SMALL: 14,
  /** An argument outside its documented range (programming error in the caller). */
  BAD_ARGUMENT: 15,
} as const;

export type DnsErrorCodeName = Exclude<keyof typeof DnsErrorCode, 'OK'>;
export type DnsErrorCodeId = (typeof DnsErrorCode)[keyof typeof DnsErrorCode];

const NAMES: readonly string[] = (() => {
  const out: string[] = [];
  for (const [name, id] of Object.entries(DnsErrorCode)) out[id] = name;
  return out;
})();

/** Stable string code for a numeric code, e.g. 8 -> 'ERR_DNS_BAD_POINTER'. */
export function errorCodeName(id: number): `ERR_DNS_${string}` {
  const name = NAMES[id];
  return name === undefined ? 'ERR_DNS_UNKNOWN' : `ERR_DNS_${name}`;
}

/**
 * What a server does with a query that failed to parse with this code:
 * 'formerr' answers FORMERR (the header was readable and it looked like a
 * query), 'drop' counts it and sends nothing.
 */
export type ErrorDisposition = 'formerr' | 'drop';

export function errorDisposition(id: number): ErrorDisposition {
  return id === DnsErrorCode.SHORT_HEADER || id === DnsErrorCode.BAD_DIRECTION ? 'drop' : 'formerr';
}

export class DnsError extends HeimdallError {
  /** Stable numeric code, one of DnsErrorCode. */
  readonly id: number;
  /** Offset in the message where the problem was seen, or -1. */
  readonly offset: number;

  constructor(id: number, offset = -1, detail?: string) {
    const code = errorCodeName(id);
    super(code, detail === undefined ? code : `${code}: ${detail}`);
    this.name = 'DnsError';
    this.id = id;
    this.offset = offset;
  }

  get disposition(): ErrorDisposition {
    return errorDisposition(this.id);
  }
}

export function isDnsError(e: unknown): e is DnsError {
  return e instanceof DnsError;
}
