/**
 * The forwarder against fake upstreams on loopback (node:dgram / node:net and
 * dns-packet, written here): pass-through, validation of every answer,
 * failover, health, coalescing, TC -> TCP, source-port randomness, bounds.
 * Loopback only: 127.0.0.1 and ::1.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { textToWire } from '../../src/dns/name.js';
import { MessageView } from '../../src/dns/view.js';
import { Forwarder, type ForwarderOptions } from '../../src/upstream/forwarder.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import { kernelPortRange } from '../../src/upstream/random.js';
import { UdpPool, type UdpExchange } from '../../src/upstream/udp.js';
import type { UpstreamAddr } from '../../src/upstream/upstream.js';
import { buildQuery, matchResponse, Mismatch, type Question } from '../../src/upstream/wire.js';

// ---- fake upstream -------------------------------------------------------------

type Host = '127.0.0.1' | '::1';

interface AnswerOpts {
  ips?: string[];
  count?: number;
  tc?: boolean;
  rcode?: string;
  id?: number;
  name?: string;
  noAnswers?: boolean;
}

/** dns-packet takes the RCODE only from the flags word. */
const RCODES: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

/** A response to raw query `q` with dns-packet: same ID and question unless overridden. */
function answer(q: Buffer, o: AnswerOpts = {}): Buffer {
  const d = dnsPacket.decode(q);
  const qq = d.questions![0]!;
  const name = o.name ?? qq.name;
  const ips = o.ips ?? Array.from({ length: o.count ?? 1 }, (_, i) => `198.18.${(i >> 8) & 0xff}.${i & 0xff}`);
  let flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | RCODES[o.rcode ?? 'NOERROR']!;
  if (o.tc) flags |= dnsPacket.TRUNCATED_RESPONSE;
  return dnsPacket.encode({
    type: 'response',
    id: o.id ?? d.id,
    flags,
    questions: [{ name, type: qq.type, class: qq.class }],
    answers: o.noAnswers ? [] : ips.map((ip) => ({ type: 'A', name, ttl: 300, data: ip }) as dnsPacket.Answer),
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer],
  } as dnsPacket.Packet);
}

interface Seen {
  msg: Buffer;
  address: string;
  port: number;
}

type UdpBehaviour = (q: Buffer, from: dgram.RemoteInfo, up: FakeUpstream) => void;

class FakeUpstream {
  readonly seen: Seen[] = [];
  readonly tcpSeen: Buffer[] = [];
  /** What to do with each UDP query; default: answer it. */
  onUdp: UdpBehaviour = (q, from, up) => up.reply(answer(q), from);
  /** TCP answer per query, null for none; default: answer it. */
  onTcp: (q: Buffer) => Buffer | null = (q) => answer(q);

  private constructor(
    readonly host: Host,
    readonly udp: dgram.Socket,
    readonly tcp: net.Server | null,
  ) {
    udp.on('message', (msg, from) => {
      this.seen.push({ msg, address: from.address, port: from.port });
      this.onUdp(msg, from, this);
    });
  }

  static async start(host: Host = '127.0.0.1', withTcp = true): Promise<FakeUpstream> {
    for (let i = 0; ; i++) {
      const udp = dgram.createSocket(host === '::1' ? 'udp6' : 'udp4');
      await new Promise<void>((r) => udp.bind(0, host, r));
      if (!withTcp) return new FakeUpstream(host, udp, null);
      const tcp = net.createServer();
      try {
        tcp.listen(udp.address().port, host);
        await once(tcp, 'listening');
      } catch (e) {
        udp.close();
        if (i > 5) throw e;
        continue;
      }
      const up = new FakeUpstream(host, udp, tcp);
      tcp.on('connection', (s) => up.serveTcp(s));
      return up;
    }
  }

  get port(): number {
    return this.udp.address().port;
  }

  get addr(): UpstreamAddr {
    return { host: this.host, port: this.port, family: this.host === '::1' ? 6 : 4 };
  }

  reply(msg: Buffer, to: dgram.RemoteInfo): void {
    this.udp.send(msg, to.port, to.address);
  }

  private serveTcp(s: net.Socket): void {
    let buf = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        this.tcpSeen.push(q);
        const r = this.onTcp(q);
        if (r) {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(r.length);
          s.write(Buffer.concat([len, r]));
        }
      }
    });
  }

  async close(): Promise<void> {
    this.udp.close();
    if (this.tcp) await new Promise((r) => this.tcp!.close(r));
  }
}

// ---- helpers -----------------------------------------------------------------------

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fakes(n: number, host: Host = '127.0.0.1'): Promise<FakeUpstream[]> {
  const out: FakeUpstream[] = [];
  for (let i = 0; i < n; i++) {
    const f = await FakeUpstream.start(host);
    cleanups.push(() => f.close());
    out.push(f);
  }
  return out;
}

