import { Buffer } from 'node:buffer';
import type { Answer, Packet } from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DnsErrorCode,
  MessageView,
  answerFromResponse,
  writeRcodeReply,
  writeReply,
  type CachedAnswer,
} from '../../src/dns/index.js';
import { scrubResponse } from '../../src/dns/scrub.js';
import { a, arbCacheableResponse, arbCaseOf, decode, encode, encodeCompressed, normalize, query, response, type ResponseOpts } from '../helpers/dns-gen.js';

const T0 = 5_000_000_000_000;

interface ClientQuery {
  name: string;
  id: number;
  rd: boolean;
  cd: boolean;
  ad: boolean;
  edns: false | { udp: number; do: boolean };
}

function arbClient(p: Packet, udp: fc.Arbitrary<number> = fc.constant(65535)): fc.Arbitrary<ClientQuery> {
  return fc.record({
    name: arbCaseOf(p.questions![0]!.name),
    id: fc.nat(0xffff),
    rd: fc.boolean(),
    cd: fc.boolean(),
    ad: fc.boolean(),
    edns: fc.option(fc.record({ udp, do: fc.boolean() }), { nil: false as const }),
  });
}

function clientWire(p: Packet, c: ClientQuery): Buffer {
  return query(c.name, p.questions![0]!.type, c);
}

/** The response as the cache keeps it: scrubbed and rebuilt (src/dns/scrub.ts). */
function scrubbed(up: Uint8Array): ReturnType<typeof decode> {
  return decode(scrubResponse(up));
}

function minTtl(u: ReturnType<typeof decode>): number {
  const all = [...u.answers, ...u.authorities, ...u.additionals].filter((x) => x.type !== 'OPT');
  return Math.min(...all.map((x) => (x as { ttl: number }).ttl));
}

function checkHeader(reply: Uint8Array, qwire: Uint8Array, c: ClientQuery, upstreamAd: boolean, ours = 1232): void {
  const d = decode(reply);
  expect(d.id).toBe(c.id);
  expect(d.flag_qr).toBe(true);
  expect(d.flag_ra).toBe(true);
  expect(d.flag_aa).toBe(false);
  expect(d.flag_rd).toBe(c.rd);
  expect(d.flag_cd).toBe(c.cd);
  expect(d.opcode).toBe('QUERY');
  expect(d.flag_ad).toBe(upstreamAd && (c.ad || (c.edns !== false && c.edns.do)));
  // question bytes exactly as the client sent them (0x20 case kept)
  const qlen = qwire.length - 12 - (c.edns === false ? 0 : 11);
  expect(Buffer.from(reply.subarray(12, 12 + qlen))).toEqual(Buffer.from(qwire.subarray(12, 12 + qlen)));
  const opt = d.additionals.filter((x) => x.type === 'OPT');
  if (c.edns === false) {
    expect(opt).toHaveLength(0);
  } else {
    expect(opt).toHaveLength(1);
    const o = opt[0] as unknown as { udpPayloadSize: number; flag_do: boolean; ednsVersion: number };
    expect(o.udpPayloadSize).toBe(ours);
    expect(o.flag_do).toBe(c.edns.do);
    expect(o.ednsVersion).toBe(0);
    expect(d.additionals[d.additionals.length - 1]!.type).toBe('OPT');
  }
}

