/** The worker pool's restart backoff (src/service/pool.ts restartDelayMs). */
import { describe, expect, it } from 'vitest';
import { restartDelayMs } from '../../src/service/pool.js';

describe('restartDelayMs', () => {
  it('starts at 200 ms, doubles with each restart in a row that did not last, and stops at 30 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8].map(restartDelayMs)).toEqual([200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000]);
    expect(restartDelayMs(1000)).toBe(30_000);
    expect(restartDelayMs(-1)).toBe(200);
  });
});
