import { Buffer } from 'node:buffer';
import type { Answer } from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DnsError,
  DnsErrorCode,
  MessageView,
  OptionCursor,
  RecordCursor,
  makeKey,
  parseKey,
  textToWire,
  type Section,
} from '../../src/dns/index.js';
import { CLASS, TYPE, arbPacket, decode, encode, encodeCompressed, query, type Decoded } from '../helpers/dns-gen.js';

interface Seen {
  name: string;
  type: number;
  klass: number;
  ttl: number;
  rdata: unknown;
}

/** Our reading of every record of a section, in dns-packet's vocabulary. */
function readSection(v: MessageView, section: Section): Seen[] {
  const c = v.records(section, new RecordCursor());
  const out: Seen[] = [];
  while (c.next()) {
    let rdata: unknown = c.rdLength;
    switch (c.type) {
      case TYPE.CNAME:
      case TYPE.NS:
      case TYPE.PTR:
        rdata = v.nameText(c.rdataPos);
        break;
      case TYPE.MX:
        rdata = { preference: (v.buf[c.rdataPos]! << 8) | v.buf[c.rdataPos + 1]!, exchange: v.nameText(c.rdataPos + 2) };
        break;
      case TYPE.SRV:
        rdata = v.nameText(c.rdataPos + 6);
        break;
      case TYPE.SOA:
        rdata = v.nameText(c.rdataPos);
        break;
      case TYPE.OPT: {
        const opts: { code: number; data: Buffer }[] = [];
        const oc = new OptionCursor().reset(v.buf, c.rdataPos, c.rdLength);
        while (oc.next()) opts.push({ code: oc.code, data: Buffer.from(v.buf.subarray(oc.dataPos, oc.dataPos + oc.dataLen)) });
        rdata = opts;
        break;
      }
      default:
        break;
    }
    out.push({ name: v.nameText(c.pos), type: c.type, klass: c.klass, ttl: c.ttl, rdata });
  }
  return out;
}

/** dns-packet's reading of the same records. */
function oracleSection(list: Answer[], wire: Uint8Array): Seen[] {
  return list.map((x) => {
    const r = x as unknown as Record<string, unknown>;
    const type = TYPE[x.type]!;
    if (x.type === 'OPT') {
      const o = r as { udpPayloadSize: number; extendedRcode: number; ednsVersion: number; flags: number; options: { code: number; data: Buffer }[] };
      return {
        name: '.',
        type,
        klass: o.udpPayloadSize,
        ttl: ((o.extendedRcode << 24) | (o.ednsVersion << 16) | o.flags) >>> 0,
        rdata: o.options.map((z) => ({ code: z.code, data: Buffer.from(z.data) })),
      };
    }
    const d = r['data'] as Record<string, unknown> | string;
    let rdata: unknown;
    switch (x.type) {
      case 'CNAME':
      case 'NS':
      case 'PTR':
        rdata = d;
        break;
      case 'MX':
        rdata = { preference: (d as { preference: number }).preference, exchange: (d as { exchange: string }).exchange };
        break;
      case 'SRV':
        rdata = (d as { target: string }).target;
        break;
      case 'SOA':
        rdata = (d as { mname: string }).mname;
        break;
      default:
        rdata = undefined;
    }
    void wire;
    return { name: String(r['name']), type, klass: CLASS[String(r['class'])]!, ttl: Number(r['ttl']), rdata };
  });
}