describe('writeReply against dns-packet', () => {
  it('replies decode to what was cached, TTLs decremented', () => {
    const out = new Uint8Array(70_000);
    const v = new MessageView();
    fc.assert(
      fc.property(
        arbCacheableResponse().chain((p) => fc.tuple(fc.constant(p), arbClient(p), fc.boolean(), fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(4000))),
        ([p, c, compress, frac, off]) => {
          const up = compress ? encodeCompressed(p) : encode(p);
          const ans = answerFromResponse(up, T0);
          const u = scrubbed(up);
          const life = Math.min(minTtl(u), 86_400);
          expect(ans.expiresNs - ans.originNs).toBe(life * 1e9);
          const dtNs = Math.floor(frac * (life * 1e9 - 1));
          const qwire = clientWire(p, c);
          v.parseOrThrow(qwire);
          const n = writeReply(v, ans, T0 + dtNs, out, off, { udpSize: 1232, tcp: true });
          const reply = out.subarray(off, off + n);
          checkHeader(reply, qwire, c, (p.flags! & 0x20) !== 0);
          const d = decode(reply);
          expect(d.flag_tc).toBe(false);
          expect(normalize(d.answers)).toEqual(normalize(u.answers));
          expect(normalize(d.authorities)).toEqual(normalize(u.authorities));
          expect(normalize(d.additionals)).toEqual(normalize(u.additionals));
          const elapsed = Math.floor(dtNs / 1e9);
          const ttls = [...d.answers, ...d.authorities, ...d.additionals].filter((x) => x.type !== 'OPT').map((x) => (x as { ttl: number }).ttl);
          const want = [...u.answers, ...u.authorities, ...u.additionals]
            .filter((x) => x.type !== 'OPT')
            .map((x) => Math.min((x as { ttl: number }).ttl, life) - elapsed);
          expect(ttls).toEqual(want);
          for (const t of ttls) expect(t * 1e9).toBeLessThanOrEqual(ans.expiresNs - (T0 + dtNs) + 1e9);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('writes in place over the query with the same result', () => {
    const v = new MessageView();
    fc.assert(
      fc.property(
        arbCacheableResponse().chain((p) => fc.tuple(fc.constant(p), arbClient(p), fc.nat(2048))),
        ([p, c, off]) => {
          const ans = answerFromResponse(encodeCompressed(p), T0);
          const qwire = clientWire(p, c);
          const separate = new Uint8Array(70_000);
          v.parseOrThrow(qwire);
          const n1 = writeReply(v, ans, T0, separate, 0, { udpSize: 1232, tcp: true });
          const frame = new Uint8Array(off + 70_000).fill(0xaa);
          frame.set(qwire, off);
          v.parseOrThrow(frame, off, qwire.length);
          const n2 = writeReply(v, ans, T0, frame, off, { udpSize: 1232, tcp: true });
          expect(n2).toBe(n1);
          expect(Buffer.from(frame.subarray(off, off + n2))).toEqual(Buffer.from(separate.subarray(0, n1)));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('truncates to whole RRsets within the client limit, TC only when answer or authority lost', () => {
    const out = new Uint8Array(70_000);
    let cut = 0;
    let tcSet = 0;
    let whole = 0;
    const v = new MessageView();
    fc.assert(
      fc.property(
        // Answers all at the question name, so the scrubber keeps them and replies get large.
        arbCacheableResponse()
          .map((p) => {
            const at = p.answers!.map((x) => ({ ...x, name: p.questions![0]!.name }));
            return { ...p, answers: [...at, ...at, ...at, ...at] };
          })
          .chain((p) => fc.tuple(fc.constant(p), arbClient(p, fc.integer({ min: 0, max: 1500 })), fc.integer({ min: 512, max: 4096 }))),
        ([p, c, ours]) => {
          const up = encodeCompressed(p);
          const ans = answerFromResponse(up, T0);
          const qwire = clientWire(p, c);
          v.parseOrThrow(qwire);
          const limit = c.edns === false ? 512 : Math.max(512, Math.min(v.udpSize, ours));
          const n = writeReply(v, ans, T0, out, 0, { udpSize: ours });
          expect(n).toBeLessThanOrEqual(limit);
          const reply = out.subarray(0, n);
          expect(new MessageView().parse(reply)).toBe(0);
          const d = decode(reply);
          const u = scrubbed(up);
          const orig = [
            ...u.answers.map((x) => ['an', x] as const),
            ...u.authorities.map((x) => ['ns', x] as const),
            ...u.additionals.filter((x) => x.type !== 'OPT').map((x) => ['ar', x] as const),
          ];
          const got = [...d.answers, ...d.authorities, ...d.additionals.filter((x) => x.type !== 'OPT')];
          // a prefix of the original records
          expect(normalize(got)).toEqual(normalize(orig.slice(0, got.length).map(([, x]) => x)));
          const lostMain = got.length < u.answers.length + u.authorities.length;
          expect(d.flag_tc).toBe(lostMain);
          if (got.length < orig.length && got.length > 0) {
            // the first dropped record does not continue the last kept RRset
            const [s1, last] = orig[got.length - 1]!;
            const [s2, next] = orig[got.length]!;
            const same = s1 === s2 && last.name.toLowerCase() === next.name.toLowerCase() && last.type === next.type && (last as { class: string }).class === (next as { class: string }).class;
            expect(same).toBe(false);
          }
          if (got.length < orig.length) {
            cut++;
            if (d.flag_tc) tcSet++;
          } else {
            whole++;
            expect(n).toBe(12 + v.questionLen + ans.records.length + (c.edns === false ? 0 : 11));
          }
          checkHeader(reply, qwire, c, (p.flags! & 0x20) !== 0, ours);
        },
      ),
      { numRuns: 400 },
    );
    // both outcomes were really exercised (a cut of additional data alone is rare once
    // scrubbed, which keeps only glue of kept NS/MX/SRV: 'drops additional data without TC' has it)
    expect(Math.min(cut, tcSet, whole)).toBeGreaterThan(5);
  });
});

describe('writeReply cases', () => {
  const many = (name: string, n: number, base: string): Answer[] => Array.from({ length: n }, (_, i) => a(name, `${base}.${i}`, 300));

  function answer(answers: Answer[], extra: ResponseOpts = {}): CachedAnswer {
    return answerFromResponse(response('www.example.com', 'A', answers, extra), T0);
  }

  it('drops the second RRset and sets TC at 512 without EDNS', () => {
    const aaaa = Array.from({ length: 30 }, (_, i) => ({ name: 'www.example.com', type: 'AAAA', class: 'IN', ttl: 300, data: `fd00::${i + 1}` }) as Answer);
    const ans = answer([...many('www.example.com', 10, '10.0.0'), ...aaaa]);
    const v = new MessageView().parseOrThrow(query('www.example.com', 'A', { edns: false }));
    const out = new Uint8Array(2048);
    const n = writeReply(v, ans, T0, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect(d.flag_tc).toBe(true);
    expect(d.answers).toHaveLength(10);
    expect(n).toBeLessThanOrEqual(512);
    const v2 = new MessageView().parseOrThrow(query('www.example.com', 'A', { edns: { udp: 4096 } }));
    const n2 = writeReply(v2, ans, T0, out, 0, { udpSize: 4096 });
    const d2 = decode(out.subarray(0, n2));
    expect(d2.flag_tc).toBe(false);
    expect(d2.answers).toHaveLength(40);
  });

  it('an RRset larger than the limit leaves an empty TC reply with the OPT kept', () => {
    const ans = answer(many('www.example.com', 100, '10.0.0'));
    const v = new MessageView().parseOrThrow(query('www.example.com', 'A', { edns: { udp: 512, do: true } }));
    const out = new Uint8Array(2048);
    const n = writeReply(v, ans, T0, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect(d.flag_tc).toBe(true);
    expect(d.answers).toHaveLength(0);
    expect(d.additionals.map((x) => x.type)).toEqual(['OPT']);
  });

  it('drops additional data without TC', () => {
    const mx = { name: 'www.example.com', type: 'MX', class: 'IN', ttl: 300, data: { preference: 10, exchange: 'glue.example.com' } } as Answer;
    const ans = answerFromResponse(response('www.example.com', 'MX', [mx], { additionals: many('glue.example.com', 40, '10.9.9') }), T0);
    expect(ans.arcount).toBe(40);
    const v = new MessageView().parseOrThrow(query('www.example.com', 'MX', { edns: false }));
    const out = new Uint8Array(2048);
    const n = writeReply(v, ans, T0, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect(d.flag_tc).toBe(false);
    expect(d.answers).toHaveLength(1);
    expect(d.additionals).toHaveLength(0);
  });

  it('respects maxLen and refuses a buffer that cannot hold the minimum', () => {
    const ans = answer(many('www.example.com', 10, '10.0.0'));
    const v = new MessageView().parseOrThrow(query('www.example.com', 'A'));
    const out = new Uint8Array(2048);
    const n = writeReply(v, ans, T0, out, 0, { udpSize: 1232, maxLen: 100 });
    expect(n).toBeLessThanOrEqual(100);
    expect(decode(out.subarray(0, n)).flag_tc).toBe(true);
    expect(() => writeReply(v, ans, T0, out, 0, { udpSize: 1232, maxLen: 20 })).toThrow(expect.objectContaining({ id: DnsErrorCode.BUFFER_TOO_SMALL }));
    expect(() => writeReply(v, ans, T0, new Uint8Array(30), 0, { udpSize: 1232 })).toThrow(expect.objectContaining({ id: DnsErrorCode.BUFFER_TOO_SMALL }));
  });

  it('TTLs count down from the upstream answer and use the stale TTL after expiry', () => {
    const ans = answer([a('www.example.com', '1.2.3.4', 100), a('www.example.com', '1.2.3.5', 300)]);
    const v = new MessageView().parseOrThrow(query('www.example.com'));
    const out = new Uint8Array(512);
    const ttlsAt = (t: number, stale?: number): number[] => {
      const n = writeReply(v, ans, t, out, 0, { udpSize: 1232, staleTtl: stale });
      return decode(out.subarray(0, n)).answers.map((x) => (x as { ttl: number }).ttl);
    };
    expect(ttlsAt(T0)).toEqual([100, 100]);
    expect(ttlsAt(T0 + 10.9e9)).toEqual([90, 90]);
    expect(ttlsAt(T0 + 99.999e9)).toEqual([1, 1]);
    expect(ttlsAt(T0 + 100e9)).toEqual([30, 30]);
    expect(ttlsAt(T0 + 500e9, 7)).toEqual([7, 7]);
    expect(ttlsAt(T0 - 5e9)).toEqual([100, 100]);
  });

  it('AD only when the upstream set it and the client asked with AD or DO', () => {
    const ans = answer([a('www.example.com', '1.2.3.4')], { ad: true });
    const out = new Uint8Array(512);
    const adOf = (q: Buffer): boolean => {
      const n = writeReply(new MessageView().parseOrThrow(q), ans, T0, out, 0, { udpSize: 1232 });
      return decode(out.subarray(0, n)).flag_ad;
    };
    expect(adOf(query('www.example.com'))).toBe(false);
    expect(adOf(query('www.example.com', 'A', { ad: true }))).toBe(true);
    expect(adOf(query('www.example.com', 'A', { edns: { do: true } }))).toBe(true);
  });

  it('negative answers carry rcode and SOA', () => {
    const soa = { name: 'example.com', type: 'SOA', class: 'IN', ttl: 900, data: { mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 } } as Answer;
    const ans = answerFromResponse(response('nope.example.com', 'A', [], { rcode: 3, authorities: [soa] }), T0);
    const out = new Uint8Array(512);
    const n = writeReply(new MessageView().parseOrThrow(query('NoPe.example.com')), ans, T0 + 1e9, out, 0, { udpSize: 1232 });
    const d = decode(out.subarray(0, n));
    expect(d.rcode).toBe('NXDOMAIN');
    expect(d.authorities).toHaveLength(1);
    expect((d.authorities[0] as { ttl: number }).ttl).toBe(59);
  });

  it('rcode-only replies echo the question and carry extended rcodes in the OPT', () => {
    const out = new Uint8Array(512);
    const q = new MessageView().parseOrThrow(query('Www.example.com', 'A', { id: 77 }));
    let n = writeRcodeReply(q, 5, out, 0, { udpSize: 1232 });
    let d = decode(out.subarray(0, n));
    expect(d.rcode).toBe('REFUSED');
    expect(d.questions[0]!.name).toBe('Www.example.com');
    expect(d.id).toBe(77);
    n = writeRcodeReply(q, 16, out, 0, { udpSize: 1232 });
    d = decode(out.subarray(0, n));
    const o = d.additionals[0] as unknown as { extendedRcode: number };
    expect((o.extendedRcode << 4) | (out[3]! & 0xf)).toBe(16);
    const plain = new MessageView().parseOrThrow(query('a.b', 'A', { edns: false }));
    expect(() => writeRcodeReply(plain, 16, out, 0, { udpSize: 1232 })).toThrow(expect.objectContaining({ id: DnsErrorCode.BAD_ARGUMENT }));
  });
});
