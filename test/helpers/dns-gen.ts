/**
 * Test helpers for the DNS core: fast-check generators of dns-packet
 * messages, a compressing encoder (dns-packet itself never compresses), and
 * small builders for hand-made responses.
 */
import { Buffer } from 'node:buffer';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet, Question, RecordType } from 'dns-packet';
import fc from 'fast-check';

export const TYPE: Record<string, number> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
};
export const CLASS: Record<string, number> = { IN: 1, CS: 2, CH: 3, HS: 4, ANY: 255 };

// ---- generators --------------------------------------------------------------

const CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';

export const arbLabel: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('www', 'mail', 'Example', 'COM', 'net', 'org', 'a', 'ns1', 'cdn') },
  { weight: 2, arbitrary: fc.array(fc.constantFrom(...CHARS), { minLength: 1, maxLength: 12 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom(...CHARS), { minLength: 40, maxLength: 63 }).map((a) => a.join('')) },
);

/** Wire length of a presentation name made of plain labels. */
export function wireLen(name: string): number {
  return name === '.' ? 1 : name.length + 2;
}

export const arbName: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.array(arbLabel, { minLength: 1, maxLength: 5 }).map((l) => l.join('.')) },
  { weight: 1, arbitrary: fc.constant('.') },
).filter((n) => wireLen(n) <= 255);

const arbTtl = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 86_400 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 0x7fffffff }) },
);
const arbClass = fc.constantFrom<'IN' | 'CH' | 'HS'>('IN', 'IN', 'IN', 'CH', 'HS');
const arbIpv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));
const arbIpv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
const arbTxtString = fc.array(fc.constantFrom(...CHARS, ' ', '.', '='), { maxLength: 40 }).map((a) => a.join(''));

export function arbRecordOf(type: string, nameArb: fc.Arbitrary<string> = arbName): fc.Arbitrary<Answer> {
  const base = { name: nameArb, ttl: arbTtl, class: arbClass };
  switch (type) {
    case 'A':
      return fc.record({ ...base, type: fc.constant('A' as const), data: arbIpv4 });
    case 'AAAA':
      return fc.record({ ...base, type: fc.constant('AAAA' as const), data: arbIpv6 });
    case 'CNAME':
    case 'NS':
    case 'PTR':
      return fc.record({ ...base, type: fc.constant(type as 'CNAME'), data: arbName });
    case 'MX':
      return fc.record({
        ...base,
        type: fc.constant('MX' as const),
        data: fc.record({ preference: fc.nat(0xffff), exchange: arbName }),
      });
    case 'TXT':
      return fc.record({
        ...base,
        type: fc.constant('TXT' as const),
        data: fc.array(arbTxtString, { minLength: 1, maxLength: 3 }),
      });
    case 'SRV':
      return fc.record({
        ...base,
        type: fc.constant('SRV' as const),
        data: fc.record({ priority: fc.nat(0xffff), weight: fc.nat(0xffff), port: fc.nat(0xffff), target: arbName }),
      });
    case 'SOA':
      return fc.record({
        ...base,
        type: fc.constant('SOA' as const),
        data: fc.record({
          mname: arbName,
          rname: arbName,
          serial: fc.nat(),
          refresh: fc.nat(),
          retry: fc.nat(),
          expire: fc.nat(),
          minimum: fc.integer({ min: 1, max: 86_400 }),
        }),
      });
    default:
      throw new Error(`no generator for ${type}`);
  }
}

export const RECORD_TYPES = ['A', 'AAAA', 'CNAME', 'NS', 'PTR', 'MX', 'TXT', 'SRV', 'SOA'] as const;
export const arbRecord: fc.Arbitrary<Answer> = fc.constantFrom(...RECORD_TYPES).chain((t) => arbRecordOf(t));

