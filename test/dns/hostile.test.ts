/**
 * Hostile input: a corpus of classic attacks on DNS parsers, each with the
 * one error code it must produce, then bounded garbage and mutation fuzzing
 * where the only acceptable failure is a DnsError / DnsErrorCode.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DnsError,
  DnsErrorCode,
  MessageView,
  answerFromResponse,
  errorCodeName,
  writeFormErr,
  writeReply,
} from '../../src/dns/index.js';
import { arbCacheableResponse, arbPacket, encodeCompressed, query } from '../helpers/dns-gen.js';


/** Header + body bytes. */
function msg(counts: [number, number, number, number], body: number[], flags = 0x0100): Uint8Array {
  const [qd, an, ns, ar] = counts;
  return Uint8Array.from([0x12, 0x34, flags >> 8, flags & 0xff, 0, qd, 0, an, 0, ns, 0, ar, ...body]);
}
/** Question "a." type A class IN: 7 bytes at offset 12 (name at 12, ends 15). */
const Q = [1, 0x61, 0, 0, 1, 0, 1];
/** RR fixed part: type, class IN, ttl 60, rdlength. */
const rr = (type: number, rdlen: number): number[] => [0, type, 0, 1, 0, 0, 0, 60, rdlen >> 8, rdlen & 0xff];
const label = (n: number, c = 0x61): number[] => [n, ...new Array<number>(n).fill(c)];

