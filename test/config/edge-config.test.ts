/** The edge settings of the one config: defaults, bounds and the messages an operator sees. */
import { describe, expect, it } from 'vitest';
import { resolveConfig, type ConfigInput } from '../../src/config.js';
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
});
