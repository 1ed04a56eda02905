import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../../src/upstream/errors.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { formatUpstream, parseUpstreams } from '../../src/upstream/upstream.js';
import { FALLBACK_PORT_RANGE, kernelPortRange, randomPort } from '../../src/upstream/random.js';

describe('parseUpstreams', () => {
  it('parses IPv4, IPv4:port, [IPv6], [IPv6]:port and bare IPv6, canonicalized', () => {
    expect(parseUpstreams('198.18.0.3,198.18.0.4:5353,[fd00::3]:53')).toEqual([
      { host: '198.18.0.3', port: 53, family: 4 },
      { host: '198.18.0.4', port: 5353, family: 4 },
      { host: 'fd00::3', port: 53, family: 6 },
    ]);
    expect(parseUpstreams(' 127.0.0.1:5300 , [::1] ,FD00:0:0:0:0:0:0:A')).toEqual([
      { host: '127.0.0.1', port: 5300, family: 4 },
      { host: '::1', port: 53, family: 6 },
      { host: 'fd00::a', port: 53, family: 6 },
    ]);
    expect(parseUpstreams('[::ffff:198.18.0.9]:54')).toEqual([{ host: '198.18.0.9', port: 54, family: 4 }]);
    expect(parseUpstreams('[fd00::3]:5353').map(formatUpstream)).toEqual(['[fd00::3]:5353']);
  });

  it.each([
    ['', /empty/],
    ['   ', /empty/],
    ['198.18.0.3,', /empty entry/],
    ['198.18.0.3,,198.18.0.4', /empty entry/],
    ['dns.example', /host names are not resolved/],
    ['dns.example:53', /host names are not resolved/],
    ['198.18.0.300', /not an IPv4 address/],
    ['198.018.0.3', /not an IPv4 address/],
    ['198.18.0.3:0', /outside 1\.\.65535/],
    ['198.18.0.3:65536', /outside 1\.\.65535/],
    ['198.18.0.3:53x', /not a number/],
    ['198.18.0.3:', /not a number/],
    ['[fd00::3', /expected/],
    ['[fd00::3]53', /expected/],
    ['[fd00::3]:', /not a number/],
    ['[fe80::1%eth0]:53', /scope IDs/],
    ['[198.18.0.3]:53', /not an IPv6 address/],
    ['fd00::g', /not an IPv6 address/],
    ['0.0.0.0', /unspecified/],
    ['[::]:53', /unspecified/],
    ['224.0.0.251:5353', /multicast/],
    ['[ff02::fb]:5353', /multicast/],
    ['198.18.0.3,198.18.0.3:53', /listed twice/],
  ])('rejects %j with a clear message', (list, why) => {
    let err: unknown;
    try {
      parseUpstreams(list);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe('UPSTREAM_BAD_CONFIG');
    expect((err as Error).message).toMatch(why);
  });
});

describe('Forwarder options', () => {
  const up = { host: '127.0.0.1', port: 5353, family: 4 as const };
  it.each([
    [{ upstreams: [] }, /at least one upstream/],
    [{ upstreams: [up], timeoutMs: 0 }, /timeoutMs/],
    [{ upstreams: [up], deadlineMs: -1 }, /deadlineMs/],
    [{ upstreams: [up], udpSize: 100 }, /udpSize/],
    [{ upstreams: [up], maxInflight: 0 }, /maxInflight/],
    [{ upstreams: [up], health: { failuresToDown: 0 } }, /health/],
    [{ upstreams: [{ host: 'localhost', port: 53, family: 4 as const }] }, /host names/],
    [{ upstreams: [{ host: '::1', port: 53, family: 4 as const }] }, /family/],
    [{ upstreams: [up], portRange: { low: 70000, high: 80000 } }, /port range/],
  ])('rejects %j', (o, why) => {
    expect(() => new Forwarder(o as never)).toThrow(why);
  });
});

describe('random source ports', () => {
  it('reads the kernel ephemeral range and draws only inside it, skipping reserved ports', () => {
    const r = kernelPortRange();
    expect(r.low).toBeGreaterThanOrEqual(1024);
    expect(r.high).toBeGreaterThan(r.low);
    const small = { low: 40000, high: 40009, reserved: new Set([40003, 40004]) };
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(randomPort(small));
    expect([...seen].sort()).toEqual([40000, 40001, 40002, 40005, 40006, 40007, 40008, 40009]);
    expect(randomPort({ low: 40000, high: 40000, reserved: new Set([40000]) })).toBe(0);
    expect(FALLBACK_PORT_RANGE).toEqual({ low: 32768, high: 60999 });
  });
});
