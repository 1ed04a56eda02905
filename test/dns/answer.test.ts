import { Buffer } from 'node:buffer';
import type { Answer } from 'dns-packet';
import { describe, expect, it } from 'vitest';
import {
  DnsError,
  DnsErrorCode,
  MessageView,
  answerFromResponse,
  makeKey,
  remainingSeconds,
  writeReply,
} from '../../src/dns/index.js';
import { a, decode, encode, encodeCompressed, normalize, query, response, soa } from '../helpers/dns-gen.js';

const T0 = 7_000_000_000_000;

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof DnsError) return e.code;
    throw e;
  }
  return undefined;
}

describe('answerFromResponse: lifetime', () => {
  it('lives for the minimum TTL of all records, TTLs clamped to it', () => {
    const ans = answerFromResponse(
      response('www.example.com', 'A', [a('www.example.com', '1.1.1.1', 300), a('www.example.com', '1.1.1.2', 120)], {
        authorities: [soa('example.com', 600, 600)],
      }),
      T0,
    );
    expect(ans.expiresNs - ans.originNs).toBe(120e9);
    expect([...ans.ttls]).toEqual([120, 120, 120]);
    expect(ans.ancount).toBe(2);
    expect(ans.nscount).toBe(1);
    expect(ans.negative).toBe(false);
    expect(remainingSeconds(ans, T0 + 20.5e9)).toBe(100);
  });

  it('applies the floor and the ceiling', () => {
    const r = response('www.example.com', 'A', [a('www.example.com', '1.1.1.1', 5)]);
    expect(answerFromResponse(r, T0, { minTtl: 30 }).ttls[0]).toBe(30);
    expect(answerFromResponse(r, T0, { minTtl: 30 }).expiresNs).toBe(T0 + 30e9);
    const long = response('www.example.com', 'A', [a('www.example.com', '1.1.1.1', 999_999)]);
    expect(answerFromResponse(long, T0).ttls[0]).toBe(86_400);
    expect(answerFromResponse(long, T0, { maxTtl: 60 }).ttls[0]).toBe(60);
  });

  it('TTL 0 is not cacheable without a floor; TTLs with the top bit set count as 0', () => {
    expect(code(() => answerFromResponse(response('a.b', 'A', [a('a.b', '1.1.1.1', 0)]), T0))).toBe('ERR_DNS_NOT_CACHEABLE');
    const big = Buffer.from(response('a.b', 'A', [a('a.b', '1.1.1.1', 10)], { edns: false }));
    big.writeUInt32BE(0x80000001, big.length - 10);
    expect(code(() => answerFromResponse(big, T0))).toBe('ERR_DNS_NOT_CACHEABLE');
    expect(answerFromResponse(big, T0, { minTtl: 5 }).ttls[0]).toBe(5);
  });
});

describe('answerFromResponse: signatures', () => {
  const signed = (expiresInSec: number): Buffer => {
    const now = Math.floor(Date.now() / 1000);
    const sig = {
      type: 'RRSIG',
      name: 'www.example.com',
      ttl: 300,
      data: { typeCovered: 'A', algorithm: 13, labels: 3, originalTTL: 300, expiration: (now + expiresInSec) >>> 0, inception: (now - 3600) >>> 0, keyTag: 4242, signersName: 'example.com', signature: Buffer.alloc(64, 1) },
    } as unknown as Answer;
    return response('www.example.com', 'A', [a('www.example.com', '1.1.1.1', 300), sig], { do: true });
  };

  it('keeps nothing past the earliest RRSIG expiration, and an expired signature not at all', () => {
    const soon = answerFromResponse(signed(100), T0, undefined, true);
    expect((soon.expiresNs - soon.originNs) / 1e9).toBeGreaterThanOrEqual(98);
    expect((soon.expiresNs - soon.originNs) / 1e9).toBeLessThanOrEqual(100);
    expect(Math.max(...soon.ttls)).toBeLessThanOrEqual(100);
    // A floor does not outlive the signature either.
    const floored = answerFromResponse(signed(100), T0, { minTtl: 3600 }, true);
    expect((floored.expiresNs - floored.originNs) / 1e9).toBeLessThanOrEqual(100);
    expect(code(() => answerFromResponse(signed(-10), T0, undefined, true))).toBe('ERR_DNS_NOT_CACHEABLE');
    const later = answerFromResponse(signed(86_400 * 30), T0, undefined, true);
    expect(later.expiresNs - later.originNs).toBe(300e9);
    // Stale serving stops at the signatures too: the time is kept with the answer.
    expect((later.signaturesExpireNs! - T0) / 1e9).toBeGreaterThanOrEqual(86_400 * 30 - 2);
    expect((later.signaturesExpireNs! - T0) / 1e9).toBeLessThanOrEqual(86_400 * 30);
    expect(answerFromResponse(response('www.example.com', 'A', [a('www.example.com', '1.1.1.1', 300)]), T0).signaturesExpireNs).toBe(Infinity);
  });
});

