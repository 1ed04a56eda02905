import { describe, expect, it } from 'vitest';
import { cidrContains, formatAddr, parseAddr, parseCidr, parseCidrList, prefixKey } from '../../src/net/addr.js';

describe('addresses and prefixes', () => {
  it('parses both families, maps ::ffff:a.b.c.d to IPv4 and ignores a zone', () => {
    expect(parseAddr('198.18.0.2')).toEqual({ family: 4, bytes: Uint8Array.from([198, 18, 0, 2, ...new Array(12).fill(0)]) });
    expect(parseAddr('::ffff:198.18.0.2')!.family).toBe(4);
    expect(formatAddr(parseAddr('::ffff:198.18.0.2')!)).toBe('198.18.0.2');
    expect(formatAddr(parseAddr('fd00:1::2')!)).toBe('fd00:1::2');
    expect(formatAddr(parseAddr('fe80::1%eth0')!)).toBe('fe80::1');
    expect(formatAddr(parseAddr('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(formatAddr(parseAddr('::')!)).toBe('::');
    expect(parseAddr('256.1.1.1')).toBeNull();
    expect(parseAddr('example')).toBeNull();
  });

  it('normalises prefixes and says which part is wrong', () => {
    expect(parseCidr('10.1.2.3/8').text).toBe('10.0.0.0/8');
    expect(parseCidr('fd00:1::2').text).toBe('fd00:1::2/128');
    expect(parseCidr('fc00::/7').len).toBe(7);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix length must be 0 to 32/);
    expect(() => parseCidr('nope/8')).toThrow(/not an IPv4 or IPv6/);
    expect(parseCidrList(' 10.0.0.0/8, ::1 ,')).toHaveLength(2);
    expect(parseCidrList('')).toEqual([]);
  });

  it('contains exactly the addresses under the prefix, of its family only', () => {
    const c = parseCidr('198.18.0.0/15');
    expect(cidrContains(c, parseAddr('198.19.255.255')!)).toBe(true);
    expect(cidrContains(c, parseAddr('198.20.0.0')!)).toBe(false);
    expect(cidrContains(c, parseAddr('::ffff:198.18.0.1')!)).toBe(true);
    expect(cidrContains(parseCidr('fe80::/10'), parseAddr('febf::1')!)).toBe(true);
    expect(cidrContains(parseCidr('fe80::/10'), parseAddr('fec0::1')!)).toBe(false);
    expect(cidrContains(parseCidr('0.0.0.0/0'), parseAddr('::1')!)).toBe(false);
  });

  it('keys clients by their /24 or /56', () => {
    expect(prefixKey(parseAddr('198.18.0.2')!)).toBe(prefixKey(parseAddr('198.18.0.250')!));
    expect(prefixKey(parseAddr('198.18.1.2')!)).not.toBe(prefixKey(parseAddr('198.18.0.2')!));
    expect(prefixKey(parseAddr('fd00:1:2:3300::1')!)).toBe(prefixKey(parseAddr('fd00:1:2:33ff::9')!));
    expect(prefixKey(parseAddr('fd00:1:2:3400::1')!)).not.toBe(prefixKey(parseAddr('fd00:1:2:3300::1')!));
    expect(prefixKey(parseAddr('198.18.0.2')!, 32)).not.toBe(prefixKey(parseAddr('198.18.0.3')!, 32));
  });
});