function compare(v: MessageView, wire: Uint8Array, p: Decoded): void {
  expect(v.id).toBe(p.id);
  expect(v.flags & 0x7fff).toBe(p.flags);
  expect(v.qr).toBe(p.type === 'response');
  const q = p.questions[0]!;
  expect(v.qnameText()).toBe(q.name);
  expect(v.qtype).toBe(TYPE[q.type]);
  expect(v.qclass).toBe(CLASS[q.class ?? 'IN']);
  expect(v.qnameLen).toBe(q.name === '.' ? 1 : q.name.length + 2);
  const strip = (s: Seen[]): Seen[] => s.map((x) => (typeof x.rdata === 'number' ? { ...x, rdata: undefined } : x));
  expect(strip(readSection(v, 0))).toEqual(oracleSection(p.answers, wire));
  expect(strip(readSection(v, 1))).toEqual(oracleSection(p.authorities, wire));
  expect(strip(readSection(v, 2))).toEqual(oracleSection(p.additionals, wire));
  const opt = p.additionals.find((x) => x.type === 'OPT') as unknown as
    | { udpPayloadSize: number; ednsVersion: number; extendedRcode: number; flags: number; flag_do: boolean }
    | undefined;
  expect(v.hasOpt).toBe(opt !== undefined);
  if (opt !== undefined) {
    expect(v.udpSize).toBe(opt.udpPayloadSize);
    expect(v.ednsVersion).toBe(opt.ednsVersion);
    expect(v.extRcodeHigh).toBe(opt.extendedRcode);
    expect(v.ednsFlags).toBe(opt.flags);
    expect(v.dnssecOk).toBe(opt.flag_do);
  }
}

describe('MessageView against dns-packet', () => {
  it('parses random uncompressed messages to the same fields', () => {
    const v = new MessageView();
    fc.assert(
      fc.property(arbPacket(), (p) => {
        const wire = encode(p);
        expect(v.parse(wire)).toBe(0);
        compare(v, wire, decode(wire));
      }),
      { numRuns: 400 },
    );
  });

  it('parses random compressed messages to the same fields', () => {
    const v = new MessageView();
    fc.assert(
      fc.property(arbPacket(), (p) => {
        const wire = encodeCompressed(p);
        expect(v.parse(wire)).toBe(0);
        compare(v, wire, decode(wire));
        expect(v.length).toBeLessThanOrEqual(encode(p).length);
      }),
      { numRuns: 400 },
    );
  });

  it('works at an offset inside a larger buffer, as over UMEM', () => {
    const v = new MessageView();
    fc.assert(
      fc.property(arbPacket(), fc.nat(300), fc.nat(64), (p, pre, post) => {
        const wire = encodeCompressed(p);
        const umem = new Uint8Array(pre + wire.length + post).fill(0xc0);
        umem.set(wire, pre);
        expect(v.parse(umem, pre, wire.length)).toBe(0);
        compare(v, wire, decode(wire));
      }),
      { numRuns: 200 },
    );
  });
});