const corpus: { name: string; bytes: Uint8Array; code: number }[] = [
  { name: 'empty', bytes: new Uint8Array(0), code: DnsErrorCode.SHORT_HEADER },
  { name: '11 bytes', bytes: new Uint8Array(11), code: DnsErrorCode.SHORT_HEADER },
  { name: 'header only', bytes: msg([1, 0, 0, 0], []), code: DnsErrorCode.TRUNCATED },
  { name: 'qdcount 0', bytes: msg([0, 0, 0, 0], []), code: DnsErrorCode.QDCOUNT },
  { name: 'qdcount 2', bytes: msg([2, 0, 0, 0], [...Q, ...Q]), code: DnsErrorCode.QDCOUNT },
  { name: 'qname pointer to itself', bytes: msg([1, 0, 0, 0], [0xc0, 12, 0, 1, 0, 1]), code: DnsErrorCode.BAD_POINTER },
  { name: 'qname pointer into header', bytes: msg([1, 0, 0, 0], [0xc0, 2, 0, 1, 0, 1]), code: DnsErrorCode.BAD_POINTER },
  { name: 'forward pointer', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 40, ...rr(1, 4), 1, 2, 3, 4, 1, 0x62, 0]), code: DnsErrorCode.BAD_POINTER },
  { name: 'pointer past the end', bytes: msg([1, 1, 0, 0], [...Q, 0xff, 0xff, ...rr(1, 4), 1, 2, 3, 4]), code: DnsErrorCode.BAD_POINTER },
  {
    // owner at 19: "b" + pointer to 24; at 24: pointer back to 19 -> loop
    name: 'pointer loop across two names',
    bytes: msg([1, 2, 0, 0], [...Q, 1, 0x62, 0xc0, 24, ...rr(1, 0), 0xc0, 19, ...rr(1, 0)]),
    code: DnsErrorCode.BAD_POINTER,
  },
  {
    name: 'pointer inside its own label run',
    bytes: msg([1, 1, 0, 0], [...Q, 1, 0x62, 1, 0x63, 0xc0, 21, ...rr(1, 0)]),
    code: DnsErrorCode.BAD_POINTER,
  },
  { name: 'label of 64', bytes: msg([1, 0, 0, 0], [...label(64), 0, 0, 1, 0, 1]), code: DnsErrorCode.LABEL_TOO_LONG },
  { name: 'label type 0x80', bytes: msg([1, 0, 0, 0], [0x80, 0, 0, 1, 0, 1]), code: DnsErrorCode.LABEL_TOO_LONG },
  { name: 'label of 63 is fine', bytes: msg([1, 0, 0, 0], [...label(63), 0, 0, 1, 0, 1]), code: 0 },
  {
    name: 'name of 256 bytes',
    bytes: msg([1, 0, 0, 0], [...label(63), ...label(63), ...label(63), ...label(62), 0, 0, 1, 0, 1]),
    code: DnsErrorCode.NAME_TOO_LONG,
  },
  {
    name: 'name of 255 bytes is fine',
    bytes: msg([1, 0, 0, 0], [...label(63), ...label(63), ...label(63), ...label(61), 0, 0, 1, 0, 1]),
    code: 0,
  },
  {
    // question 200 bytes of labels; answer owner adds 60 bytes then points at it
    name: 'name over 255 through compression',
    bytes: msg([1, 1, 0, 0], [...label(63), ...label(63), ...label(63), ...label(7), 0, 0, 1, 0, 1, ...label(59), 0xc0, 12, ...rr(1, 0)]),
    code: DnsErrorCode.NAME_TOO_LONG,
  },
  { name: 'ancount lies (more)', bytes: msg([1, 3, 0, 0], [...Q, 0xc0, 12, ...rr(1, 4), 1, 2, 3, 4]), code: DnsErrorCode.COUNT_MISMATCH },
  { name: 'arcount lies (more)', bytes: msg([1, 0, 0, 1], [...Q]), code: DnsErrorCode.COUNT_MISMATCH },
  { name: 'ancount lies (fewer)', bytes: msg([1, 0, 0, 0], [...Q, 0xc0, 12, ...rr(1, 4), 1, 2, 3, 4]), code: DnsErrorCode.TRAILING_DATA },
  { name: 'trailing garbage', bytes: msg([1, 0, 0, 0], [...Q, 0]), code: DnsErrorCode.TRAILING_DATA },
  { name: 'question cut', bytes: msg([1, 0, 0, 0], [1, 0x61, 0, 0, 1, 0]), code: DnsErrorCode.TRUNCATED },
  { name: 'qname without root', bytes: msg([1, 0, 0, 0], [1, 0x61]), code: DnsErrorCode.TRUNCATED },
  { name: 'record header cut', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, 0, 1, 0, 1, 0]), code: DnsErrorCode.TRUNCATED },
  { name: 'rdata cut', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(1, 4), 1, 2, 3]), code: DnsErrorCode.TRUNCATED },
  { name: 'owner pointer cut', bytes: msg([1, 1, 0, 0], [...Q, 0xc0]), code: DnsErrorCode.TRUNCATED },
  { name: 'OPT in answer section', bytes: msg([1, 1, 0, 0], [...Q, 0, ...rr(41, 0)]), code: DnsErrorCode.BAD_OPT },
  { name: 'two OPTs', bytes: msg([1, 0, 0, 2], [...Q, 0, ...rr(41, 0), 0, ...rr(41, 0)]), code: DnsErrorCode.BAD_OPT },
  { name: 'OPT with non-root owner', bytes: msg([1, 0, 0, 1], [...Q, 0xc0, 12, ...rr(41, 0)]), code: DnsErrorCode.BAD_OPT },
  { name: 'OPT option overruns rdata', bytes: msg([1, 0, 0, 1], [...Q, 0, ...rr(41, 6), 0, 10, 0, 8, 1, 2]), code: DnsErrorCode.BAD_OPT },
  { name: 'OPT option header cut', bytes: msg([1, 0, 0, 1], [...Q, 0, ...rr(41, 3), 0, 10, 0]), code: DnsErrorCode.BAD_OPT },
  { name: 'OPT rdlength past end', bytes: msg([1, 0, 0, 1], [...Q, 0, ...rr(41, 9), 0, 10, 0]), code: DnsErrorCode.TRUNCATED },
  { name: 'CNAME rdata longer than name', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(5, 3), 0xc0, 12, 0]), code: DnsErrorCode.BAD_RDATA },
  { name: 'CNAME name past rdata', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(5, 2), 1, 0x62, 0]), code: DnsErrorCode.BAD_RDATA },
  { name: 'CNAME empty rdata', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(5, 0)]), code: DnsErrorCode.BAD_RDATA },
  { name: 'MX rdata too short', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(15, 2), 0, 10]), code: DnsErrorCode.BAD_RDATA },
  { name: 'SOA without numbers', bytes: msg([1, 0, 1, 0], [...Q, 0xc0, 12, ...rr(6, 4), 0xc0, 12, 0xc0, 12]), code: DnsErrorCode.BAD_RDATA },
  { name: 'CNAME forward pointer', bytes: msg([1, 1, 0, 0], [...Q, 0xc0, 12, ...rr(5, 2), 0xc0, 40]), code: DnsErrorCode.BAD_POINTER },
];

function pointerChain(hops: number): Uint8Array {
  // RR1: owner -> question, type NULL(10), rdata = a chain of bare pointers,
  // each to the previous one, the first to the question. RR2's owner points
  // at the last link.
  const base = 12 + Q.length;
  const chainStart = base + 2 + 10;
  const links: number[] = [];
  for (let i = 0; i < hops - 1; i++) {
    const target = i === 0 ? 12 : chainStart + 2 * (i - 1);
    links.push(0xc0 | (target >> 8), target & 0xff);
  }
  const last = chainStart + 2 * (hops - 2);
  return msg([1, 2, 0, 0], [...Q, 0xc0, 12, ...rr(10, links.length), ...links, 0xc0 | (last >> 8), last & 0xff, ...rr(1, 0)]);
}