describe('answerFromResponse: negative caching (RFC 2308)', () => {
  it('NXDOMAIN lives min(SOA TTL, SOA MINIMUM)', () => {
    const r = response('nope.example.com', 'A', [], { rcode: 3, authorities: [soa('example.com', 3600, 300)] });
    const ans = answerFromResponse(r, T0);
    expect(ans.negative).toBe(true);
    expect(ans.rcode).toBe(3);
    expect(ans.expiresNs - T0).toBe(300e9);
    const r2 = response('nope.example.com', 'A', [], { rcode: 3, authorities: [soa('example.com', 60, 300)] });
    expect(answerFromResponse(r2, T0).expiresNs - T0).toBe(60e9);
  });

  it('NODATA is negative too, capped by negativeMaxTtl', () => {
    const r = response('www.example.com', 'AAAA', [], { authorities: [soa('example.com', 86_400, 86_400)] });
    const ans = answerFromResponse(r, T0);
    expect(ans.negative).toBe(true);
    expect(ans.rcode).toBe(0);
    expect(ans.expiresNs - T0).toBe(3600e9);
    expect(answerFromResponse(r, T0, { negativeMaxTtl: 10 }).expiresNs - T0).toBe(10e9);
  });

  it('a CNAME without the asked type is NODATA after the CNAME', () => {
    const cname = { name: 'www.example.com', type: 'CNAME', class: 'IN', ttl: 600, data: 'x.example.net' } as Answer;
    const ans = answerFromResponse(response('www.example.com', 'A', [cname], { authorities: [soa('example.net', 900, 120)] }), T0);
    expect(ans.negative).toBe(true);
    expect(ans.expiresNs - T0).toBe(120e9);
  });

  it('negative answers without SOA are not cached', () => {
    expect(code(() => answerFromResponse(response('nope.example.com', 'A', [], { rcode: 3 }), T0))).toBe('ERR_DNS_NOT_CACHEABLE');
  });

  it('SERVFAIL briefly, or not at all', () => {
    const r = response('www.example.com', 'A', [], { rcode: 2 });
    expect(answerFromResponse(r, T0).expiresNs - T0).toBe(5e9);
    expect(answerFromResponse(r, T0, { servfailTtl: 1 }).expiresNs - T0).toBe(1e9);
    expect(code(() => answerFromResponse(r, T0, { servfailTtl: 0 }))).toBe('ERR_DNS_NOT_CACHEABLE');
  });
});

describe('answerFromResponse: refusals', () => {
  const ok = (): Answer[] => [a('www.example.com', '1.1.1.1')];
  it.each([
    ['REFUSED', (): Buffer => response('www.example.com', 'A', ok(), { rcode: 5 })],
    ['FORMERR', (): Buffer => response('www.example.com', 'A', ok(), { rcode: 1 })],
    ['TC', (): Buffer => response('www.example.com', 'A', ok(), { tc: true })],
    ['AXFR', (): Buffer => response('example.com', 'AXFR', ok())],
    [
      'opcode NOTIFY',
      (): Buffer => {
        const b = response('www.example.com', 'A', ok());
        b[2] = b[2]! | (4 << 3);
        return b;
      },
    ],
    [
      'BADVERS',
      (): Buffer =>
        encode({
          type: 'response',
          id: 1,
          flags: 0,
          questions: [{ name: 'a.b', type: 'A', class: 'IN' }],
          answers: [a('a.b', '1.2.3.4')],
          additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 1 } as Answer],
        }),
    ],
  ])('%s is not cacheable', (_n, make) => {
    expect(code(() => answerFromResponse(make(), T0))).toBe('ERR_DNS_NOT_CACHEABLE');
  });

  it('a query is not a response', () => {
    expect(code(() => answerFromResponse(query('www.example.com'), T0))).toBe('ERR_DNS_BAD_DIRECTION');
  });

  it('malformed input gives the parse code', () => {
    const r = response('www.example.com', 'A', ok());
    expect(code(() => answerFromResponse(r.subarray(0, r.length - 3), T0))).toBe('ERR_DNS_TRUNCATED');
  });

  it('rejects a bad policy with BAD_ARGUMENT', () => {
    expect(code(() => answerFromResponse(response('a.b', 'A', [a('a.b', '1.1.1.1')]), T0, { minTtl: -1 }))).toBe('ERR_DNS_BAD_ARGUMENT');
  });
});