export const arbOpt: fc.Arbitrary<Answer> = fc.record({
  type: fc.constant('OPT' as const),
  name: fc.constant('.'),
  udpPayloadSize: fc.nat(0xffff),
  extendedRcode: fc.nat(255),
  ednsVersion: fc.nat(255),
  flags: fc.nat(0xffff),
  options: fc.array(
    fc.record({ code: fc.constantFrom(3, 10, 12, 15, 65001), data: fc.uint8Array({ maxLength: 24 }).map((u) => Buffer.from(u)) }),
    { maxLength: 3 },
  ),
}) as unknown as fc.Arbitrary<Answer>;

/** A message with one question and random records; an OPT at a random place in the additional section. */
export function arbPacket(kind: 'query' | 'response' | 'any' = 'any'): fc.Arbitrary<Packet> {
  return fc
    .record({
      id: fc.nat(0xffff),
      type: kind === 'any' ? fc.constantFrom<'query' | 'response'>('query', 'response') : fc.constant(kind),
      flags: fc.nat(0x7fff),
      qname: arbName,
      qtype: fc.constantFrom(...RECORD_TYPES),
      qclass: arbClass,
      answers: fc.array(arbRecord, { maxLength: 5 }),
      authorities: fc.array(arbRecord, { maxLength: 3 }),
      additionals: fc.array(arbRecord, { maxLength: 3 }),
      opt: fc.option(fc.tuple(arbOpt, fc.nat(3)), { nil: undefined }),
    })
    .map((r) => {
      const additionals = [...r.additionals];
      if (r.opt !== undefined) additionals.splice(Math.min(r.opt[1], additionals.length), 0, r.opt[0]);
      const q: Question = { name: r.qname, type: r.qtype as RecordType, class: r.qclass };
      return {
        id: r.id,
        type: r.type,
        flags: r.flags,
        questions: [q],
        answers: r.answers,
        authorities: r.authorities,
        additionals,
      } satisfies Packet;
    });
}

/**
 * A cacheable positive response: NOERROR, opcode QUERY, TC clear, and the
 * first answer is the qtype at the qname.
 */
export function arbCacheableResponse(): fc.Arbitrary<Packet> {
  return fc
    .tuple(arbPacket('response'), fc.constantFrom(...RECORD_TYPES).filter((t) => t !== 'SOA'))
    .chain(([p, qtype]) => {
      const q = p.questions![0]!;
      return arbRecordOf(qtype, fc.constant(q.name)).map((first) => {
        const flags = (p.flags ?? 0) & ~(0x7800 | 0x0200 | 0x000f);
        return {
          ...p,
          flags,
          questions: [{ ...q, type: qtype as RecordType, class: 'IN' as const }],
          answers: [{ ...first, class: 'IN' } as Answer, ...(p.answers ?? [])],
          additionals: (p.additionals ?? []).map((a) => (a.type === 'OPT' ? ({ ...a, extendedRcode: 0 } as Answer) : a)),
        };
      });
    });
}

/** Random ASCII case for each letter of a name (DNS 0x20). */
export function arbCaseOf(name: string): fc.Arbitrary<string> {
  return fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((flips) =>
    [...name].map((c, i) => (flips[i] ? c.toUpperCase() : c.toLowerCase())).join(''),
  );
}

// ---- compressing encoder ------------------------------------------------------

class Writer {
  buf = Buffer.alloc(65535);
  o = 0;
  private dict = new Map<string, number>();
  u8(v: number): void {
    this.buf[this.o++] = v & 0xff;
  }
  u16(v: number): void {
    this.buf.writeUInt16BE(v & 0xffff, this.o);
    this.o += 2;
  }
  u32(v: number): void {
    this.buf.writeUInt32BE(v >>> 0, this.o);
    this.o += 4;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.o);
    this.o += b.length;
  }
  name(n: string): void {
    const labels = n === '.' || n === '' ? [] : n.replace(/\.$/, '').split('.');
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const ptr = this.dict.get(suffix);
      if (ptr !== undefined) {
        this.u16(0xc000 | ptr);
        return;
      }
      if (this.o < 0x3fff) this.dict.set(suffix, this.o);
      const l = Buffer.from(labels[i]!, 'latin1');
      this.u8(l.length);
      this.bytes(l);
    }
    this.u8(0);
  }
  charString(s: string | Uint8Array): void {
    const b = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
    this.u8(b.length);
    this.bytes(b);
  }
}

