/**
 * Per-upstream figures across engines (src/engine/upstream-stats.ts), without root: each
 * engine's publisher writes its forwarder's upstreams into its block's region, the main
 * thread merges the regions by upstream; reloads, replaced workers and a full region;
 * the quantiles and the metrics built from them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { resolveConfig } from '../../src/config.js';
import { EngineHost } from '../../src/engine/host.js';
import { AskCounter } from '../../src/hot/asks.js';
import { textToWire } from '../../src/dns/name.js';
import { StatsBlock } from '../../src/engine/stats.js';
import { quantileMs, readUpstreams, releaseUpstreams, upstreamLines, UpstreamPublisher, UPSTREAM_SLOTS, type RttHistogram } from '../../src/engine/upstream-stats.js';
import { DEFAULT_HEALTH, RTT_BUCKETS_MS, UpstreamHealth } from '../../src/upstream/health.js';
import { buildRegistry } from '../../src/service/metrics.js';
import { parseExposition } from '../../src/service/service.js';

const A = '198.18.1.2:53';
const B = '[fd00::2]:53';
const C = '198.18.1.3:5353';

function ups(...labels: string[]): UpstreamHealth[] {
  return labels.map((l, i) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(l)!;
    return new UpstreamHealth({ host: m[1]!, port: Number(m[2]), family: m[1]!.includes(':') ? 6 : 4 }, i, DEFAULT_HEALTH);
  });
}

/** `n` exchanges answered in `ms` each. */
function answered(u: UpstreamHealth, n: number, ms: number): void {
  for (let i = 0; i < n; i++) {
    u.sent++;
    u.onAnswer(ms);
  }
}

/** `n` attempts that timed out. */
function timedOut(u: UpstreamHealth, n: number): void {
  for (let i = 0; i < n; i++) {
    u.sent++;
    u.onFailure(performance.now(), 'timeout', 100);
  }
}

const byName = (blocks: StatsBlock[]) => new Map(readUpstreams(blocks.map((b) => b.upstreams)).map((f) => [f.upstream, f]));

