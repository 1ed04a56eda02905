/**
 * Spoofing defences toward the upstream, against fake upstreams on loopback that
 * send forged extras, the wrong case, and missing or wrong cookies: 0x20 case
 * randomisation with its fallback, DNS cookies (RFC 7873) with BADCOOKIE, and the
 * scrubbing of what the forwarder hands out. Each rejection counted by reason.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { textToWire } from '../../src/dns/name.js';
import { MessageView } from '../../src/dns/view.js';
import { Forwarder, type ForwarderOptions } from '../../src/upstream/forwarder.js';
import { CAPS_MISSES, CAPS_OFF_MS, COOKIE_MISSES, UpstreamGuard } from '../../src/upstream/guard.js';
import type { UpstreamAddr } from '../../src/upstream/upstream.js';
import { Mismatch, buildQuery, matchResponse, type Question } from '../../src/upstream/wire.js';

const COOKIE = 10;

interface Opt {
  code: number;
  data: Buffer;
}

/** The COOKIE option of a message, or undefined. */
function cookieOf(m: Uint8Array): Buffer | undefined {
  const d = dnsPacket.decode(Buffer.from(m));
  const opt = d.additionals?.find((a) => a.type === 'OPT') as unknown as { options: Opt[] } | undefined;
  return opt?.options.find((o) => o.code === COOKIE)?.data;
}

interface ReplyOpts {
  name?: string;
  ip?: string;
  /** COOKIE option data to send; undefined: none. */
  cookie?: Buffer;
  rcode?: number;
  authorities?: dnsPacket.Answer[];
  additionals?: dnsPacket.Answer[];
}

function reply(q: Buffer, o: ReplyOpts = {}): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  const name = o.name ?? qq.name;
  const rcode = o.rcode ?? 0;
  return dnsPacket.encode({
    type: 'response',
    id: d.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (rcode & 0xf),
    questions: [{ name, type: qq.type, class: qq.class }],
    answers: rcode === 0 ? [{ type: 'A', name, ttl: 300, data: o.ip ?? '198.18.0.1' } as dnsPacket.Answer] : [],
    authorities: o.authorities ?? [],
    additionals: [
      ...(o.additionals ?? []),
      { type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: rcode >> 4, flags: 0, options: o.cookie ? [{ code: COOKIE, data: o.cookie }] : [] } as unknown as dnsPacket.Answer,
    ],
  } as dnsPacket.Packet);
}

