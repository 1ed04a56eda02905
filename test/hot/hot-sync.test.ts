/**
 * HotSync against the real hot map: the one promotion policy's events applied (a
 * replaced answer rewritten), and the kernel's per-entry hits (served by the program
 * under BPF_PROG_TEST_RUN) handed back once.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { buildFrame } from '../helpers/frames.js';
import { query, response, cached, decode } from '../helpers/dns.js';
import { FastPath, XdpAction } from '../../src/xdp/fastpath.js';
import { serveLab } from '../helpers/edge.js';
import { HotSync } from '../../src/hot/hot-sync.js';
import { failHotDelete } from '../helpers/native-fault.js';
import type { CachedAnswer } from '../../src/dns/answer.js';

describePrivileged('HotSync over the hot map', {}, () => {
  let fp: FastPath;
  let sync: HotSync;

  beforeEach(() => {
    fp = serveLab(FastPath.open({ hotEntries: 4 }));
    sync = new HotSync(fp);
  });
  afterEach(() => fp?.close());

  const answer = (name: string, addr: string, ageS = 0): CachedAnswer =>
    cached(response(name, 'A', { answers: [{ type: 'A', name, ttl: 300, data: addr }] }), fp.nowNs() - ageS * 1e9);

  /** Asks the program for name; returns the address it answered, or null. */
  function ask(name: string): string | null {
    const r = fp.testRun(buildFrame(query(name, 'A')));
    if (r.action !== XdpAction.TX) return null;
    const d = decode(r.frame.subarray(14 + 20 + 8));
    return String(d.answers[0]!.data);
  }

  it('writes promotions, rewrites a replaced answer in place (its hit counter carries on), and removes demotions', () => {
    const older = answer('u.example', '198.18.2.1', 30);
    const newer = answer('u.example', '198.18.2.2', 0);
    sync.apply({ kind: 'promote', answer: older });
    expect(ask('u.example')).toBe('198.18.2.1');
    expect(ask('u.example')).toBe('198.18.2.1');
    const hitsBefore = sync.collectKernelHits(); // the two asks so far
    expect(ask('u.example')).toBe('198.18.2.1');
    sync.apply({ kind: 'replace', answer: newer }); // written over the entry: never absent
    expect(ask('u.example')).toBe('198.18.2.2');
    expect(sync.size).toBe(1);
    expect(sync.counters).toEqual({ promotions: 1, demotions: 0, replacements: 1, refused: 0, failed: 0 });
    // The entry kept its hit slot and counter: the ask before the replace and the one after count.
    expect(hitsBefore.reduce((n, h) => n + h.hits, 0)).toBe(2);
    expect(sync.collectKernelHits()).toEqual([{ key: newer.key, hits: 2 }]);
    sync.apply({ kind: 'demote', key: newer.key, reason: 'replaced' }); // a new answer the map cannot hold
    expect(ask('u.example')).toBeNull();
    sync.apply({ kind: 'promote', answer: newer });
    expect(ask('u.example')).toBe('198.18.2.2');
    sync.apply({ kind: 'demote', key: newer.key, reason: 'expired' });
    expect(ask('u.example')).toBeNull();
    expect(sync.size).toBe(0);
    sync.apply({ kind: 'demote', key: newer.key, reason: 'evicted' }); // already out (a flush): nothing
    expect(sync.counters.demotions).toBe(2);
  });

  it('keeps a demoted answer whose delete the kernel failed, and removes it at the next collection of kernel hits', () => {
    const a = answer('stuck.example', '198.18.2.7');
    sync.apply({ kind: 'promote', answer: a });
    expect(ask('stuck.example')).toBe('198.18.2.7');
    const restore = failHotDelete(fp);
    try {
      expect(sync.drop(a.key)).toBe(true); // a flush
      expect(sync.counters).toMatchObject({ demotions: 0, failed: 1 });
      expect(sync.isHot(a.key)).toBe(true); // still in the map, and said so
      expect(ask('stuck.example')).toBe('198.18.2.7');
      sync.collectKernelHits(); // the retry fails again: nothing lost
      expect(sync.counters.failed).toBe(2);
      expect(ask('stuck.example')).toBe('198.18.2.7');
    } finally {
      restore();
    }
    sync.collectKernelHits();
    expect(ask('stuck.example')).toBeNull();
    expect(sync.isHot(a.key)).toBe(false);
    expect(sync.size).toBe(0);
    expect(sync.counters).toMatchObject({ demotions: 1, failed: 2 });
    sync.collectKernelHits(); // nothing left to retry
    expect(sync.counters).toMatchObject({ demotions: 1, failed: 2 });
  });

  it('hands back the hits the kernel served per key, once', () => {
    const a = answer('h.example', '198.18.2.3');
    const b = answer('quiet.example', '198.18.2.4');
    sync.apply({ kind: 'promote', answer: a });
    sync.apply({ kind: 'promote', answer: b });
    for (let i = 0; i < 3; i++) expect(ask('h.example')).toBe('198.18.2.3');
    const first = sync.collectKernelHits();
    expect(first).toHaveLength(1);
    expect(Buffer.from(first[0]!.key).equals(Buffer.from(a.key))).toBe(true);
    expect(first[0]!.hits).toBe(3);
    expect(sync.collectKernelHits()).toEqual([]);
    ask('h.example');
    ask('quiet.example');
    const second = sync.collectKernelHits().map((k) => [Buffer.from(k.key).toString('hex'), k.hits]);
    expect(second.sort()).toEqual([[Buffer.from(a.key).toString('hex'), 1], [Buffer.from(b.key).toString('hex'), 1]].sort());
  });

  it('starts a reused slot from zero: hits of the key that left are not credited to the next', () => {
    const gone = answer('gone.example', '198.18.2.5');
    sync.apply({ kind: 'promote', answer: gone });
    for (let i = 0; i < 5; i++) ask('gone.example');
    sync.apply({ kind: 'demote', key: gone.key, reason: 'displaced' });
    const next = answer('next.example', '198.18.2.6');
    sync.apply({ kind: 'promote', answer: next }); // takes the freed slot (LIFO)
    expect(sync.collectKernelHits()).toEqual([]);
    ask('next.example');
    const hits = sync.collectKernelHits();
    expect(hits.map((k) => k.hits)).toEqual([1]);
    expect(Buffer.from(hits[0]!.key).equals(Buffer.from(next.key))).toBe(true);
  });
});
