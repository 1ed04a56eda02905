/**
 * TcpPool over fake sockets and a fake clock: how many connections, which one a query
 * goes on, matching by ID and question, per-query timeouts, idle close, and a connection
 * the upstream closes.
 */
import { EventEmitter } from 'node:events';
import dnsPacket from 'dns-packet';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { textToWire } from '../../src/dns/name.js';
import { MessageView } from '../../src/dns/view.js';
import { TcpPool, type TcpSocketLike } from '../../src/upstream/tcp-pool.js';
import { buildQuery, Mismatch, type MismatchCode, type Question } from '../../src/upstream/wire.js';

class FakeSocket extends EventEmitter implements TcpSocketLike {
  readonly written: Buffer[] = [];
  destroyed = false;
  write(data: Uint8Array): boolean {
    this.written.push(Buffer.from(data));
    return true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  /** Queries written so far, parsed. */
  queries(): dnsPacket.DecodedPacket[] {
    return this.written.map((f) => dnsPacket.decode(f.subarray(2)));
  }
  /** The upstream answers `query` (or says it is for `name`). */
  reply(query: dnsPacket.DecodedPacket, name?: string): void {
    const qq = query.questions![0]!;
    const r = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ ...qq, name: name ?? qq.name }],
      answers: [{ type: 'A', name: name ?? qq.name, ttl: 60, data: '198.18.9.9' }],
    } as dnsPacket.Packet);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(r.length);
    // Split in two chunks: framing must not depend on segment boundaries.
    const all = Buffer.concat([len, r]);
    this.emit('data', all.subarray(0, 5));
    this.emit('data', all.subarray(5));
  }
}

const ADDR = { host: '127.0.0.1', port: 53, family: 4 as const };

function q(name: string): Question {
  return { name: textToWire(name), qtype: 1, qclass: 1, dnssecOk: false };
}

interface Outcome {
  answered: string[];
  errors: { name: string; timedOut: boolean }[];
}

function setup(o: { maxConns?: number; maxPipeline?: number; idleMs?: number } = {}) {
  const sockets: FakeSocket[] = [];
  const ignored: MismatchCode[] = [];
  const pool = new TcpPool(ADDR, new MessageView(), (r) => ignored.push(r), {
    ...o,
    connect: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
  });
  const out: Outcome = { answered: [], errors: [] };
  const ask = (name: string, timeoutMs = 1000) =>
    pool.query(q(name), (id) => buildQuery(q(name), id, 1232), timeoutMs, {
      answer: () => out.answered.push(name),
      error: (_e, timedOut) => out.errors.push({ name, timedOut }),
    });
  return { pool, sockets, ignored, out, ask };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('TcpPool', () => {
  it('fills one connection up to maxPipeline before opening the next, and refuses beyond maxConns', () => {
    const { pool, sockets, ask } = setup({ maxConns: 2, maxPipeline: 3 });
    for (let i = 0; i < 6; i++) expect(ask(`n${i}.test`)).not.toBeNull();
    expect(sockets).toHaveLength(2);
    expect(sockets.map((s) => s.written.length)).toEqual([3, 3]);
    expect(ask('n6.test')).toBeNull();
    expect(pool.stats()).toMatchObject({ connects: 2, reused: 4, busy: 1, open: 2 });
    // IDs are distinct on a connection.
    const ids = sockets[0]!.queries().map((m) => m.id);
    expect(new Set(ids).size).toBe(3);
  });

  it('matches answers in any order by ID and question; a wrong question or unknown ID is ignored and counted', () => {
    const { sockets, ignored, out, ask } = setup();
    ask('one.test');
    ask('two.test');
    const s = sockets[0]!;
    const [m1, m2] = s.queries();
    s.reply(m2!);
    s.reply(m1!, 'forged.test'); // right ID, wrong question: ignored, one.test still waits
    let other = 1;
    while (other === m1!.id || other === m2!.id) other++;
    s.reply({ ...m1!, id: other }); // an ID nothing waits for
    expect(out.answered).toEqual(['two.test']);
    expect(ignored).toEqual([Mismatch.QUESTION, Mismatch.ID]);
    s.reply(m1!);
    expect(out.answered).toEqual(['two.test', 'one.test']);
    expect(sockets).toHaveLength(1);
  });

  it('times a query out alone, keeping the connection for the others', () => {
    const { pool, sockets, out, ask } = setup();
    ask('slow.test', 100);
    ask('fast.test', 5000);
    vi.advanceTimersByTime(150);
    expect(out.errors).toEqual([{ name: 'slow.test', timedOut: true }]);
    sockets[0]!.reply(sockets[0]!.queries()[1]!);
    expect(out.answered).toEqual(['fast.test']);
    expect(pool.open).toBe(1);
    expect(sockets[0]!.destroyed).toBe(false);
  });

  it('closes a connection idle for idleMs and counts it; a query in flight keeps it open', () => {
    const { pool, sockets, ask } = setup({ idleMs: 1000 });
    ask('a.test', 60_000);
    vi.advanceTimersByTime(5000);
    expect(pool.open).toBe(1); // busy, not idle
    sockets[0]!.reply(sockets[0]!.queries()[0]!);
    vi.advanceTimersByTime(999);
    expect(pool.open).toBe(1);
    ask('b.test'); // reused before the idle timer fired: the timer restarts after it
    expect(sockets).toHaveLength(1);
    sockets[0]!.reply(sockets[0]!.queries()[1]!);
    vi.advanceTimersByTime(1001);
    expect(pool.open).toBe(0);
    expect(sockets[0]!.destroyed).toBe(true);
    expect(pool.stats()).toMatchObject({ idleClosed: 1, connects: 1, reused: 1 });
    ask('c.test');
    expect(sockets).toHaveLength(2); // a new connection for the next query
  });

  it('fails every query on a connection the upstream closes, and opens a new one next time', () => {
    const { pool, sockets, out, ask } = setup();
    ask('x.test');
    ask('y.test');
    sockets[0]!.emit('close');
    expect(out.errors).toEqual([
      { name: 'x.test', timedOut: false },
      { name: 'y.test', timedOut: false },
    ]);
    expect(pool.stats()).toMatchObject({ lost: 1, open: 0 });
    vi.advanceTimersByTime(10_000); // their timers are gone: no second hook
    expect(out.errors).toHaveLength(2);
    ask('z.test');
    expect(sockets).toHaveLength(2);
  });

  it('an abandoned query calls no hook and frees its place', () => {
    const { sockets, out, ask } = setup({ maxConns: 1, maxPipeline: 1 });
    const h = ask('gone.test')!;
    expect(ask('next.test')).toBeNull();
    h.close();
    expect(ask('next.test')).not.toBeNull();
    sockets[0]!.reply(sockets[0]!.queries()[0]!); // the abandoned one's answer: unknown ID now
    vi.advanceTimersByTime(5000);
    expect(out).toEqual({ answered: [], errors: [{ name: 'next.test', timedOut: true }] });
  });
});