describe('answerFromResponse: representation', () => {
  it('keys on the lowercased question and the DO bit', () => {
    const r = response('WwW.Example.COM', 'A', [a('www.example.com', '1.1.1.1')], { do: true });
    const ans = answerFromResponse(r, T0);
    expect(Buffer.from(ans.key)).toEqual(Buffer.from(makeKey('www.example.com', 1, 1, true)));
    expect(ans.dnssecOk).toBe(true);
    expect(answerFromResponse(r, T0, undefined, false).key.at(-1)).toBe(0);
    expect(ans.qnameLen).toBe(17);
    expect(ans.key.buffer).toBe(ans.records.buffer);
    expect(ans.ttls.buffer).toBe(ans.records.buffer);
  });

  it('strips an OPT in the middle, keeps the glue after it, and drops what the scrubber does not allow', () => {
    // additional: glue A, OPT, then records whose names compress against the
    // glue, against each other (after the OPT), and against the question.
    const p = {
      id: 9,
      type: 'response' as const,
      flags: 0x0180,
      questions: [{ name: 'www.example.com', type: 'MX' as const, class: 'IN' as const }],
      answers: [
        { name: 'www.example.com', type: 'MX', class: 'IN', ttl: 300, data: { preference: 10, exchange: 'mx1.mail.example.com' } } as Answer,
        { name: 'www.example.com', type: 'MX', class: 'IN', ttl: 300, data: { preference: 20, exchange: 'mx2.mail.example.com' } } as Answer,
      ],
      authorities: [],
      additionals: [
        a('mx1.mail.example.com', '10.0.0.1'),
        { type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 12, data: Buffer.alloc(40) }] } as unknown as Answer,
        a('mx2.mail.example.com', '10.0.0.2'),
        { name: 'x.mx2.mail.example.com', type: 'CNAME', class: 'IN', ttl: 300, data: 'y.mx2.mail.example.com' } as Answer,
        { name: 'www.example.com', type: 'SRV', class: 'IN', ttl: 300, data: { priority: 1, weight: 2, port: 3, target: 'z.x.mx2.mail.example.com' } } as Answer,
      ],
    };
    const up = encodeCompressed(p);
    const ans = answerFromResponse(up, T0);
    // the CNAME and the SRV in additional are no glue of a kept NS/MX/SRV
    expect(ans.arcount).toBe(2);
    const v = new MessageView().parseOrThrow(query('WWW.example.COM', 'MX'));
    const out = new Uint8Array(1024);
    const n = writeReply(v, ans, T0, out, 0, { udpSize: 1232 });
    expect(new MessageView().parse(out, 0, n)).toBe(0);
    const d = decode(out.subarray(0, n));
    const u = decode(up);
    expect(normalize(d.answers)).toEqual(normalize(u.answers));
    expect(normalize(d.additionals.filter((x) => x.type !== 'OPT'))).toEqual(normalize(u.additionals.filter((x) => x.type === 'A')));
  });

  it('rebuilds a record after the OPT whose owner points into the OPT', () => {
    // question a. NS IN at 12..18; answer a. NS . at 19..31; additional: OPT at 32..42
    // (root owner byte 32), then the glue A of "." whose owner points at 32
    const body = [1, 0x61, 0, 0, 2, 0, 1, 0xc0, 12, 0, 2, 0, 1, 0, 0, 0, 60, 0, 1, 0, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0, 0xc0, 32, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
    const m = Uint8Array.from([0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 2, ...body]);
    expect(new MessageView().parse(m)).toBe(0);
    const ans = answerFromResponse(m, T0);
    expect(ans.arcount).toBe(1);
    const out = new Uint8Array(512);
    const n = writeReply(new MessageView().parseOrThrow(query('A', 'NS')), ans, T0, out, 0, { udpSize: 1232 });
    expect(new MessageView().parse(out, 0, n)).toBe(0);
    const d = decode(out.subarray(0, n));
    expect(d.additionals.map((x) => [x.name, x.type])).toEqual([['.', 'A'], ['.', 'OPT']]);
  });

  it('every failure is a DnsError with a stable code', () => {
    const e = new DnsError(DnsErrorCode.BAD_POINTER, 12);
    expect(e.code).toBe('ERR_DNS_BAD_POINTER');
    expect(e.disposition).toBe('formerr');
    expect(new DnsError(DnsErrorCode.SHORT_HEADER).disposition).toBe('drop');
  });
});
