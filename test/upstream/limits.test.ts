/**
 * The forwarder's bounds: questions in flight per engine, per client network and per
 * process (shared between forwarders as between worker threads), queries waiting,
 * sockets per question, and the upstream TCP pool (reused, pipelined connections).
 * Fake upstreams on loopback only (127.0.0.1).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { textToWire } from '../../src/dns/name.js';
import { Forwarder, type ForwarderOptions } from '../../src/upstream/forwarder.js';
import { engineShare, SharedInflight } from '../../src/upstream/budget.js';
import type { UpstreamAddr } from '../../src/upstream/upstream.js';
import type { Question } from '../../src/upstream/wire.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function q(name: string, qtype = 1): Question {
  return { name: textToWire(name), qtype, qclass: 1, dnssecOk: false };
}

function answer(query: Buffer, o: { tc?: boolean; count?: number } = {}): Buffer {
  const d = dnsPacket.decode(query);
  const qq = d.questions![0]!;
  let flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;
  if (o.tc) flags |= dnsPacket.TRUNCATED_RESPONSE;
  return dnsPacket.encode({
    type: 'response',
    id: d.id,
    flags,
    questions: [qq],
    answers: Array.from({ length: o.count ?? 1 }, (_, i) => ({ type: 'A', name: qq.name, ttl: 60, data: `198.18.9.${i & 0xff}` }) as dnsPacket.Answer),
  } as dnsPacket.Packet);
}

/** A UDP upstream that holds every query until release() (or never answers). */
async function heldUpstream(): Promise<{ addr: UpstreamAddr; seen: Buffer[]; release(): void }> {
  const s = dgram.createSocket('udp4');
  const held: { m: Buffer; port: number }[] = [];
  const seen: Buffer[] = [];
  s.on('message', (m, r) => {
    seen.push(m);
    held.push({ m, port: r.port });
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  cleanups.push(() => {
    s.close();
  });
  return {
    addr: { host: '127.0.0.1', port: s.address().port, family: 4 },
    seen,
    release() {
      for (const h of held.splice(0)) s.send(answer(h.m), h.port, '127.0.0.1');
    },
  };
}

function forwarder(o: ForwarderOptions): Forwarder {
  const f = new Forwarder(o);
  cleanups.push(() => f.close());
  return f;
}

const settled = (p: Promise<unknown>): Promise<unknown> => p.then((v) => v, (e: unknown) => e);

/** Rejects with UPSTREAM_BUSY, and at once (no waiting on the upstream). */
async function expectBusy(p: Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  await expect(p).rejects.toMatchObject({ code: 'UPSTREAM_BUSY' });
  expect(performance.now() - t0).toBeLessThan(50);
}

describe('Forwarder: questions in flight', () => {
  it('refuses a new question beyond maxInflight at once, lets identical ones join without counting, and frees the slot when answered', async () => {
    const up = await heldUpstream();
    const fwd = forwarder({ upstreams: [up.addr], maxInflight: 3 });
    const first = ['a.test', 'b.test', 'c.test'].map((n) => fwd.resolve(q(n)));
    await expectBusy(fwd.resolve(q('d.test')));
    const joined = fwd.resolve(q('A.TEST')); // coalesced: no new question, not refused
    expect(fwd.stats()).toMatchObject({ inflight: 3, waiting: 4, busy: 1, busyBy: { engine: 1, client: 0, clientProcess: 0, process: 0, waiting: 0, clientWaiting: 0 }, coalesced: 1 });
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await Promise.all([...first, joined]);
    expect(fwd.stats()).toMatchObject({ inflight: 0, waiting: 0 });
    const later = fwd.resolve(q('d.test'));
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await later;
    expect(up.seen).toHaveLength(4);
  });

  it('gives one client network at most maxPerClient of them, and the others their own room', async () => {
    const up = await heldUpstream();
    const fwd = forwarder({ upstreams: [up.addr], maxInflight: 6, maxPerClient: 2 });
    const A = 'net-a';
    const B = 'net-b';
    const ps = [fwd.resolve(q('a1.test'), A), fwd.resolve(q('a2.test'), A)];
    await expectBusy(fwd.resolve(q('a3.test'), A));
    await expectBusy(fwd.resolve(q('a4.test'), A));
    ps.push(fwd.resolve(q('b1.test'), B), fwd.resolve(q('b2.test'), B));
    await expectBusy(fwd.resolve(q('b3.test'), B));
    // A question network B started is joined by A: it is B's, A is charged nothing.
    ps.push(fwd.resolve(q('b1.test'), A));
    // Queries with no client are charged to no network (only the engine's limit).
    ps.push(fwd.resolve(q('x1.test')), fwd.resolve(q('x2.test')));
    await expectBusy(fwd.resolve(q('x3.test')));
    expect(fwd.stats().busyBy).toEqual({ engine: 1, client: 3, clientProcess: 0, process: 0, waiting: 0, clientWaiting: 0 });
    expect(fwd.clients).toBe(2);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await Promise.all(ps);
    expect(fwd.clients).toBe(0); // the table holds only networks with questions in flight
    const again = fwd.resolve(q('a3.test'), A);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await again;
  });

  it('shares one process-wide limit between forwarders (as between worker threads), and forgets what a dead engine held', async () => {
    const up = await heldUpstream();
    const shared = new SharedInflight({ limit: 3 });
    // The second engine sees the budget through the buffer alone, as a worker does.
    const other = new SharedInflight({ buffer: shared.buffer });
    expect(other.limit).toBe(3);
    const f0 = forwarder({ upstreams: [up.addr], shared: engineShare(shared, 0) });
    const f1 = forwarder({ upstreams: [up.addr], shared: engineShare(other, 1) });
    const ps = [f0.resolve(q('p1.test')), f0.resolve(q('p2.test')), f1.resolve(q('p3.test'))];
    await expectBusy(f1.resolve(q('p4.test')));
    await expectBusy(f0.resolve(q('p5.test')));
    ps.push(f1.resolve(q('p3.test'))); // coalesced: takes nothing
    expect([shared.inUse, shared.held(0), shared.held(1)]).toEqual([3, 2, 1]);
    expect(f0.stats().busyBy.process + f1.stats().busyBy.process).toBe(2);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await Promise.all(ps);
    expect(shared.inUse).toBe(0);

    // A worker that dies holding part of the budget: the main thread gives it back.
    expect(shared.take(2) && shared.take(2)).toBe(true);
    expect(shared.inUse).toBe(2);
    shared.forget(2);
    expect([shared.inUse, shared.held(2)]).toEqual([0, 0]);
    expect(() => engineShare(shared, 65)).toThrow(RangeError);
  });

  it('gives one client network at most its share of the process, counted across every engine (RSS spreads a network over all queues)', async () => {
    const up = await heldUpstream();
    // Each engine on its own would let a network hold 10; the process lets it hold 3.
    const shared = new SharedInflight({ limit: 12, perNetwork: 3, engines: 2 });
    const other = new SharedInflight({ buffer: shared.buffer }); // as a worker sees it
    const f0 = forwarder({ upstreams: [up.addr], maxInflight: 10, maxPerClient: 10, shared: engineShare(shared, 0) });
    const f1 = forwarder({ upstreams: [up.addr], maxInflight: 10, maxPerClient: 10, shared: engineShare(other, 1) });
    const A = 'net-a';
    const B = 'net-b';
    const ps = [f0.resolve(q('a1.test'), A), f1.resolve(q('a2.test'), A), f0.resolve(q('a3.test'), A)];
    // Together the two engines hold A's share: neither starts another question for it.
    await expectBusy(f1.resolve(q('a4.test'), A));
    await expectBusy(f0.resolve(q('a5.test'), A));
    expect(f0.stats().busyBy.clientProcess + f1.stats().busyBy.clientProcess).toBe(2);
    expect([other.limit, other.perNetwork, other.engines]).toEqual([12, 3, 2]);
    expect(shared.networkHeld(A)).toBe(3);
    // A refused network takes nothing of the process's budget.
    expect(shared.inUse).toBe(3);
    // Another network has its own share, on either engine.
    ps.push(f1.resolve(q('b1.test'), B), f0.resolve(q('b2.test'), B), f1.resolve(q('b3.test'), B));
    await expectBusy(f0.resolve(q('b4.test'), B));
    // Joining a question in flight is no new question: A joins B's.
    ps.push(f1.resolve(q('b1.test'), A));
    expect([shared.networkHeld(A), shared.networkHeld(B), shared.inUse]).toEqual([3, 3, 6]);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await Promise.all(ps);
    // Every question settled gave its network's count back.
    expect([shared.networkHeld(A), shared.networkHeld(B), shared.inUse]).toEqual([0, 0, 0]);
    const again = f1.resolve(q('a4.test'), A);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await again;
  });

  it('gives a network its share back when a question ends at its deadline or the forwarder closes, and forgets what a dead engine held', async () => {
    const up = await heldUpstream(); // never released
    const shared = new SharedInflight({ limit: 8, perNetwork: 2, engines: 3 });
    const f0 = forwarder({ upstreams: [up.addr], timeoutMs: 40, deadlineMs: 80, shared: engineShare(shared, 0) });
    const A = 'net-a';
    const timedOut = [f0.resolve(q('t1.test'), A), f0.resolve(q('t2.test'), A)].map(settled);
    await expectBusy(f0.resolve(q('t3.test'), A));
    expect(await Promise.all(timedOut)).toMatchObject([{ code: 'UPSTREAM_TIMEOUT' }, { code: 'UPSTREAM_TIMEOUT' }]);
    expect([shared.networkHeld(A), shared.inUse]).toEqual([0, 0]);
    const f1 = forwarder({ upstreams: [up.addr], shared: engineShare(shared, 1) });
    const closed = [f1.resolve(q('c1.test'), A), f1.resolve(q('c2.test'), A)].map(settled);
    expect(shared.networkHeld(A)).toBe(2);
    await f1.close();
    expect(await Promise.all(closed)).toMatchObject([{ code: 'UPSTREAM_CLOSED' }, { code: 'UPSTREAM_CLOSED' }]);
    expect([shared.networkHeld(A), shared.inUse]).toEqual([0, 0]);

    // A worker that dies holding questions of A: the main thread's forget() frees them.
    const dead = engineShare(shared, 2);
    const net = dead.networkOf(A);
    expect(dead.takeNetwork(net) && dead.take() && dead.takeNetwork(net) && dead.take()).toBe(true);
    expect(dead.takeNetwork(net)).toBe(false);
    expect([shared.networkHeld(A), shared.inUse]).toEqual([2, 2]);
    shared.forget(2);
    expect([shared.networkHeld(A), shared.inUse]).toEqual([0, 0]);
    expect(() => engineShare(shared, 3)).toThrow(RangeError); // made for 3 engines
  });

  it('keeps a network whose counters collide with others at or under its share (collisions only make it stricter)', () => {
    // 256 counters (the least), 1,000 networks: every counter is shared, no network ever exceeds its share.
    const shared = new SharedInflight({ limit: 400, perNetwork: 5, engines: 1 });
    const e = engineShare(shared, 0);
    // Alone, a network gets exactly its share.
    const solo = e.networkOf('6:solo');
    expect(Array.from({ length: 6 }, () => e.takeNetwork(solo))).toEqual([true, true, true, true, true, false]);
    for (let j = 0; j < 5; j++) e.giveNetwork(solo);
    const held = new Map<string, number>();
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 1000; i++) {
        const k = `4:net${i}`;
        if (e.takeNetwork(e.networkOf(k))) held.set(k, (held.get(k) ?? 0) + 1);
      }
    }
    // Which networks get their 5 depends on the seed; none gets more.
    expect(Math.max(...held.values())).toBeLessThanOrEqual(5);
    expect(held.size).toBeGreaterThan(100);
    // The table reads at least what each network holds: a collision adds, never hides.
    for (const [k, n] of held) expect(shared.networkHeld(k)).toBeGreaterThanOrEqual(n);
    for (const [k, n] of held) for (let j = 0; j < n; j++) e.giveNetwork(e.networkOf(k));
    for (let i = 0; i < 1000; i++) expect(shared.networkHeld(`4:net${i}`)).toBe(0);
  });

  it('bounds the queries waiting (coalesced ones included) with maxWaiting', async () => {
    const up = await heldUpstream();
    const fwd = forwarder({ upstreams: [up.addr], maxInflight: 10, maxWaiting: 3 });
    const ps = [fwd.resolve(q('w.test')), fwd.resolve(q('w.test')), fwd.resolve(q('w.test'))];
    await expectBusy(fwd.resolve(q('w.test')));
    await expectBusy(fwd.resolve(q('other.test')));
    expect(fwd.stats().busyBy.waiting).toBe(2);
    await new Promise((r) => setTimeout(r, 30));
    up.release();
    await Promise.all(ps);
    expect(fwd.stats().waiting).toBe(0);
  });

  it("gives one network at most its share of the waiting: a flood of one stalled name leaves room for the others' new names", async () => {
    const up = await heldUpstream(); // never answers: the stalled authority
    const fwd = forwarder({ upstreams: [up.addr], maxInflight: 8, maxWaiting: 8 }); // a quarter of each per network by default
    const A = 'net-a';
    const B = 'net-b';
    const C = 'net-c';
    const flood = Array.from({ length: 20 }, () => settled(fwd.resolve(q('stalled.test'), A)));
    expect(fwd.stats()).toMatchObject({ inflight: 1, waiting: 2, coalesced: 1 });
    expect(fwd.stats().busyBy).toMatchObject({ clientWaiting: 18, waiting: 0 });
    expect([fwd.maxPerClient, fwd.maxWaitingPerClient]).toEqual([2, 2]);
    // Another network's new name goes upstream, not refused.
    const b = settled(fwd.resolve(q('fresh.test'), B));
    await new Promise((r) => setTimeout(r, 30));
    expect(up.seen.map((m) => dnsPacket.decode(m).questions![0]!.name.toLowerCase()).sort()).toEqual(['fresh.test', 'stalled.test']);
    expect(fwd.stats().busyBy.waiting).toBe(0);
    // A third network joining A's stalled name is charged to itself, not to A.
    const c = settled(fwd.resolve(q('stalled.test'), C));
    expect(fwd.stats()).toMatchObject({ waiting: 4, coalesced: 2 });
    expect(fwd.waitingClients).toBe(3);
    await fwd.close();
    await Promise.all([...flood, b, c]);
    expect([fwd.stats().waiting, fwd.waitingClients]).toEqual([0, 0]);
  });

  it.each([1, 64])('keeps at most two UDP sockets open per question however many attempts it makes (portReuse %i)', async (portReuse) => {
    const up = await heldUpstream(); // never released: every attempt times out
    const fwd = forwarder({ upstreams: [up.addr], timeoutMs: 40, deadlineMs: 1000, portReuse });
    const sockets = (): number => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof dgram.Socket).length;
    const base = sockets(); // the fake upstream's own
    const p = settled(fwd.resolve(q('slow.test')));
    let most = 0;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 20));
      most = Math.max(most, sockets() - base);
    }
    expect(up.seen.length).toBeGreaterThanOrEqual(6); // several attempts were made...
    expect(most).toBeLessThanOrEqual(2); // ...on at most two sockets at a time
    await fwd.close();
    await p;
  });
});

