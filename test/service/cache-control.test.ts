/**
 * The control socket's cache verbs over the one shared cache: a flush removes every
 * entry of a name and says which ones it could not remove (their shard held by another
 * thread past the wait), so the operator is told to run it again.
 */
import { describe, expect, it } from 'vitest';
import { engineControl, type FlushResult } from '../../src/service/cache-control.js';
import { HEADER_WORDS, SharedCache } from '../../src/engine/shared-cache.js';
import { answerFromResponse } from '../../src/dns/answer.js';
import { keyHash } from '../../src/dns/key.js';
import type { EngineHost } from '../../src/engine/host.js';
import { response } from '../helpers/dns.js';

const NOW = 1e12;

describe('cache control', () => {
  it('flush removes a name of every type, and reports entries in a busy shard as kept', () => {
    const cache = SharedCache.create({ maxEntries: 256, shards: 4 });
    const host = { engine: { cache } } as unknown as EngineHost;
    const put = (name: string, type: 'A' | 'AAAA', data: string) => cache.insert(answerFromResponse(response(name, type, { answers: [{ type, name, ttl: 300, data }] }), NOW), NOW);
    put('bad.example', 'A', '198.18.9.9');
    put('bad.example', 'AAAA', 'fd00::9');
    put('good.example', 'A', '198.18.9.8');
    const keys = cache.entriesWithName(Uint8Array.from([3, 98, 97, 100, 7, 101, 120, 97, 109, 112, 108, 101, 0])).map((a) => a.key);
    expect(keys).toHaveLength(2);
    // Another thread holds the shard of the AAAA entry.
    const aaaa = keys.find((k) => k[k.length - 4] === 28)!;
    const shard = keyHash(aaaa, 0, aaaa.length) & 3;
    const h = new Int32Array(cache.layout.meta, HEADER_WORDS.global * 4, 4 * HEADER_WORDS.shard);
    Atomics.store(h, shard * HEADER_WORDS.shard, 77);
    const r = engineControl(host, 0, { op: 'flush', name: 'BAD.example' }, NOW) as FlushResult;
    const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');
    expect([...r.removed, ...r.kept].sort()).toEqual(keys.map(hex).sort()); // every entry, once
    expect(r.kept).toContain(hex(aaaa)); // in the held shard: not removed, and said so
    expect(cache.has(aaaa, aaaa.length, NOW)).toBe(true);
    Atomics.store(h, shard * HEADER_WORDS.shard, 0);
    const again = engineControl(host, 0, { op: 'flush', name: 'bad.example' }, NOW) as FlushResult;
    expect(again.kept).toEqual([]);
    expect(r.removed.length + again.removed.length).toBe(2);
    expect(cache.size).toBe(1); // good.example stays
  });
});
