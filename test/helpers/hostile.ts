/**
 * The hostile-input properties, shared by the fixed-seed tests in `npm test`
 * (test/dns/hostile.test.ts) and the open-ended random campaign of `npm run fuzz`
 * (scripts/fuzz.ts). Plain throws, no test framework: a property fails by throwing
 * anything that is not a DnsError.
 *
 * What must hold for any bytes from the wire:
 * - parse() ends in a known code, and the fused key equals writeKey's;
 * - answerFromResponse either throws a DnsError or gives an answer from which the
 *   userspace reply (writeReply, whole and truncated) and the reply the XDP program
 *   builds from the hot entry (records with TTLs written, then an OPT) both parse;
 * - scrubResponse either throws a DnsError or gives a message that parses and that
 *   a second scrub leaves byte for byte as it is.
 */
import fc from 'fast-check';
import {
  DnsError,
  DnsErrorCode,
  MessageView,
  answerFromResponse,
  writeOpt,
  writeReply,
  type CachedAnswer,
} from '../../src/dns/index.js';
import { scrubResponse } from '../../src/dns/scrub.js';
import { arbCacheableResponse, arbPacket, encodeCompressed } from './dns-gen.js';

const CODES = new Set<number>(Object.values(DnsErrorCode));

/** Header + body bytes. */
export function msg(counts: [number, number, number, number], body: number[], flags = 0x0100): Uint8Array {
  const [qd, an, ns, ar] = counts;
  return Uint8Array.from([0x12, 0x34, flags >> 8, flags & 0xff, 0, qd, 0, an, 0, ns, 0, ar, ...body]);
}
/** Question "a." type A class IN: 7 bytes at offset 12. */
export const Q = [1, 0x61, 0, 0, 1, 0, 1];

function fail(why: string, bytes: Uint8Array): never {
  throw new Error(`${why}; input ${Buffer.from(bytes).toString('hex')}`);
}

