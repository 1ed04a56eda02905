import { describe, expect, it } from 'vitest';
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { EdgeGuard, truncateReply, type EdgePolicy } from '../../src/edge/guard.js';
import { RRL_BUCKET_BYTES, RRL_DEFAULTS, RateLimiter } from '../../src/edge/rrl.js';
import { StatsBlock } from '../../src/engine/stats.js';
import type { FrameHandler } from '../../src/io/xsk-server.js';
import { parseAddr, type Addr } from '../../src/net/addr.js';
import { decode, ednsOption, query, response } from '../helpers/dns.js';

const ANSWER = response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: '198.18.10.1' }] });

/** An engine stand-in that answers every query with ANSWER (ID copied), now or later. */
function engine(async = false): FrameHandler & { calls: number } {
  const h = {
    calls: 0,
    handle(buf: Uint8Array, off: number, _len: number, out: Uint8Array, outOff: number) {
      h.calls++;
      const id = [buf[off]!, buf[off + 1]!];
      const write = (): number => {
        out.set(ANSWER, outOff);
        out[outOff] = id[0]!;
        out[outOff + 1] = id[1]!;
        return ANSWER.length;
      };
      return async ? Promise.resolve().then(write) : write();
    },
  };
  return h;
}

function setup(o: { rate?: number; slip?: number; async?: boolean; exempt?: string } = {}) {
  const policy: EdgePolicy = {
    acl: AccessList.build(parseAclList('default,198.18.0.0/15'), parseAclList('198.18.66.0/24'), parseAclList(o.exempt ?? '')),
    rrl: o.rate ? new RateLimiter(new ArrayBuffer(1024 * RRL_BUCKET_BYTES), 1024, 1, { ...RRL_DEFAULTS, rate: o.rate, slip: o.slip ?? 0 }) : null,
    guardedPorts: new Set([0, 7, 19]),
    udpSize: 1232,
  };
  const stats = new StatsBlock();
  const inner = engine(o.async);
  const guard = new EdgeGuard(inner, policy, stats, () => 1e12);
  const out = new Uint8Array(4096);
  const ask = (q: Uint8Array, from: string, port = 40000, tcp = false) => {
    const c: Addr = { ...parseAddr(from)!, port };
    return guard.handle(q, 0, q.length, out, 0, tcp, undefined, undefined, c);
  };
  return { guard, stats, inner, out, ask };
}

