/**
 * Hostile input: a corpus of classic attacks on DNS parsers, each with the
 * one error code it must produce, the regressions the random campaign found, then
 * fixed-seed garbage and mutation fuzzing where the only acceptable failure is a
 * DnsError / DnsErrorCode and every accepted answer gives replies that parse.
 */
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DnsError, DnsErrorCode, MessageView, answerFromResponse, errorCodeName, writeFormErr, writeReply } from '../../src/dns/index.js';
import { decode, query } from '../helpers/dns-gen.js';
import { Q, REGRESSIONS, arbGarbage, arbHeadered, arbMutated, arbValid, exercise, msg } from '../helpers/hostile.js';
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

/**
 * Fixed seeds: `npm test` runs the same inputs every time, so it fails only on a
 * change of code. The open-ended random campaign is `npm run fuzz` (scripts/fuzz.ts);
 * whatever it finds goes into REGRESSIONS (test/helpers/hostile.ts).
 */
const SEEDS = { garbage: 0x1ee7, headered: 0x5eed, mutated: 0x13, valid: 0xd15 } as const;

describe('regressions found by the random campaign', () => {
  for (const r of REGRESSIONS) {
    it(r.name, () => {
      const bytes = Uint8Array.from(Buffer.from(r.hex, 'hex'));
      expect(exercise(bytes)).toBe(true); // accepted, and every reply built from it parses
    });
  }
});

describe('names that point at bytes a reply rewrites', () => {
  it('an MX target and its glue pointing at the MX record\'s own TTL keep their name', () => {
    // question a. MX (12..18); answer at 19: a. MX, TTL bytes at 25 = 01 62 00 00 (they read
    // as the name "b."), RDATA: preference 10, exchange -> 25; additional: "b." A, owner -> 25.
    // A reply writes other TTLs there: a copied record would then name something else.
    const body = [...[1, 0x61, 0, 0, 15, 0, 1], 0xc0, 12, 0, 15, 0, 1, 1, 0x62, 0, 0, 0, 4, 0, 10, 0xc0, 25, 0xc0, 25, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
    const m = msg([1, 1, 0, 1], body, 0x8180);
    expect(new MessageView().parse(m)).toBe(0);
    expect(exercise(m)).toBe(true);
    const ans = answerFromResponse(m, 1e12);
    const q = new MessageView().parseOrThrow(query('a', 'MX'));
    const out = new Uint8Array(512);
    const n = writeReply(q, ans, 1e12 + 3e9, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect((d.answers[0] as { data: { exchange: string } }).data.exchange).toBe('b');
    expect(d.additionals.filter((x) => x.type === 'A').map((x) => x.name)).toEqual(['b']);
  });
});

describe('garbage fuzz (fixed seeds)', () => {
  const out = new Uint8Array(65535);
  it('random bytes give only typed errors', () => {
    fc.assert(fc.property(arbGarbage, (b) => void exercise(b, out)), { seed: SEEDS.garbage, numRuns: 20_000 });
  });

  it('random bytes behind a plausible header give only typed errors', () => {
    fc.assert(fc.property(arbHeadered, (b) => void exercise(b, out)), { seed: SEEDS.headered, numRuns: 3000 });
  });

  it('mutated valid messages give only typed errors, and accepted ones well-formed replies', () => {
    let accepted = 0;
    fc.assert(
      fc.property(arbMutated, (b) => {
        if (exercise(b, out)) accepted++;
      }),
      { seed: SEEDS.mutated, numRuns: 2500 },
    );
    // the reply path above was really exercised
    expect(accepted).toBeGreaterThan(150);
  });

  it('valid responses scrub, cache and reply well-formed', () => {
    let accepted = 0;
    fc.assert(
      fc.property(arbValid, (b) => {
        if (exercise(b, out)) accepted++;
      }),
      { seed: SEEDS.valid, numRuns: 1000 },
    );
    expect(accepted).toBeGreaterThan(300);
  });
});