function forwarder(o: ForwarderOptions): Forwarder {
  const f = new Forwarder(o);
  cleanups.push(() => f.close());
  return f;
}

function q(name: string, qtype = 1, extra: Partial<Question> = {}): Question {
  return { name: textToWire(name), qtype, qclass: 1, dnssecOk: false, ...extra };
}

function decode(m: Uint8Array): dnsPacket.DecodedPacket {
  return dnsPacket.decode(Buffer.from(m));
}

/** dns-packet decodes the RCODE but its types do not say so. */
function rcodeOf(m: Uint8Array): string {
  return (decode(m) as unknown as { rcode: string }).rcode;
}

function ipsOf(m: Uint8Array): string[] {
  return (decode(m).answers ?? []).map((a) => (a as { data: string }).data);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A bound socket that never answers: a dead upstream without ICMP. */
async function blackhole(host: Host = '127.0.0.1'): Promise<{ addr: UpstreamAddr; seen: number[] }> {
  const s = dgram.createSocket(host === '::1' ? 'udp6' : 'udp4');
  const seen: number[] = [];
  s.on('message', (_m, r) => seen.push(r.port));
  await new Promise<void>((r) => s.bind(0, host, r));
  cleanups.push(() => {
    s.close();
  });
  return { addr: { host, port: s.address().port, family: host === '::1' ? 6 : 4 }, seen };
}

// ---- tests --------------------------------------------------------------------------

describe('Forwarder: pass-through and the query it builds', () => {
  it('resolves with the upstream message, sent as RD, AD, OPT(1232), CD and DO as asked', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr] });
    const m = await fwd.resolve(q('WwW.Example.COM', 1, { dnssecOk: true, checkingDisabled: true }));
    expect(ipsOf(m)).toEqual(['198.18.0.0']);
    expect(m).toBeInstanceOf(Uint8Array);

    const sent = decode(up!.seen[0]!.msg);
    expect(sent.questions![0]!.name.toLowerCase()).toBe('www.example.com'); // in a random case (0x20): guard.test.ts
    expect(sent.flags! & dnsPacket.RECURSION_DESIRED).toBeTruthy();
    expect(sent.flags! & dnsPacket.CHECKING_DISABLED).toBeTruthy();
    expect(sent.flags! & dnsPacket.AUTHENTIC_DATA).toBeTruthy();
    const opt = sent.additionals!.find((a) => a.type === 'OPT') as unknown as { udpPayloadSize: number; flags: number };
    expect(opt.udpPayloadSize).toBe(1232);
    expect(opt.flags & dnsPacket.DNSSEC_OK).toBeTruthy();

    await fwd.resolve(q('plain.test'));
    const plain = decode(up!.seen[1]!.msg);
    expect(plain.flags! & dnsPacket.CHECKING_DISABLED).toBeFalsy();
    expect((plain.additionals![0] as unknown as { flags: number }).flags & dnsPacket.DNSSEC_OK).toBeFalsy();
    expect(fwd.stats()).toMatchObject({ sent: 2, answers: 2, timeouts: 0, mismatched: 0, servfail: 0 });
    expect(fwd.stats().perUpstream[0]).toMatchObject({ healthy: true, sent: 2, answers: 2 });
    expect(fwd.stats().perUpstream[0]!.rttMs).toBeGreaterThan(0);
  });

  it('works over IPv6 loopback', async () => {
    const [up] = await fakes(1, '::1');
    const fwd = forwarder({ upstreams: [up!.addr] });
    expect(ipsOf(await fwd.resolve(q('v6.test')))).toEqual(['198.18.0.0']);
    expect(up!.seen[0]!.address).toBe('::1');
  });

  it('passes NXDOMAIN and SERVFAIL through, answers with TC when tcpFallback is off', async () => {
    const [up] = await fakes(1);
    up!.onUdp = (m, from, u) => {
      const name = decode(m).questions![0]!.name.toLowerCase();
      u.reply(answer(m, name.startsWith('nx') ? { rcode: 'NXDOMAIN', noAnswers: true } : name.startsWith('sf') ? { rcode: 'SERVFAIL', noAnswers: true } : { tc: true, noAnswers: true }), from);
    };
    const fwd = forwarder({ upstreams: [up!.addr], tcpFallback: false });
    expect(rcodeOf(await fwd.resolve(q('nx.test')))).toBe('NXDOMAIN');
    expect(rcodeOf(await fwd.resolve(q('sf.test')))).toBe('SERVFAIL');
    expect(decode(await fwd.resolve(q('tc.test'))).flag_tc).toBe(true);
    expect(up!.tcpSeen).toHaveLength(0);
  });

  it('rejects bad questions with UPSTREAM_BAD_QUERY', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr] });
    const bad: Question[] = [
      { name: Uint8Array.of(3, 0x61, 0x62), qtype: 1, qclass: 1, dnssecOk: false }, // runs off the end
      { name: Uint8Array.of(1, 0x61, 0xc0, 0x0c), qtype: 1, qclass: 1, dnssecOk: false }, // compression pointer
      { name: new Uint8Array(0), qtype: 1, qclass: 1, dnssecOk: false },
      { name: Uint8Array.of(0), qtype: 70000, qclass: 1, dnssecOk: false },
      { name: new Uint8Array(300).fill(1), qtype: 1, qclass: 1, dnssecOk: false },
    ];
    for (const b of bad) await expect(fwd.resolve(b)).rejects.toMatchObject({ code: 'UPSTREAM_BAD_QUERY' });
    expect(up!.seen).toHaveLength(0);
  });

  it('copies the question name: a reused buffer does not change the query in flight', async () => {
    const [up] = await fakes(1);
    up!.onUdp = (m, from, u) => setTimeout(() => u.reply(answer(m), from), 20);
    const fwd = forwarder({ upstreams: [up!.addr] });
    const frame = Buffer.from(textToWire('frame.test')); // a Buffer: its slice() would share memory
    const p = fwd.resolve({ name: frame, qtype: 1, qclass: 1, dnssecOk: false });
    frame.fill(0x7a, 1, 6); // the frame is reused for another packet
    expect(decode(await p).questions![0]!.name.toLowerCase()).toBe('frame.test');
  });
});

