/**
 * The file-descriptor bound: RLIMIT_NOFILE read and raised at start (prlimit, faked
 * here), the worst case the configured limits allow, and the refusal to start when it
 * does not fit in half the limit. Plus the settings behind it in resolveConfig.
 */
import { describe, expect, it } from 'vitest';
import { resolveConfig, type ConfigInput } from '../../src/config.js';
import { checkFdLimit, fdWorstCase, FIXED_FDS, raiseNofile, readNofile } from '../../src/service/fd-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 20000                files
`;

const cfg = (o: Partial<ConfigInput> = {}) => resolveConfig({ iface: 'hx0', upstream: '198.18.1.2,198.18.1.3', queues: 2, ...o }, () => 2);

describe('RLIMIT_NOFILE', () => {
  it('reads the soft and hard limits from /proc/self/limits text, and this process has one', () => {
    expect(readNofile(LIMITS)).toEqual({ soft: 1024, hard: 20000 });
    expect(readNofile(LIMITS.replace('1024 ', 'unlimited ').replace('20000', 'unlimited'))).toEqual({ soft: Infinity, hard: Infinity });
    const own = readNofile();
    expect(own.soft).toBeGreaterThan(0);
    expect(own.soft).toBeLessThanOrEqual(own.hard);
  });

  it('raises the soft limit to the hard one with prlimit only when it is lower, and survives prlimit failing', () => {
    let now = { soft: 1024, hard: 20000 };
    const calls: string[][] = [];
    const r = raiseNofile(
      () => now,
      (cmd, args) => {
        calls.push([cmd, ...args]);
        now = { soft: 20000, hard: 20000 };
      },
    );
    expect(calls).toEqual([['prlimit', '--pid', String(process.pid), '--nofile=20000:20000']]);
    expect(r).toEqual({ soft: 20000, hard: 20000 });
    expect(raiseNofile(() => now, () => calls.push(['again']))).toEqual(now);
    expect(calls).toHaveLength(1);
    const stuck = raiseNofile(() => ({ soft: 1024, hard: 4096 }), () => {
      throw new Error('ENOENT');
    });
    expect(stuck).toEqual({ soft: 1024, hard: 4096 });
  });
});

describe('the worst case of the configured limits', () => {
  it('adds 2 sockets per question in flight, a probe per upstream per engine, the TCP pools, TCP clients and the fixed part', () => {
    const c = cfg(); // 2 workers + main = 3 engines, 2 upstreams, defaults 1024 / 2048 / 2 connections
    const w = fdWorstCase(c, 1000);
    expect(w.parts).toEqual({ upstreamUdp: 2 * 2048 + 3 * 2, upstreamTcp: 3 * 2 * 2, kernelTcp: 1000, fixed: FIXED_FDS });
    expect(w.total).toBe(4102 + 12 + 1000 + FIXED_FDS);
    // The per-engine limit bounds the total when it is the smaller one.
    expect(fdWorstCase(cfg({ upstreamInflight: 100 }), 0).parts.upstreamUdp).toBe(2 * 300 + 6);
    expect(fdWorstCase(cfg({ afXdp: false }), 0).parts.upstreamUdp).toBe(2 * 1024 + 2);
  });

  it('starts when the worst case is within half the limit, and says what to change when it is not', () => {
    expect(checkFdLimit(cfg(), 1000, { soft: 20000, hard: 20000 })).toEqual({ need: 5370, limit: 20000 });
    expect(() => checkFdLimit(cfg(), 1000, { soft: 8192, hard: 8192 })).toThrow(/lower --upstream-inflight-total or raise the hard RLIMIT_NOFILE/);
    expect(checkFdLimit(cfg({ upstreamInflightTotal: 1000 }), 1000, { soft: 8192, hard: 8192 }).need).toBe(2000 + 6 + 12 + 1000 + FIXED_FDS);
  });
});

describe('the upstream settings', () => {
  it('resolve with their defaults, derive the per-network share, and refuse what is out of bounds', () => {
    const c = cfg();
    expect(c.upstreamInflightTotal).toBe(2048);
    expect(c.workerEngine).toMatchObject({ upstreamInflight: 1024, upstreamPerClient: 256, upstreamTcpConns: 2, upstreamTcpPipeline: 64, cacheBytes: 100_000 * 512 }); // the shared cache's arena: 512 bytes of DNS data per entry
    expect(cfg({ upstreamInflight: 10, upstreamClientShare: 1 }).mainEngine.upstreamPerClient).toBe(1);
    expect(cfg({ cacheSize: 20_000, cacheBytes: 8 << 20 }).mainEngine.cacheBytes).toBe(8 << 20);
    expect(() => cfg({ upstreamClientShare: 0 })).toThrow(/--upstream-client-share must be an integer from 1 to 100/);
    expect(() => cfg({ upstreamInflight: 0 })).toThrow(/--upstream-inflight must be/);
    expect(() => cfg({ cacheBytes: 1000 })).toThrow(/--cache-bytes must be/);
  });
});
