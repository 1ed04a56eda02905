/**
 * Randomised test of the XDP program: generated and mutated frames, at least 100,000,
 * under the edge policy (access lists with allowed, denied and refused prefixes, rate
 * limiting on, some queries to addresses it does not serve). Whatever the bytes, the
 * verdict is PASS (untouched), REDIRECT, TX or a counted DROP; every TX frame is a
 * well-formed reply to its own query with correct checksums; REFUSED only ever goes to
 * a refused source, and nothing else does; a truncated (slipped) reply carries no records.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { describePrivileged } from '../helpers/privilege.js';
import { buildFrame, parseFrame, type FrameOptions } from '../helpers/frames.js';
import { query, response, cached, SOA, decode, ednsOption, type Decoded } from '../helpers/dns.js';
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { serveLab } from '../helpers/edge.js';
import { RRL_DEFAULTS } from '../../src/edge/rrl.js';
import { ACL_REFUSE, AccessList, parseAclList } from '../../src/edge/acl.js';
import { CLIENT4, CLIENT6 } from '../helpers/frames.js';

/** Sources by what the access lists make of them (allow 198.18.0.0/16 and fd00::/16, deny two holes). */
const SOURCES = {
  allowed: [CLIENT4, CLIENT6, '198.18.3.4', 'fd00:7::9'],
  denied: ['198.18.66.1', 'fd00:66::1'],
  refused: ['198.19.1.1', 'fd01::1'],
  /** Never clients: loopback, multicast, broadcast on the wire. */
  bad: ['127.0.0.1', '224.0.0.251', '255.255.255.255', '::1', 'ff02::fb'],
};
const FOREIGN_DST = ['198.18.0.77', 'fd00::77'];
const ALLOW = '198.18.0.0/16,fd00::/16';
const DENY = '198.18.66.0/24,fd00:66::/32';
const acl = AccessList.build(parseAclList(ALLOW), parseAclList(DENY));

const FRAMES = 100_000;
const SEED = Number(process.env.HEIMDALL_FUZZ_SEED ?? 0x5eed1234);

