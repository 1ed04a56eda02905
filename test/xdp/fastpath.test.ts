/**
 * Table-driven BPF_PROG_TEST_RUN tests of the XDP program: one fixture per admission
 * rule and per pass or redirect reason, and replies checked field by field with
 * dns-packet and independently computed checksums.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { describePrivileged } from '../helpers/privilege.js';
import { buildFrame, parseFrame, CLIENT_MAC, SERVER_MAC, ipBytes, CLIENT4, SERVER4, CLIENT6, SERVER6, type FrameOptions } from '../helpers/frames.js';
import { query, response, cached, SOA, decode, ednsOption, type Decoded } from '../helpers/dns.js';
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { failHotDelete } from '../helpers/native-fault.js';
import { serveLab } from '../helpers/edge.js';
import { encodeHotEntry } from '../../src/xdp/hot-entry.js';
import { execFileSync } from 'node:child_process';
import { progMapIds } from '../helpers/bpftool.js';
import { Worker } from 'node:worker_threads';
import { ADDON_PATH } from '../../src/native/addon.js';
import { answerFromResponse, type CachedAnswer } from '../../src/dns/answer.js';
import { DnsErrorCode, MessageView, writeReply } from '../../src/dns/index.js';

const NS = 1e9;
const UDP_SIZE = 1232;

describePrivileged('XDP program under BPF_PROG_TEST_RUN', {}, () => {
  let fp: FastPath;
  let now: number;

  beforeAll(() => {
    fp = serveLab(FastPath.open({ hotEntries: 256, udpSize: UDP_SIZE }));
  });
  afterAll(() => fp?.close());
  beforeEach(() => {
    fp.resetStats();
    fp.setAnswers(true);
    now = fp.nowNs();
  });

  /** Runs one frame and returns the action, output and the one counter that moved. */
  function run(frame: Buffer): { action: number; out: Buffer; slot: string; fallback: boolean } {
    const r = fp.testRun(frame);
    const moved = Object.entries(fp.stats()).filter(([n, v]) => v > 0n && n !== 'REDIRECT_FALLBACK');
    expect(moved.length, `exactly one outcome counter moved: ${JSON.stringify(moved.map(([n]) => n))}`).toBe(1);
    const fallback = fp.stats().REDIRECT_FALLBACK === 1n;
    fp.resetStats();
    return { action: r.action, out: r.frame, slot: moved[0]![0], fallback };
  }

  function put(a: CachedAnswer): number {
    return fp.put(a);
  }

  const exampleA = (name = 'www.example.com', ttl = 300, origin?: number): CachedAnswer =>
    cached(
      response(name.toLowerCase(), 'A', {
        answers: [
          { type: 'A', name: name.toLowerCase(), ttl, data: '198.18.10.1' },
          { type: 'A', name: name.toLowerCase(), ttl: ttl + 100, data: '198.18.10.2' },
        ],
      }),
      origin ?? now,
    );

  /** Checks everything a reply to `q` must have and returns it decoded. */
  function expectReply(qframe: Buffer, out: Buffer, fo: FrameOptions = {}): Decoded {
    const qin = parseFrame(qframe);
    const p = parseFrame(out);
    expect(p.udpChecksumOk, 'UDP checksum').toBe(true);
    expect(p.ipHeaderChecksumOk, 'IPv4 header checksum').toBe(true);
    expect(p.ipLengthOk, 'IP and UDP lengths match the frame').toBe(true);
    expect(p.dstMac.equals(CLIENT_MAC) && p.srcMac.equals(SERVER_MAC), 'MACs swapped').toBe(true);
    expect(p.vlans).toEqual(fo.vlans ?? []);
    expect(p.src.equals(qin.dst) && p.dst.equals(qin.src), 'addresses swapped').toBe(true);
    expect([p.sport, p.dport]).toEqual([qin.dport, qin.sport]);
    const qdns = qin.dns;
    // Header: ID echoed; question bytes exactly as sent (0x20 case kept).
    expect(p.dns.readUInt16BE(0)).toBe(qdns.readUInt16BE(0));
    const qEnd = 12 + qdns.subarray(12).indexOf(0) + 1 + 4;
    expect(p.dns.subarray(12, qEnd).equals(qdns.subarray(12, qEnd)), 'question bytes as sent').toBe(true);
    const flags = p.dns.readUInt16BE(2);
    const qflags = qdns.readUInt16BE(2);
    expect(flags & 0x8000, 'QR').toBe(0x8000);
    expect(flags & 0x0080, 'RA').toBe(0x0080);
    expect(flags & 0x0400, 'AA never set').toBe(0);
    expect(flags & 0x0200, 'TC').toBe(0);
    expect(flags & 0x0100, 'RD echoed').toBe(qflags & 0x0100);
    expect(flags & 0x0010, 'CD echoed').toBe(qflags & 0x0010);
    return decode(p.dns);
  }

  const hitCases: { name: string; fo: FrameOptions; qname: string }[] = [
    { name: 'IPv4', fo: {}, qname: 'www.example.com' },
    { name: 'IPv6', fo: { ipv6: true }, qname: 'www.example.com' },
    { name: 'IPv4, one VLAN tag', fo: { vlans: [100] }, qname: 'www.example.com' },
    { name: 'IPv6, two VLAN tags (802.1ad outer)', fo: { ipv6: true, vlans: [10, 20] }, qname: 'www.example.com' },
    { name: 'IPv4, odd name length', fo: {}, qname: 'odd.example.com' },
    { name: 'IPv6, odd name length, 0x20 mixed case', fo: { ipv6: true }, qname: 'oDd.ExAmPlE.CoM' },
    { name: 'IPv4, partial checksum from a veth client', fo: { partialChecksum: true }, qname: 'wWw.eXample.com' },
    { name: 'IPv6, partial checksum from a veth client', fo: { ipv6: true, partialChecksum: true }, qname: 'www.example.com' },
    { name: 'IPv4, Ethernet padding after the packet', fo: { trailer: 6 }, qname: 'www.example.com' },
  ];

  for (const c of hitCases) {
    it(`answers a hot A query: ${c.name}`, () => {
      // 5.5 s ago: half a second from a boundary, as the program's coarse clock may trail
      // the test's by a tick.
      const a = exampleA(c.qname, 300, now - 5.5 * NS);
      const slot = put(a);
      const q = buildFrame(query(c.qname, 'A', { id: 0xbeef }), c.fo);
      const r = run(q);
      expect(r.slot).toBe('TX');
      expect(r.action).toBe(XdpAction.TX);
      const d = expectReply(q, r.out, c.fo);
      expect(d.id).toBe(0xbeef);
      expect(d.rcode).toBe('NOERROR');
      expect(d.answers!.map((x) => x.data)).toEqual(['198.18.10.1', '198.18.10.2']);
      // TTLs count down from the upstream's answer: 5 s have passed (6 if the second ticked).
      const ttls = d.answers!.map((x) => x.ttl!);
      expect(ttls[0]).toBeGreaterThanOrEqual(294);
      expect(ttls[0]).toBeLessThanOrEqual(295);
      expect(ttls[1]).toBe(ttls[0]); // clamped to the entry's lifetime (300 s)
      expect(d.additionals).toEqual([]); // no OPT without one in the query
      expect(fp.hits(slot)).toBeGreaterThan(0n);
    });
  }

  it('echoes an OPT with our UDP size when the query has one, and DO with it', () => {
    put(cached(response('secure.example', 'A', { answers: [{ type: 'A', name: 'secure.example', ttl: 60, data: '198.18.1.1' }] }, { ad: true, dnssecOk: true }), now));
    put(cached(response('secure.example', 'A', { answers: [{ type: 'A', name: 'secure.example', ttl: 60, data: '198.18.1.2' }] }, { ad: true }), now));
    const q = buildFrame(query('secure.example', 'A', { edns: { udpSize: 4096, do: true } }));
    const r = run(q);
    expect(r.slot).toBe('TX');
    const d = expectReply(q, r.out);
    const opt = d.additionals!.find((x) => x.type === 'OPT') as unknown as { udpPayloadSize: number; flags: number };
    expect(opt.udpPayloadSize).toBe(UDP_SIZE);
    expect(opt.flags & dnsPacket.DNSSEC_OK).toBe(dnsPacket.DNSSEC_OK);
    // The DO entry, not the plain one: DO is part of the key. AD only for DO queries.
    expect(d.answers[0]!.data).toBe('198.18.1.1');
    expect(d.flags! & dnsPacket.AUTHENTIC_DATA).toBe(dnsPacket.AUTHENTIC_DATA);

    const plain = buildFrame(query('secure.example', 'A', { edns: { udpSize: 1232 } }));
    const r2 = run(plain);
    const d2 = expectReply(plain, r2.out);
    expect(d2.answers[0]!.data).toBe('198.18.1.2');
    expect(d2.flags! & dnsPacket.AUTHENTIC_DATA).toBe(0);
    const opt2 = d2.additionals!.find((x) => x.type === 'OPT') as unknown as { flags: number };
    expect(opt2.flags & dnsPacket.DNSSEC_OK).toBe(0);
  });

  it('keeps CD apart: an answer fetched with CD=1 is served to CD=1 queries only, and CD=0 ones never to them', () => {
    // What a validating upstream hands over for CD=1 may be bogus: it must not reach a
    // CD=0 client, who relies on that validation (docs/CORE.md, "Cached answers").
    const unchecked = answerFromResponse(
      response('cd.example', 'A', { answers: [{ type: 'A', name: 'cd.example', ttl: 60, data: '198.18.66.6' }] }),
      now,
      undefined,
      false,
      true,
    );
    put(unchecked);
    const plainQ = buildFrame(query('cd.example', 'A', { edns: { udpSize: 1232 } }));
    expect(run(plainQ).slot).toBe('USER_MISS');
    const cdQ = buildFrame(query('cd.example', 'A', { edns: { udpSize: 1232 }, cd: true }));
    const r = run(cdQ);
    expect(r.slot).toBe('TX');
    expect(expectReply(cdQ, r.out).answers[0]!.data).toBe('198.18.66.6');

    put(cached(response('cd0.example', 'A', { answers: [{ type: 'A', name: 'cd0.example', ttl: 60, data: '198.18.66.7' }] }), now));
    expect(run(buildFrame(query('cd0.example', 'A', { cd: true }))).slot).toBe('USER_MISS');
    expect(run(buildFrame(query('cd0.example', 'A'))).slot).toBe('TX');
  });

  it('sends a query without RD to userspace (which refuses it), even for a hot name', () => {
    put(exampleA('norec.example'));
    expect(run(buildFrame(query('norec.example', 'A'))).slot).toBe('TX');
    for (const o of [{ rd: false }, { rd: false, edns: { udpSize: 1232 } }, { rd: false, cd: true }]) {
      expect(run(buildFrame(query('norec.example', 'A', o))).slot).toBe('USER_NO_RD');
    }
  });

  it('answers a query carrying EDNS options (cookie) and ignores them', () => {
    put(exampleA('cookie.example'));
    const q = buildFrame(query('cookie.example', 'A', { edns: { options: [ednsOption(10, Buffer.alloc(8, 7))] } }), { ipv6: true });
    const r = run(q);
    expect(r.slot).toBe('TX');
    const d = expectReply(q, r.out);
    expect(d.additionals!.length).toBe(1);
  });

  it('serves NXDOMAIN with its SOA, TTL from the SOA minimum, counting down', () => {
    const msg = response('nope.example.com', 'A', { authorities: [SOA('example.com', 3600, 120)] }, { rcode: 'NXDOMAIN' });
    put(cached(msg, now - 20.5 * NS));
    const q = buildFrame(query('NoPe.example.com', 'A'));
    const r = run(q);
    expect(r.slot).toBe('TX');
    const d = expectReply(q, r.out);
    expect(d.rcode).toBe('NXDOMAIN');
    expect(d.answers).toEqual([]);
    expect(d.authorities![0]!.type).toBe('SOA');
    expect(d.authorities![0]!.ttl).toBeGreaterThanOrEqual(99);
    expect(d.authorities![0]!.ttl).toBeLessThanOrEqual(100);
  });

  it('serves NODATA (NOERROR, no answers, SOA) over IPv6', () => {
    const msg = response('v4only.example.com', 'AAAA', { authorities: [SOA('example.com', 60, 300)] });
    put(cached(msg, now));
    const q = buildFrame(query('v4only.example.com', 'AAAA'), { ipv6: true });
    const r = run(q);
    expect(r.slot).toBe('TX');
    const d = expectReply(q, r.out, { ipv6: true });
    expect(d.rcode).toBe('NOERROR');
    expect(d.answers).toEqual([]);
    expect(d.authorities![0]!.ttl).toBeLessThanOrEqual(60);
  });

  it('keeps compression pointers valid (CNAME chain compressed against the question)', () => {
    // Hand-made upstream response: answers use pointers to the question name at 12.
    const name = dnsPacket.encode({ type: 'query', id: 0, questions: [{ name: 'alias.example.org', type: 'A' }] }).subarray(12);
    const qlen = name.length - 4;
    const hdr = Buffer.from([0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]);
    const target = Buffer.from([6, ...Buffer.from('target'), 0xc0, 12 + 6]); // "target" + pointer to "example.org"
    const cname = Buffer.concat([Buffer.from([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, target.length]), target]);
    const tOff = 12 + qlen + 4 + 12; // where "target..." sits
    const a = Buffer.from([0xc0, tOff, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 18, 3, 3]);
    const msg = Buffer.concat([hdr, name, cname, a]);
    put(cached(msg, now));
    const q = buildFrame(query('ALIAS.example.org', 'A'));
    const r = run(q);
    expect(r.slot).toBe('TX');
    const d = expectReply(q, r.out);
    expect(d.answers!.map((x) => [x.name, x.type, x.data])).toEqual([
      ['ALIAS.example.org', 'CNAME', 'target.example.org'],
      ['target.example.org', 'A', '198.18.3.3'],
    ]);
    expect(d.answers!.every((x) => x.ttl! <= 30)).toBe(true);
  });

  it('sends an answer over the client limit to userspace (512 without EDNS, our UDP size with)', () => {
    const answers = Array.from({ length: 18 }, (_, i) => ({ type: 'TXT', name: 'big.example', ttl: 60, data: 'x'.repeat(20) + i }) as dnsPacket.Answer);
    put(cached(response('big.example', 'TXT', { answers }), now));
    expect(run(buildFrame(query('big.example', 'TXT'))).slot).toBe('USER_OVERSIZE');
    const r = run(buildFrame(query('big.example', 'TXT', { edns: { udpSize: 1232 } })));
    expect(r.slot).toBe('TX');
    expect(r.fallback).toBe(false);
  });

  it('never serves an expired entry', () => {
    put(exampleA('old.example', 10, now - 11 * NS));
    const r = run(buildFrame(query('old.example', 'A')));
    expect(r.slot).toBe('USER_EXPIRED');
    expect(r.action).toBe(XdpAction.PASS); // no AF_XDP socket bound: the kernel gets it
    expect(r.fallback).toBe(true);
  });

  it('never serves an entry late, though its clock (the coarse one) trails by up to a tick', () => {
    // Expired a millisecond ago: the coarse clock usually still reads before that. The
    // TTLs are short because the program's clock counts from boot: an origin 300 s back
    // would be before boot on a machine up for less than that.
    put(exampleA('just-gone.example', 10, fp.nowNs() - 10.001 * NS));
    expect(run(buildFrame(query('just-gone.example', 'A'))).slot).toBe('USER_EXPIRED');
    put(exampleA('later.example', 10, now - 9 * NS)); // a second left
    expect(run(buildFrame(query('later.example', 'A'))).slot).toBe('TX');
  });

  it('checks the name in the entry: a key holding another name (a hash collision) sends the query to userspace', () => {
    // Written behind the addon, which refuses a second name under a taken key: the
    // entry of one name under the key of another.
    const other = encodeHotEntry(exampleA('other.example'), 0, fp.layout, fp.hashSeed);
    const asked = encodeHotEntry(exampleA('asked.example'), 0, fp.layout, fp.hashSeed);
    fp.putRaw(asked.key, other.value);
    const f = buildFrame(query('asked.example', 'A'));
    const r = run(f);
    expect(r.slot).toBe('USER_NAME_MISMATCH');
    expect(r.out.equals(f)).toBe(true);
    fp.putRaw(asked.key, asked.value);
    expect(run(buildFrame(query('ASKED.example', 'A'))).slot).toBe('TX');
  });

  it('refuses a second name under a taken hot key (a real hash collision, found for this load\'s seed)', () => {
    // Names of one 14-octet label are two 64-bit words: w1 = [14, c1..c7], w2 = [c8..c14, 0].
    // The hash runs s1 = f(seed ^ w1), s2 = f(s1 ^ w2), so two names collide when
    // w2' = w2 ^ s1 ^ s1'. Search w1' (lowercase letters) until w2' is seven octets a
    // text name can carry (below 0x80, not '.', not upper case) and a zero root label.
    const MASK = (1n << 64n) - 1n;
    const f = (x: bigint): bigint => {
      let h = (x * fp.layout.HOT_HASH_MUL1) & MASK;
      return h ^ (h >> 29n);
    };
    const word = (b: number[]): bigint => b.reduceRight((w, x) => (w << 8n) | BigInt(x), 0n);
    const a = 'collisionnamea';
    const aw = [14, ...Buffer.from(a)];
    const c = word(aw.slice(8, 16).concat([0])) ^ f(fp.hashSeed ^ word(aw.slice(0, 8)));
    let rng = 0x9e3779b9;
    const letter = (): number => {
      rng ^= rng << 13;
      rng ^= rng >>> 17;
      rng ^= rng << 5;
      return 97 + ((rng >>> 0) % 26);
    };
    const ok = (x: number): boolean => x > 0 && x < 0x80 && x !== 0x2e && !(x >= 0x41 && x <= 0x5a);
    let b: string | undefined;
    for (let i = 0; i < 3_000_000 && b === undefined; i++) {
      const w1 = [14, letter(), letter(), letter(), letter(), letter(), letter(), letter()];
      const w2 = c ^ f(fp.hashSeed ^ word(w1));
      const o = Array.from({ length: 8 }, (_, k) => Number((w2 >> BigInt(8 * k)) & 0xffn));
      if (o[7] === 0 && o.slice(0, 7).every(ok)) b = String.fromCharCode(...w1.slice(1), ...o.slice(0, 7));
    }
    expect(b, 'a colliding name within the search').toBeDefined();
    const ea = encodeHotEntry(exampleA(a), 0, fp.layout, fp.hashSeed);
    const eb = encodeHotEntry(exampleA(b!), 0, fp.layout, fp.hashSeed);
    expect(eb.key.equals(ea.key), 'same hot key').toBe(true);

    put(exampleA(a));
    let err: unknown;
    try {
      put(exampleA(b!));
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('E_HOT_COLLISION');
    expect(fp.delete(exampleA(b!).key)).toBe(false); // not b's entry to delete
    expect(run(buildFrame(query(a, 'A'))).slot).toBe('TX');
    expect(run(buildFrame(query(b!, 'A'))).slot).toBe('USER_NAME_MISMATCH'); // the kernel's own check
    expect(fp.delete(exampleA(a).key)).toBe(true);
    put(exampleA(b!));
    expect(run(buildFrame(query(b!, 'A'))).slot).toBe('TX');
    expect(fp.delete(exampleA(b!).key)).toBe(true);
  });

  it('sends every query to userspace when answers are switched off', () => {
    put(exampleA('off.example'));
    fp.setAnswers(false);
    expect(run(buildFrame(query('off.example', 'A'))).slot).toBe('USER_DISABLED');
    fp.setAnswers(true);
    expect(run(buildFrame(query('off.example', 'A'))).slot).toBe('TX');
  });

  /** The id of one of the program's maps, by name (bpftool, as an operator would look). */
  const mapIds = new Map<string, number>();
  function mapId(name: string): number {
    const known = mapIds.get(name);
    if (known !== undefined) return known;
    const id = progMapIds(fp.describe().progId).get(name);
    if (id === undefined) throw new Error(`no map ${name}`);
    mapIds.set(name, id);
    return id;
  }
  const hexBytes = (b: Buffer): string[] => [...b].map((x) => x.toString(16).padStart(2, '0'));
  const u32 = (n: number): Buffer => Buffer.from(new Uint32Array([n]).buffer);
  /** The slots of a hot key's window in hot_slots (heimdall.h, struct hot_slot). */
  const windowOf = (key: Buffer): number[] => {
    const slots = fp.describe().hotSlots;
    return [0, 1, 2, 3].map((i) => (key.readUInt32LE(0) + i) & (slots - 1));
  };
  /** A struct hot_slot as bpftool writes it: seq, pad, key, entry, padding. */
  const slotBytes = (seq: number, key: Buffer, value: Buffer): Buffer => Buffer.concat([u32(seq), u32(0), key, value, Buffer.alloc(48)]);
  /** hot_slots' slot i, read with bpftool. */
  const readSlot = (i: number): Buffer => {
    const r = JSON.parse(execFileSync('bpftool', ['map', 'lookup', 'id', String(mapId('hot_slots')), 'key', 'hex', ...hexBytes(u32(i)), '--json'], { encoding: 'utf8' })) as { value: string[] };
    return Buffer.from(r.value.map((x) => parseInt(x, 16)));
  };

  it.each([
    ['small', 'corrupt.example'],
    ['large', `${'l'.repeat(63)}.corrupt.example`],
  ] as const)('sends a query to userspace when its hot entry is out of range (%s class, written behind the addon)', (cls, name) => {
    // The addon refuses such an entry, so it is written with bpftool, as anyone with
    // root could: the program must not trust the map. Each class is checked against its own room.
    const a = exampleA(name);
    const e = encodeHotEntry(a, 0, fp.layout, fp.hashSeed);
    expect(e.small).toBe(cls === 'small');
    e.value.writeUInt16LE((cls === 'small' ? fp.layout.HOT_SMALL_RR_MAX : fp.layout.HOT_RR_MAX) + 1, fp.layout.value.rr_count!);
    if (cls === 'small') {
      const at = windowOf(e.key)[0]!;
      execFileSync('bpftool', ['map', 'update', 'id', String(mapId('hot_slots')), 'key', 'hex', ...hexBytes(u32(at)), 'value', 'hex', ...hexBytes(slotBytes(0, e.key, e.value))]);
    } else {
      execFileSync('bpftool', ['map', 'update', 'id', String(mapId('hot_map')), 'key', 'hex', ...hexBytes(e.key), 'value', 'hex', ...hexBytes(e.value)]);
    }
    const f = buildFrame(query(name, 'A'));
    const r = run(f);
    expect(r.slot).toBe('USER_BAD_ENTRY');
    expect(r.out.equals(f)).toBe(true);
    expect(fp.delete(a.key)).toBe(true);
  });

  it('stops answering a name once its entry is deleted', () => {
    const a = exampleA('gone.example');
    put(a);
    expect(run(buildFrame(query('gone.example', 'A'))).slot).toBe('TX');
    expect(fp.delete(a.key)).toBe(true);
    expect(run(buildFrame(query('gone.example', 'A'))).slot).toBe('USER_MISS');
  });


  /** Which hot map holds a key: 'small' (hot_slots), 'large' (hot_map), or null; asked of the kernel with bpftool. */
  function classOf(a: CachedAnswer): 'small' | 'large' | null {
    const found = classesOf(a);
    expect(found.length, `a key is in at most one class: ${found.join(', ')}`).toBeLessThanOrEqual(1);
    return found[0] ?? null;
  }

  /** Every hot map holding a key, sorted. */
  function classesOf(a: CachedAnswer): ('small' | 'large')[] {
    const key = encodeHotEntry(a, 0, fp.layout, fp.hashSeed).key;
    const found: ('small' | 'large')[] = [];
    // hot_slots: the key in a slot of its window (bytes 8-23 of struct hot_slot).
    if (windowOf(key).some((i) => readSlot(i).subarray(8, 24).equals(key))) found.push('small');
    const dump = JSON.parse(execFileSync('bpftool', ['map', 'dump', 'id', String(mapId('hot_map')), '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { key: string[] }[];
    const hex = [...key].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(' ');
    if (dump.some((e) => e.key.join(' ') === hex)) found.push('large');
    return found.sort();
  }

  /** The reply userspace writes for the same query and answer at nowNs (src/dns/reply.ts). */
  function userspaceReply(qdns: Buffer, a: CachedAnswer, nowNs: number): string {
    const out = new Uint8Array(4096);
    const n = writeReply(new MessageView().parseOrThrow(qdns), a, nowNs, out, 0, { udpSize: UDP_SIZE });
    return Buffer.from(out.subarray(0, n)).toString('hex');
  }

  /**
   * Runs q and checks the XDP reply is byte for byte what userspace writes at the same
   * moment. The program's clock (the coarse one) may trail by a tick, and a second may
   * turn between the run and the userspace write: the reply must equal userspace's at one
   * of the two ends of that window.
   */
  function expectAsUserspace(q: Buffer, a: CachedAnswer): Buffer {
    const before = fp.nowNs() - 20e6;
    const r = run(q);
    const after = fp.nowNs();
    expect(r.slot).toBe('TX');
    const xdp = parseFrame(r.out).dns;
    const qdns = parseFrame(q).dns;
    expect([userspaceReply(qdns, a, before), userspaceReply(qdns, a, after)]).toContain(xdp.toString('hex'));
    return r.out;
  }

  const txt = (name: string, n: number, len: number, origin: number): CachedAnswer =>
    cached(
      response(name, 'TXT', {
        answers: Array.from({ length: n }, (_, i) => ({ type: 'TXT', name, ttl: 600 + i, data: `${String(i).padStart(2, '0')} ${'x'.repeat(len)}` })),
      }),
      origin,
    );
  const classLongName = `${'a'.repeat(40)}.${'b'.repeat(40)}.long.example`; // 96 bytes on the wire: over the small class's 64
  const classCases: { name: string; cls: 'small' | 'large'; answer: (origin: number) => CachedAnswer; qname: string; qtype: string }[] = [
    { name: 'two A records (small class)', cls: 'small', qname: 'Small.Example', qtype: 'A', answer: (o) => exampleA('small.example', 300, o) },
    { name: 'twelve 70-byte TXT records, ~900 bytes (large: records)', cls: 'large', qname: 'big.example', qtype: 'TXT', answer: (o) => txt('big.example', 12, 64, o) },
    { name: 'nine short TXT records (large: record count)', cls: 'large', qname: 'many.example', qtype: 'TXT', answer: (o) => txt('many.example', 9, 1, o) },
    { name: `a ${classLongName.length + 2}-byte name (large: name)`, cls: 'large', qname: classLongName.toUpperCase(), qtype: 'A', answer: (o) => exampleA(classLongName, 300, o) },
  ];
  for (const c of classCases) {
    it(`serves ${c.name} from XDP byte for byte as userspace would, with and without EDNS`, () => {
      const a = c.answer(now - 5.5 * NS);
      expect(encodeHotEntry(a, 0, fp.layout, fp.hashSeed).small).toBe(c.cls === 'small');
      put(a);
      expect(classOf(a)).toBe(c.cls);
      for (const edns of [undefined, { udpSize: 1232 }]) {
        const q = buildFrame(query(c.qname, c.qtype, { id: 0x4242, edns }));
        const r = run(q);
        if (!edns && a.records.length > 400) {
          expect(r.slot).toBe('USER_OVERSIZE'); // over 512 bytes: userspace truncates it
          continue;
        }
        expect(r.slot).toBe('TX');
        expectReply(q, r.out);
        expect(parseFrame(r.out).dns.length).toBeGreaterThan(12 + a.records.length);
        expectAsUserspace(q, a);
      }
      expect(fp.delete(a.key)).toBe(true);
      expect(classOf(a)).toBe(null);
    });
  }

  /** A query and two answers of one name, one for each hot class. */
  const twoClasses = (name: string) => ({
    q: buildFrame(query(name, 'TXT', { edns: { udpSize: 1232 } })),
    small: txt(name, 1, 8, now - 5.5 * NS),
    large: txt(name, 12, 64, now - 5.5 * NS),
  });

  it('moves an answer between the classes on replace, leaving no entry in the other map', () => {
    const { q, small, large } = twoClasses('mover.example');
    const slot = put(small);
    const size = fp.size;
    expect(classOf(small)).toBe('small');
    expect(run(q).slot).toBe('TX');
    for (const [a, cls] of [[large, 'large'], [small, 'small'], [large, 'large']] as const) {
      expect(put(a)).toBe(slot); // the same entry, rewritten
      expect(classOf(a)).toBe(cls);
      expect(fp.size).toBe(size);
      expectAsUserspace(q, a);
    }
    expect(fp.hits(slot)).toBe(4n);
    expect(fp.delete(large.key)).toBe(true);
    expect(classOf(large)).toBe(null);
    expect(run(q).slot).toBe('USER_MISS');
    expect(fp.delete(small.key)).toBe(false);
  });

  it('puts a small answer whose window of slots is full into hot_map, serves it, and moves it back once a slot frees', () => {
    // Five names whose keys start the same window of hot_slots (found for this load's
    // seed), a window whose four slots the tests before left empty.
    const slots = fp.describe().hotSlots;
    const byStart = new Map<number, { name: string; a: CachedAnswer }[]>();
    let found: { name: string; a: CachedAnswer }[] | undefined;
    for (let i = 0; !found && i < 50 * slots; i++) {
      const name = `w${i}.window.example`;
      const a = exampleA(name);
      const win = windowOf(encodeHotEntry(a, 0, fp.layout, fp.hashSeed).key);
      const list = byStart.get(win[0]!) ?? [];
      list.push({ name, a });
      byStart.set(win[0]!, list);
      if (list.length === 5 && win.every((j) => readSlot(j).subarray(8, 24).equals(Buffer.alloc(16)))) found = list;
    }
    expect(found).toBeDefined();
    const five = found!.map((x) => x.a);
    const names = found!.map((x) => x.name);
    five.forEach((a) => put(a));
    expect(five.map((a) => classOf(a))).toEqual(['small', 'small', 'small', 'small', 'large']);
    for (const [i, a] of five.entries()) expectAsUserspace(buildFrame(query(names[i]!, 'A')), a);
    // A slot of the window frees: the next put of the fifth moves it there, out of hot_map.
    expect(fp.delete(five[1]!.key)).toBe(true);
    put(five[4]!);
    expect(classOf(five[4]!)).toBe('small');
    expectAsUserspace(buildFrame(query(names[4]!, 'A')), five[4]!);
    for (const a of [five[0]!, five[2]!, five[3]!, five[4]!]) expect(fp.delete(a.key)).toBe(true);
    expect(five.map((a) => classOf(a))).toEqual([null, null, null, null, null]);
  });

  it('sends a query to userspace, frame untouched, while its slot is being rewritten (odd sequence), and serves it once the sequence is even', () => {
    const a = exampleA('busy.example');
    put(a);
    const key = encodeHotEntry(a, 0, fp.layout, fp.hashSeed).key;
    const at = windowOf(key).find((i) => readSlot(i).subarray(8, 24).equals(key))!;
    const slot = readSlot(at);
    const seq = slot.readUInt32LE(0);
    expect(seq % 2).toBe(0);
    const write = (n: number): void => {
      slot.writeUInt32LE(n, 0);
      execFileSync('bpftool', ['map', 'update', 'id', String(mapId('hot_slots')), 'key', 'hex', ...hexBytes(u32(at)), 'value', 'hex', ...hexBytes(slot)]);
    };
    const f = buildFrame(query('busy.example', 'A'));
    write(seq + 1);
    const r = run(f);
    expect(r.slot).toBe('USER_BUSY');
    expect(r.out.equals(f)).toBe(true);
    write(seq + 2);
    expectAsUserspace(f, a);
    expect(fp.delete(a.key)).toBe(true);
  });

  it('never serves a torn entry: another thread rewrites the slot between two answers while the program serves it', async () => {
    // Two answers for one name, the same size, differing in every record's address and
    // TTL: a reply that mixes them is a torn read. The other thread writes whole slots
    // through its own mapping of hot_slots, by the sequence protocol (heimdall.h).
    const name = 'torn.example';
    const one = exampleA(name, 300, now);
    const two = cached(
      response(name, 'A', { answers: [{ type: 'A', name, ttl: 900, data: '198.18.20.1' }, { type: 'A', name, ttl: 1000, data: '198.18.20.2' }] }),
      now,
    );
    put(one);
    const e1 = encodeHotEntry(one, fp.slotOf(one.key)!, fp.layout, fp.hashSeed);
    const e2 = encodeHotEntry(two, fp.slotOf(one.key)!, fp.layout, fp.hashSeed);
    expect(e1.key.equals(e2.key)).toBe(true);
    const at = windowOf(e1.key).find((i) => readSlot(i).subarray(8, 24).equals(e1.key))!;
    const d = fp.describe();
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { workerData: w } = require('node:worker_threads');
      const addon = require(w.addon);
      const mem = addon.mapRegion(w.fd, w.slots * 384);
      const seq = new Int32Array(mem, w.at * 384, 1);
      const body = new Uint8Array(mem, w.at * 384 + 8, 376);
      const images = [Buffer.concat([w.k, w.v1, Buffer.alloc(48)]), Buffer.concat([w.k, w.v2, Buffer.alloc(48)])];
      for (let n = 0; Atomics.load(w.stop, 0) === 0; n++) {
        const s = Atomics.load(seq, 0);
        Atomics.store(seq, 0, s + 1);
        // In two parts with a pause between, as a writer that is preempted would: the
        // records (body bytes 136-167) straddle the cut.
        const img = images[n & 1];
        body.set(img.subarray(0, 150));
        for (let j = 0; j < 100; j++) Atomics.load(seq, 0);
        body.set(img.subarray(150), 150);
        Atomics.store(seq, 0, s + 2);
      }`,
      { eval: true, workerData: { addon: ADDON_PATH, fd: d.hotSlotsMapFd, slots: d.hotSlots, at, k: e1.key, v1: e1.value, v2: e2.value, stop } },
    );
    try {
      await new Promise((r) => setTimeout(r, 50));
      const f = buildFrame(query(name, 'A'));
      const outcomes = new Map<string, number>();
      // TTLs count down over the run: each answer's replies for 0 to 3 seconds elapsed.
      const wants = [one, two].map((a) => [0, 1, 2, 3].map((k) => userspaceReply(parseFrame(f).dns, a, now + k * NS + 1)));
      const start = Date.now();
      let runs = 0;
      while (Date.now() - start < 1500) {
        const r = fp.testRun(f);
        runs++;
        if (r.action === XdpAction.TX) {
          const dns = parseFrame(r.frame).dns.toString('hex');
          const which = wants.findIndex((w) => w.includes(dns));
          outcomes.set(which < 0 ? 'torn' : `answer ${which + 1}`, (outcomes.get(which < 0 ? 'torn' : `answer ${which + 1}`) ?? 0) + 1);
        } else {
          outcomes.set(`action ${r.action}`, (outcomes.get(`action ${r.action}`) ?? 0) + 1);
        }
      }
      const stats = fp.stats();
      console.log(`[torn] ${runs} runs while rewritten: ${JSON.stringify(Object.fromEntries(outcomes))}, USER_BUSY ${stats.USER_BUSY}`);
      expect(outcomes.get('torn') ?? 0).toBe(0);
      expect(outcomes.get('answer 1') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('answer 2') ?? 0).toBeGreaterThan(0);
      expect(stats.USER_BUSY).toBeGreaterThan(0n);
    } finally {
      Atomics.store(stop, 0, 1);
      await worker.terminate();
      fp.resetStats();
    }
    expect(fp.delete(one.key)).toBe(true);
  });

  it('retries the old class delete after it failed on a class change, so a stale small copy does not stay in front of the new answer', () => {
    const { q, small, large } = twoClasses('stuck.example');
    const slot = put(small);
    const restore = failHotDelete(fp);
    try {
      expect(() => put(large)).toThrow('bpf_map_delete_elem');
    } finally {
      restore();
    }
    // Both copies are in the kernel now, and the program serves the old small one.
    expect(classesOf(large)).toEqual(['large', 'small']);
    expectAsUserspace(q, small);
    expect(fp.slotOf(large.key)).toBe(slot);
    // The next put of the same (large) answer retries the delete: only the new one is left.
    expect(put(large)).toBe(slot);
    expect(classOf(large)).toBe('large');
    expectAsUserspace(q, large);
    expect(fp.delete(large.key)).toBe(true);
    expect(classOf(large)).toBe(null);
  });

  it('reads every hit counter at once from the mapped stripes, equal to the per-slot reads', () => {
    const names = ['batch-a.example', 'batch-b.example', 'batch-c.example'];
    const slots = names.map((n) => put(exampleA(n)));
    for (let i = 0; i < 3; i++) expect(run(buildFrame(query(names[0]!, 'A'))).slot).toBe('TX');
    expect(run(buildFrame(query(names[2]!, 'A'))).slot).toBe('TX');
    const all = fp.allHits();
    expect(all.length).toBe(fp.capacity);
    expect(slots.map((s) => all[s])).toEqual([3, 0, 1]);
    for (let s = 0; s < fp.capacity; s++) expect(all[s]).toBe(Number(fp.hits(s)));
  });
  // Packets that are not ours: passed to the kernel untouched.
  const q0 = () => query('www.example.com', 'A');
  const passCases: { name: string; frame: () => Buffer; slot: string }[] = [
    { name: 'ARP', frame: () => Buffer.concat([SERVER_MAC, CLIENT_MAC, Buffer.from([0x08, 0x06]), Buffer.alloc(28)]), slot: 'PASS_NOT_IP' },
    { name: 'three VLAN tags', frame: () => buildFrame(q0(), { vlans: [1, 2, 3] }), slot: 'PASS_VLAN_DEPTH' },
    { name: 'Ethernet header alone', frame: () => buildFrame(q0()).subarray(0, 14), slot: 'PASS_MALFORMED' },
    { name: 'IPv4 header cut short', frame: () => buildFrame(q0()).subarray(0, 14 + 12), slot: 'PASS_MALFORMED' },
    { name: 'IPv4 header checksum wrong', frame: () => buildFrame(q0(), { badIpChecksum: true }), slot: 'PASS_MALFORMED' },
    {
      name: 'IPv4 total length beyond the frame',
      frame: () => {
        const f = buildFrame(q0());
        return f.subarray(0, f.length - 4);
      },
      slot: 'PASS_MALFORMED',
    },
    { name: 'IPv4 fragment', frame: () => buildFrame(q0(), { fragment: true }), slot: 'PASS_FRAGMENT' },
    { name: 'IPv4 options', frame: () => buildFrame(q0(), { ipOptions: Buffer.from([1, 1, 1, 0]) }), slot: 'PASS_IP_OPTIONS' },
    { name: 'IPv6 extension header', frame: () => buildFrame(q0(), { ipv6: true, ipv6HopByHop: true }), slot: 'PASS_IPV6_EXT' },
    { name: 'TCP', frame: () => buildFrame(q0(), { protocol: 6 }), slot: 'PASS_NOT_UDP' },
    { name: 'UDP to another port', frame: () => buildFrame(q0(), { dport: 5353 }), slot: 'PASS_NOT_PORT' },
    { name: 'IPv6 UDP to another port', frame: () => buildFrame(q0(), { ipv6: true, dport: 853 }), slot: 'PASS_NOT_PORT' },
  ];
  for (const c of passCases) {
    it(`passes to the kernel untouched: ${c.name}`, () => {
      put(exampleA());
      const f = c.frame();
      const r = run(f);
      expect(r.slot).toBe(c.slot);
      expect(r.action).toBe(XdpAction.PASS);
      expect(r.out.equals(f), 'frame unchanged').toBe(true);
    });
  }

  /** A query for the hot name with n options: a cookie, then 4-byte padding options. */
  const cookieQuery = (n: number): Buffer =>
    query('www.example.com', 'A', { edns: { options: [ednsOption(10, Buffer.alloc(8, 7)), ...Array.from({ length: n - 1 }, () => ednsOption(12, Buffer.alloc(4)))] } });
  /** The same query with its OPT RDATA replaced (RDLENGTH kept true to it). */
  const withOptRdata = (rdata: Buffer): Buffer => {
    const b = query('www.example.com', 'A', { edns: {} });
    const m = Buffer.concat([b, rdata]);
    m.writeUInt16BE(rdata.length, b.length - 2);
    return m;
  };
  const badOptions = {
    pastEnd: () => withOptRdata(Buffer.from([0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8])),
    shortHeader: () => withOptRdata(Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 12, 0])),
    shortData: () => withOptRdata(Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 0, 12, 0, 0])),
  };

  // DNS to a served port that the fast path does not answer: to userspace, unchanged.
  const dnsMutate = (f: (b: Buffer) => Buffer, fo: FrameOptions = {}) => () => buildFrame(f(Buffer.from(q0())), fo);
  const setFlags = (v: number) => (b: Buffer) => (b.writeUInt16BE(v, 2), b);
  const setCount = (at: number, v: number) => (b: Buffer) => (b.writeUInt16BE(v, at), b);
  const longName = Array.from({ length: 9 }, () => 'a'.repeat(14)).join('.') + '.example';
  const userCases: { name: string; frame: () => Buffer; slot: string }[] = [
    { name: 'DNS header cut short', frame: dnsMutate((b) => b.subarray(0, 8)), slot: 'USER_SHORT' },
    { name: 'question cut short', frame: dnsMutate((b) => b.subarray(0, 20)), slot: 'USER_SHORT' },
    { name: 'question type cut short', frame: dnsMutate((b) => b.subarray(0, b.length - 2)), slot: 'USER_SHORT' },
    { name: 'opcode NOTIFY', frame: dnsMutate(setFlags(0x2000)), slot: 'USER_NOT_QUERY' },
    { name: 'TC set in a query', frame: dnsMutate(setFlags(0x0300)), slot: 'USER_NOT_QUERY' },
    { name: 'RCODE set in a query', frame: dnsMutate(setFlags(0x0101)), slot: 'USER_NOT_QUERY' },
    { name: 'QDCOUNT 2', frame: dnsMutate(setCount(4, 2)), slot: 'USER_NOT_QUERY' },
    { name: 'QDCOUNT 0', frame: dnsMutate(setCount(4, 0)), slot: 'USER_NOT_QUERY' },
    { name: 'ANCOUNT 1', frame: dnsMutate(setCount(6, 1)), slot: 'USER_NOT_QUERY' },
    { name: 'NSCOUNT 1', frame: dnsMutate(setCount(8, 1)), slot: 'USER_NOT_QUERY' },
    { name: 'ARCOUNT 2', frame: dnsMutate(setCount(10, 2)), slot: 'USER_NOT_QUERY' },
    {
      name: 'compression pointer in the question',
      frame: dnsMutate((b) => Buffer.concat([b.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])])),
      slot: 'USER_NAME',
    },
    { name: 'label length 64+ (extended label type)', frame: dnsMutate((b) => ((b[12] = 0x41), b)), slot: 'USER_NAME' },
    { name: 'name longer than the hot key', frame: () => buildFrame(query(longName, 'A')), slot: 'USER_NAME' },
    { name: 'trailing bytes after the question', frame: dnsMutate((b) => Buffer.concat([b, Buffer.from([0, 0])])), slot: 'USER_EDNS' },
    {
      name: 'additional record that is not an OPT',
      frame: dnsMutate((b) => Buffer.concat([setCount(10, 1)(b), Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4])])),
      slot: 'USER_EDNS',
    },
    {
      name: 'EDNS version 1',
      frame: () => {
        const b = query('www.example.com', 'A', { edns: {} });
        b[b.length - 5] = 1; // version byte of the OPT TTL
        return buildFrame(b);
      },
      slot: 'USER_EDNS',
    },
    {
      name: 'OPT RDLENGTH lying',
      frame: () => {
        const b = query('www.example.com', 'A', { edns: {} });
        b.writeUInt16BE(8, b.length - 2);
        return buildFrame(b);
      },
      slot: 'USER_EDNS',
    },
    {
      name: 'OPT not owned by the root',
      frame: () => {
        const b = query('www.example.com', 'A', { edns: {} });
        return buildFrame(Buffer.concat([b.subarray(0, b.length - 11), Buffer.from([0xc0, 12]), b.subarray(b.length - 10)]));
      },
      slot: 'USER_EDNS',
    },
    // Options userspace answers FORMERR (src/dns/opt.ts validOptions) are never answered here.
    { name: 'EDNS option running past the OPT RDATA', frame: () => buildFrame(badOptions.pastEnd()), slot: 'USER_EDNS' },
    { name: 'EDNS option header cut short', frame: () => buildFrame(badOptions.shortHeader()), slot: 'USER_EDNS' },
    { name: 'EDNS option shorter than its length, a second one after it', frame: () => buildFrame(badOptions.shortData()), slot: 'USER_EDNS' },
    { name: 'more EDNS options than the program walks (9)', frame: () => buildFrame(cookieQuery(9)), slot: 'USER_EDNS' },
    { name: 'miss', frame: () => buildFrame(query('cold.example', 'A')), slot: 'USER_MISS' },
    { name: 'same name, other type', frame: () => buildFrame(query('www.example.com', 'AAAA')), slot: 'USER_MISS' },
    { name: 'same name, other class', frame: () => buildFrame(query('www.example.com', 'A', { qclass: 'CH' })), slot: 'USER_MISS' },
    { name: 'DO set, only the plain variant is hot', frame: () => buildFrame(query('www.example.com', 'A', { edns: { do: true } })), slot: 'USER_MISS' },
  ];
  it('answers a query with eight well-formed options, and userspace would parse each malformed one as FORMERR', () => {
    put(exampleA());
    for (const fo of [{}, { ipv6: true }]) {
      const q = buildFrame(cookieQuery(8), fo);
      const r = run(q);
      expect(r.slot).toBe('TX');
      expectReply(q, r.out);
    }
    const v = new MessageView();
    expect(v.parse(cookieQuery(9))).toBe(0);
    for (const bad of Object.values(badOptions)) expect(v.parse(bad())).toBe(DnsErrorCode.BAD_OPT);
  });

  for (const c of userCases) {
    it(`sends to userspace: ${c.name}`, () => {
      put(exampleA());
      const f = c.frame();
      const r = run(f);
      expect(r.slot).toBe(c.slot);
      // No AF_XDP socket in a test run: the redirect falls back to the kernel, unchanged.
      expect(r.action).toBe(XdpAction.PASS);
      expect(r.fallback).toBe(true);
      expect(r.out.equals(f), 'frame unchanged').toBe(true);
    });
  }

  it('checks its IPv4/IPv6 addresses helpers agree with the frames', () => {
    expect(ipBytes(CLIENT4).length).toBe(4);
    expect(ipBytes(SERVER6).length).toBe(16);
    expect(parseFrame(buildFrame(q0(), { ipv6: true })).src.equals(ipBytes(CLIENT6))).toBe(true);
    expect(parseFrame(buildFrame(q0())).dst.equals(ipBytes(SERVER4))).toBe(true);
  });
});
