/** The edge settings of the one config: defaults, bounds and the messages an operator sees. */
import { describe, expect, it } from 'vitest';
import { ACL_MAX_PER_FAMILY, resolveConfig, type ConfigInput } from '../../src/config.js';
import { loadAddon } from '../../src/native/addon.js';
import { DEFAULT_ALLOW } from '../../src/edge/acl.js';
import { RRL_DEFAULTS } from '../../src/edge/rrl.js';

const base: ConfigInput = { iface: 'eth9', upstream: '198.18.1.2' };
const resolve = (o: Partial<ConfigInput>) => resolveConfig({ ...base, ...o }, () => 2);

describe('edge configuration', () => {
  it('defaults to the private ranges, no deny, rate limiting on at 1000/s, following the interface', () => {
    const e = resolve({}).edge;
    expect(e.allow.map((c) => c.text)).toEqual(DEFAULT_ALLOW.map((t) => (t === '::1/128' ? '::1/128' : t)));
    expect(e.deny).toEqual([]);
    expect(e.rrl).toEqual(RRL_DEFAULTS);
    expect(e.rrl.rate).toBe(1000);
    expect(e.listen).toBeNull();
    expect(e.rrlBuckets).toBe(65536);
  });

  it('reads lists, keywords and fixed addresses', () => {
    const e = resolve({ allow: 'default,198.18.0.0/15', deny: '198.18.66.0/24', rrlExempt: '198.18.9.0/24', listen: '198.18.0.1, fd00::1,fe80::1%eth9' }).edge;
    expect(e.allow).toHaveLength(DEFAULT_ALLOW.length + 1);
    expect(e.deny[0]!.text).toBe('198.18.66.0/24');
    expect(e.rrlExempt[0]!.text).toBe('198.18.9.0/24');
    expect(e.listen).toEqual(['198.18.0.1', 'fd00::1', 'fe80::1%eth9']);
    expect(resolve({ allow: 'any' }).edge.allow.map((c) => c.text)).toEqual(['0.0.0.0/0', '::/0']);
    expect(resolve({ rrl: 0 }).edge.rrl.rate).toBe(0);
  });

  it('names the option and the bad value', () => {
    expect(() => resolve({ allow: '198.18.0.0/33' })).toThrow(/^--allow: '198\.18\.0\.0\/33': prefix length must be 0 to 32$/);
    expect(() => resolve({ deny: 'nope' })).toThrow(/^--deny: 'nope' is not an IPv4 or IPv6 address or prefix$/);
    expect(() => resolve({ listen: '198.18.0.0/24' })).toThrow(/^--listen: '198\.18\.0\.0\/24' is not an IPv4 or IPv6 address$/);
    expect(() => resolve({ listen: ' , ' })).toThrow(/--listen needs at least one address/);
    // No wildcard, multicast or broadcast: each message says what to do instead.
    for (const [addr, why] of [
      ['0.0.0.0', 'the unspecified address \\(a wildcard\\)'],
      ['::', 'the unspecified address \\(a wildcard\\)'],
      ['0:0::0', 'the unspecified address \\(a wildcard\\)'],
      ['224.0.0.251', 'a multicast address'],
      ['239.255.255.250', 'a multicast address'],
      ['ff02::fb', 'a multicast address'],
      ['255.255.255.255', 'the broadcast address'],
    ] as const) {
      const re = new RegExp(`^--listen: '${addr.replace(/\./g, '\\.')}' is ${why}: name this host's own unicast addresses .*or leave --listen out to answer on every address of the interface$`);
      expect(() => resolve({ listen: `198.18.0.1,${addr}` }), addr).toThrow(re);
    }
    expect(resolve({ listen: '198.18.0.1,0.0.0.1,223.255.255.254,fe80::1%eth9' }).edge.listen).toEqual(['198.18.0.1', '0.0.0.1', '223.255.255.254', 'fe80::1%eth9']);
    expect(() => resolve({ rrlBuckets: 3000 })).toThrow(/--rrl-buckets must be a power of two/);
    expect(() => resolve({ rrlSlip: 101 })).toThrow(/--rrl-slip must be an integer from 0 to 100/);
    expect(() => resolve({ rrlV6Prefix: 96 })).toThrow(/--rrl-v6-prefix must be an integer from 16 to 64/);
    for (const bad of [{ allow: 'x' }, { rrl: -1 }]) {
      try {
        resolve(bad);
      } catch (e) {
        expect((e as { code: string }).code).toBe('E_BAD_OPTION');
      }
    }
  });

  it('refuses an empty --allow, as the config file does (it would serve nobody)', () => {
    for (const allow of ['', ' , ']) expect(() => resolve({ allow })).toThrow(/^--allow must not be empty \(it would serve nobody; 'default' is the private ranges, 'any' everyone\)$/);
    expect(resolve({ deny: '' }).edge.deny).toEqual([]); // an empty deny list is no deny
  });

  it('refuses a prefix with bits set past its length, naming the network it would be', () => {
    expect(() => resolve({ allow: '203.0.113.7/16' })).toThrow(/^--allow: '203\.0\.113\.7\/16' has bits set past the prefix length: did you mean 203\.0\.0\.0\/16\?$/);
    expect(() => resolve({ deny: '198.18.0.0/24,fd00::1/64' })).toThrow(/^--deny: 'fd00::1\/64' has bits set past the prefix length: did you mean fd00::\/64\?$/);
    expect(() => resolve({ rrlExempt: '10.1.2.3/8' })).toThrow(/did you mean 10\.0\.0\.0\/8\?/);
    // The network itself, a host without a length and the keywords are fine.
    expect(resolve({ allow: '203.0.0.0/16,203.0.113.7,default,any' }).edge.allow).toHaveLength(2 + DEFAULT_ALLOW.length + 2);
  });

  it('refuses a folded access list larger than the XDP tries hold, counting each family on its own', () => {
    const v4 = (n: number, base = 0) => Array.from({ length: n }, (_, i) => `198.19.${(base + i) >> 8}.${(base + i) & 255}/32`);
    const v6 = (n: number) => Array.from({ length: n }, (_, i) => `fd00::${i.toString(16)}/128`);
    // 4096 of each family fits: the limit is per family, not for both together.
    expect(resolve({ allow: [...v4(4096), ...v6(4096)].join(',') }).edge.allow).toHaveLength(8192);
    expect(() => resolve({ allow: v4(4097).join(',') })).toThrow(/^--allow with --deny and --rrl-exempt makes 4097 distinct IPv4 prefixes; the XDP program holds at most 4096 per family: merge prefixes into wider ones$/);
    // The lists fold together: deny and exempt prefixes count too, a prefix in two lists once.
    expect(() => resolve({ allow: v4(4000).join(','), deny: v4(97, 4000).join(',') })).toThrow(/makes 4097 distinct IPv4/);
    expect(resolve({ allow: v4(4000).join(','), deny: v4(96, 4000).join(','), rrlExempt: v4(10).join(',') }).edge.deny).toHaveLength(96);
    expect(() => resolve({ allow: `default,${v6(4096).join(',')}` })).toThrow(/makes 4099 distinct IPv6 prefixes/);
  });

  it('counts against the size the XDP program was built with', () => {
    expect(ACL_MAX_PER_FAMILY).toBe(loadAddon().layout.ACL.max);
  });
});