/** A query for the answer's key, in mixed case, with an OPT. */
function queryFor(ans: CachedAnswer): Uint8Array {
  const q = Uint8Array.from([0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, ...ans.key.subarray(0, ans.qnameLen + 4), 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
  for (let i = 12; i < 12 + ans.qnameLen - 1; i += 2) if (q[i]! >= 0x61 && q[i]! <= 0x7a) q[i] = q[i]! & 0xdf;
  return q;
}

/** The reply the XDP program writes from a hot entry: header, the query's question, records with TTLs, OPT. */
function xdpReply(q: Uint8Array, qv: MessageView, ans: CachedAnswer): Uint8Array {
  const base = 12 + qv.questionLen;
  const out = new Uint8Array(base + ans.records.length + 11);
  out.set(q.subarray(0, base), 0);
  out[2] = out[2]! | 0x80;
  out[6] = ans.ancount >> 8;
  out[7] = ans.ancount & 0xff;
  out[8] = ans.nscount >> 8;
  out[9] = ans.nscount & 0xff;
  out[10] = (ans.arcount + 1) >> 8;
  out[11] = (ans.arcount + 1) & 0xff;
  out.set(ans.records, base);
  // Different TTLs than the stored ones: what a name may point at must not depend on them.
  for (let i = 0; i < ans.ttlOffsets.length; i++) {
    const t = base + ans.ttlOffsets[i]!;
    out[t] = 0xc0;
    out[t + 1] = i & 0xff;
    out[t + 2] = 0;
    out[t + 3] = 1;
  }
  writeOpt(out, base + ans.records.length, 1232, 0, false);
  return out;
}

/** Everything a worker does with bytes from the wire; throws (not DnsError) on a broken rule. Returns whether an answer was accepted. */
export function exercise(bytes: Uint8Array, out: Uint8Array = new Uint8Array(65_535)): boolean {
  const v = new MessageView();
  const fused = new Uint8Array(300);
  const code = v.parse(bytes, 0, bytes.length, fused);
  if (code !== v.parse(bytes)) fail('fused parse differs', bytes);
  if (!CODES.has(code)) fail(`unknown parse code ${code}`, bytes);
  if (code === 0) {
    const key = new Uint8Array(300);
    if (v.writeKey(key) !== v.qnameLen + 5) fail('key length', bytes);
    if (Buffer.compare(Buffer.from(key.subarray(0, v.qnameLen + 5)), Buffer.from(fused.subarray(0, v.qnameLen + 5))) !== 0) fail('fused key differs', bytes);
    v.qnameText();
  }
  try {
    const s = scrubResponse(bytes);
    if (new MessageView().parse(s) !== 0) fail('scrubbed message does not parse', bytes);
    if (Buffer.compare(Buffer.from(scrubResponse(s)), Buffer.from(s)) !== 0) fail('scrub is not idempotent', bytes);
  } catch (e) {
    if (!(e instanceof DnsError)) throw e;
  }
  let ans: CachedAnswer;
  try {
    ans = answerFromResponse(bytes, 1e12);
  } catch (e) {
    if (!(e instanceof DnsError)) throw e;
    return false;
  }
  const q = queryFor(ans);
  const qv = new MessageView();
  if (qv.parse(q) !== 0) fail('query for the key does not parse', bytes);
  const check = new MessageView();
  for (const limit of [65_535, 512]) {
    const n = writeReply(qv, ans, 1e12 + 7e9, out, 0, { udpSize: limit, tcp: limit > 512 });
    const e = check.parse(out, 0, n);
    if (e !== 0) fail(`userspace reply (limit ${limit}) does not parse: ${e}`, bytes);
  }
  const x = xdpReply(q, qv, ans);
  const e = check.parse(x);
  if (e !== 0) fail(`XDP reply does not parse: ${e}`, bytes);
  return true;
}

/** Random bytes. */
export const arbGarbage = fc.uint8Array({ maxLength: 600 });

/** Random bytes behind a plausible header and question. */
export const arbHeadered = fc
  .tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.uint8Array({ maxLength: 300 }), fc.boolean())
  .map(([an, ns, ar, body, qr]) => msg([1, an, ns, ar], [...Q, ...body], qr ? 0x8180 : 0x0100));

/** Valid messages (compressed) with 1 to 4 mutations: set a byte, flip a bit, cut, change a count. */
export const arbMutated = fc
  .tuple(
    fc.oneof(arbPacket(), arbCacheableResponse()),
    fc.array(fc.tuple(fc.nat(), fc.nat(255), fc.constantFrom('set', 'flip', 'cut', 'count')), { minLength: 1, maxLength: 4 }),
  )
  .map(([p, muts]) => {
    let b: Uint8Array = encodeCompressed(p);
    for (const [at, val, kind] of muts) {
      const i = at % Math.max(1, b.length);
      if (kind === 'set') b[i] = val;
      else if (kind === 'flip') b[i] = b[i]! ^ (1 << (val & 7));
      else if (kind === 'cut') b = b.subarray(0, i);
      else if (b.length >= 12) b[4 + 2 * (val % 4) + 1] = val & 7;
    }
    return Uint8Array.from(b);
  });

/** Valid cacheable responses, unmutated: the scrubber and the writers on well-formed input. */
export const arbValid = fc.oneof(arbPacket('response'), arbCacheableResponse()).map((p) => Uint8Array.from(encodeCompressed(p)));

export const PROPERTIES = { garbage: arbGarbage, headered: arbHeadered, mutated: arbMutated, valid: arbValid } as const;
export type PropertyName = keyof typeof PROPERTIES;

/**
 * Inputs the random campaign found once: each must keep giving only typed errors or
 * well-formed replies. Hex of the bytes, with where they came from.
 */
export const REGRESSIONS: { name: string; hex: string }[] = [
  {
    // issue 13: CI run of test/dns/hostile.test.ts, fast-check seed -1522455743, path
    // "209:470:3:3:3:4:45:45". A mutated SRV response for "a."; the OPT's removal moved a
    // record whose name pointed into opaque bytes, and the reply failed with LABEL_TOO_LONG.
    name: 'mutated SRV response, pointer into opaque RDATA after the OPT',
    hex:
      '00878530000100010000000401610000210001c00c0021000100004317001300000000000003777777074578616d706c6500c01c00010004000079d30004b0e85976036e6574036e7331046d61696c0563455a6b450a31314d5a344a3279496c000001000100005b140004ef5611fc0000294e1d001d2580000900030005361991e5f52959496238394b4f4638347275767838355f4867397a45424c6b4c38674572695a63796a74394542715603694179000005000300000b6d004536716a6b335539574b4b7752394f4b6c4e50676d424d4c59566e464c5a6757476c644f464c456957524a2d7047477776707a5970364270036f726703356e5f03777777c00c',
  },
];