describe('per-upstream figures over every engine', () => {
  it('sums the counts of every engine and merges their health: up only while no engine holds it down', () => {
    const main = new StatsBlock();
    const worker = new StatsBlock(new StatsBlock().buffer); // a worker's: over a shared buffer
    const m = ups(A, B);
    const w = ups(A, B);
    const pm = new UpstreamPublisher(main.upstreams);
    const pw = new UpstreamPublisher(new StatsBlock(worker.buffer).upstreams); // the worker's own view of the same memory
    answered(m[0]!, 3, 4);
    answered(w[0]!, 2, 30);
    m[0]!.servfail = 1;
    timedOut(w[1]!, 3); // three in a row: this worker holds B down
    answered(m[1]!, 1, 1);
    pm.publish(m);
    pw.publish(w);
    let f = byName([main, worker]);
    expect(f.get(A)).toMatchObject({ engines: 2, downIn: 0, up: true, queries: 5, answers: 5, servfail: 1, timeouts: 0, consecutiveFailures: 0 });
    expect(f.get(A)!.srttMs).toBeCloseTo((4 + 30) / 2, 6); // each engine's SRTT is its only sample's
    expect(f.get(A)!.rtt.count).toBe(5);
    expect(f.get(A)!.rtt.sumMs).toBe(3 * 4 + 2 * 30);
    expect(f.get(A)!.rtt.counts[RTT_BUCKETS_MS.indexOf(5)]).toBe(3);
    expect(f.get(A)!.rtt.counts[RTT_BUCKETS_MS.indexOf(50)]).toBe(2);
    expect(f.get(B)).toMatchObject({ engines: 2, downIn: 1, up: false, queries: 4, answers: 1, timeouts: 3, consecutiveFailures: 3 });
    expect(upstreamLines([...f.values()]).map((l) => [l.upstream, l.state, l.healthyIn])).toEqual([[A, 'up', 2], [B, 'partial', 1]]);

    // Publishing again adds only what grew since.
    answered(m[0]!, 1, 4);
    pm.publish(m);
    pw.publish(w);
    f = byName([main, worker]);
    expect(f.get(A)!.queries).toBe(6);
    expect(f.get(A)!.rtt.count).toBe(6);
    // B answers the worker's probe: up everywhere again.
    w[1]!.probes++;
    w[1]!.onAnswer(2);
    pw.publish(w);
    f = byName([main, worker]);
    expect(f.get(B)).toMatchObject({ downIn: 0, up: true, queries: 5, answers: 2, consecutiveFailures: 0 });
    timedOut(m[1]!, 3);
    timedOut(w[1]!, 3);
    pm.publish(m);
    pw.publish(w);
    expect(upstreamLines(readUpstreams([main.upstreams, worker.upstreams])).find((l) => l.upstream === B)!.state).toBe('down');
  });

  it('keeps counting across a reload: a kept upstream keeps its slot, a removed one its counts, a new one starts at 0', () => {
    const b = new StatsBlock();
    const p = new UpstreamPublisher(b.upstreams);
    const first = ups(A, B);
    answered(first[0]!, 5, 1);
    answered(first[1]!, 2, 1);
    p.publish(first);
    // A new forwarder over [B, C]: its counts start from zero.
    const second = ups(B, C);
    answered(second[0]!, 1, 1);
    answered(second[1]!, 4, 1);
    p.publish(second);
    const f = byName([b]);
    expect(f.get(A)).toMatchObject({ engines: 0, up: false, queries: 5 });
    expect(f.get(B)).toMatchObject({ engines: 1, up: true, queries: 3 });
    expect(f.get(C)).toMatchObject({ engines: 1, up: true, queries: 4 });
    // Only the upstreams in use are reported by the control socket.
    expect(upstreamLines([...f.values()]).map((l) => l.upstream)).toEqual([B, C]);
  });

  it('a replaced worker takes over its predecessor\'s slots in the same block and adds to them', () => {
    const block = new StatsBlock();
    const old = ups(A);
    answered(old[0]!, 7, 1);
    new UpstreamPublisher(block.upstreams).publish(old);
    releaseUpstreams(block.upstreams); // the worker died: the main thread marks its upstreams unused
    expect(byName([block]).get(A)).toMatchObject({ engines: 0, queries: 7 });
    const fresh = ups(A);
    answered(fresh[0]!, 2, 1);
    new UpstreamPublisher(block.upstreams).publish(fresh);
    expect(byName([block]).get(A)).toMatchObject({ engines: 1, up: true, queries: 9, answers: 9 });
  });

  it('reports at most UPSTREAM_SLOTS upstreams per engine, reusing the slots of removed ones when full', () => {
    const b = new StatsBlock();
    const p = new UpstreamPublisher(b.upstreams);
    const labels = Array.from({ length: UPSTREAM_SLOTS + 2 }, (_, i) => `198.18.1.${i + 10}:53`);
    const many = ups(...labels);
    for (const u of many) answered(u, 1, 1);
    p.publish(many);
    let f = byName([b]);
    expect(f.size).toBe(UPSTREAM_SLOTS);
    expect(f.has(labels[UPSTREAM_SLOTS]!)).toBe(false);
    // A reload to two upstreams, one new: the new one takes a removed one's slot, from zero.
    const two = ups(labels[0]!, C);
    answered(two[1]!, 3, 1);
    p.publish(two);
    f = byName([b]);
    expect(f.size).toBe(UPSTREAM_SLOTS);
    expect(f.get(C)).toMatchObject({ engines: 1, queries: 3 });
    expect(f.get(labels[0]!)).toMatchObject({ engines: 1, queries: 1 });
    expect([...f.values()].filter((x) => x.engines === 0)).toHaveLength(UPSTREAM_SLOTS - 2);
  });

  it('gives quantiles from the buckets as histogram_quantile does', () => {
    const h = (counts: number[], extra = 0): RttHistogram => {
      const c = RTT_BUCKETS_MS.map((_, i) => counts[i] ?? 0);
      return { boundsMs: RTT_BUCKETS_MS, counts: c, sumMs: 0, count: c.reduce((a, b) => a + b, 0) + extra };
    };
    expect(quantileMs(h([]), 0.5)).toBeNull();
    // 100 samples in (0, 0.5]: the median is half-way through the first bucket.
    expect(quantileMs(h([100]), 0.5)).toBeCloseTo(0.25, 9);
    // 50 in (1, 2], 50 in (2, 5]: p50 at 2, p99 near the top of (2, 5].
    const two = h([0, 0, 50, 50]);
    expect(quantileMs(two, 0.5)).toBeCloseTo(2, 9);
    expect(quantileMs(two, 0.99)).toBeCloseTo(2 + 3 * (49 / 50), 9);
    // Samples above the last bound: the last bound.
    expect(quantileMs(h([1], 9), 0.99)).toBe(2500);
  });

  it('exports each upstream under its label: counters, state, SRTT and a cumulative RTT histogram in seconds', async () => {
    const main = new StatsBlock();
    const worker = new StatsBlock();
    const m = ups(A, B);
    const w = ups(A, B);
    answered(m[0]!, 2, 0.3);
    answered(w[0]!, 1, 3);
    answered(w[0]!, 1, 9000);
    timedOut(w[1]!, 4);
    new UpstreamPublisher(main.upstreams).publish(m);
    new UpstreamPublisher(worker.upstreams).publish(w);
    const reg = buildRegistry({ xdp: () => ({}), stats: () => [main, worker], hotEntries: () => 0, hot: () => ({ promotions: 0, demotions: 0, replacements: 0, refused: 0, failed: 0, declined: 0 }), workerRestarts: () => 0 });
    const x = parseExposition(await reg.metrics());
    const a = `upstream="${A}"`;
    const b = `upstream="${B}"`;
    expect(x[`heimdall_upstream_server_queries_total{${a}}`]).toBe(4);
    expect(x[`heimdall_upstream_server_answers_total{${a}}`]).toBe(4);
    expect(x[`heimdall_upstream_server_timeouts_total{${b}}`]).toBe(4);
    expect(x[`heimdall_upstream_server_up{${a}}`]).toBe(1);
    expect(x[`heimdall_upstream_server_up{${b}}`]).toBe(0);
    expect(x[`heimdall_upstream_server_down_engines{${b}}`]).toBe(1);
    expect(x[`heimdall_upstream_server_engines{${b}}`]).toBe(2);
    expect(x[`heimdall_upstream_server_consecutive_failures{${b}}`]).toBe(4);
    // B never answered: its SRTT is the worker's, fed the 100 ms timeouts; the main thread's has none.
    expect(x[`heimdall_upstream_server_srtt_seconds{${b}}`]).toBeCloseTo(0.1, 9);
    expect(x[`heimdall_upstream_server_srtt_seconds{${a}}`]).toBeGreaterThan(0);
    // Before any answer or failure there is no SRTT to export.
    const idle = new StatsBlock();
    new UpstreamPublisher(idle.upstreams).publish(ups(C));
    const y = parseExposition(await buildRegistry({ xdp: () => ({}), stats: () => [idle], hotEntries: () => 0, hot: () => ({ promotions: 0, demotions: 0, replacements: 0, refused: 0, failed: 0, declined: 0 }), workerRestarts: () => 0 }).metrics());
    expect(y[`heimdall_upstream_server_up{upstream="${C}"}`]).toBe(1);
    expect(y[`heimdall_upstream_server_srtt_seconds{upstream="${C}"}`]).toBeUndefined();
    const h = 'heimdall_upstream_server_rtt_seconds';
    expect(x[`${h}_bucket{${a},le="0.0005"}`]).toBe(2);
    expect(x[`${h}_bucket{${a},le="0.005"}`]).toBe(3);
    expect(x[`${h}_bucket{${a},le="2.5"}`]).toBe(3);
    expect(x[`${h}_bucket{${a},le="+Inf"}`]).toBe(4);
    expect(x[`${h}_count{${a}}`]).toBe(4);
    expect(x[`${h}_sum{${a}}`]).toBeCloseTo((0.6 + 3 + 9000) / 1000, 9);
    expect(x[`${h}_count{${b}}`]).toBe(0);
  });
});