class Fake {
  readonly seen: Buffer[] = [];
  onQuery: (q: Buffer, send: (m: Buffer) => void) => void = (q, send) => send(reply(q));
  private constructor(readonly sock: dgram.Socket) {
    sock.on('message', (m, from) => {
      this.seen.push(m);
      this.onQuery(m, (r) => {
        try {
          sock.send(r, from.port, from.address);
        } catch {
          // closed at the end of the test, a late reply is dropped
        }
      });
    });
  }
  static async start(): Promise<Fake> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const f = new Fake(s);
    cleanups.push(() => {
      s.close();
    });
    return f;
  }
  get addr(): UpstreamAddr {
    return { host: '127.0.0.1', port: this.sock.address().port, family: 4 };
  }
  names(): string[] {
    return this.seen.map((m) => dnsPacket.decode(m).questions![0]!.name);
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function forwarder(o: ForwarderOptions): Forwarder {
  const f = new Forwarder({ timeoutMs: 2000, deadlineMs: 4000, ...o });
  cleanups.push(() => f.close());
  return f;
}

const q = (name: string, extra: Partial<Question> = {}): Question => ({ name: textToWire(name), qtype: 1, qclass: 1, dnssecOk: false, ...extra });
const ipOf = (m: Uint8Array): string => (dnsPacket.decode(Buffer.from(m)).answers![0] as { data: string }).data;

/** A copy of `m` with the question name's letters lowercased. */
function lowerQuestion(m: Buffer): Buffer {
  const b = Buffer.from(m);
  for (let p = 12; b[p] !== 0; p++) if (b[p]! >= 0x41 && b[p]! <= 0x5a) b[p] = b[p]! | 0x20;
  return b;
}

describe('0x20 toward the upstream', () => {
  it('sends each name in a fresh random case, keeps length bytes, and takes the exact echo', async () => {
    const up = await Fake.start();
    const fwd = forwarder({ upstreams: [up.addr] });
    const name = 'abcdefghijklmnop.example.test';
    for (let i = 0; i < 12; i++) {
      // distinct types: no coalescing, no cache
      expect(ipOf(await fwd.resolve(q(name, { qtype: 1 + i })))).toBe('198.18.0.1');
    }
    const sent = up.names();
    for (const n of sent) expect(n.toLowerCase()).toBe(name);
    expect(new Set(sent).size).toBeGreaterThan(8); // 26 letters: a repeat is a 1 in 2^26 event per pair
    expect(sent.some((n) => n !== n.toLowerCase()) && sent.some((n) => n !== n.toUpperCase())).toBe(true);
    expect(fwd.stats().mismatchedBy.case).toBe(0);
  });

  it('a forged answer in the wrong case is ignored and counted; the real one is taken', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) => {
      send(lowerQuestion(reply(m, { ip: '198.18.66.6' }))); // right port and ID, case not as sent
      setTimeout(() => send(reply(m)), 20);
    };
    const fwd = forwarder({ upstreams: [up.addr] });
    expect(ipOf(await fwd.resolve(q('Some-Long-Name.example.test')))).toBe('198.18.0.1');
    expect(fwd.stats().mismatchedBy.case).toBe(1);
    expect(fwd.stats().capsFallbacks).toBe(0);
  });

  it('an upstream that does not preserve case gets plain names after a run of misses, one attempt timeout later', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) => send(lowerQuestion(reply(m)));
    const fwd = forwarder({ upstreams: [up.addr], timeoutMs: 300 });
    const t0 = performance.now();
    expect(ipOf(await fwd.resolve(q('MixedCase.example.test')))).toBe('198.18.0.1');
    const ms = performance.now() - t0;
    // CAPS_MISSES - 1 attempts waited out, then the switch to plain names asks again at once
    expect(ms).toBeGreaterThanOrEqual(300 * (CAPS_MISSES - 1) - 5);
    expect(ms).toBeLessThan(300 * CAPS_MISSES);
    const s = fwd.stats();
    expect(s.mismatchedBy.case).toBe(CAPS_MISSES);
    expect(s.capsFallbacks).toBe(1);
    // then plain names, no more misses
    await fwd.resolve(q('next.example.test'));
    expect(up.names().at(-1)).toBe('next.example.test');
    expect(fwd.stats().mismatchedBy.case).toBe(CAPS_MISSES);
  });

  it('the guard tries the random case again after CAPS_OFF_MS, and a good echo resets the count', () => {
    const g = new UpstreamGuard();
    const sent = g.prepare(q('abc.test'), 0);
    expect(sent.exactCase).toBe(true);
    expect(CAPS_MISSES).toBe(2);
    expect(g.mismatched(Mismatch.CASE, 0)).toBe(false);
    expect(g.capsOn(1)).toBe(true); // one miss is not enough
    g.answered(new MessageView(), sent); // an exact echo in between
    expect(g.mismatched(Mismatch.CASE, 2)).toBe(false);
    expect(g.capsOn(3)).toBe(true);
    expect(g.mismatched(Mismatch.CASE, 4)).toBe(true); // the second in a row: plain names now
    expect(g.capsOn(5)).toBe(false);
    expect(g.prepare(q('abc.test'), 5).exactCase).toBeUndefined();
    expect(g.capsOn(4 + CAPS_OFF_MS)).toBe(true);
    expect(g.stats(5)).toMatchObject({ capsFallbacks: 1, capsOff: true });
  });

  it('with caps off the name goes out as given', async () => {
    const up = await Fake.start();
    const fwd = forwarder({ upstreams: [up.addr], caps: false });
    await fwd.resolve(q('plain.example.test'));
    expect(up.names()).toEqual(['plain.example.test']);
  });
});

