/**
 * The engine's miss path under the upstream limits: the client's network reaches the
 * resolver as its prefix key, and a question refused for capacity is a SERVFAIL written
 * at once and counted, never a query queued behind the upstream.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { parseAddr, prefixKey } from '../../src/net/addr.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { decode, query, response } from '../helpers/dns.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const answerA = (name: string) => response(name, 'A', { answers: [{ type: 'A', name, ttl: 60, data: '198.18.1.1' }] });

describe('DnsEngine miss path and the upstream limits', () => {
  it('hands the resolver the asking network (/24, /56) and nothing when the transport gave no address', async () => {
    const seen: (string | undefined)[] = [];
    const r: Resolver = {
      async resolve(q, client) {
        seen.push(client);
        const name = Buffer.from(q.name.subarray(1, 1 + q.name[0]!)).toString() + '.test';
        return answerA(name);
      },
    };
    const e = new DnsEngine({ resolver: r, cacheSize: 64 });
    const out = Buffer.alloc(512);
    const a = parseAddr('198.18.4.77')!;
    await e.handle(query('one.test', 'A'), 0, query('one.test', 'A').length, out, 0, false, undefined, undefined, a);
    const b = parseAddr('fd00:0:0:1:aaaa::1')!;
    const q2 = query('two.test', 'A');
    await e.handle(q2, 0, q2.length, out, 0, false, undefined, undefined, b);
    const q3 = query('three.test', 'A');
    await e.handle(q3, 0, q3.length, out, 0, false);
    expect(seen).toEqual([prefixKey(parseAddr('198.18.4.0')!), prefixKey(parseAddr('fd00:0:0:1::')!), undefined]);
    // A cache hit asks nothing of the resolver.
    await e.handle(query('one.test', 'A'), 0, query('one.test', 'A').length, out, 0, false, undefined, undefined, a);
    expect(seen).toHaveLength(3);
  });

  it('answers SERVFAIL at once when the client network is at its share, while another network is served', async () => {
    const s = dgram.createSocket('udp4'); // an upstream that never answers
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    cleanups.push(() => {
      s.close();
    });
    const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port: s.address().port, family: 4 }], maxInflight: 8, maxPerClient: 2, timeoutMs: 2000, deadlineMs: 2000 });
    cleanups.push(() => fwd.close());
    const e = new DnsEngine({ resolver: fwd, cacheSize: 64 });
    const flood = parseAddr('198.18.4.1')!;
    const other = parseAddr('198.18.6.1')!;
    const ask = (name: string, client: ReturnType<typeof parseAddr>) => {
      const qb = query(name, 'A', { id: 99 });
      const out = Buffer.alloc(512);
      return Promise.resolve(e.handle(qb, 0, qb.length, out, 0, false, undefined, undefined, client!)).then((n) => decode(out.subarray(0, n)));
    };
    const held = [ask('f1.test', flood), ask('f2.test', flood)];
    const t0 = performance.now();
    const refused = await ask('f3.test', flood);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(refused.rcode).toBe('SERVFAIL');
    expect(refused.id).toBe(99);
    expect(e.stats.get('servfail')).toBe(1);
    expect(fwd.stats().busyBy.client).toBe(1);
    // The other network still gets a question upstream (held, not refused).
    const otherQ = ask('o1.test', other);
    await new Promise((r) => setTimeout(r, 30));
    expect(fwd.inflight).toBe(3);
    await fwd.close();
    await Promise.all([...held, otherQ]);
  });
});
