/** One upstream's health (src/upstream/health.ts): the breaker's periods and the RTT samples. */
import { expect, it } from 'vitest';
import { RTT_BUCKETS_MS, UpstreamHealth } from '../../src/upstream/health.js';

const opts = { failuresToDown: 3, backoffMs: 1000, maxBackoffMs: 30_000, decay: 0.98 };
const addr = { host: '198.18.1.2', port: 53, family: 4 as const };

it('goes down after failuresToDown in a row; failures of exchanges in flight within the period do not lengthen the next one', () => {
  const h = new UpstreamHealth(addr, 0, opts);
  h.onFailure(0, 'timeout', 1000);
  h.onFailure(0, 'timeout', 1000);
  expect(h.down).toBe(false);
  h.onFailure(0, 'timeout', 1000);
  expect(h.down).toBe(true);
  expect(h.downUntil).toBe(1000);
  // Seventy more timeouts of attempts sent before it went down: counted, the period stands.
  for (let i = 0; i < 70; i++) h.onFailure(500, 'timeout', 1000);
  expect(h.timeouts).toBe(73);
  expect(h.consecutiveFailures).toBe(73);
  expect(h.downUntil).toBe(1000);
  expect(h.probeDue(999)).toBe(false);
  expect(h.probeDue(1000)).toBe(true);
  // The probe after the period fails: the next period is twice as long, then twice again.
  h.onFailure(2000, 'timeout', 0);
  expect(h.downUntil).toBe(2000 + 2000);
  h.onFailure(4000, 'timeout', 0);
  expect(h.downUntil).toBe(4000 + 4000);
  // An answer: up, from the first period again.
  h.onAnswer(3);
  expect(h).toMatchObject({ down: false, consecutiveFailures: 0 });
  for (let i = 0; i < 3; i++) h.onFailure(9000, 'error', 0);
  expect(h.downUntil).toBe(10_000);
});

it('counts every RTT sample into its bucket, with sum and count', () => {
  const h = new UpstreamHealth(addr, 0, opts);
  for (const ms of [0.2, 0.5, 0.51, 40, 5000]) h.onAnswer(ms);
  expect(h.rttCount).toBe(5);
  expect(h.rttSumMs).toBeCloseTo(5041.21, 9);
  expect(h.rttCounts[0]).toBe(2); // <= 0.5
  expect(h.rttCounts[1]).toBe(1); // <= 1
  expect(h.rttCounts[RTT_BUCKETS_MS.indexOf(50)]).toBe(1);
  expect([...h.rttCounts].reduce((a, b) => a + b, 0)).toBe(4); // 5000 ms: above the last bound, only in the count
});