describe('Forwarder: only the real answer counts', () => {
  it('ignores and counts wrong source port, wrong ID, wrong question, not-a-response and garbage; takes the real answer', async () => {
    const [up] = await fakes(1);
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', r));
    cleanups.push(() => {
      spoofer.close();
    });
    up!.onUdp = (m, from, u) => {
      const id = m.readUInt16BE(0);
      spoofer.send(answer(m, { ips: ['6.6.6.1'] }), from.port, from.address); // right everything but the source port
      u.reply(answer(m, { ips: ['6.6.6.2'], id: id ^ 0x5a5a }), from); // wrong ID
      u.reply(answer(m, { ips: ['6.6.6.3'], name: 'other.test' }), from); // wrong question
      const notResp = Buffer.from(answer(m, { ips: ['6.6.6.4'] }));
      notResp[2]! &= 0x7f; // QR=0
      u.reply(notResp, from);
      u.reply(Buffer.from([id >> 8, id & 0xff, 0x81, 0x80, 0, 1, 0, 9]), from); // right ID, truncated garbage
      setTimeout(() => u.reply(answer(m, { ips: ['198.18.7.7'] }), from), 30);
    };
    const fwd = forwarder({ upstreams: [up!.addr] });
    const m = await fwd.resolve(q('spoof.test'));
    expect(ipsOf(m)).toEqual(['198.18.7.7']);
    const s = fwd.stats();
    expect(s.mismatchedBy).toEqual({ source: 1, id: 1, question: 1, malformed: 2, case: 0, cookie: 0, cookieMissing: 0 });
    expect(s.mismatched).toBe(5);
    expect(s.perUpstream[0]!.mismatched).toBe(5);
    expect(s.answers).toBe(1);
  });

  it('with 0x20 off, matches the question case-insensitively and by type and class', async () => {
    const [up] = await fakes(1);
    up!.onUdp = (m, from, u) => {
      u.reply(answer(m, { name: 'MIXED.case.TEST', ips: ['198.18.1.1'] }), from);
    };
    const fwd = forwarder({ upstreams: [up!.addr], caps: false });
    expect(ipsOf(await fwd.resolve(q('mixed.CASE.test')))).toEqual(['198.18.1.1']);
    expect(fwd.stats().mismatched).toBe(0);
  });

  it('matchResponse never throws and accepts only well-formed answers to the question (property)', () => {
    const view = new MessageView();
    const question = q('fuzz.example.test');
    const query = Buffer.from(buildQuery(question, 0x1234, 1232));
    const good = answer(query, { count: 3 });
    expect(matchResponse(view, good, 0x1234, question)).toBe(Mismatch.NONE);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          fc.tuple(fc.nat(good.length - 1), fc.nat(255)).map(([i, v]) => {
            const b = Buffer.from(good);
            b[i] = v;
            return b;
          }),
          fc.nat(good.length).map((n) => good.subarray(0, n)),
        ),
        (bytes) => {
          const r = matchResponse(view, bytes, 0x1234, question);
          if (r === Mismatch.NONE) {
            expect(view.parse(bytes, 0, bytes.length)).toBe(0);
            expect(view.qr).toBe(true);
            expect(view.id).toBe(0x1234);
            expect(view.qnameText().toLowerCase()).toBe('fuzz.example.test');
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('Forwarder: timeouts, failover, health', () => {
  it('fails over to the second upstream when the first times out', async () => {
    const dead = await blackhole();
    const [good] = await fakes(1);
    const fwd = forwarder({ upstreams: [dead.addr, good!.addr], timeoutMs: 150 });
    const t0 = performance.now();
    const m = await fwd.resolve(q('failover.test'));
    const ms = performance.now() - t0;
    expect(ipsOf(m)).toEqual(['198.18.0.0']);
    expect(ms).toBeGreaterThanOrEqual(140);
    expect(ms).toBeLessThan(1000);
    expect(dead.seen).toHaveLength(1);
    expect(fwd.stats()).toMatchObject({ sent: 2, timeouts: 1, answers: 1, servfail: 0 });
  });

  it('accepts a late answer from an upstream that already timed out', async () => {
    const [slow] = await fakes(1);
    const dead = await blackhole();
    slow!.onUdp = (m, from, u) => setTimeout(() => u.reply(answer(m, { ips: ['198.18.9.9'] }), from), 150);
    const fwd = forwarder({ upstreams: [slow!.addr, dead.addr], timeoutMs: 100, deadlineMs: 2000 });
    const t0 = performance.now();
    expect(ipsOf(await fwd.resolve(q('late.test')))).toEqual(['198.18.9.9']);
    expect(performance.now() - t0).toBeLessThan(400);
    expect(dead.seen).toHaveLength(1);
  });

  it('with every upstream dead rejects within the default deadline (< 5 s) and counts the SERVFAIL', async () => {
    const a = await blackhole();
    const b = await blackhole('::1');
    const fwd = forwarder({ upstreams: [a.addr, b.addr] }); // defaults: 1000 ms per attempt, 4000 ms in all
    const t0 = performance.now();
    const p1 = fwd.resolve(q('dead.test'));
    const p2 = fwd.resolve(q('DEAD.test')); // coalesced: one SERVFAIL each
    const errs = await Promise.allSettled([p1, p2]);
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(5000);
    expect(ms).toBeGreaterThanOrEqual(3900);
    for (const e of errs) {
      expect(e.status).toBe('rejected');
      const err = (e as PromiseRejectedResult).reason as UpstreamError;
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err.code).toBe('UPSTREAM_TIMEOUT');
      // A query's outcome, not a fault: made without walking the stack (anyone can cause it).
      expect(err.stack).not.toMatch(/\n\s+at /);
    }
    expect(Error.stackTraceLimit).toBeGreaterThan(0);
    const s = fwd.stats();
    expect(s.servfail).toBe(2);
    expect(s.timeouts).toBe(4);
    expect(a.seen.length + b.seen.length).toBe(4);
    expect(a.seen.length).toBe(2);
    expect(s.inflight).toBe(0);
  });

  it('marks a dead upstream down, sends later queries straight to the good one, probes it, and brings it back', async () => {
    const [flaky, good] = await fakes(2);
    flaky!.onUdp = () => {}; // dead for now
    const fwd = forwarder({
      upstreams: [flaky!.addr, good!.addr],
      timeoutMs: 100,
      health: { failuresToDown: 1, backoffMs: 250, maxBackoffMs: 1000 },
    });
    await fwd.resolve(q('first.test'));
    expect(fwd.stats().perUpstream[0]).toMatchObject({ healthy: false, timeouts: 1, consecutiveFailures: 1 });
    expect(fwd.stats().perUpstream[1]).toMatchObject({ healthy: true });

    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await fwd.resolve(q(`straight${i}.test`));
      expect(performance.now() - t0).toBeLessThan(90);
    }
    expect(flaky!.seen).toHaveLength(1);

    // Backoff over: the next query triggers one probe ('. NS'), which times out: still down, longer backoff.
    await sleep(300);
    await fwd.resolve(q('trigger1.test'));
    await sleep(150);
    expect(flaky!.seen).toHaveLength(2);
    expect(decode(flaky!.seen[1]!.msg).questions![0]).toMatchObject({ name: '.', type: 'NS' });
    expect(fwd.stats().perUpstream[0]).toMatchObject({ healthy: false, probes: 1 });

    // It comes back; the next probe sees it.
    flaky!.onUdp = (m, from, u) => u.reply(answer(m, { rcode: 'REFUSED', noAnswers: true }), from);
    // Second backoff is 500 ms from the failed probe (~100 ms after trigger1).
    await sleep(700);
    await fwd.resolve(q('trigger2.test'));
    for (let i = 0; i < 100 && !fwd.stats().perUpstream[0]!.healthy; i++) await sleep(10);
    expect(fwd.stats().perUpstream[0]).toMatchObject({ healthy: true, probes: 2, consecutiveFailures: 0 });
    expect(fwd.stats().probes).toBe(2);
  });

  it('prefers the upstream with the lower smoothed RTT', async () => {
    const [slow, fast] = await fakes(2);
    slow!.onUdp = (m, from, u) => setTimeout(() => u.reply(answer(m), from), 30);
    const fwd = forwarder({ upstreams: [slow!.addr, fast!.addr] });
    for (let i = 0; i < 20; i++) await fwd.resolve(q(`rtt${i}.test`));
    // Each is measured once (unmeasured counts as 0 ms), then the fast one takes the traffic.
    expect(slow!.seen.length).toBeLessThanOrEqual(2);
    expect(fast!.seen.length).toBeGreaterThanOrEqual(18);
    const [s, f] = fwd.stats().perUpstream;
    expect(s!.rttMs!).toBeGreaterThan(f!.rttMs!);
  });

  it('tries another upstream on REFUSED, and passes REFUSED on when none is left', async () => {
    const [refuser, good] = await fakes(2);
    refuser!.onUdp = (m, from, u) => u.reply(answer(m, { rcode: 'REFUSED', noAnswers: true }), from);
    const fwd = forwarder({ upstreams: [refuser!.addr, good!.addr] });
    expect(ipsOf(await fwd.resolve(q('acl.test')))).toEqual(['198.18.0.0']);
    expect(refuser!.seen).toHaveLength(1);

    const only = forwarder({ upstreams: [refuser!.addr], health: { failuresToDown: 1 } });
    expect(rcodeOf(await only.resolve(q('acl2.test')))).toBe('REFUSED');
    // A refusing upstream is alive: REFUSED is not a health failure.
    expect(only.stats().perUpstream[0]).toMatchObject({ healthy: true, consecutiveFailures: 0 });
  });

  it('rejects at once with UPSTREAM_BUSY beyond maxInflight, and UPSTREAM_CLOSED on close()', async () => {
    const dead = await blackhole();
    const fwd = new Forwarder({ upstreams: [dead.addr], maxInflight: 1 });
    const p = fwd.resolve(q('one.test'));
    const busy = (await fwd.resolve(q('two.test')).then(
      () => undefined,
      (e: unknown) => e as UpstreamError,
    ))!;
    expect(busy).toMatchObject({ code: 'UPSTREAM_BUSY' });
    expect(busy.stack, 'a refusal carries no stack trace').not.toMatch(/\n\s+at /);
    expect(new UpstreamError('UPSTREAM_BUSY', 'x').stack, 'other errors still do').toMatch(/\n\s+at /);
    const coalesced = fwd.resolve(q('ONE.test')); // same question: joins, not busy
    const closed = Promise.all([
      expect(p).rejects.toMatchObject({ code: 'UPSTREAM_CLOSED' }),
      expect(coalesced).rejects.toMatchObject({ code: 'UPSTREAM_CLOSED' }),
    ]);
    await fwd.close();
    await closed;
    await expect(fwd.resolve(q('three.test'))).rejects.toMatchObject({ code: 'UPSTREAM_CLOSED' });
    expect(fwd.stats()).toMatchObject({ busy: 1, servfail: 1, coalesced: 1, inflight: 0 });
  });
});

describe('Forwarder: coalescing', () => {
  it('serves N concurrent identical questions (any case) with one upstream query, each waiter its own copy', async () => {
    const [up] = await fakes(1);
    up!.onUdp = (m, from, u) => setTimeout(() => u.reply(answer(m), from), 40);
    const fwd = forwarder({ upstreams: [up!.addr] });
    const names = Array.from({ length: 50 }, (_, i) => (i % 2 ? 'Coalesce.TEST' : 'coalesce.test'));
    const res = await Promise.all(names.map((n) => fwd.resolve(q(n))));
    expect(up!.seen).toHaveLength(1);
    expect(fwd.stats()).toMatchObject({ sent: 1, coalesced: 49, answers: 1 });
    for (const r of res) expect(ipsOf(r)).toEqual(['198.18.0.0']);
    // A caller re-IDs in place; the other waiters must not see it. The ID is
    // random, so flip the byte rather than write a fixed value it may hold.
    const before = res[1]![0]!;
    res[0]![0] = res[0]![0]! ^ 0xff;
    expect(res[1]![0]).toBe(before);
    expect(res[1]!.buffer === res[0]!.buffer && res[1]!.byteOffset === res[0]!.byteOffset).toBe(false);
  });

  it('does not coalesce across type, class, DO or CD', async () => {
    const [up] = await fakes(1);
    up!.onUdp = (m, from, u) => setTimeout(() => u.reply(answer(m, { noAnswers: true }), from), 20);
    const fwd = forwarder({ upstreams: [up!.addr] });
    await Promise.all([
      fwd.resolve(q('k.test', 1)),
      fwd.resolve(q('k.test', 28)),
      fwd.resolve({ ...q('k.test', 1), qclass: 3 }),
      fwd.resolve(q('k.test', 1, { dnssecOk: true })),
      fwd.resolve(q('k.test', 1, { checkingDisabled: true })),
      fwd.resolve(q('K.TEST', 1)),
    ]);
    expect(up!.seen).toHaveLength(5);
    expect(fwd.stats().coalesced).toBe(1);
  });
});

describe('Forwarder: TC=1 and TCP', () => {
  it('retries a truncated UDP answer over TCP to the same upstream and resolves with the full answer', async () => {
    const [other, up] = await fakes(2);
    up!.onUdp = (m, from, u) => u.reply(answer(m, { tc: true, noAnswers: true }), from);
    up!.onTcp = (m) => answer(m, { count: 120 });
    const fwd = forwarder({ upstreams: [up!.addr, other!.addr] });
    const m = await fwd.resolve(q('big.test'));
    const d = decode(m);
    expect(d.flag_tc).toBe(false);
    expect(d.answers).toHaveLength(120);
    expect(m.length).toBeGreaterThan(1232);
    expect(up!.tcpSeen).toHaveLength(1);
    expect(other!.seen).toHaveLength(0);
    expect(fwd.stats()).toMatchObject({ tcpRetries: 1, answers: 2 });
    // The TCP query carries a fresh ID of its own.
    expect(up!.tcpSeen[0]!.readUInt16BE(0)).not.toBe(up!.seen[0]!.msg.readUInt16BE(0));
  });

  it('ignores a TCP answer for another question, and gives the truncated answer when TCP fails everywhere', async () => {
    const up = await FakeUpstream.start('127.0.0.1', false); // no TCP listener: connect is refused
    cleanups.push(() => up.close());
    up.onUdp = (m, from, u) => u.reply(answer(m, { tc: true, count: 2 }), from);
    const fwd = forwarder({ upstreams: [up.addr], timeoutMs: 200, deadlineMs: 1000 });
    const t0 = performance.now();
    const m = await fwd.resolve(q('notcp.test'));
    expect(decode(m).flag_tc).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(fwd.stats().tcpRetries).toBeGreaterThanOrEqual(1);

    const [liar] = await fakes(1);
    liar!.onUdp = (m2, from, u) => u.reply(answer(m2, { tc: true, noAnswers: true }), from);
    liar!.onTcp = (m2) => answer(m2, { name: 'elsewhere.test' });
    const fwd2 = forwarder({ upstreams: [liar!.addr], timeoutMs: 100, deadlineMs: 400 });
    const m2 = await fwd2.resolve(q('liar.test'));
    expect(decode(m2).flag_tc).toBe(true); // only the truncated (validated) UDP answer is given
    expect(fwd2.stats().mismatchedBy.question).toBeGreaterThanOrEqual(1);
  });
});

describe('Forwarder: source port and ID randomness', () => {
  it('with portReuse 1, sends every query from a fresh random port in the ephemeral range with a fresh random ID', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 1 });
    const N = 300;
    for (let i = 0; i < N; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => fwd.resolve(q(`port${i + j}.test`))));
    }
    const ports = up!.seen.map((s) => s.port);
    const ids = up!.seen.map((s) => s.msg.readUInt16BE(0));
    expect(ports).toHaveLength(N);
    const { low, high } = kernelPortRange();
    const distinctPorts = new Set(ports).size;
    const distinctIds = new Set(ids).size;
    // Birthday bound: 300 draws from ~28k ports give ~1.6 repeats on average, from 65536 IDs ~0.7.
    expect(distinctPorts).toBeGreaterThanOrEqual(N - 10);
    expect(distinctIds).toBeGreaterThanOrEqual(N - 8);
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(low);
      expect(p).toBeLessThanOrEqual(high);
    }
    // Spread over the range, not a sequence: every quarter of it is used, and consecutive ports are not neighbours.
    const span = high - low + 1;
    const quarters = new Set(ports.map((p) => Math.floor(((p - low) * 4) / span)));
    expect(quarters.size).toBe(4);
    const near = ports.slice(1).filter((p, i) => Math.abs(p - ports[i]!) < 16).length;
    expect(near).toBeLessThan(10);
    console.log(`[forwarder] ${N} queries: ${distinctPorts} distinct source ports, ${distinctIds} distinct IDs`);
  });
});