/** xorshift32: reproducible from SEED. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

describePrivileged('XDP program under random and mutated frames', {}, () => {
  let fp: FastPath;
  const hot: { name: string; type: string }[] = [];
  /** lowercased name -> the A/AAAA data its entries carry (distinct per name and DO). */
  const expected = new Map<string, string[]>();

  beforeAll(() => {
    fp = serveLab(FastPath.open({ hotEntries: 128 }), undefined, ALLOW, DENY);
    // Low enough that the hot names' buckets overflow during the run: drops and slips happen.
    fp.setRateLimit({ ...RRL_DEFAULTS, rate: 100, slip: 2 });
    const now = fp.nowNs();
    const names = ['a.example', 'bb.example', 'www.example.com', 'mail.example.org', 'x.y.z.example.net', 'odd.example'];
    names.forEach((name, n) => {
      // Data distinct per name, so a reply built from another name's entry (the hot key
      // is a hash of the name) cannot pass for a right one.
      expected.set(name, [`198.18.7.${n + 1}`, `fd00::${n + 1}`, `198.18.8.${n + 1}`]);
      fp.put(cached(response(name, 'A', { answers: [{ type: 'A', name, ttl: 600, data: `198.18.7.${n + 1}` }] }), now));
      fp.put(cached(response(name, 'AAAA', { answers: [{ type: 'AAAA', name, ttl: 600, data: `fd00::${n + 1}` }] }), now));
      // NODATA with the SOA of an ancestor (the scrubber drops a SOA from outside the name's tree)
      fp.put(cached(response(name, 'MX', { authorities: [SOA(name.split('.').at(-1)!, 600, 60)] }), now));
      const txt = Array.from({ length: 6 }, (_, i) => ({ type: 'TXT', name, ttl: 600, data: 'v=' + 'q'.repeat(40 + i) }) as dnsPacket.Answer);
      fp.put(cached(response(name, 'TXT', { answers: txt }), now));
      fp.put(cached(response(name, 'A', { answers: [{ type: 'A', name, ttl: 600, data: `198.18.8.${n + 1}` }] }, { dnssecOk: true }), now));
      hot.push({ name, type: 'A' }, { name, type: 'AAAA' }, { name, type: 'MX' }, { name, type: 'TXT' });
    });
  });
  afterAll(() => fp?.close());

  it(`keeps every verdict safe over ${FRAMES} frames (seed ${SEED})`, () => {
    const r = rng(SEED);
    const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)]!;
    const randomCase = (s: string) => [...s].map((c) => (r() < 0.5 ? c.toUpperCase() : c)).join('');
    const seen = { tx: 0, pass: 0, redirect: 0, drop: 0, refused: 0, slipped: 0 };

    for (let i = 0; i < FRAMES; i++) {
      const base = r() < 0.7 ? pick(hot) : { name: `cold${i % 97}.example`, type: pick(['A', 'NS', 'SOA']) };
      const edns = r() < 0.5 ? { udpSize: pick([0, 512, 1232, 4096]), do: r() < 0.3, options: r() < 0.2 ? [ednsOption(10, Buffer.alloc(8, i))] : [] } : undefined;
      const dns = query(randomCase(base.name), base.type, { id: i & 0xffff, edns, cd: r() < 0.2, rd: r() < 0.9 });
      const ipv6 = r() < 0.5;
      const kind = pick(['allowed', 'allowed', 'allowed', 'allowed', 'allowed', 'allowed', 'allowed', 'denied', 'refused', 'bad'] as const);
      const src = SOURCES[kind].filter((a) => a.includes(':') === ipv6);
      const fo: FrameOptions = {
        ipv6,
        src: pick(src),
        dst: r() < 0.05 ? FOREIGN_DST[ipv6 ? 1 : 0] : undefined,
        sport: r() < 0.03 ? pick([0, 7, 19, 123]) : undefined,
        vlans: pick([[], [], [5], [6, 7], [1, 2, 3]]),
        partialChecksum: r() < 0.5,
        trailer: r() < 0.1 ? Math.floor(r() * 8) : 0,
      };
      let frame = buildFrame(dns, fo);
      const mutation = r();
      if (mutation < 0.25) {
        frame = Buffer.from(frame);
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) frame[Math.floor(r() * frame.length)] = Math.floor(r() * 256);
      } else if (mutation < 0.35) {
        frame = frame.subarray(0, 14 + Math.floor(r() * (frame.length - 14)));
      } else if (mutation < 0.4) {
        frame = Buffer.concat([frame, Buffer.from(Array.from({ length: 1 + Math.floor(r() * 40) }, () => Math.floor(r() * 256)))]);
      } else if (mutation < 0.45) {
        frame = Buffer.from(Array.from({ length: 14 + Math.floor(r() * 300) }, () => Math.floor(r() * 256)));
      }

      const res = fp.testRun(frame);
      if (res.action === XdpAction.PASS) {
        seen.pass++;
        if (!res.frame.equals(frame)) throw new Error(`frame ${i}: PASS changed the frame`);
      } else if (res.action === XdpAction.REDIRECT) {
        seen.redirect++;
      } else if (res.action === XdpAction.DROP) {
        seen.drop++;
      } else if (res.action === XdpAction.TX) {
        seen.tx++;
        const out = parseFrame(res.frame);
        const inp = parseFrame(frame);
        if (!out.udpChecksumOk || !out.ipHeaderChecksumOk || !out.ipLengthOk) throw new Error(`frame ${i}: bad checksum or length in reply`);
        if (!out.src.equals(inp.dst) || !out.dst.equals(inp.src) || out.sport !== inp.dport || out.dport !== inp.sport) {
          throw new Error(`frame ${i}: reply not addressed to the sender`);
        }
        const reply = decode(out.dns);
        const asked = decode(inp.dns);
        if (reply.id !== asked.id || reply.type !== 'response') throw new Error(`frame ${i}: not a response to its query`);
        const qEnd = 12 + inp.dns.subarray(12).indexOf(0) + 5;
        if (!out.dns.subarray(12, qEnd).equals(inp.dns.subarray(12, qEnd))) throw new Error(`frame ${i}: question bytes changed`);
        const qname = asked.questions![0]!.name.toLowerCase();
        if (reply.questions![0]!.name.toLowerCase() !== qname) throw new Error(`frame ${i}: wrong question`);
        const refusedSource = (acl.decide({ family: inp.src.length === 4 ? 4 : 6, bytes: Buffer.concat([inp.src, Buffer.alloc(16 - inp.src.length)]) }) & 0x7f) === ACL_REFUSE;
        if ((reply.rcode === 'REFUSED') !== refusedSource) throw new Error(`frame ${i}: REFUSED ${reply.rcode === 'REFUSED'} for a ${refusedSource ? 'refused' : 'served'} source`);
        if (reply.rcode === 'REFUSED') seen.refused++;
        if ((reply.flags & 0x0200) !== 0) {
          seen.slipped++;
          if ((reply.answers ?? []).length + (reply.authorities ?? []).length > 0) throw new Error(`frame ${i}: truncated reply with records`);
        }
        for (const a of reply.answers ?? []) {
          if ((a.type === 'A' || a.type === 'AAAA') && !expected.get(qname)?.includes(String(a.data))) {
            throw new Error(`frame ${i}: ${a.type} ${String(a.data)} is not ${qname}'s`);
          }
        }
      } else {
        throw new Error(`frame ${i}: verdict ${res.action}`);
      }
    }
    // The mix must exercise every outcome that exists without a bound socket.
    expect(seen.tx).toBeGreaterThan(FRAMES / 10);
    expect(seen.pass).toBeGreaterThan(FRAMES / 10);
    expect(seen.drop).toBeGreaterThan(FRAMES / 100);
    expect(seen.refused).toBeGreaterThan(0);
    expect(seen.slipped).toBeGreaterThan(0);
    expect(seen.tx + seen.pass + seen.redirect + seen.drop).toBe(FRAMES);
    const s = fp.stats();
    expect(s.DROP_REWRITE).toBe(0n);
    // Every drop is counted under a reason.
    const drops = Object.entries(s).filter(([k]) => k.startsWith('DROP_')).reduce((a, [, v]) => a + v, 0n);
    expect(drops).toBe(BigInt(seen.drop));
    for (const k of ['DROP_DENIED', 'DROP_BAD_SOURCE', 'DROP_SOURCE_PORT', 'DROP_RATE_LIMITED', 'PASS_NOT_LOCAL', 'TX_REFUSED', 'TX_SLIP']) expect(s[k], k).toBeGreaterThan(0n);
  }, 300_000);
});
