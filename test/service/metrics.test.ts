/**
 * The metrics endpoint's registry, without root: every counter of the list in
 * src/engine/stats.ts is exported under its metric and label, summed over the blocks of
 * every engine host, and the slots of the list neither overlap nor run past the block.
 */
import { describe, expect, it } from 'vitest';
import { COUNTERS, LATENCY_BUCKETS, RCODE_NAMES, Slot, STATS_SLOTS, StatsBlock } from '../../src/engine/stats.js';
import { buildRegistry } from '../../src/service/metrics.js';

/** Prometheus text as { 'name{labels}': value }. */
function parse(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+|NaN)$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

async function scrape(blocks: StatsBlock[]): Promise<Record<string, number>> {
  const reg = buildRegistry({
    xdp: () => ({ TX: 5n, PASS_NOT_DNS: 2n }),
    stats: () => blocks,
    hotEntries: () => 3,
    hot: () => ({ promotions: 4, demotions: 1, replacements: 2, refused: 0, failed: 3, declined: 5 }),
    workerRestarts: () => 1,
  });
  return parse(await reg.metrics());
}

describe('counter list and metrics', () => {
  it('gives every counter its own slots, inside the block', () => {
    const taken = new Uint8Array(STATS_SLOTS);
    for (const [name, d] of Object.entries(COUNTERS)) {
      const width = d.kind === 'histogram' ? LATENCY_BUCKETS.length + 2 : 'values' in d ? d.values.length : 1;
      for (let i = 0; i < width; i++) {
        const s = Slot[name as keyof typeof COUNTERS] + i;
        expect(s, name).toBeLessThan(STATS_SLOTS);
        expect(taken[s], `${name} overlaps`).toBe(0);
        taken[s] = 1;
      }
    }
    expect(taken.every((t) => t === 1)).toBe(true);
  });

  it('exports every counter of every block, summed, under its own metric and label', async () => {
    // Block i holds i+1 in every scalar slot: the sum over two blocks is 3 everywhere.
    const blocks = [new StatsBlock(), new StatsBlock()];
    blocks.forEach((b, i) => b.v.fill(i + 1));
    const m = await scrape(blocks);
    for (const [name, d] of Object.entries(COUNTERS)) {
      if (d.kind === 'histogram') continue;
      if ('values' in d) {
        for (const v of d.values) expect(m[`${d.metric}{${d.label}="${v}"}`], `${name} ${v}`).toBe(3);
      } else if ('label' in d) {
        expect(m[`${d.metric}{${d.label[0]}="${d.label[1]}"}`], name).toBe(3);
      } else {
        expect(m[d.metric], name).toBe(3);
      }
    }
    expect(RCODE_NAMES.length).toBe(17);
  });

  it('rebuilds the upstream latency histogram from the blocks, cumulative, with sum and count', async () => {
    const a = new StatsBlock();
    const b = new StatsBlock();
    a.observeLatency(0.0003); // first bucket
    b.observeLatency(0.003); // le=0.005
    b.observeLatency(9); // above the last bound: only in +Inf and count
    const m = await scrape([a, b]);
    const h = 'heimdall_upstream_latency_seconds';
    expect(m[`${h}_bucket{le="0.0005"}`]).toBe(1);
    expect(m[`${h}_bucket{le="0.002"}`]).toBe(1);
    expect(m[`${h}_bucket{le="0.005"}`]).toBe(2);
    expect(m[`${h}_bucket{le="2.5"}`]).toBe(2);
    expect(m[`${h}_bucket{le="+Inf"}`]).toBe(3);
    expect(m[`${h}_count`]).toBe(3);
    expect(m[`${h}_sum`]).toBeCloseTo(9.0033, 6);
  });

  it('derives the per-path responses and the query total from the same blocks and the XDP counters', async () => {
    const s = new StatsBlock();
    s.set('queries', 10);
    s.set('cacheHits', 4);
    s.set('staleServed', 1);
    s.set('upstreamAnswers', 2);
    s.set('relayed', 1);
    s.set('fetchJoinedServed', 2); // queries that waited on another's fetch, answered from it
    s.set('servfail', 1);
    s.set('formerr', 1);
    const m = await scrape([s]);
    expect(m['heimdall_responses_total{path="xdp"}']).toBe(5);
    expect(m['heimdall_responses_total{path="cache"}']).toBe(5);
    expect(m['heimdall_responses_total{path="upstream"}']).toBe(5);
    expect(m['heimdall_responses_total{path="error"}']).toBe(2);
    expect(m['heimdall_queries_total']).toBe(15);
    expect(m['heimdall_xdp_packets_total{outcome="PASS_NOT_DNS"}']).toBe(2);
    expect(m['heimdall_worker_restarts_total']).toBe(1);
    expect(m['heimdall_hot_entries']).toBe(3);
    for (const [change, n] of [['promote', 4], ['demote', 1], ['replace', 2], ['refused', 0], ['declined', 5], ['failed', 3]] as const) {
      expect(m[`heimdall_hot_changes_total{change="${change}"}`], change).toBe(n);
    }
  });
});
