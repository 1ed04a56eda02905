/**
 * The scrubber (src/dns/scrub.ts) against a model of its rules written over
 * dns-packet's decoded form: on generated responses, nothing outside the rules
 * survives and nothing inside them is lost, for plain and compressed encodings;
 * minimal responses; the drop counts; and the cases of issue 13 by hand.
 */
import { Buffer } from 'node:buffer';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MessageView, answerFromResponse, writeReply } from '../../src/dns/index.js';
import { scrubResponse, isAtOrAbove } from '../../src/dns/scrub.js';
import { arbCaseOf, decode, encodeCompressed, normalize, query } from '../helpers/dns-gen.js';

const lc = (n: string): string => (n === '' ? '.' : n.toLowerCase());
/** `a` is `b` or an ancestor of it, on presentation names. */
function above(a: string, b: string): boolean {
  a = lc(a);
  b = lc(b);
  return a === '.' || a === b || b.endsWith('.' + a);
}

const NAMES = ['example.com', 'www.example.com', 'a.b.example.com', 'b.example.com', 'cdn.net', 'x.cdn.net', 'ns1.example.com', 'mail.example.com', 'bank.example', 'www.bank.example', 'ns.evil.example', 'com', 'net'];
const arbN = fc.constantFrom(...NAMES).chain((n) => arbCaseOf(n));
const ttl = fc.integer({ min: 1, max: 3600 });

/** Names that NS, MX, SRV and CNAME point at, and that additional records are owned by. */
const TARGETS = ['ns1.example.com', 'mail.example.com', 'x.cdn.net', 'www.example.com', 'ns.evil.example'];
const arbTarget = fc.oneof(arbN, fc.constantFrom(...TARGETS).chain((n) => arbCaseOf(n)));

function arbRec(types: string[], owner: fc.Arbitrary<string> = arbN): fc.Arbitrary<Answer> {
  return fc.tuple(fc.constantFrom(...types), owner, arbTarget, ttl, fc.nat(255)).map(([type, name, target, t, n]) => {
    const base = { name, ttl: t, class: 'IN' as const };
    switch (type) {
      case 'A':
        return { ...base, type: 'A', data: `198.18.${n}.1` } as Answer;
      case 'AAAA':
        return { ...base, type: 'AAAA', data: `fd00:0:0:0:0:0:0:${n.toString(16)}` } as Answer;
      case 'TXT':
        return { ...base, type: 'TXT', data: [`t${n}`] } as Answer;
      case 'MX':
        return { ...base, type: 'MX', data: { preference: n, exchange: target } } as Answer;
      case 'SRV':
        return { ...base, type: 'SRV', data: { priority: 1, weight: 2, port: n, target } } as Answer;
      case 'SOA':
        return { ...base, type: 'SOA', data: { mname: target, rname: 'h.' + target, serial: n, refresh: 1, retry: 1, expire: 1, minimum: 60 } } as Answer;
      default: // CNAME, NS
        return { ...base, type, data: target } as Answer;
    }
  });
}

const PLAIN = ['A', 'AAAA', 'TXT', 'MX', 'SRV', 'SOA', 'CNAME', 'NS'];

/** Responses whose names come from a small set, so chains, ancestors and glue happen often. */
const arbResponse: fc.Arbitrary<Packet> = arbN
  .chain((qname) =>
    fc.record({
      qname: fc.constant(qname),
      qtype: fc.constantFrom('A', 'AAAA', 'MX', 'SRV', 'NS', 'TXT', 'CNAME'),
      rcode: fc.constantFrom(0, 0, 0, 3),
      an: fc.array(arbRec(PLAIN, fc.oneof(arbCaseOf(qname), arbTarget)), { maxLength: 8 }),
      ns: fc.array(arbRec(PLAIN), { maxLength: 5 }),
      ar: fc.array(arbRec(['A', 'AAAA', 'A', 'AAAA', 'TXT', 'NS'], arbTarget), { maxLength: 6 }),
    }),
  )
  .map((r) => ({
    type: 'response' as const,
    id: 1,
    flags: 0x8180 | r.rcode,
    questions: [{ name: r.qname, type: r.qtype as 'A', class: 'IN' as const }],
    answers: r.an,
    authorities: r.ns,
    additionals: r.ar,
  }));

