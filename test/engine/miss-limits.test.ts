/**
 * The engine's miss path under the upstream limits: the client's network reaches the
 * resolver as its prefix key, and a question refused for capacity is a SERVFAIL written
 * at once and counted, never a query queued behind the upstream.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config.js';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import { EngineHost } from '../../src/engine/host.js';
import { AskCounter } from '../../src/hot/asks.js';
import { SharedInflight } from '../../src/upstream/budget.js';
import { parseAddr, prefixKey } from '../../src/net/addr.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { FetchTable } from '../../src/upstream/fetch-table.js';
import { keyHash, makeKey } from '../../src/dns/key.js';
import { fastMonotonicNs } from '../../src/engine/clock.js';
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

  it('EngineHost builds its cache and forwarder with the configured limits, and publishes them', async () => {
    const cfg = resolveConfig(
      { iface: 'hx0', upstream: '127.0.0.1:9', cacheSize: 1000, cacheBytes: 300_000, upstreamInflight: 40, upstreamClientShare: 10, upstreamTcpConns: 3, upstreamTcpPipeline: 7, upstreamPortReuse: 1 },
      () => 1,
    );
    const shared = new SharedInflight({ limit: 5 });
    const host = new EngineHost({ engine: cfg.mainEngine, upstreams: cfg.upstreams, asks: new AskCounter(undefined, 10), inflight: { shared, engineId: 0 }, onPromotion: () => {} });
    cleanups.push(() => host.close());
    expect(host.engine.cache.maxBytes).toBe(300_000);
    expect(host.engine.cache.maxEntries).toBe(1000);
    expect([host.forwarder.maxInflight, host.forwarder.maxPerClient]).toEqual([40, 4]);
    // The waiting room: 4 × in-flight, and the same share of it per network.
    expect([host.forwarder.maxWaiting, host.forwarder.maxWaitingPerClient]).toEqual([160, 16]);
    // The shared budget is the one given: its sixth question is refused for the process.
    const ps = Array.from({ length: 6 }, (_, i) => host.forwarder.resolve({ name: Uint8Array.of(1, 97 + i, 0), qtype: 1, qclass: 1, dnssecOk: false }).catch((e: Error & { code?: string }) => e.code));
    expect(shared.inUse).toBe(5);
    // --upstream-port-reuse 1: a socket of its own for each question in flight.
    expect(host.forwarder.portReuse).toBe(1);
    expect(host.forwarder.stats().udpOpen).toBe(5);
    await host.close();
    expect(await Promise.all(ps)).toEqual(['UPSTREAM_CLOSED', 'UPSTREAM_CLOSED', 'UPSTREAM_CLOSED', 'UPSTREAM_CLOSED', 'UPSTREAM_CLOSED', 'UPSTREAM_BUSY']);
    expect(shared.inUse).toBe(0);
    expect(host.stats.get('busyProcess')).toBe(1);
    expect(host.stats.get('cacheBytes')).toBe(0);
  });

  it('charges a waiter that asks on its own to its own network, though the caller reused its address object since', async () => {
    const fetches = new FetchTable({ capacity: 64 });
    const charged: (string | undefined)[] = [];
    const r: Resolver = {
      async resolve(_q, client) {
        charged.push(client);
        return answerA(charged.length === 1 ? 'other.test' : 'owned.test'); // in the order asserted below
      },
    };
    const e = new DnsEngine({ resolver: r, cacheSize: 64, fetches });
    const k = makeKey('owned.test', 1, 1, false);
    const ticket = fetches.claim(k, k.length, keyHash(k, 0, k.length), fastMonotonicNs() / 1e6) as number;
    // One scratch address, rewritten for each query, as an AF_XDP worker does.
    const scratch = parseAddr('198.18.4.1')!;
    const waiting = e.handle(Buffer.from(query('owned.test', 'A')), 0, query('owned.test', 'A').length, Buffer.alloc(512), 0, false, undefined, undefined, scratch);
    expect(e.stats.get('fetchJoined')).toBe(1);
    scratch.bytes.set(parseAddr('198.18.9.9')!.bytes);
    await e.handle(Buffer.from(query('other.test', 'A')), 0, query('other.test', 'A').length, Buffer.alloc(512), 0, false, undefined, undefined, scratch);
    fetches.release(ticket, 'uncached'); // the owner could not cache it: the waiter asks itself
    expect(typeof (await waiting)).toBe('number');
    expect(charged).toEqual([prefixKey(parseAddr('198.18.9.9')!), prefixKey(parseAddr('198.18.4.1')!)]);
  });

  it('joins another thread\'s fetch of the name up to its bound on waiters, then asks the resolver itself', async () => {
    const fetches = new FetchTable({ capacity: 64 });
    let calls = 0;
    const r: Resolver = {
      async resolve() {
        calls++;
        return answerA('join.test');
      },
    };
    const e = new DnsEngine({ resolver: r, cacheSize: 64, fetches, maxTableWaiting: 2 });
    // "Another thread" owns the fetch of join.test/A.
    const k = makeKey('join.test', 1, 1, false);
    const ticket = fetches.claim(k, k.length, keyHash(k, 0, k.length), fastMonotonicNs() / 1e6) as number;
    expect(ticket).toBeGreaterThanOrEqual(0);
    const q = query('join.test', 'A');
    const pending = Array.from({ length: 5 }, () => {
      const buf = Buffer.from(q);
      return e.handle(buf, 0, buf.length, Buffer.alloc(512), 0, false);
    });
    await new Promise((res) => setTimeout(res, 20));
    // Two wait on the owner; the other three went to the resolver (bounded, not queued).
    expect(e.stats.get('fetchJoined')).toBe(2);
    expect(calls).toBe(3);
    fetches.release(ticket, 'uncached'); // the owner could not cache it: the waiters ask themselves
    const n = await Promise.all(pending);
    expect(n.every((x) => typeof x === 'number' && x > 12)).toBe(true);
    expect(calls).toBe(5);
  });

  it("gives one network at most its share of the fetch table's waiters: past it, its misses go to the resolver (which bounds them per network), and other networks still join", async () => {
    const fetches = new FetchTable({ capacity: 64 });
    const asked: (string | undefined)[] = [];
    const held: (() => void)[] = [];
    const r: Resolver = {
      resolve(q, client) {
        asked.push(client);
        const name = Buffer.from(q.name.subarray(1, 1 + q.name[0]!)).toString() + '.test';
        return new Promise((res) => held.push(() => res(answerA(name)))); // stalled too
      },
    };
    const e = new DnsEngine({ resolver: r, cacheSize: 64, fetches, maxTableWaiting: 10, maxTableWaitingPerClient: 2 });
    // "Another thread" owns the fetch of stall.test/A, and its authority stalls.
    const k = makeKey('stall.test', 1, 1, false);
    const ticket = fetches.claim(k, k.length, keyHash(k, 0, k.length), fastMonotonicNs() / 1e6) as number;
    expect(ticket).toBeGreaterThanOrEqual(0);
    const ask = (from: string) => {
      const buf = Buffer.from(query('stall.test', 'A'));
      return e.handle(buf, 0, buf.length, Buffer.alloc(512), 0, false, undefined, undefined, parseAddr(from)!);
    };
    const flood = Array.from({ length: 6 }, (_, i) => ask(`198.18.4.${i + 1}`));
    await new Promise((res) => setTimeout(res, 20));
    // Two of the flooding network's queries wait in the table; four went to the resolver.
    expect(e.stats.get('fetchJoined')).toBe(2);
    const A = prefixKey(parseAddr('198.18.4.0')!);
    expect(asked).toEqual([A, A, A, A]);
    // Another network still joins the fetch in flight rather than asking again.
    const other = ask('198.18.6.1');
    await new Promise((res) => setTimeout(res, 20));
    expect(e.stats.get('fetchJoined')).toBe(3);
    expect(asked).toHaveLength(4);
    fetches.release(ticket, 'failed'); // the three waiters now ask on their own
    await new Promise((res) => setTimeout(res, 20));
    expect(asked).toHaveLength(7);
    for (const h of held.splice(0)) h();
    await Promise.all([...flood, other]);
    // The waits ended: the network may wait in the table again.
    const k2 = makeKey('stall2.test', 1, 1, false);
    const t2 = fetches.claim(k2, k2.length, keyHash(k2, 0, k2.length), fastMonotonicNs() / 1e6) as number;
    expect(t2).toBeGreaterThanOrEqual(0);
    const buf = Buffer.from(query('stall2.test', 'A'));
    const again = e.handle(buf, 0, buf.length, Buffer.alloc(512), 0, false, undefined, undefined, parseAddr('198.18.4.9')!);
    expect(e.stats.get('fetchJoined')).toBe(4);
    fetches.release(t2, 'failed');
    await new Promise((res) => setTimeout(res, 20));
    for (const h of held.splice(0)) h();
    await again;
  });
});