describe('Forwarder: the pool of upstream sockets (portReuse > 1)', () => {
  const handles = (): number => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof dgram.Socket).length;

  it('sends at most portReuse queries from one random port, then moves to another; IDs stay random', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 8 });
    for (let i = 0; i < 64; i++) await fwd.resolve(q(`pool${i}.test`));
    const ports = up!.seen.map((s) => s.port);
    const byPort = new Map<number, number>();
    for (const p of ports) byPort.set(p, (byPort.get(p) ?? 0) + 1);
    // 64 queries, 8 per socket: 8 sockets, each used exactly 8 times in a row.
    expect([...byPort.values()]).toEqual(Array(8).fill(8));
    for (let i = 0; i < 64; i += 8) expect(new Set(ports.slice(i, i + 8)).size).toBe(1);
    const { low, high } = kernelPortRange();
    for (const p of byPort.keys()) {
      expect(p).toBeGreaterThanOrEqual(low);
      expect(p).toBeLessThanOrEqual(high);
    }
    expect(new Set(up!.seen.map((s) => s.msg.readUInt16BE(0))).size).toBeGreaterThanOrEqual(62);
    expect(fwd.stats()).toMatchObject({ sent: 64, answers: 64, udpSockets: 8 });
  });

  it('queries in flight together share a socket with distinct IDs, and each gets its own answer', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 64 });
    up!.onUdp = (m, from, u) => {
      const name = decode(m).questions![0]!.name.toLowerCase();
      setTimeout(() => u.reply(answer(m, { ips: [`198.18.3.${Number(name.slice(3, name.indexOf('.')))}`] }), from), 5);
    };
    const got = await Promise.all(Array.from({ length: 40 }, (_, i) => fwd.resolve(q(`mux${i}.test`))));
    got.forEach((m, i) => expect(ipsOf(m)).toEqual([`198.18.3.${i}`]));
    expect(new Set(up!.seen.map((s) => s.port)).size).toBe(1);
    expect(new Set(up!.seen.map((s) => s.msg.readUInt16BE(0))).size).toBe(40);
    expect(fwd.stats().mismatched).toBe(0);
  });

  it('sends the queries started in one callback together when it ends, in order, and answers each', async () => {
    const [up] = await fakes(1);
    const pool = new UdpPool({ reuse: 64, reuseMs: 60_000, ports: kernelPortRange(), view: new MessageView(), stray: () => {} });
    cleanups.push(() => pool.close());
    const answers: string[] = [];
    const start = (name: string): UdpExchange => {
      const question = q(name);
      return pool.exchange(up!.addr, question, (id) => buildQuery(question, id, 1232), {
        answer: (msg) => answers.push(decode(msg).questions![0]!.name),
        ignored: () => {},
        error: (e) => answers.push(`error ${e.message}`),
      });
    };
    start('first.test'); // binds the socket
    for (let i = 0; i < 100 && answers.length === 0; i++) await sleep(10);
    expect(answers).toEqual(['first.test']);
    const batch = Array.from({ length: 10 }, (_, i) => start(`b${i}.test`));
    expect(batch.every((x) => x.sentAt === 0)).toBe(true); // queued while this callback runs
    expect(up!.seen).toHaveLength(1);
    await Promise.resolve();
    expect(batch.every((x) => x.sentAt > 0)).toBe(true);
    for (let i = 1; i < batch.length; i++) expect(batch[i]!.sentAt).toBeGreaterThanOrEqual(batch[i - 1]!.sentAt);
    for (let i = 0; i < 100 && answers.length < 11; i++) await sleep(10);
    expect(up!.seen.slice(1).map((x) => decode(x.msg).questions![0]!.name)).toEqual(batch.map((_, i) => `b${i}.test`));
    expect(answers.slice(1).sort()).toEqual(batch.map((_, i) => `b${i}.test`).sort());
  });

  it('a send that throws fails its own exchange only; the others of its callback and later ones go out', async () => {
    const [up] = await fakes(1);
    const pool = new UdpPool({ reuse: 64, reuseMs: 60_000, ports: kernelPortRange(), view: new MessageView(), stray: () => {} });
    cleanups.push(() => pool.close());
    const got: string[] = [];
    const start = (name: string, addr: UpstreamAddr): void => {
      const question = q(name);
      pool.exchange(addr, question, (id) => buildQuery(question, id, 1232), {
        answer: (msg) => got.push(decode(msg).questions![0]!.name),
        ignored: () => {},
        error: () => got.push(`error ${name}`),
      });
    };
    start('first.test', up!.addr); // binds the socket
    for (let i = 0; i < 100 && got.length === 0; i++) await sleep(10);
    start('before.test', up!.addr);
    start('bad.test', { ...up!.addr, port: 0 }); // dgram refuses port 0 at once
    start('after.test', up!.addr);
    for (let i = 0; i < 100 && got.length < 4; i++) await sleep(10);
    start('later.test', up!.addr); // the pool still sends
    for (let i = 0; i < 100 && got.length < 5; i++) await sleep(10);
    expect(got.slice(1).sort()).toEqual(['after.test', 'before.test', 'error bad.test', 'later.test']);
  });

  it('retires a socket after portReuseMs, and closes it when idle', async () => {
    const [up] = await fakes(1);
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 64, portReuseMs: 100 });
    await fwd.resolve(q('age1.test'));
    expect(fwd.stats().udpOpen).toBe(1);
    await sleep(150);
    expect(fwd.stats().udpOpen).toBe(0); // retired by age with nothing pending: closed
    await fwd.resolve(q('age2.test'));
    const ports = up!.seen.map((s) => s.port);
    expect(ports[1]).not.toBe(ports[0]);
    expect(fwd.stats().udpSockets).toBe(2);
  });

  it('a datagram for a finished query, or from another source, is counted and never taken, even on a socket still in use', async () => {
    const [up] = await fakes(1);
    const spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', r));
    cleanups.push(() => {
      spoofer.close();
    });
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 64 });
    let first: { m: Buffer; from: dgram.RemoteInfo } | null = null;
    up!.onUdp = (m, from, u) => {
      if (first === null) {
        first = { m, from };
        u.reply(answer(m, { ips: ['198.18.4.1'] }), from);
        return;
      }
      // The second query is pending on the same socket: the first one's ID again (a late
      // duplicate or a forgery), the second's answer from a foreign port, then the real one.
      u.reply(answer(first.m, { ips: ['6.6.6.6'] }), from);
      spoofer.send(answer(m, { ips: ['6.6.6.7'] }), from.port, from.address);
      setTimeout(() => u.reply(answer(m, { ips: ['198.18.4.2'] }), from), 30);
    };
    expect(ipsOf(await fwd.resolve(q('done1.test')))).toEqual(['198.18.4.1']);
    expect(ipsOf(await fwd.resolve(q('done2.test')))).toEqual(['198.18.4.2']);
    expect(up!.seen[0]!.port).toBe(up!.seen[1]!.port);
    const s = fwd.stats();
    expect(s.mismatchedBy).toMatchObject({ id: 1, source: 1 });
    expect(s.mismatched).toBe(2);
    expect(s.answers).toBe(2);
  });

  it('draws another port when the random one is taken, in both modes, and refuses a bad portReuse', async () => {
    const [up] = await fakes(1);
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '0.0.0.0', r));
    cleanups.push(() => {
      taken.close();
    });
    const p = taken.address().port;
    // A range of one port, already bound: every draw fails, then the kernel picks.
    for (const portReuse of [1, 64]) {
      const fwd = forwarder({ upstreams: [up!.addr], portReuse, portRange: { low: p, high: p } });
      expect(ipsOf(await fwd.resolve(q(`taken${portReuse}.test`)))).toHaveLength(1);
      expect(fwd.stats().udpSockets).toBe(4); // three random binds refused, the kernel's taken
    }
    expect(up!.seen.every((s) => s.port !== p)).toBe(true);
    for (const bad of [0, 1.5, 5000]) expect(() => new Forwarder({ upstreams: [up!.addr], portReuse: bad })).toThrow(/portReuse/);
  });

  it('closes each socket when it is rotated out and its queries are done, and every socket on close()', async () => {
    const [up] = await fakes(1);
    await sleep(20); // the earlier tests' sockets finish closing
    const base = handles();
    const fwd = forwarder({ upstreams: [up!.addr], portReuse: 4 });
    for (let i = 0; i < 16; i++) {
      await fwd.resolve(q(`rot${i}.test`));
      expect(handles() - base).toBeLessThanOrEqual(1);
    }
    await sleep(10);
    // Every fourth query retires its socket, closed as soon as the query is answered.
    expect(fwd.stats()).toMatchObject({ udpSockets: 4, udpOpen: 0 });
    expect(handles() - base).toBe(0);
    const held = await blackhole();
    const fwd2 = forwarder({ upstreams: [held.addr], portReuse: 64, timeoutMs: 2000, deadlineMs: 3000 });
    const p = Promise.allSettled([fwd2.resolve(q('open1.test')), fwd2.resolve(q('open2.test'))]);
    await sleep(20);
    expect(fwd2.stats().udpOpen).toBe(1);
    expect(handles() - base).toBe(2); // the blackhole and the shared socket
    await fwd2.close();
    const r = await p;
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    expect(fwd2.stats().udpOpen).toBe(0);
    await sleep(10);
    expect(handles() - base).toBe(1); // the blackhole only
  });
});