/** The rules, on decoded records. Returns the kept records per section. */
function model(p: Packet, minimal = false): [Answer[], Answer[], Answer[]] {
  const q = p.questions![0]!;
  const qt = q.type;
  const an = p.answers ?? [];
  const chain = [lc(q.name)];
  if (qt !== 'CNAME') {
    for (let i = 0; i < 16; i++) {
      const last = chain.at(-1)!;
      const c = an.find((x) => x.type === 'CNAME' && lc(x.name) === last) as { data: string } | undefined;
      if (c === undefined || chain.includes(lc(c.data))) break;
      chain.push(lc(c.data));
    }
  }
  const last = chain.at(-1)!;
  const keptAn = an.filter((x) => chain.includes(lc(x.name)));
  const positive = ((p.flags ?? 0) & 0xf) === 0 && keptAn.some((x) => x.type === qt);
  const keptNs = (p.authorities ?? []).filter((x) => (x.type === 'SOA' || x.type === 'NS') && above(x.name, last));
  const targets = new Set<string>();
  for (const x of [...keptAn, ...keptNs]) {
    if (x.type === 'NS') targets.add(lc(x.data as string));
    if (x.type === 'MX') targets.add(lc((x.data as { exchange: string }).exchange));
    if (x.type === 'SRV') targets.add(lc((x.data as { target: string }).target));
  }
  const keptAr = (p.additionals ?? []).filter((x) => (x.type === 'A' || x.type === 'AAAA') && targets.has(lc(x.name)));
  if (!minimal) return [keptAn, keptNs, keptAr];
  return [keptAn, keptNs.filter((x) => x.type === 'SOA' && !positive), []];
}

function sections(b: Uint8Array): [Answer[], Answer[], Answer[]] {
  const d = decode(b);
  return [d.answers, d.authorities, d.additionals.filter((x) => x.type !== 'OPT')];
}

describe('scrubResponse against a model of the rules', () => {
  it('keeps exactly what the rules allow, plain and compressed, and counts the rest', () => {
    let dropped = 0;
    const kept = [0, 0, 0];
    fc.assert(
      fc.property(arbResponse, fc.boolean(), fc.boolean(), (p, compress, minimal) => {
        const up = compress ? encodeCompressed(p) : dnsPacket.encode(p);
        const counts = [0, 0, 0];
        const s = scrubResponse(up, { minimal, dropped: counts });
        expect(new MessageView().parse(s)).toBe(0);
        const got = sections(s);
        const m = model(p, minimal);
        const want = sections(dnsPacket.encode({ ...p, answers: m[0], authorities: m[1], additionals: m[2] }));
        for (let i = 0; i < 3; i++) expect(normalize(got[i], true)).toEqual(normalize(want[i], true));
        const all = model(p, false);
        const orig = [p.answers!.length, p.authorities!.length, p.additionals!.length];
        for (let i = 0; i < 3; i++) expect(counts[i]).toBe(orig[i]! - all[i]!.length);
        // the question is kept byte for byte, and a second scrub changes nothing
        const qEnd = 12 + new MessageView().parseOrThrow(up).questionLen;
        expect(Buffer.from(s.subarray(0, 4))).toEqual(Buffer.from(up.subarray(0, 4)));
        expect(Buffer.from(s.subarray(12, qEnd))).toEqual(Buffer.from(up.subarray(12, qEnd)));
        expect(Buffer.from(scrubResponse(s, { minimal }))).toEqual(Buffer.from(s));
        dropped += counts[0]! + counts[1]! + counts[2]!;
        for (let i = 0; i < 3; i++) kept[i]! += all[i]!.length;
      }),
      { seed: 0x5c2b, numRuns: 1500 },
    );
    // every section both keeps and drops often enough for the comparison to mean something
    expect(dropped).toBeGreaterThan(1000);
    expect(Math.min(...kept)).toBeGreaterThan(50);
  });

  it('the rebuilt message is never longer than the kept records uncompressed', () => {
    fc.assert(
      fc.property(arbResponse, (p) => {
        const up = encodeCompressed(p);
        const m = model(p);
        const only = dnsPacket.encode({ ...p, answers: m[0], authorities: m[1], additionals: m[2] });
        expect(scrubResponse(up).length).toBeLessThanOrEqual(only.length);
      }),
      { seed: 0x1e55, numRuns: 500 },
    );
  });
});

const T0 = 1e12;