describe('EdgeGuard', () => {
  it('answers an allowed client through the engine', () => {
    const { ask, inner, out } = setup();
    const n = ask(query('www.example.com', 'A', { id: 5 }), '198.18.0.2') as number;
    expect(n).toBe(ANSWER.length);
    expect(decode(out.subarray(0, n)).id).toBe(5);
    expect(inner.calls).toBe(1);
  });

  it('drops a denied client without a word, and refuses one in no list', () => {
    const { ask, inner, out, stats } = setup();
    expect(ask(query('www.example.com', 'A'), '198.18.66.7')).toBe(0);
    const n = ask(query('www.example.com', 'A', { id: 9 }), '8.8.8.8') as number;
    const d = decode(out.subarray(0, n));
    expect([d.id, d.rcode, d.answers.length]).toEqual([9, 'REFUSED', 0]);
    expect(inner.calls).toBe(0);
    expect([stats.get('edgeDenied'), stats.get('edgeRefused')]).toEqual([1, 1]);
  });

  it('never answers junk, responses, reflection ports or multicast sources', () => {
    const { ask, inner, stats } = setup();
    expect(ask(Buffer.from('chargen !"#$%&()*+,-./0123456789'), '198.18.0.2')).toBe(0);
    expect(ask(Buffer.alloc(5), '198.18.0.2')).toBe(0);
    const resp = query('x.example', 'A');
    resp[2]! |= 0x80;
    expect(ask(resp, '198.18.0.2')).toBe(0);
    expect(ask(query('x.example', 'A'), '198.18.0.2', 19)).toBe(0);
    expect(ask(query('x.example', 'A'), '224.0.0.251')).toBe(0);
    expect(ask(query('x.example', 'A'), '8.8.8.8', 7)).toBe(0); // no REFUSED toward a reflection port either
    expect(inner.calls).toBe(0);
    expect([stats.get('edgeNotQuery'), stats.get('edgeResponse'), stats.get('edgeSourcePort'), stats.get('edgeBadSource')]).toEqual([2, 1, 2, 1]);
  });

  it('refuses only a plain query from a refused source, and drops the rest as the XDP program does (no error reply to junk)', () => {
    const { ask, inner, stats, out } = setup();
    const ednsVersion1 = (m: Buffer): Buffer => {
      const b = Buffer.from(m);
      b[b.length - 11 + 6] = 1; // the OPT is last: its version byte (name 1, type 2, class 2, ext rcode 1)
      return b;
    };
    const asQuery = (m: Buffer): Buffer => {
      const b = Buffer.from(m);
      b[2]! &= 0x7f; // QR=0
      b[3]! &= 0xf0; // no RCODE
      return b;
    };
    const A = { type: 'A', name: 'x.example', ttl: 5, data: '198.18.10.1' } as const;
    const flagged = (hi: number, lo: number): Buffer => {
      const b = query('x.example', 'A');
      b[2]! |= hi;
      b[3]! |= lo;
      return b;
    };
    const junk: Array<[string, Buffer]> = [
      ['opcode NOTIFY', flagged(4 << 3, 0)],
      ['opcode UPDATE', flagged(5 << 3, 0)],
      ['TC set', flagged(0x02, 0)],
      ['an RCODE set', flagged(0, 0x03)],
      ['an answer record', asQuery(response('x.example', 'A', { answers: [A] }))],
      ['an authority record', asQuery(response('x.example', 'A', { authorities: [{ ...A }] }))],
      ['an additional that is not an OPT', asQuery(response('x.example', 'A', { additionals: [A] }))],
      ['two additionals', asQuery(response('x.example', 'A', { additionals: [A] }, { dnssecOk: false }))],
      ['EDNS version 1', ednsVersion1(query('x.example', 'A', { edns: {} }))],
      ['an OPT RDATA over 1 KiB', query('x.example', 'A', { edns: { options: [ednsOption(65001, Buffer.alloc(1100, 1))] } })],
    ];
    for (const [what, m] of junk) expect(ask(m, '8.8.8.8'), what).toBe(0);
    expect(stats.get('edgeNotQuery')).toBe(junk.length);
    expect(stats.get('edgeRefused')).toBe(0);
    // A plain query, with or without an OPT (a cookie in it), is refused.
    for (const q of [query('x.example', 'A', { id: 3 }), query('x.example', 'A', { id: 3, edns: { options: [ednsOption(10, Buffer.alloc(8, 7))] } })]) {
      const n = ask(q, '8.8.8.8') as number;
      expect(decode(out.subarray(0, n)).rcode).toBe('REFUSED');
    }
    expect(stats.get('edgeRefused')).toBe(2);
    expect(inner.calls).toBe(0);
  });

  it('fails closed: a query without a known source is not served', () => {
    const { guard, inner, stats, out } = setup();
    const q = query('www.example.com', 'A');
    expect(guard.handle(q, 0, q.length, out, 0, true)).toBe(0);
    expect(inner.calls).toBe(0);
    expect(stats.get('edgeBadSource')).toBe(1);
  });

  it('takes TCP from any port, and never rate limits it', () => {
    const { ask } = setup({ rate: 1 });
    for (let i = 0; i < 5; i++) expect(ask(query('www.example.com', 'A'), '198.18.0.2', 7, true)).toBe(ANSWER.length);
  });

  it('rate limits UDP replies, slipping truncated ones, also for answers that come later (a miss)', async () => {
    for (const async of [false, true]) {
      const { ask, out, stats } = setup({ rate: 3, slip: 2, async });
      const lens: number[] = [];
      for (let i = 0; i < 9; i++) lens.push(await ask(query('www.example.com', 'A', { id: i }), '198.18.0.2'));
      expect(lens.slice(0, 3)).toEqual([ANSWER.length, ANSWER.length, ANSWER.length]);
      expect(stats.get('edgeRateLimited') + stats.get('edgeSlipped')).toBe(6);
      expect(stats.get('edgeSlipped')).toBe(3);
      const slip = lens.find((n) => n > 0 && n < ANSWER.length)!;
      const d = decode(out.subarray(0, slip));
      expect((d.flags & 0x0200) !== 0).toBe(true);
      expect(d.answers).toHaveLength(0);
    }
  });

  it('charges a reply made now at the batch clock the caller passed, and a late answer at its own clock', async () => {
    for (const async of [false, true]) {
      const policy: EdgePolicy = {
        acl: AccessList.build(parseAclList('198.18.0.0/15'), [], []),
        rrl: new RateLimiter(new ArrayBuffer(1024 * RRL_BUCKET_BYTES), 1024, 1, { ...RRL_DEFAULTS, rate: 1, slip: 0 }),
        guardedPorts: new Set([0]),
        udpSize: 1232,
      };
      // The guard's own clock stands still; the batch clock moves two seconds per query.
      const guard = new EdgeGuard(engine(async), policy, new StatsBlock(), () => 1e12);
      const out = new Uint8Array(4096);
      const c: Addr = { ...parseAddr('198.18.0.2')!, port: 40000 };
      const sent: number[] = [];
      for (let i = 0; i < 4; i++) {
        const q = query('www.example.com', 'A', { id: i });
        sent.push(await guard.handle(q, 0, q.length, out, 0, false, undefined, 1e12 + i * 2e9, c));
      }
      // One reply a second is allowed: by the batch clock every reply is in a new second;
      // an answer that came later is charged when it came, by the guard's clock, which
      // has not moved, so only the first of them goes out.
      if (async) expect(sent.filter((n) => n > 0)).toHaveLength(1);
      else expect(sent).toEqual([ANSWER.length, ANSWER.length, ANSWER.length, ANSWER.length]);
    }
  });

  it('does not limit an exempt client', () => {
    const { ask } = setup({ rate: 1, exempt: '198.18.9.0/24' });
    for (let i = 0; i < 5; i++) expect(ask(query('www.example.com', 'A'), '198.18.9.1')).toBe(ANSWER.length);
  });

  it('truncates a reply to its question', () => {
    const buf = Buffer.from(ANSWER);
    const n = truncateReply(buf, 0, buf.length);
    const d = decode(buf.subarray(0, n));
    expect(d.questions[0]!.name).toBe('www.example.com');
    expect(d.answers).toHaveLength(0);
    expect(truncateReply(buf, 0, 5)).toBe(0);
  });
});
