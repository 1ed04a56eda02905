/**
 * The control socket's cache verbs over the one shared cache: a flush removes every
 * entry of a name and says which ones it could not remove (their shard held by another
 * thread past the wait), so the operator is told to run it again.
 */
import { describe, expect, it } from 'vitest';
import { engineControl, type FlushResult } from '../../src/service/cache-control.js';
import { HEADER_WORDS, SharedCache } from '../../src/engine/shared-cache.js';
import { answerFromResponse } from '../../src/dns/answer.js';
import { keyHash, makeKey, setHashKeyForTest } from '../../src/dns/key.js';
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

  it('flush --all empties every shard it can lock and says how many stayed busy', () => {
    setHashKeyForTest(0x600dcafe, 0x0badf00d); // a fixed key: which shard each name lands in is then fixed
    const cache = SharedCache.create({ maxEntries: 256, shards: 4 });
    const host = { engine: { cache } } as unknown as EngineHost;
    for (let i = 0; i < 40; i++) cache.insert(answerFromResponse(response(`n${i}.example`, 'A', { answers: [{ type: 'A', name: `n${i}.example`, ttl: 300, data: '198.18.9.1' }] }), NOW), NOW);
    const h = new Int32Array(cache.layout.meta, HEADER_WORDS.global * 4, 4 * HEADER_WORDS.shard);
    Atomics.store(h, 2 * HEADER_WORDS.shard, 77); // another thread holds shard 2
    const inShard2 = Array.from({ length: 40 }, (_, i) => makeKey(`n${i}.example`, 1, 1, false)).filter((k) => (keyHash(k, 0, k.length) & 3) === 2).length;
    expect(inShard2).toBeGreaterThan(0); // 40 keys over 4 shards
    const r = engineControl(host, 0, { op: 'flushAll' }, NOW) as { removed: number; busy: number };
    expect(r).toEqual({ removed: 40 - inShard2, busy: 1 });
    expect(cache.size).toBe(inShard2);
    Atomics.store(h, 2 * HEADER_WORDS.shard, 0);
    expect(engineControl(host, 0, { op: 'flushAll' }, NOW)).toEqual({ removed: inShard2, busy: 0 });
    expect(cache.size).toBe(0);
  });
});
