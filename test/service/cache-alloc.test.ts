/** A cache larger than the host can give: one line that says what to lower, not V8's words. */
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config.js';
import { operatorMessage } from '../../src/errors.js';
import { allocateCache } from '../../src/service/service.js';

const ttl = { minTtl: 0, maxTtl: 86_400, negativeMaxTtl: 3600 };

describe('allocateCache', () => {
  it('says how much it could not allocate and what to lower', () => {
    // The largest --cache-bytes the bounds allow (32 TiB): no host here has it.
    const bytes = SETTINGS.cacheBytes.max;
    let err: unknown;
    try {
      allocateCache({ maxEntries: 100_000, maxBytes: bytes, ttl });
    } catch (e) {
      err = e;
    }
    expect(err).toBeDefined();
    expect((err as { code?: string }).code).toBe('E_BAD_OPTION');
    expect(operatorMessage(err)).toBe(`cannot allocate ${bytes / 2 ** 20} MiB for the cache: lower --cache-size/--cache-bytes (or 'cache-size'/'cache-bytes' in the file)`);
  });

  it('allocates a cache that fits, and lets other mistakes through as they are', () => {
    expect(allocateCache({ maxEntries: 1000, maxBytes: 1 << 20, ttl }).maxEntries).toBe(1000);
    expect(() => allocateCache({ maxEntries: 0, ttl })).toThrow(/^maxEntries 0$/);
  });
});