function ipv6Bytes(s: string): Uint8Array {
  const g = s.split(':');
  const out = new Uint8Array(16);
  g.forEach((x, i) => {
    const v = parseInt(x, 16);
    out[2 * i] = v >>> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

interface OptLike {
  udpPayloadSize?: number;
  extendedRcode?: number;
  ednsVersion?: number;
  flags?: number;
  options?: { code: number; data: Uint8Array }[];
}

function writeRecord(w: Writer, a: Answer): void {
  if (a.type === 'OPT') {
    const o = a as unknown as OptLike;
    w.u8(0);
    w.u16(41);
    w.u16(o.udpPayloadSize ?? 4096);
    w.u8(o.extendedRcode ?? 0);
    w.u8(o.ednsVersion ?? 0);
    w.u16(o.flags ?? 0);
    const opts = o.options ?? [];
    w.u16(opts.reduce((n, x) => n + 4 + x.data.length, 0));
    for (const x of opts) {
      w.u16(x.code);
      w.u16(x.data.length);
      w.bytes(x.data);
    }
    return;
  }
  const r = a as { name: string; type: string; class?: string; ttl?: number; data: unknown };
  w.name(r.name);
  w.u16(TYPE[r.type]!);
  w.u16(CLASS[r.class ?? 'IN']!);
  w.u32(r.ttl ?? 0);
  const lenAt = w.o;
  w.u16(0);
  const d = r.data;
  switch (r.type) {
    case 'A':
      for (const x of (d as string).split('.')) w.u8(Number(x));
      break;
    case 'AAAA':
      w.bytes(ipv6Bytes(d as string));
      break;
    case 'CNAME':
    case 'NS':
    case 'PTR':
      w.name(d as string);
      break;
    case 'MX': {
      const m = d as { preference: number; exchange: string };
      w.u16(m.preference);
      w.name(m.exchange);
      break;
    }
    case 'TXT':
      for (const s of d as string[]) w.charString(s);
      break;
    case 'SRV': {
      const s = d as { priority: number; weight: number; port: number; target: string };
      w.u16(s.priority);
      w.u16(s.weight);
      w.u16(s.port);
      w.name(s.target);
      break;
    }
    case 'SOA': {
      const s = d as { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };
      w.name(s.mname);
      w.name(s.rname);
      w.u32(s.serial);
      w.u32(s.refresh);
      w.u32(s.retry);
      w.u32(s.expire);
      w.u32(s.minimum);
      break;
    }
    default:
      throw new Error(`cannot encode ${r.type}`);
  }
  w.buf.writeUInt16BE(w.o - lenAt - 2, lenAt);
}

/** Encodes a packet like dnsPacket.encode, but with name compression (owner and RDATA names). */
export function encodeCompressed(p: Packet): Buffer {
  const w = new Writer();
  w.u16(p.id ?? 0);
  w.u16(((p.flags ?? 0) & 0x7fff) | (p.type === 'response' ? 0x8000 : 0));
  const qs = p.questions ?? [];
  const an = p.answers ?? [];
  const ns = p.authorities ?? [];
  const ar = p.additionals ?? [];
  w.u16(qs.length);
  w.u16(an.length);
  w.u16(ns.length);
  w.u16(ar.length);
  for (const q of qs) {
    w.name(q.name);
    w.u16(TYPE[q.type]!);
    w.u16(CLASS[q.class ?? 'IN']!);
  }
  for (const a of [...an, ...ns, ...ar]) writeRecord(w, a);
  return Buffer.from(w.buf.subarray(0, w.o));
}

// ---- builders ------------------------------------------------------------------

export function encode(p: Packet): Buffer {
  return dnsPacket.encode(p);
}

/** dns-packet's decoded form, with the fields its typings leave out or optional. */
export interface Decoded extends DecodedPacket {
  questions: Question[];
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
  opcode: string;
  rcode: string;
}

export function decode(b: Uint8Array): Decoded {
  return dnsPacket.decode(Buffer.from(b.buffer, b.byteOffset, b.byteLength)) as Decoded;
}

export interface QueryOpts {
  id?: number;
  rd?: boolean;
  cd?: boolean;
  ad?: boolean;
  edns?: false | { udp?: number; do?: boolean };
}

export function query(name: string, type: RecordType = 'A', o: QueryOpts = {}): Buffer {
  const edns = o.edns === undefined ? { udp: 1232, do: false } : o.edns;
  const flags = (o.rd === false ? 0 : dnsPacket.RECURSION_DESIRED) | (o.cd ? dnsPacket.CHECKING_DISABLED : 0) | (o.ad ? dnsPacket.AUTHENTIC_DATA : 0);
  return encode({
    id: o.id ?? 0x1234,
    type: 'query',
    flags,
    questions: [{ name, type, class: 'IN' }],
    additionals: edns === false ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns.udp ?? 1232, flags: edns.do ? dnsPacket.DNSSEC_OK : 0 } as Answer],
  });
}

export interface ResponseOpts {
  id?: number;
  rcode?: number;
  ad?: boolean;
  tc?: boolean;
  authorities?: Answer[];
  additionals?: Answer[];
  do?: boolean;
  edns?: boolean;
}

export function response(name: string, type: RecordType, answers: Answer[], o: ResponseOpts = {}): Buffer {
  const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (o.ad ? dnsPacket.AUTHENTIC_DATA : 0) | (o.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | ((o.rcode ?? 0) & 0xf);
  const additionals = [...(o.additionals ?? [])];
  if (o.edns !== false) additionals.push({ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: o.do ? dnsPacket.DNSSEC_OK : 0 } as Answer);
  return encode({
    id: o.id ?? 0x1234,
    type: 'response',
    flags,
    questions: [{ name, type, class: 'IN' }],
    answers,
    authorities: o.authorities ?? [],
    additionals,
  });
}

export function a(name: string, ip: string, ttl = 300): Answer {
  return { name, type: 'A', class: 'IN', ttl, data: ip };
}

export function soa(zone: string, ttl: number, minimum: number): Answer {
  return {
    name: zone,
    type: 'SOA',
    class: 'IN',
    ttl,
    data: { mname: `ns1.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

/** A clock the test moves by hand (ns). */
export class FakeClock {
  now = 1_000_000_000_000;
  readonly fn = (): number => this.now;
  advance(sec: number): void {
    this.now += sec * 1e9;
  }
}

/** Names lowercased throughout a decoded record list, TTLs dropped, OPT removed (for comparisons). */
export function normalize(list: Answer[] | undefined, keepTtl = false): unknown[] {
  return (list ?? [])
    .filter((x) => x.type !== 'OPT')
    .map((x) => {
      const r = { ...(x as unknown as Record<string, unknown>) };
      r['name'] = String(r['name']).toLowerCase();
      if (!keepTtl) delete r['ttl'];
      const d = r['data'];
      if (typeof d === 'string' && ['CNAME', 'NS', 'PTR', 'DNAME'].includes(String(r['type']))) r['data'] = d.toLowerCase();
      else if (d !== null && typeof d === 'object' && !Buffer.isBuffer(d) && !Array.isArray(d)) {
        const o = { ...(d as Record<string, unknown>) };
        for (const k of ['exchange', 'target', 'mname', 'rname']) if (typeof o[k] === 'string') o[k] = (o[k] as string).toLowerCase();
        r['data'] = o;
      }
      return r;
    });
}