/** A UDP upstream that truncates everything and a TCP one that answers, counting connections. */
async function truncatingUpstream(tcpDelayMs: number): Promise<{ addr: UpstreamAddr; connections: number; tcpQueries: number; close(): Promise<void> }> {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  udp.on('message', (m, r) => udp.send(answer(m, { tc: true, count: 0 }), r.port, r.address));
  const srv = net.createServer();
  srv.listen(udp.address().port, '127.0.0.1');
  await once(srv, 'listening');
  const st = {
    addr: { host: '127.0.0.1', port: udp.address().port, family: 4 as const },
    connections: 0,
    tcpQueries: 0,
    async close() {
      udp.close();
      for (const s of socks) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
  const socks: net.Socket[] = [];
  srv.on('connection', (s) => {
    st.connections++;
    socks.push(s);
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    const batch: Buffer[] = [];
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        st.tcpQueries++;
        batch.push(Buffer.from(m));
      }
      // Answer each batch in reverse order: the pool must match by ID and question.
      setTimeout(() => {
        for (const m of batch.splice(0).reverse()) {
          const r = answer(m, { count: 100 });
          const len = Buffer.alloc(2);
          len.writeUInt16BE(r.length);
          if (!s.destroyed) s.write(Buffer.concat([len, r]));
        }
      }, tcpDelayMs);
    });
  });
  cleanups.push(() => st.close());
  return st;
}

