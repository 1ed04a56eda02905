import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Upkeep } from '../../src/engine/upkeep.js';

describe('Upkeep', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Times (ms after start) at which work ran, with activity reported from a script. */
  function harness(activeAt: (run: number) => boolean) {
    const runs: number[] = [];
    const t0 = performance.now();
    const u = new Upkeep(
      () => runs.push(Math.round(performance.now() - t0)),
      () => activeAt(runs.length),
      { busyMs: 1000, idleMs: 5000 },
    );
    return { u, runs };
  }

  it('runs every busyMs while active and every idleMs once a run finds nothing done', () => {
    // Active for the first two runs, idle after.
    const { u, runs } = harness((n) => n <= 2);
    u.start();
    vi.advanceTimersByTime(13_000);
    expect(runs).toEqual([1000, 2000, 3000, 8000, 13_000]);
    expect(u.isIdle).toBe(true);
    u.stop();
  });

  it('wake() brings an idle timer back: the next run comes busyMs after the last one', () => {
    const { u, runs } = harness(() => false);
    u.start();
    vi.advanceTimersByTime(1000); // first run at 1000, nothing done: idle, next at 6000
    expect(runs).toEqual([1000]);
    vi.advanceTimersByTime(500);
    u.wake(); // at 1500: due at 2000
    vi.advanceTimersByTime(500);
    expect(runs).toEqual([1000, 2000]);
    vi.advanceTimersByTime(2500);
    u.wake(); // at 4500, long after the last run at 2000: runs at once
    vi.advanceTimersByTime(0);
    expect(runs).toEqual([1000, 2000, 4500]);
    u.wake(); // not idle any more until a run says so: no extra run
    vi.advanceTimersByTime(999);
    expect(runs).toEqual([1000, 2000, 4500]);
    u.stop();
  });

  it('keeps its schedule when the work throws, and stop() ends it', () => {
    let n = 0;
    const u = new Upkeep(
      () => {
        n++;
        if (n === 1) throw new Error('boom');
      },
      () => true,
      { busyMs: 100, idleMs: 100 },
    );
    u.start();
    expect(() => vi.advanceTimersByTime(100)).toThrow('boom');
    vi.advanceTimersByTime(300);
    expect(n).toBe(4);
    u.stop();
    u.wake();
    vi.advanceTimersByTime(1000);
    expect(n).toBe(4);
  });

  it('refuses an idle pace faster than the busy one', () => {
    expect(() => new Upkeep(() => {}, () => true, { busyMs: 1000, idleMs: 500 })).toThrow(RangeError);
  });
});