describe('hostile corpus', () => {
  const v = new MessageView();
  for (const c of corpus) {
    it(`${c.name} -> ${c.code === 0 ? 'ok' : errorCodeName(c.code)}`, () => {
      expect(errorCodeName(v.parse(c.bytes))).toBe(errorCodeName(c.code));
      if (c.code !== 0) {
        let thrown: unknown;
        try {
          v.parseOrThrow(c.bytes);
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(DnsError);
        expect((thrown as DnsError).id).toBe(c.code);
      }
    });
  }

  it('pointer chain of 32 hops parses, 33 is refused', () => {
    expect(v.parse(pointerChain(32))).toBe(0);
    const c = v.records(0);
    expect(c.next() && c.next()).toBe(true);
    expect(v.nameText(c.pos)).toBe('a');
    expect(errorCodeName(v.parse(pointerChain(33)))).toBe('ERR_DNS_POINTER_HOPS');
    expect(errorCodeName(v.parse(pointerChain(300)))).toBe('ERR_DNS_POINTER_HOPS');
  });

  it('response as a query is dropped, not answered', () => {
    const b = Buffer.from(query('example.com'));
    b[2]! |= 0x80;
    const out = new Uint8Array(512);
    expect(writeFormErr(b, 0, b.length, out, 0)).toBe(0);
    b[2]! &= 0x7f;
    b[11] = 7;
    expect(writeFormErr(b, 0, b.length, out, 0)).toBe(12);
    expect(out[3]! & 0xf).toBe(1);
    expect(out[0]).toBe(0x12);
  });
});

const CODES = new Set<number>(Object.values(DnsErrorCode));

/** Everything a worker would do with bytes from the wire must end in a code or a DnsError. */
let accepted = 0;
function exercise(v: MessageView, bytes: Uint8Array, out: Uint8Array): void {
  const fused = new Uint8Array(300);
  expect(v.parse(bytes, 0, bytes.length, fused)).toBe(v.parse(bytes));
  const code = v.error;
  expect(CODES.has(code)).toBe(true);
  if (code === 0) {
    const key = new Uint8Array(300);
    expect(v.writeKey(key)).toBe(v.qnameLen + 5);
    expect(Buffer.from(key.subarray(0, v.qnameLen + 5))).toEqual(Buffer.from(fused.subarray(0, v.qnameLen + 5)));
    v.qnameText();
  }
  try {
    const ans = answerFromResponse(bytes, 1e12);
    // An accepted answer must give valid replies to a query for its key.
    const q = msg([1, 0, 0, 0], [...ans.key.subarray(0, ans.qnameLen + 4)]);
    const qv = new MessageView();
    expect(qv.parse(q)).toBe(0);
    const n = writeReply(qv, ans, 1e12, out, 0, { udpSize: 1232 });
    expect(new MessageView().parse(out, 0, n)).toBe(0);
    accepted++;
  } catch (e) {
    if (!(e instanceof DnsError)) throw e;
  }
}

describe('garbage fuzz', () => {
  it('random bytes give only typed errors (time-bounded)', () => {
    const v = new MessageView();
    const out = new Uint8Array(65535);
    const stop = Date.now() + 1500;
    let n = 0;
    while (Date.now() < stop) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (b) => exercise(v, b, out)),
        { numRuns: 500 },
      );
      n += 500;
    }
    expect(n).toBeGreaterThan(0);
  });

  it('random bytes behind a plausible header give only typed errors', () => {
    const v = new MessageView();
    const out = new Uint8Array(65535);
    fc.assert(
      fc.property(fc.nat(3), fc.nat(3), fc.nat(3), fc.uint8Array({ maxLength: 300 }), fc.boolean(), (an, ns, ar, body, qr) =>
        exercise(v, msg([1, an, ns, ar], [...Q, ...body], qr ? 0x8180 : 0x0100), out),
      ),
      { numRuns: 3000 },
    );
  });

  it('mutated valid messages give only typed errors (time-bounded)', () => {
    const v = new MessageView();
    const out = new Uint8Array(65535);
    const mutation = fc.tuple(
      fc.oneof(arbPacket(), arbCacheableResponse()),
      fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('set', 'flip', 'cut', 'count')), { minLength: 1, maxLength: 4 }),
    );
    const stop = Date.now() + 2500;
    while (Date.now() < stop) {
      fc.assert(
        fc.property(mutation, ([p, muts]) => {
          let b: Uint8Array = encodeCompressed(p);
          for (const [at, val, kind] of muts) {
            const i = at % Math.max(1, b.length);
            if (kind === 'set') b[i] = val;
            else if (kind === 'flip') b[i] = b[i]! ^ (1 << (val & 7));
            else if (kind === 'cut') b = b.subarray(0, i);
            else if (b.length >= 12) b[4 + 2 * (val % 4) + 1] = val & 7;
          }
          exercise(v, b, out);
        }),
        { numRuns: 300 },
      );
    }
    // the reply path above was really exercised
    expect(accepted).toBeGreaterThan(100);
  });
});