describe('cache key', () => {
  it('lowercases the name, appends type, class and DO', () => {
    const v = new MessageView().parseOrThrow(query('WwW.ExAmple.COM', 'AAAA', { edns: { do: true } }));
    const out = new Uint8Array(300).fill(0xee);
    const n = v.writeKey(out, 7);
    expect(Buffer.from(out.subarray(7, 7 + n))).toEqual(Buffer.from(makeKey('www.example.com', 28, 1, true)));
    expect(out[6]).toBe(0xee);
    expect(out[7 + n]).toBe(0xee);
    expect(parseKey(out.slice(7, 7 + n))).toEqual({ name: 'www.example.com', qtype: 28, qclass: 1, dnssecOk: true, checkingDisabled: false });
  });

  it('keeps CD apart: an answer fetched with CD=1 is another key than one fetched with CD=0', () => {
    const v = new MessageView();
    const out = new Uint8Array(300);
    const withCd = query('www.example.com', 'A', { edns: { do: true }, cd: true });
    const n = v.parseOrThrow(withCd).writeKey(out);
    expect(Buffer.from(out.subarray(0, n))).toEqual(Buffer.from(makeKey('www.example.com', 1, 1, true, true)));
    expect(parseKey(out.slice(0, n))).toEqual({ name: 'www.example.com', qtype: 1, qclass: 1, dnssecOk: true, checkingDisabled: true });
    const plain = out.slice(0, v.parseOrThrow(query('www.example.com', 'A', { edns: { do: true } })).writeKey(out));
    expect(Buffer.from(plain)).not.toEqual(Buffer.from(makeKey('www.example.com', 1, 1, true, true)));
    expect(Buffer.from(plain)).toEqual(Buffer.from(makeKey('www.example.com', 1, 1, true, false)));
  });

  it('DO is 0 without EDNS or with DO clear', () => {
    const v = new MessageView();
    const out = new Uint8Array(300);
    v.parseOrThrow(query('a.b', 'A', { edns: false }));
    expect(out[v.writeKey(out) - 1]).toBe(0);
    v.parseOrThrow(query('a.b', 'A', { edns: { do: false } }));
    expect(out[v.writeKey(out) - 1]).toBe(0);
  });

  it('parse(..., keyOut) writes the same key as writeKey, in one pass', () => {
    const v = new MessageView();
    const a = new Uint8Array(300);
    const b = new Uint8Array(300);
    fc.assert(
      fc.property(arbPacket(), fc.boolean(), (p, compress) => {
        const wire = compress ? encodeCompressed(p) : encode(p);
        expect(v.parse(wire, 0, wire.length, a)).toBe(0);
        expect(v.keyLen).toBe(v.qnameLen + 5);
        expect(v.writeKey(b, 0)).toBe(v.keyLen);
        expect(Buffer.from(a.subarray(0, v.keyLen))).toEqual(Buffer.from(b.subarray(0, v.keyLen)));
        const q = p.questions![0]!;
        expect(Buffer.from(a.subarray(0, v.keyLen))).toEqual(
          Buffer.from(makeKey(q.name, TYPE[q.type]!, CLASS[q.class ?? 'IN']!, v.dnssecOk, v.cd)),
        );
      }),
      { numRuns: 300 },
    );
    expect(v.parse(new Uint8Array(5), 0, 5, a)).toBe(DnsErrorCode.SHORT_HEADER);
    expect(v.parse(query('a.b'), 0, undefined, new Uint8Array(64))).toBe(DnsErrorCode.BAD_ARGUMENT);
    expect(v.keyLen).toBe(0);
  });

  it('keys of case variants are equal and do not depend on other bytes', () => {
    fc.assert(
      fc.property(arbPacket('query'), fc.nat(0xffff), (p, id) => {
        const q = p.questions![0]!;
        const upper = { ...p, id, questions: [{ ...q, name: q.name.toUpperCase() }] };
        const lower = { ...p, questions: [{ ...q, name: q.name.toLowerCase() }] };
        const a = new Uint8Array(300);
        const b = new Uint8Array(300);
        const va = new MessageView().parseOrThrow(encode(upper));
        const vb = new MessageView().parseOrThrow(encode(lower));
        const na = va.writeKey(a);
        expect(vb.writeKey(b)).toBe(na);
        expect(Buffer.from(a.subarray(0, na))).toEqual(Buffer.from(b.subarray(0, na)));
      }),
      { numRuns: 200 },
    );
  });
});

describe('names', () => {
  it('textToWire round-trips escapes', () => {
    const w = textToWire('a\\.b.c\\\\d.\\001x.');
    expect([...w]).toEqual([3, 0x61, 0x2e, 0x62, 3, 0x63, 0x5c, 0x64, 2, 1, 0x78, 0]);
    expect(parseKey(makeKey(w, 1, 1, false)).name).toBe('a\\.b.c\\\\d.\\001x');
  });

  it('textToWire rejects bad names with DnsError', () => {
    expect(() => textToWire('a..b')).toThrow(DnsError);
    expect(() => textToWire('x'.repeat(64))).toThrow(expect.objectContaining({ id: DnsErrorCode.LABEL_TOO_LONG }));
    expect(() => textToWire(Array(130).fill('a').join('.'))).toThrow(expect.objectContaining({ id: DnsErrorCode.NAME_TOO_LONG }));
    expect(textToWire(Array(127).fill('a').join('.')).length).toBe(255);
  });
});

describe('parse results', () => {
  it('exposes header fields even when a later check fails', () => {
    const wire = Buffer.from(query('example.com'));
    wire.writeUInt16BE(0xbeef, 0);
    wire.writeUInt16BE(3, 10); // arcount lies
    const v = new MessageView();
    expect(v.parse(wire)).toBe(DnsErrorCode.COUNT_MISMATCH);
    expect(v.id).toBe(0xbeef);
    expect(v.rd).toBe(true);
    expect(() => v.parseOrThrow(wire)).toThrow(expect.objectContaining({ code: 'ERR_DNS_COUNT_MISMATCH' }));
  });

  it('rejects a window that does not fit the buffer', () => {
    expect(new MessageView().parse(new Uint8Array(20), 10, 20)).toBe(DnsErrorCode.BAD_ARGUMENT);
  });
});
