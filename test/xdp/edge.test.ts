/**
 * The XDP program's edge verdicts under BPF_PROG_TEST_RUN: own addresses only, access
 * lists (longest prefix, IPv4, IPv6, VLAN), reflection guards, and response rate
 * limiting (fill, drop, slip as TC=1 with correct checksums, refill after the window,
 * isolation between client networks, exemption). Each case checks the one counter that
 * moved and the frame that came out.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { buildFrame, parseFrame, CLIENT4, CLIENT6, SERVER4, SERVER6, type FrameOptions } from '../helpers/frames.js';
import { query, response, cached, SOA, decode } from '../helpers/dns.js';
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { serveLab } from '../helpers/edge.js';
import { RRL_BUCKET_BYTES, RRL_BURST, RRL_CLASS, RRL_STAMP_SHIFT, RRL_STAMP_AHEAD, RRL_UNIT_SHIFT, RRL_WINDOW_MAX, RRL_DEFAULTS, RRL_MUL1, RRL_MUL2, RRL_TOKEN_ALL, RRL_TOKEN_ERROR, RateLimiter, SEND, type RrlSettings } from '../../src/edge/rrl.js';
import { answerToken } from '../../src/xdp/hot-entry.js';
import { parseAddr } from '../../src/net/addr.js';
import { ACL_ALLOW, ACL_DENY, ACL_REFUSE, ACL_RRL_EXEMPT, AccessList, parseAclList } from '../../src/edge/acl.js';

const NAME = 'www.example.com';

describePrivileged('XDP edge verdicts under BPF_PROG_TEST_RUN', {}, () => {
  let fp: FastPath;

  // Allowed: the lab, except a denied /24 with an allowed /28 inside it (longest wins).
  const ALLOW = '198.18.0.0/15,fd00::/16,198.18.66.16/28';
  const DENY = '198.18.66.0/24,fd00:66::/32';

  beforeAll(() => {
    fp = serveLab(FastPath.open({ hotEntries: 64, rrlBuckets: 1024 }), [SERVER4, SERVER6], ALLOW, DENY);
  });
  afterAll(() => fp?.close());
  beforeEach(() => {
    fp.setRateLimit({ ...RRL_DEFAULTS, rate: 0 });
    fp.clearRateLimit();
    fp.resetStats();
    fp.put(cached(response(NAME, 'A', { answers: [{ type: 'A', name: NAME, ttl: 300, data: '198.18.10.1' }] }), fp.nowNs()));
  });

  function run(frame: Buffer): { action: number; out: Buffer; slot: string } {
    const r = fp.testRun(frame);
    const moved = Object.entries(fp.stats()).filter(([n, v]) => v > 0n && n !== 'REDIRECT_FALLBACK');
    expect(moved.length, `one outcome counter moved: ${JSON.stringify(moved.map(([n]) => n))}`).toBe(1);
    fp.resetStats();
    return { action: r.action, out: r.frame, slot: moved[0]![0] };
  }

  const hot = (fo: FrameOptions = {}, q = query(NAME, 'A', { id: 77 })): Buffer => buildFrame(q, fo);

  function expectWellFormedReply(qf: Buffer, out: Buffer): ReturnType<typeof decode> {
    const q = parseFrame(qf);
    const p = parseFrame(out);
    expect(p.udpChecksumOk && p.ipHeaderChecksumOk && p.ipLengthOk, 'checksums and lengths').toBe(true);
    expect(p.src.equals(q.dst) && p.dst.equals(q.src), 'addressed back to the sender').toBe(true);
    const d = decode(p.dns);
    expect(d.id).toBe(decode(q.dns).id);
    expect(d.questions![0]!.name.toLowerCase()).toBe(NAME);
    return d;
  }

  describe('own addresses only', () => {
    for (const [fam, dst] of [['IPv4', '198.18.0.77'], ['IPv6', 'fd00::77']] as const) {
      it(`passes a query to another address (${fam} transit) to the kernel untouched`, () => {
        const f = hot({ ipv6: fam === 'IPv6', dst });
        const r = run(f);
        expect(r.action).toBe(XdpAction.PASS);
        expect(r.slot).toBe('PASS_NOT_LOCAL');
        expect(r.out.equals(f)).toBe(true);
      });
    }

    it('answers on an address once it is served, and stops when it is not', () => {
      const f = hot({ dst: '198.18.0.9' });
      expect(run(f).slot).toBe('PASS_NOT_LOCAL');
      serveLab(fp, [SERVER4, SERVER6, '198.18.0.9'], ALLOW, DENY);
      expect(run(f).slot).toBe('TX');
      serveLab(fp, [SERVER4, SERVER6], ALLOW, DENY);
      expect(run(f).slot).toBe('PASS_NOT_LOCAL');
    });
  });

  describe('access lists', () => {
    const cases: { name: string; fo: FrameOptions; slot: string; action: number }[] = [
      { name: 'an allowed IPv4 client is answered', fo: { src: CLIENT4 }, slot: 'TX', action: XdpAction.TX },
      { name: 'an allowed IPv4 client in a block with no longer prefix is answered (the /16 table)', fo: { src: '198.19.5.5' }, slot: 'TX', action: XdpAction.TX },
      { name: 'an allowed IPv6 client is answered', fo: { ipv6: true, src: CLIENT6 }, slot: 'TX', action: XdpAction.TX },
      { name: 'an allowed client behind a VLAN tag is answered', fo: { src: CLIENT4, vlans: [7] }, slot: 'TX', action: XdpAction.TX },
      { name: 'a denied IPv4 client gets nothing', fo: { src: '198.18.66.1' }, slot: 'DROP_DENIED', action: XdpAction.DROP },
      { name: 'a denied IPv6 client gets nothing', fo: { ipv6: true, src: 'fd00:66::5' }, slot: 'DROP_DENIED', action: XdpAction.DROP },
      { name: 'a denied client behind two VLAN tags gets nothing', fo: { src: '198.18.66.1', vlans: [5, 6] }, slot: 'DROP_DENIED', action: XdpAction.DROP },
      { name: 'an allowed /28 inside a denied /24 is answered (longest prefix)', fo: { src: '198.18.66.20' }, slot: 'TX', action: XdpAction.TX },
      { name: 'the address just past that /28 is denied', fo: { src: '198.18.66.32' }, slot: 'DROP_DENIED', action: XdpAction.DROP },
      { name: 'an IPv4 client in no list is refused', fo: { src: '198.20.1.1' }, slot: 'TX_REFUSED', action: XdpAction.TX },
      { name: 'an IPv6 client in no list is refused', fo: { ipv6: true, src: 'fd01::1', dst: SERVER6 }, slot: 'TX_REFUSED', action: XdpAction.TX },
      { name: 'a refused client behind a VLAN tag is refused', fo: { src: '198.20.1.1', vlans: [9] }, slot: 'TX_REFUSED', action: XdpAction.TX },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const f = hot(c.fo);
        const r = run(f);
        expect(r.slot).toBe(c.slot);
        expect(r.action).toBe(c.action);
        if (c.slot === 'TX') expect(expectWellFormedReply(f, r.out).answers).toHaveLength(1);
        if (c.slot === 'TX_REFUSED') {
          const d = expectWellFormedReply(f, r.out);
          expect(d.rcode).toBe('REFUSED');
          expect(d.answers ?? []).toHaveLength(0);
          expect((d.flags & 0x0200) !== 0).toBe(false);
        }
      });
    }

    it('decides every IPv4 source as the lists do, through the /16 table or the trie', () => {
      // Blocks with only short prefixes are answered by the /16 table, blocks holding a
      // longer prefix by the trie; random sources over both, against AccessList.decide.
      const acl = AccessList.build(parseAclList(ALLOW), parseAclList(DENY));
      let seed = 99;
      const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const want = { [ACL_ALLOW]: 'TX', [ACL_DENY]: 'DROP_DENIED', [ACL_REFUSE]: 'TX_REFUSED' } as Record<number, string>;
      for (let i = 0; i < 1500; i++) {
        const src = `198.${17 + Math.floor(rnd() * 4)}.${rnd() < 0.5 ? 66 : Math.floor(rnd() * 256)}.${1 + Math.floor(rnd() * 250)}`;
        expect(run(hot({ src })).slot, src).toBe(want[acl.decide(parseAddr(src)!) & 0x7f]);
      }
    });

    it("fills each family's trie to 4096 prefixes, and refuses one more before writing anything", () => {
      // ALLOW and DENY fold to 3 IPv4 and 2 IPv6 prefixes; 4093 /24s make the IPv4 trie full.
      const nets = (n: number) => Array.from({ length: n }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
      const v6 = Array.from({ length: 50 }, (_, i) => `fd00:99:${i.toString(16)}::/48`);
      const list = (n: number) => AccessList.build(parseAclList([ALLOW, ...nets(n), ...v6].join(',')), parseAclList(DENY));
      try {
        // Full in IPv4 with IPv6 prefixes besides: the bound is per trie, not for both together.
        fp.setAccessList(list(4093));
        expect(run(hot({ src: '10.15.252.1' })).slot).toBe('TX');
        expect(run(hot({ src: '10.16.0.1' })).slot).toBe('TX_REFUSED');
        expect(() => fp.setAccessList(list(4094))).toThrow(/^access lists hold at most 4096 prefixes per family, got 4097 for acl_v4$/);
        // Nothing of the refused list was written: the one before still decides.
        expect(run(hot({ src: '10.15.252.1' })).slot).toBe('TX');
        expect(run(hot({ src: '10.15.253.1' })).slot).toBe('TX_REFUSED');
      } finally {
        serveLab(fp, [SERVER4, SERVER6], ALLOW, DENY);
      }
      expect(run(hot({ src: '10.15.252.1' })).slot).toBe('TX_REFUSED');
    });

    it('refuses with an OPT when the query had one, never the hot answer', () => {
      const f = hot({ src: '198.20.1.1' }, query(NAME, 'A', { id: 9, edns: { udpSize: 4096, do: true } }));
      const r = run(f);
      const d = expectWellFormedReply(f, r.out);
      expect(d.rcode).toBe('REFUSED');
      expect(d.additionals?.some((a) => a.type === 'OPT')).toBe(true);
    });

    it('drops what a refused client sends that is not a plain query (no error reply to junk)', () => {
      const junk = Buffer.from('hello, chargen: !"#$%&()*+,-./0123456789', 'latin1');
      expect(run(buildFrame(junk, { src: '198.20.1.1' })).slot).toBe('DROP_REFUSED_JUNK');
      const notify = query(NAME, 'SOA');
      notify[2] = 0x20; // opcode NOTIFY
      expect(run(buildFrame(notify, { src: '198.20.1.1' })).slot).toBe('DROP_REFUSED_JUNK');
    });
  });

  describe('reflection guards', () => {
    for (const port of [0, 7, 13, 17, 19, 37, 111, 123, 137, 161, 389, 1900, 5353, 11211]) {
      it(`drops a query from source port ${port}`, () => {
        const r = run(hot({ sport: port }));
        expect(r.slot).toBe('DROP_SOURCE_PORT');
        expect(r.action).toBe(XdpAction.DROP);
      });
    }
    it('answers a query from source port 53 (resolvers may use it)', () => {
      expect(run(hot({ sport: 53 })).slot).toBe('TX');
    });
    for (const [fam, src] of [
      ['IPv4', '0.0.0.0'], ['IPv4', '127.0.0.1'], ['IPv4', '224.0.0.251'], ['IPv4', '255.255.255.255'], ['IPv4', '240.1.2.3'],
      ['IPv6', '::'], ['IPv6', '::1'], ['IPv6', 'ff02::fb'], ['IPv6', '::ffff:c612:2'],
    ] as const) {
      it(`drops a query from ${src} (${fam}), which cannot be a client`, () => {
        const r = run(hot({ ipv6: fam === 'IPv6', src }));
        expect(r.slot).toBe('DROP_BAD_SOURCE');
        expect(r.action).toBe(XdpAction.DROP);
      });
    }
    it('drops a query in a broadcast or multicast Ethernet frame (a reply would come from the group MAC); other traffic in one passes', () => {
      const group = (f: Buffer, mac = 'ffffffffffff'): Buffer => (Buffer.from(mac, 'hex').copy(f, 0), f);
      for (const mac of ['ffffffffffff', '01005e000001', '333300000001']) {
        for (const fo of [{}, { ipv6: true }, { src: '198.20.1.1' }, { vlans: [7] }] as FrameOptions[]) {
          const f = group(hot(fo), mac);
          const r = run(f);
          expect([r.slot, r.action], `${mac} ${JSON.stringify(fo)}`).toEqual(['DROP_L2_GROUP', XdpAction.DROP]);
        }
      }
      // Not ours to judge: transit DNS and UDP to other ports pass to the kernel untouched.
      const transit = group(hot({ dst: '198.18.77.1' }));
      expect([run(transit).slot, fp.testRun(transit).frame.equals(transit)]).toEqual(['PASS_NOT_LOCAL', true]);
      fp.resetStats();
      expect(run(group(hot({ dport: 443 }))).slot).toBe('PASS_NOT_PORT');
      // The same query in a unicast frame is answered.
      expect(run(hot()).slot).toBe('TX');
    });

    it('drops a response (QR=1), from an allowed client too', () => {
      const q = query(NAME, 'A');
      q[2]! |= 0x80;
      expect(run(buildFrame(q)).slot).toBe('DROP_RESPONSE');
      expect(run(buildFrame(q, { src: '198.20.1.1' })).slot).toBe('DROP_RESPONSE');
    });
  });

  describe('response rate limiting', () => {
    const rrl = (o: Partial<RrlSettings>): void => fp.setRateLimit({ ...RRL_DEFAULTS, ...o });

    it('sends a burst of `rate` answers, then drops, slipping every slip-th as TC=1 with correct checksums', () => {
      rrl({ rate: 20, slip: 3, window: 5 });
      const slots: string[] = [];
      let slipped: { f: Buffer; out: Buffer } | undefined;
      for (let i = 0; i < 50; i++) {
        const f = hot({ src: CLIENT4 }, query(NAME, 'A', { id: i, edns: {} }));
        const r = run(f);
        slots.push(r.slot);
        if (r.slot === 'TX_SLIP' && !slipped) slipped = { f, out: r.out };
      }
      // The burst is a second's worth; the test runs in well under 1/20 s, so about 20.
      const sent = slots.filter((s) => s === 'TX').length;
      expect(sent).toBeGreaterThanOrEqual(20);
      expect(sent).toBeLessThanOrEqual(22);
      expect(slots.slice(0, 20).every((s) => s === 'TX')).toBe(true);
      const limited = slots.length - sent;
      const slips = slots.filter((s) => s === 'TX_SLIP').length;
      expect(slips).toBe(Math.floor(limited / 3));
      expect(slots.filter((s) => s === 'DROP_RATE_LIMITED').length).toBe(limited - slips);
      const d = expectWellFormedReply(slipped!.f, slipped!.out);
      expect((d.flags & 0x0200) !== 0).toBe(true);
      expect(d.rcode).toBe('NOERROR');
      expect(d.answers ?? []).toHaveLength(0);
      expect((d.additionals ?? []).filter((a) => a.type !== 'OPT')).toHaveLength(0);
    });

    it('keeps client networks apart: another /24 and another /56 are still answered', () => {
      rrl({ rate: 5, slip: 0 });
      for (let i = 0; i < 10; i++) run(hot({ src: '198.18.0.2' }));
      expect(run(hot({ src: '198.18.0.200' })).slot).toBe('DROP_RATE_LIMITED'); // same /24
      expect(run(hot({ src: '198.18.1.2' })).slot).toBe('TX');
      for (let i = 0; i < 10; i++) run(hot({ ipv6: true, src: 'fd00:0:0:1::2' }));
      expect(run(hot({ ipv6: true, src: 'fd00:0:0:ff::9' })).slot).toBe('DROP_RATE_LIMITED'); // same /56
      expect(run(hot({ ipv6: true, src: 'fd00:0:0:100::2' })).slot).toBe('TX');
    });

    it('limits each answer on its own: another name is still answered', () => {
      rrl({ rate: 5, slip: 0 });
      fp.put(cached(response('other.example', 'A', { answers: [{ type: 'A', name: 'other.example', ttl: 300, data: '198.18.10.9' }] }), fp.nowNs()));
      for (let i = 0; i < 10; i++) run(hot({ src: CLIENT4 }));
      expect(run(hot({ src: CLIENT4 })).slot).toBe('DROP_RATE_LIMITED');
      expect(run(hot({ src: CLIENT4 }, query('other.example', 'A'))).slot).toBe('TX');
    });

    it('rate limits REFUSED as one error class per client network', () => {
      rrl({ rate: 5, slip: 0 });
      const slots = Array.from({ length: 12 }, (_, i) => run(hot({ src: '198.20.1.1' }, query(`n${i}.example`, 'A'))).slot);
      expect(slots.filter((s) => s === 'TX_REFUSED').length).toBeLessThanOrEqual(6);
      expect(slots.filter((s) => s === 'DROP_RATE_LIMITED').length).toBeGreaterThanOrEqual(6);
    });

    it('limits NXDOMAIN by zone, so a random-subdomain flood is one class', () => {
      rrl({ rate: 5, slip: 0 });
      const now = fp.nowNs();
      for (let i = 0; i < 12; i++) {
        fp.put(cached(response(`r${i}.example`, 'A', { authorities: [SOA('example', 300, 60)] }, { rcode: 'NXDOMAIN' }), now));
      }
      const slots = Array.from({ length: 12 }, (_, i) => run(hot({ src: CLIENT4 }, query(`r${i}.example`, 'A'))).slot);
      expect(slots.filter((s) => s === 'TX').length).toBeLessThanOrEqual(6);
    });

    it('refills after the window: a flood is limited until it has been quiet that long', async () => {
      rrl({ rate: 10, slip: 0, window: 1 });
      for (let i = 0; i < 200; i++) run(hot({ src: CLIENT4 }));
      expect(run(hot({ src: CLIENT4 })).slot).toBe('DROP_RATE_LIMITED');
      // The debt is at most one window (1 s): it is paid after 1 s, and the burst is back after 2 s.
      await new Promise((r) => setTimeout(r, 600));
      expect(run(hot({ src: CLIENT4 })).slot).toBe('DROP_RATE_LIMITED');
      await new Promise((r) => setTimeout(r, 1600));
      const slots = Array.from({ length: 8 }, () => run(hot({ src: CLIENT4 })).slot);
      expect(slots.every((s) => s === 'TX')).toBe(true);
    });

    it('credits a bucket idle for weeks in full (a stamp 27 or 40 days old is not read as ahead), and a stamp just ahead not at all', () => {
      const settings = { ...RRL_DEFAULTS, rate: 10, slip: 0, window: 5 };
      rrl(settings);
      const { region, buckets, seed } = fp.rrlRegion();
      const user = new RateLimiter(region, buckets, seed, settings);
      const entry = cached(response(NAME, 'A', { answers: [{ type: 'A', name: NAME, ttl: 300, data: '198.18.10.1' }] }), fp.nowNs());
      const b = user.bucketOf(parseAddr(CLIENT4)!, answerToken(entry)) * 4;
      const i32 = new Int32Array(region);
      const u32 = new Uint32Array(region);
      const unitsPerDay = (86_400 * 1e9) / 2 ** RRL_STAMP_SHIFT;
      // The program's clock cannot be moved, so the bucket is put where a flood 27 (40)
      // days ago left it: the whole window in debt, stamped then.
      for (const days of [27, 40]) {
        const now = Math.floor(fp.nowNs() / 2 ** RRL_STAMP_SHIFT);
        i32[b] = -5 * RRL_BURST;
        u32[b + 1] = (now - Math.round(days * unitsPerDay)) >>> 0;
        expect(run(hot({ src: CLIENT4 })).slot, `${days} days idle`).toBe('TX');
        expect(Math.abs(((u32[b + 1]! - now) | 0)), 'stamped now').toBeLessThan(100);
      }
      // A stamp 1 s ahead (userspace's precise clock) earns nothing and stays.
      const now = Math.floor(fp.nowNs() / 2 ** RRL_STAMP_SHIFT);
      const ahead = (now + Math.round(1e9 / 2 ** RRL_STAMP_SHIFT)) >>> 0;
      i32[b] = 0;
      u32[b + 1] = ahead;
      expect(run(hot({ src: CLIENT4 })).slot).toBe('DROP_RATE_LIMITED');
      expect(u32[b + 1]).toBe(ahead);
    });

    it('agrees with userspace on the shared numbers (bpf/heimdall.h against src/edge/rrl.ts)', () => {
      const l = fp.layout;
      expect([l.RRL_MUL1, l.RRL_MUL2, l.RRL_BUCKET_SIZE, l.RRL_BURST, l.RRL_UNIT_SHIFT, l.RRL_STAMP_SHIFT, l.RRL_STAMP_AHEAD, l.RRL_WINDOW_MAX, l.RRL_TOKEN_ERROR, l.RRL_TOKEN_ALL]).toEqual([
        RRL_MUL1, RRL_MUL2, RRL_BUCKET_BYTES, RRL_BURST, RRL_UNIT_SHIFT, RRL_STAMP_SHIFT, RRL_STAMP_AHEAD, RRL_WINDOW_MAX, RRL_TOKEN_ERROR, RRL_TOKEN_ALL,
      ]);
      expect(l.RRL_CLASS).toMatchObject({ answer: RRL_CLASS.answer, nodata: RRL_CLASS.nodata, nxdomain: RRL_CLASS.nxdomain, error: RRL_CLASS.error });
      expect([l.ACL.refuse, l.ACL.allow, l.ACL.deny, l.ACL.rrlExempt]).toEqual([ACL_REFUSE, ACL_ALLOW, ACL_DENY, ACL_RRL_EXEMPT]);
    });

    it('shares its buckets with userspace: answers either side sends count on both', () => {
      const settings = { ...RRL_DEFAULTS, rate: 10, slip: 0 };
      rrl(settings);
      const { region, buckets, seed } = fp.rrlRegion();
      const user = new RateLimiter(region, buckets, seed, settings);
      const entry = cached(response(NAME, 'A', { answers: [{ type: 'A', name: NAME, ttl: 300, data: '198.18.10.1' }] }), fp.nowNs());
      const token = answerToken(entry);
      // Userspace sends the whole burst to 198.18.0.2; XDP then limits its /24.
      for (let i = 0; i < 10; i++) expect(user.charge(parseAddr(CLIENT4)!, token, fp.nowNs())).toBe(SEND);
      expect(run(hot({ src: '198.18.0.99' })).slot).toBe('DROP_RATE_LIMITED');
      // XDP spends another network's burst; userspace finds it spent.
      for (let i = 0; i < 10; i++) expect(run(hot({ ipv6: true, src: CLIENT6 })).slot).toBe('TX');
      expect(user.charge(parseAddr(CLIENT6)!, token, fp.nowNs())).not.toBe(SEND);
      // REFUSED is one class on both sides too.
      for (let i = 0; i < 10; i++) user.charge(parseAddr('198.20.1.1')!, RRL_TOKEN_ERROR, fp.nowNs());
      expect(run(hot({ src: '198.20.1.1' })).slot).toBe('DROP_RATE_LIMITED');
    });

    it('never limits an exempt client', () => {
      rrl({ rate: 2, slip: 0 });
      fp.setAccessList(AccessList.build(parseAclList(ALLOW), parseAclList(DENY), parseAclList('198.18.9.0/24')));
      for (let i = 0; i < 20; i++) expect(run(hot({ src: '198.18.9.9' })).slot).toBe('TX');
      expect(run(hot({ src: CLIENT4 })).slot).toBe('TX');
      for (let i = 0; i < 5; i++) run(hot({ src: CLIENT4 }));
      expect(run(hot({ src: CLIENT4 })).slot).toBe('DROP_RATE_LIMITED');
      serveLab(fp, [SERVER4, SERVER6], ALLOW, DENY);
    });
  });
});