describe('DNS cookies toward the upstream', () => {
  const SERVER = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');

  it('sends a client cookie per upstream, learns the server cookie and sends it back', async () => {
    const [a, b] = [await Fake.start(), await Fake.start()];
    for (const up of [a, b]) up.onQuery = (m, send) => send(reply(m, { cookie: Buffer.concat([cookieOf(m)!.subarray(0, 8), SERVER]) }));
    const fwd = forwarder({ upstreams: [a.addr, b.addr] });
    await fwd.resolve(q('one.test'));
    await fwd.resolve(q('two.test'));
    // enough questions that both upstreams are asked (never-measured first, then SRTT)
    for (let i = 0; i < 6 && (a.seen.length === 0 || b.seen.length === 0); i++) await fwd.resolve(q(`more${i}.test`));
    const first = cookieOf(a.seen[0]!)!;
    expect(first).toHaveLength(8);
    const clientA = first.subarray(0, 8);
    for (const m of a.seen.slice(1)) {
      const c = cookieOf(m)!;
      expect(c.subarray(0, 8)).toEqual(clientA);
      expect(c.subarray(8)).toEqual(SERVER);
    }
    expect(b.seen.length).toBeGreaterThan(0);
    expect(cookieOf(b.seen[0]!)!.subarray(0, 8)).not.toEqual(clientA);
    expect(fwd.stats().mismatched).toBe(0);
  });

  it('an answer echoing another client cookie, or a malformed cookie, is ignored and counted', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) => {
      const mine = cookieOf(m)!.subarray(0, 8);
      const other = Buffer.from(mine);
      other[0] = other[0]! ^ 0xff;
      send(reply(m, { ip: '198.18.66.1', cookie: Buffer.concat([other, SERVER]) })); // not our client cookie
      send(reply(m, { ip: '198.18.66.2', cookie: mine })); // no server cookie
      setTimeout(() => send(reply(m, { cookie: Buffer.concat([mine, SERVER]) })), 20);
    };
    const fwd = forwarder({ upstreams: [up.addr] });
    expect(ipOf(await fwd.resolve(q('c.test')))).toBe('198.18.0.1');
    expect(fwd.stats().mismatchedBy.cookie).toBe(2);
  });

  it('once an upstream gave a server cookie, answers without one are refused; after a run of them it is forgotten', async () => {
    const up = await Fake.start();
    let withCookie = true;
    up.onQuery = (m, send) => send(reply(m, withCookie ? { cookie: Buffer.concat([cookieOf(m)!.subarray(0, 8), SERVER]) } : {}));
    const fwd = forwarder({ upstreams: [up.addr], timeoutMs: 300 });
    await fwd.resolve(q('a.test'));
    withCookie = false; // the upstream stops doing cookies (or a forger strips them)
    expect(ipOf(await fwd.resolve(q('b.test')))).toBe('198.18.0.1');
    const s = fwd.stats();
    expect(s.mismatchedBy.cookieMissing).toBe(COOKIE_MISSES);
    expect(s.cookieResets).toBe(1);
    // the query after the reset goes without the server cookie
    expect(cookieOf(up.seen.at(-1)!)).toHaveLength(8);
  });

  it('BADCOOKIE: asks again once with the fresh server cookie', async () => {
    const up = await Fake.start();
    const fresh = Buffer.from('a1a2a3a4a5a6a7a8a9aaabacadaeafb0', 'hex');
    up.onQuery = (m, send) => {
      const c = cookieOf(m)!;
      if (c.length === 8 + fresh.length && c.subarray(8).equals(fresh)) send(reply(m, { cookie: c }));
      else send(reply(m, { rcode: 23, cookie: Buffer.concat([c.subarray(0, 8), fresh]) }));
    };
    const fwd = forwarder({ upstreams: [up.addr] });
    const m = await fwd.resolve(q('bad.cookie.test'));
    expect(ipOf(m)).toBe('198.18.0.1');
    expect(up.seen).toHaveLength(2);
    expect(cookieOf(up.seen[1]!)!.subarray(8)).toEqual(fresh);
  });

  it('BADCOOKIE every time: never handed out, the question fails (SERVFAIL for the client)', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) => send(reply(m, { rcode: 23, cookie: Buffer.concat([cookieOf(m)!.subarray(0, 8), SERVER]) }));
    const fwd = forwarder({ upstreams: [up.addr], timeoutMs: 100, deadlineMs: 600 });
    await expect(fwd.resolve(q('always.bad.test'))).rejects.toMatchObject({ code: 'UPSTREAM_FAILED' });
    expect(up.seen.length).toBeGreaterThanOrEqual(2);
    expect(fwd.stats().servfail).toBe(1);
  });

  it('with cookies off no COOKIE option is sent and none is required', async () => {
    const up = await Fake.start();
    const fwd = forwarder({ upstreams: [up.addr], cookies: false });
    await fwd.resolve(q('nocookie.test'));
    expect(cookieOf(up.seen[0]!)).toBeUndefined();
  });

  it('matchResponse: the query carries the cookie option; the checks in order', () => {
    const g = new UpstreamGuard({ caps: false });
    const sent = g.prepare(q('x.test'), 0);
    const wire = Buffer.from(buildQuery(sent, 7, 1232));
    const view = new MessageView();
    expect(view.parse(wire)).toBe(0);
    const c = cookieOf(wire)!;
    expect(matchResponse(view, reply(wire), 7, sent)).toBe(Mismatch.NONE); // no cookie, none known yet
    expect(matchResponse(view, reply(wire, { cookie: Buffer.concat([c, SERVER]) }), 7, sent)).toBe(Mismatch.NONE);
    expect(matchResponse(view, reply(wire, { cookie: Buffer.concat([c, Buffer.alloc(33)]) }), 7, sent)).toBe(Mismatch.COOKIE);
    g.answered(view.parseOrThrow(reply(wire, { cookie: Buffer.concat([c, SERVER]) })), sent);
    const next = g.prepare(q('x.test'), 0);
    expect(next.cookieRequired).toBe(true);
    expect(matchResponse(view, reply(Buffer.from(buildQuery(next, 8, 1232))), 8, next)).toBe(Mismatch.NO_COOKIE);
  });
});

