/** The workers' L2-L4 code: find the DNS message, then make the frame a correct reply. */
import { describe, expect, it } from 'vitest';
import { FrameInfo, parseFrame as findDns, finishReply } from '../../src/io/frame.js';
import { buildFrame, parseFrame, type FrameOptions } from '../helpers/frames.js';
import { query } from '../helpers/dns.js';
import { mulberry32 } from '../../scripts/bench/rng.js';

const cases: [string, FrameOptions][] = [
  ['IPv4', {}],
  ['IPv6', { ipv6: true }],
  ['IPv4 partial checksum, VLAN', { partialChecksum: true, vlans: [7] }],
  ['IPv6 partial checksum, QinQ', { ipv6: true, partialChecksum: true, vlans: [1, 2] }],
  ['IPv4 with Ethernet padding', { trailer: 5 }],
];

describe('worker frame handling', () => {
  for (const [name, fo] of cases) {
    it(`turns a query frame into a reply with correct checksums: ${name}`, () => {
      const q = query('www.example.com', 'A');
      const frame = buildFrame(q, fo);
      const umem = new Uint8Array(4096);
      const base = 512; // a frame somewhere inside the UMEM
      umem.set(frame, base);
      const info = new FrameInfo();
      expect(findDns(umem, base, frame.length, info)).toBe(true);
      expect(Buffer.from(umem.subarray(base + info.dns, base + info.dns + info.dnsLen)).equals(q)).toBe(true);
      // A reply longer than the query, written in place.
      const reply = Buffer.concat([q, Buffer.from('answer bytes, odd length')]);
      umem.set(reply, base + info.dns);
      const n = finishReply(umem, base, info, reply.length);
      const out = Buffer.from(umem.subarray(base, base + n));
      const p = parseFrame(out);
      const orig = parseFrame(frame);
      expect(p.udpChecksumOk).toBe(true);
      expect(p.ipHeaderChecksumOk).toBe(true);
      expect(p.ipLengthOk).toBe(true);
      expect(p.src.equals(orig.dst) && p.dst.equals(orig.src)).toBe(true);
      expect([p.sport, p.dport]).toEqual([orig.dport, orig.sport]);
      expect(p.vlans).toEqual(fo.vlans ?? []);
      expect(p.dns.equals(reply)).toBe(true);
    });
  }

  it('writes correct checksums for replies of every size and content (seeded), sums past 2^32 included', () => {
    // The sums are folded inside each run (src/io/frame.ts sumLE): replies of 0xff bytes
    // carry every word's carry, and long ones pass 2^32 before any fold.
    const rnd = mulberry32(16);
    const umem = new Uint8Array(8192);
    const info = new FrameInfo();
    for (let t = 0; t < 400; t++) {
      const q = query(`n${t}.example.com`, 'A', { id: t });
      const fo: FrameOptions = [{}, { ipv6: true }, { vlans: [3] }, { ipv6: true, partialChecksum: true }][t % 4]!;
      const frame = buildFrame(q, fo);
      const base = 2048 + 2 * (t % 2); // 4-byte aligned or not: both ways into the 32-bit loop
      umem.set(frame, base);
      expect(findDns(umem, base, frame.length, info)).toBe(true);
      const len = q.length + Math.floor(rnd() * 1400);
      const reply = Buffer.alloc(len, t % 5 === 0 ? 0xff : 0);
      q.copy(reply);
      if (t % 5 !== 0) for (let i = q.length; i < len; i++) reply[i] = Math.floor(rnd() * 256);
      umem.set(reply, base + info.dns);
      const n = finishReply(umem, base, info, len);
      const p = parseFrame(Buffer.from(umem.subarray(base, base + n)));
      expect(p.udpChecksumOk, `case ${t}, ${len} bytes`).toBe(true);
      expect(p.ipHeaderChecksumOk, `case ${t}`).toBe(true);
      expect(p.dns.equals(reply)).toBe(true);
    }
  });

  it('refuses frames that are not UDP over IP, or cut short', () => {
    const info = new FrameInfo();
    const f = buildFrame(query('a.example', 'A'));
    expect(findDns(f, 0, 13, info)).toBe(false);
    expect(findDns(f, 0, f.length - 3, info)).toBe(false);
    expect(findDns(buildFrame(query('a.example', 'A'), { protocol: 6 }), 0, f.length, info)).toBe(false);
    const arp = Buffer.concat([Buffer.alloc(12), Buffer.from([8, 6]), Buffer.alloc(28)]);
    expect(findDns(arp, 0, arp.length, info)).toBe(false);
  });

  it('refuses a query in a broadcast or multicast Ethernet frame (the reply would come from the group MAC)', () => {
    const info = new FrameInfo();
    for (const ipv6 of [false, true]) {
      const unicast = buildFrame(query('a.example', 'A'), { ipv6 });
      expect(findDns(unicast, 0, unicast.length, info)).toBe(true);
      for (const mac of ['ffffffffffff', '01005e000001', '333300000001', '030000000000']) {
        const f = Buffer.from(unicast);
        Buffer.from(mac, 'hex').copy(f, 0);
        expect(findDns(f, 0, f.length, info), mac).toBe(false);
      }
      const local = Buffer.from(unicast);
      Buffer.from('020000000001', 'hex').copy(local, 0); // locally administered unicast: fine
      expect(findDns(local, 0, local.length, info)).toBe(true);
    }
  });

  it("refuses what the XDP program's parser leaves to the kernel: IP options, fragments, lengths that do not add up", () => {
    const info = new FrameInfo();
    const v4 = () => buildFrame(query('a.example', 'A')); // IPv4 header at 14, UDP at 34
    const v6 = () => buildFrame(query('a.example', 'A'), { ipv6: true }); // IPv6 header at 14, UDP at 54
    const u16 = (f: Buffer, at: number, v: number) => f.writeUInt16BE(v, at);
    const accepted = (f: Buffer) => findDns(f, 0, f.length, info);
    expect(accepted(v4())).toBe(true);
    expect(accepted(v6())).toBe(true);
    const opts = v4();
    opts[14] = 0x46; // IHL 6: options
    expect(accepted(opts)).toBe(false);
    for (const frag of [0x2000, 0x0001, 0x3fff]) {
      const f = v4();
      u16(f, 14 + 6, frag); // MF, or an offset
      expect(accepted(f), `fragment bits ${frag.toString(16)}`).toBe(false);
    }
    const df = v4();
    u16(df, 14 + 6, 0x4000); // DF alone is fine
    expect(accepted(df)).toBe(true);
    const long4 = v4();
    u16(long4, 14 + 2, long4.length - 14 + 1); // IP total length past the frame
    expect(accepted(long4)).toBe(false);
    const short4 = v4();
    u16(short4, 14 + 2, short4.length - 14 - 1); // UDP length past the IP payload
    expect(accepted(short4)).toBe(false);
    const long6 = v6();
    u16(long6, 14 + 4, long6.length - 54 + 1); // payload length past the frame
    expect(accepted(long6)).toBe(false);
    const short6 = v6();
    u16(short6, 14 + 4, short6.length - 54 - 1); // UDP length past the payload
    expect(accepted(short6)).toBe(false);
  });
});