describe('EngineHost publishes its forwarder\'s upstreams', () => {
  const sockets: dgram.Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  /** A loopback upstream: answers every query (A 198.18.9.9), or none. */
  async function upstream(answers: boolean): Promise<string> {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    if (answers) {
      s.on('message', (q, from) => {
        const d = dnsPacket.decode(q);
        const qq = d.questions![0]!;
        const a = dnsPacket.encode({ type: 'response', id: d.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: [qq], answers: [{ type: 'A', name: qq.name, ttl: 60, data: '198.18.9.9' }] } as dnsPacket.Packet);
        s.send(a, from.port, from.address);
      });
    }
    return `127.0.0.1:${s.address().port}`;
  }

  it('at each publish, through a reload and its close', async () => {
    const good = await upstream(true);
    const dead = await upstream(false);
    const cfg = resolveConfig({ iface: 'hx0', upstream: `${good},${dead}`, capsForId: false, upstreamCookies: false }, () => 1);
    const host = new EngineHost({ engine: cfg.mainEngine, upstreams: cfg.upstreams, asks: new AskCounter(undefined, 10), onPromotion: () => {}, upstreamTimeoutMs: 50, upstreamDeadlineMs: 2000 });
    const ask = (i: number) => host.forwarder.resolve({ name: textToWire(`n${i}.test.`), qtype: 1, qclass: 1, dnssecOk: false });
    // Never-measured upstreams are tried first: the silent one gets at least one question.
    for (let i = 0; i < 6; i++) await ask(i);
    const [g, d] = host.forwarder.health;
    expect(d!.timeouts).toBeGreaterThan(0);
    host.publish();
    let f = byName([host.stats]);
    expect(f.get(good)).toMatchObject({ engines: 1, up: true, queries: g!.sent, answers: 6, timeouts: 0 });
    expect(f.get(good)!.rtt.count).toBe(6);
    expect(f.get(dead)).toMatchObject({ engines: 1, queries: d!.sent, answers: 0, timeouts: d!.timeouts });
    // A reload drops the silent one and adds another: the good one counts on, the dropped one keeps its counts.
    const other = await upstream(true);
    host.setUpstreams([cfg.upstreams[0]!, { host: '127.0.0.1', port: Number(other.split(':')[1]), family: 4 }]);
    for (let i = 10; i < 14; i++) await ask(i);
    host.publish();
    f = byName([host.stats]);
    expect(f.get(dead)).toMatchObject({ engines: 0, timeouts: d!.timeouts });
    expect(f.get(good)!.answers + f.get(other)!.answers).toBe(10);
    expect(f.get(other)!.engines).toBe(1);
    await host.close();
    expect([...byName([host.stats]).values()].map((x) => x.engines)).toEqual([0, 0, 0]);
  });
});