describe('what the forwarder hands out is scrubbed', () => {
  it('the forged extras of issue 13 never reach the caller, and are counted by section', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) =>
      send(
        reply(m, {
          authorities: [{ type: 'NS', name: 'bank.example', ttl: 86400, data: 'ns.evil.example' } as dnsPacket.Answer],
          additionals: [{ type: 'A', name: 'www.bank.example', ttl: 86400, data: '198.18.66.6' } as dnsPacket.Answer],
        }),
      );
    const fwd = forwarder({ upstreams: [up.addr] });
    const m = dnsPacket.decode(Buffer.from(await fwd.resolve(q('spoof-hot.lab.example'))));
    expect(m.answers!.map((a) => a.name.toLowerCase())).toEqual(['spoof-hot.lab.example']);
    expect(m.authorities).toEqual([]);
    expect(m.additionals!.map((a) => a.type)).toEqual(['OPT']);
    expect(fwd.stats().scrubbed).toEqual({ answer: 0, authority: 1, additional: 1 });
  });

  it('minimal responses drop the zone\'s NS and glue of a positive answer (not counted as scrubbed); off, they stay', async () => {
    const up = await Fake.start();
    up.onQuery = (m, send) =>
      send(
        reply(m, {
          authorities: [{ type: 'NS', name: 'test', ttl: 86400, data: 'ns1.test' } as dnsPacket.Answer],
          additionals: [{ type: 'A', name: 'ns1.test', ttl: 86400, data: '198.18.0.53' } as dnsPacket.Answer],
        }),
      );
    const min = forwarder({ upstreams: [up.addr] });
    const a = dnsPacket.decode(Buffer.from(await min.resolve(q('www.test'))));
    expect([a.authorities!.length, a.additionals!.length]).toEqual([0, 1]);
    expect(min.stats().scrubbed).toEqual({ answer: 0, authority: 0, additional: 0 });
    const full = forwarder({ upstreams: [up.addr], minimalResponses: false });
    const b = dnsPacket.decode(Buffer.from(await full.resolve(q('www.test'))));
    expect(b.authorities!.map((x) => x.type)).toEqual(['NS']);
    expect(b.additionals!.map((x) => x.type)).toEqual(['A', 'OPT']);
  });
});