function resp(qname: string, qtype: string, an: Answer[], ns: Answer[] = [], ar: Answer[] = [], rcode = 0, edns = false): Uint8Array {
  const additionals = edns ? [...ar, { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0x8000, options: [{ code: 10, data: Buffer.alloc(24, 7) }] } as unknown as Answer] : ar;
  return encodeCompressed({ type: 'response', id: 1, flags: 0x8180 | rcode, questions: [{ name: qname, type: qtype as 'A', class: 'IN' }], answers: an, authorities: ns, additionals });
}
const A = (name: string, ip: string): Answer => ({ name, type: 'A', class: 'IN', ttl: 300, data: ip }) as Answer;
const NS = (name: string, target: string): Answer => ({ name, type: 'NS', class: 'IN', ttl: 300, data: target }) as Answer;
const CN = (name: string, target: string): Answer => ({ name, type: 'CNAME', class: 'IN', ttl: 300, data: target }) as Answer;
const SOA = (zone: string): Answer => ({ name: zone, type: 'SOA', class: 'IN', ttl: 300, data: { mname: 'ns.' + zone, rname: 'h.' + zone, serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 } }) as Answer;
const names = (l: Answer[]): string[] => l.map((x) => `${x.name.toLowerCase()} ${x.type}`);

describe('scrubResponse cases', () => {
  it('the forged extras of issue 13 are dropped (unrelated NS in authority, its address in additional)', () => {
    const up = resp('spoof-hot.lab.example', 'A', [A('spoof-hot.lab.example', '198.18.0.9')], [NS('bank.example', 'ns.evil.example')], [A('www.bank.example', '198.18.66.6'), A('ns.evil.example', '198.18.66.7')]);
    const counts = [0, 0, 0];
    const [an, ns, ar] = sections(scrubResponse(up, { dropped: counts }));
    expect(names(an)).toEqual(['spoof-hot.lab.example A']);
    expect(ns).toEqual([]);
    expect(ar).toEqual([]);
    expect(counts).toEqual([0, 1, 2]);
    // and the cache never holds them
    const ans = answerFromResponse(up, T0);
    expect([ans.ancount, ans.nscount, ans.arcount]).toEqual([1, 0, 0]);
  });

  it('follows a CNAME chain across zones, keeps the ancestors\' NS and their glue', () => {
    const up = resp(
      'WWW.example.com',
      'A',
      [CN('www.example.com', 'x.cdn.net'), A('x.cdn.net', '198.18.0.1'), A('y.cdn.net', '198.18.0.2'), CN('other.example.com', 'z.cdn.net')],
      [NS('cdn.net', 'ns1.cdn.net'), NS('example.com', 'ns1.example.com'), NS('evil.org', 'ns.evil.org')],
      [A('ns1.cdn.net', '198.18.1.1'), A('ns1.example.com', '198.18.1.2'), A('ns.evil.org', '198.18.66.6')],
    );
    const [an, ns, ar] = sections(scrubResponse(up));
    expect(names(an)).toEqual(['www.example.com CNAME', 'x.cdn.net A']);
    // authority: owned by the last name (x.cdn.net) or its ancestors only
    expect(names(ns)).toEqual(['cdn.net NS']);
    expect(names(ar)).toEqual(['ns1.cdn.net A']);
    // minimal: the answer section only
    const [an2, ns2, ar2] = sections(scrubResponse(up, { minimal: true }));
    expect(names(an2)).toEqual(['www.example.com CNAME', 'x.cdn.net A']);
    expect([ns2, ar2]).toEqual([[], []]);
  });

  it('a CNAME loop ends the chain', () => {
    const up = resp('a.example.com', 'A', [CN('a.example.com', 'b.example.com'), CN('b.example.com', 'a.example.com'), A('c.example.com', '198.18.0.1')]);
    expect(names(sections(scrubResponse(up))[0])).toEqual(['a.example.com CNAME', 'b.example.com CNAME']);
  });

  it('a DNAME and the CNAME synthesized from it are kept, and the chain goes on from the target', () => {
    const up = dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: 0x8180,
      questions: [{ name: 'www.old.example', type: 'A', class: 'IN' }],
      answers: [
        { name: 'old.example', type: 'DNAME', class: 'IN', ttl: 300, data: 'new.example' } as Answer,
        CN('www.old.example', 'www.new.example'),
        A('www.new.example', '198.18.0.1'),
        { name: 'other.example', type: 'DNAME', class: 'IN', ttl: 300, data: 'evil.example' } as Answer,
      ],
    });
    expect(names(sections(scrubResponse(up))[0])).toEqual(['old.example DNAME', 'www.old.example CNAME', 'www.new.example A']);
    // without the synthesized CNAME the substitution itself continues the chain
    const bare = dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: 0x8180,
      questions: [{ name: 'www.old.example', type: 'A', class: 'IN' }],
      answers: [{ name: 'old.example', type: 'DNAME', class: 'IN', ttl: 300, data: 'new.example' } as Answer, A('www.new.example', '198.18.0.1'), A('www.evil.example', '198.18.0.6')],
    });
    expect(names(sections(scrubResponse(bare))[0])).toEqual(['old.example DNAME', 'www.new.example A']);
  });

  it('DNSSEC: RRSIGs of kept sets stay; denial proofs in the signer\'s zone stay, others go', () => {
    const sig = (name: string, covered: string, signer: string): Answer =>
      ({ name, type: 'RRSIG', class: 'IN', ttl: 300, data: { typeCovered: covered, algorithm: 13, labels: 2, originalTTL: 300, expiration: 2e9, inception: 1e9, keyTag: 1, signersName: signer, signature: Buffer.alloc(64, 1) } }) as Answer;
    const nsec = (name: string, next: string): Answer => ({ name, type: 'NSEC', class: 'IN', ttl: 300, data: { nextDomain: next, rrtypes: ['A', 'RRSIG', 'NSEC'] } }) as Answer;
    const up = dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: 0x8183, // NXDOMAIN
      questions: [{ name: 'nope.signed.example', type: 'A', class: 'IN' }],
      answers: [],
      authorities: [
        SOA('signed.example'),
        sig('signed.example', 'SOA', 'signed.example'),
        nsec('mm.signed.example', 'zz.signed.example'),
        sig('mm.signed.example', 'NSEC', 'signed.example'),
        nsec('signed.example', 'aa.signed.example'),
        sig('signed.example', 'NSEC', 'signed.example'),
        nsec('a.other.example', 'z.other.example'),
        sig('a.other.example', 'NSEC', 'other.example'),
        NS('other.example', 'ns.other.example'),
      ],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0x8000 } as unknown as Answer],
    });
    const kept = ['signed.example SOA', 'signed.example RRSIG', 'mm.signed.example NSEC', 'mm.signed.example RRSIG', 'signed.example NSEC', 'signed.example RRSIG'];
    const counts = [0, 0, 0];
    expect(names(sections(scrubResponse(up, { dropped: counts }))[1])).toEqual(kept);
    expect(counts).toEqual([0, 3, 0]);
    // minimal with DO keeps the proofs (the OPT says DO), without DO only the SOA
    expect(names(sections(scrubResponse(up, { minimal: true }))[1])).toEqual(kept);
    expect(names(sections(scrubResponse(up, { minimal: true, dnssecOk: false }))[1])).toEqual(['signed.example SOA', 'signed.example RRSIG']);
  });

  it('the OPT is kept without its options (cookies are per hop), DO and the extended rcode with it', () => {
    const up = resp('www.example.com', 'A', [A('www.example.com', '198.18.0.1')], [], [], 0, true);
    const s = scrubResponse(up);
    const v = new MessageView().parseOrThrow(s);
    expect(v.hasOpt).toBe(true);
    expect(v.optRdataLen).toBe(0);
    expect(v.dnssecOk).toBe(true);
    expect(v.udpSize).toBe(1232);
  });

  it('names are compressed against the question, so a reply in the client\'s case stays small', () => {
    const up = dnsPacket.encode({ type: 'response', id: 1, flags: 0x8180, questions: [{ name: 'www.example.com', type: 'A', class: 'IN' }], answers: [A('www.example.com', '198.18.0.1'), A('WWW.EXAMPLE.COM', '198.18.0.2')] });
    const s = scrubResponse(up);
    expect(s.length).toBe(12 + 21 + 2 * (2 + 10 + 4));
    const ans = answerFromResponse(up, T0);
    const out = new Uint8Array(512);
    const n = writeReply(new MessageView().parseOrThrow(query('wWw.ExAmPle.cOm')), ans, T0, out, 0, { udpSize: 1232 });
    expect(decode(out.subarray(0, n)).answers.map((x) => x.name)).toEqual(['wWw.ExAmPle.cOm', 'wWw.ExAmPle.cOm']);
  });

  it('isAtOrAbove works on label boundaries only', () => {
    const k = (s: string): string => Buffer.from(s.split('.').filter(Boolean).map((l) => String.fromCharCode(l.length) + l).join('') + '\0', 'latin1').toString('latin1');
    expect(isAtOrAbove(k('example.com'), k('www.example.com'))).toBe(true);
    expect(isAtOrAbove(k('.'), k('www.example.com'))).toBe(true);
    expect(isAtOrAbove(k('ample.com'), k('www.example.com'))).toBe(false);
    expect(isAtOrAbove(k('www.example.com'), k('example.com'))).toBe(false);
    expect(isAtOrAbove(k('example.com'), k('example.com'))).toBe(true);
  });
});