describe('Forwarder: upstream TCP after TC=1', () => {
  it('pipelines many truncated questions over one reused connection, answers matched out of order', async () => {
    const up = await truncatingUpstream(20);
    const fwd = forwarder({ upstreams: [up.addr] });
    const names = Array.from({ length: 40 }, (_, i) => `big${i}.test`);
    const res = await Promise.all(names.map((n) => fwd.resolve(q(n))));
    for (let i = 0; i < names.length; i++) {
      const d = dnsPacket.decode(Buffer.from(res[i]!));
      expect(d.flag_tc).toBe(false);
      expect(d.questions![0]!.name).toBe(names[i]);
      expect(d.answers).toHaveLength(100);
    }
    expect(up.connections).toBe(1);
    expect(up.tcpQueries).toBe(40);
    expect(fwd.stats().tcp).toMatchObject({ connects: 1, reused: 39, busy: 0, open: 1 });
    // A later truncated answer reuses the same connection.
    await fwd.resolve(q('later.test'));
    expect(up.connections).toBe(1);
  });

  it('opens at most maxConns connections and gives the truncated answer at once when they are all full', async () => {
    const up = await truncatingUpstream(100);
    const fwd = forwarder({ upstreams: [up.addr], tcp: { maxConns: 2, maxPipeline: 5 } });
    const t0 = performance.now();
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => fwd.resolve(q(`m${i}.test`)).then((m) => ({ m, ms: performance.now() - t0 }))));
    const full = res.filter((r) => !dnsPacket.decode(Buffer.from(r.m)).flag_tc);
    const truncated = res.filter((r) => dnsPacket.decode(Buffer.from(r.m)).flag_tc);
    expect(full).toHaveLength(10);
    expect(truncated).toHaveLength(20);
    for (const r of truncated) expect(r.ms).toBeLessThan(90); // not queued behind the TCP answers
    expect(up.connections).toBe(2);
    expect(fwd.stats().tcp).toMatchObject({ connects: 2, busy: 20 });
  });
});
