/** DnsEngine with a scripted resolver: every path from query bytes to reply bytes. */
import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { DnsEngine, type Resolver } from '../../src/engine/engine.js';
import type { PromotionEvent } from '../../src/hot/promotion.js';
import { AskCounter } from '../../src/hot/asks.js';
import { PROMOTE_NEVER } from '../../src/hot/shared-promotion.js';
import { makeKey } from '../../src/dns/key.js';
import { MessageView } from '../../src/dns/view.js';
import { query, response, SOA, decode, type Decoded } from '../helpers/dns.js';

type Q = Parameters<Resolver['resolve']>[0];

function nameText(wire: Uint8Array): string {
  const labels: string[] = [];
  for (let p = 0; wire[p]! > 0; p += wire[p]! + 1) labels.push(Buffer.from(wire.subarray(p + 1, p + 1 + wire[p]!)).toString('latin1'));
  return labels.join('.');
}

/** A resolver that answers from a table and records what it was asked. */
function scripted(table: Record<string, Buffer | Error>, delayMs = 0): Resolver & { asked: Q[] } {
  const asked: Q[] = [];
  return {
    asked,
    async resolve(q: Q) {
      asked.push(q);
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const r = table[`${nameText(q.name)}/${q.qtype}`];
      if (!r) throw new Error('no such upstream answer');
      if (r instanceof Error) throw r;
      return r;
    },
  };
}

let now = 1e12;
const clock = () => now;

async function ask(engine: DnsEngine, q: Buffer, tcp = false): Promise<Decoded> {
  const out = Buffer.alloc(65535);
  const n = await engine.handle(q, 0, q.length, out, 0, tcp);
  const raw = out.subarray(0, n);
  return decode(raw);
}

const wwwA = response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 60, data: '198.18.1.1' }] });

describe('DnsEngine', () => {
  it('answers SERVFAIL, and does not forward, when a cached entry changed under a reply written over the query itself', async () => {
    const r = scripted({ 'www.example.com/1': wwwA });
    const e = new DnsEngine({ resolver: r, cacheSize: 64, clock });
    await ask(e, query('www.example.com', 'A', { id: 1 }));
    expect(r.asked.length).toBe(1);
    // Stand in for a writer changing the slot mid-read: the record offsets after the
    // entry's records point past them, which the reader takes for a torn entry only once
    // the header and records are already in `out` (SharedCache.writeFrom).
    const c = e.cache as unknown as { find(k: Uint8Array, n: number): number; block: Int32Array; keyLen: Uint16Array; recLen: Uint16Array; arena: Uint8Array };
    const v = new MessageView();
    const k = new Uint8Array(260);
    const first = query('www.example.com', 'A', { id: 1 });
    expect(v.parse(first, 0, first.length, k)).toBe(0);
    const key = k.slice(0, v.keyLen);
    const s = c.find(key, key.length);
    expect(s).toBeGreaterThanOrEqual(0);
    const offs = c.block[s]! * 16 + c.keyLen[s]! + c.recLen[s]!; // 16: the arena's unit (buddy.ts UNIT)
    c.arena[offs] = 0xff;
    // The query is both input and output, as on the AF_XDP path.
    const q = query('www.example.com', 'A', { id: 2, edns: {} });
    const buf = Buffer.alloc(4096);
    q.copy(buf);
    const n = await e.handle(buf, 0, q.length, buf, 0, false);
    const d = decode(buf.subarray(0, n));
    expect(d.id).toBe(2);
    expect(d.rcode).toBe('SERVFAIL');
    expect(d.questions![0]!.name).toBe('www.example.com');
    expect(r.asked.length).toBe(1); // not forwarded with a half-overwritten query
  });

  it('forwards a miss, caches it, then answers hits without the upstream', async () => {
    const r = scripted({ 'www.example.com/1': wwwA });
    const e = new DnsEngine({ resolver: r, cacheSize: 64, clock });
    const a = await ask(e, query('WWW.Example.com', 'A', { id: 7 }));
    expect(a.id).toBe(7);
    expect(a.questions![0]!.name).toBe('WWW.Example.com');
    expect(a.answers[0]!.data).toBe('198.18.1.1');
    expect(r.asked.length).toBe(1);
    expect(nameText(r.asked[0]!.name)).toBe('www.example.com'); // one upstream question for every case
    now += 10e9;
    const b = await ask(e, query('www.example.com', 'A', { id: 8 }));
    expect(r.asked.length).toBe(1);
    expect(b.answers![0]!.ttl).toBe(50);
    expect([e.stats.get('queries'), e.stats.get('cacheHits'), e.stats.get('upstreamAnswers')]).toEqual([2, 1, 1]);
    expect(e.stats.vector('rcodes')[0]).toBe(2);
  });

  it('answers a hit synchronously, in place over the query bytes', () => {
    const e = new DnsEngine({ resolver: scripted({}), cacheSize: 64, clock });
    e.cache.insertResponse(wwwA, now);
    const buf = Buffer.alloc(2048);
    const q = query('www.example.com', 'A', { id: 99 });
    q.copy(buf, 100);
    const n = e.handle(buf, 100, q.length, buf, 100, false);
    expect(typeof n).toBe('number');
    const d = decode(buf.subarray(100, 100 + (n as number)));
    expect(d.id).toBe(99);
    expect(d.answers!.length).toBe(1);
  });

  it('promotes a name when it is asked for the third time', async () => {
    const events: PromotionEvent[] = [];
    const e = new DnsEngine({ resolver: scripted({ 'www.example.com/1': wwwA }), cacheSize: 100, hotCapacity: 10, onPromotion: (x) => events.push(x), clock });
    for (let i = 0; i < 2; i++) await ask(e, query('www.example.com', 'A'));
    expect(events.length).toBe(0); // one upstream answer and one hit so far
    await ask(e, query('www.example.com', 'A'));
    expect(events.map((x) => x.kind)).toEqual(['promote']);
  });

  it('counts asks across engines that share an AskCounter (one per worker)', async () => {
    const asks = new AskCounter();
    const events: string[] = [];
    const mk = (id: string) =>
      new DnsEngine({ resolver: scripted({ 'www.example.com/1': wwwA }), cacheSize: 100, hotCapacity: 10, asks, onPromotion: (x) => events.push(`${id}:${x.kind}`), clock });
    const a = mk('a');
    const b = mk('b');
    await ask(a, query('www.example.com', 'A')); // ask 1: a's upstream
    await ask(b, query('www.example.com', 'A')); // ask 2: b's upstream
    expect(events).toEqual([]);
    await ask(a, query('www.example.com', 'A')); // ask 3: a's cache hit promotes
    expect(events).toEqual(['a:promote']);
    const c = mk('c');
    await ask(c, query('www.example.com', 'A')); // ask 4 on a fresh engine: fetched, and promoted at once
    expect(events).toEqual(['a:promote', 'c:promote']);
  });

  it('counts no asks while promotion is off, and promotes at the next ask once it is back on', async () => {
    const asks = new AskCounter();
    const events: PromotionEvent[] = [];
    const e = new DnsEngine({ resolver: scripted({ 'www.example.com/1': wwwA }), cacheSize: 100, hotCapacity: 10, asks, onPromotion: (x) => events.push(x), clock });
    const key = makeKey('www.example.com', 1, 1, false);
    e.cache.setThreshold(PROMOTE_NEVER);
    for (let i = 0; i < 4; i++) expect((await ask(e, query('www.example.com', 'A'))).rcode).toBe('NOERROR');
    expect(e.cache.size).toBe(1);
    expect(asks.peek(key, key.length)).toBe(0);
    expect(events).toEqual([]);
    e.cache.setThreshold(3);
    await ask(e, query('www.example.com', 'A')); // the entry's own uses (fetch + 4 hits) are past 3
    expect(events.map((x) => x.kind)).toEqual(['promote']);
    expect(asks.peek(key, key.length)).toBe(1);
  });

  it('answers SERVFAIL when the upstream fails, or a stale answer with serve-stale', async () => {
    const fail = scripted({ 'www.example.com/1': new Error('down') });
    const e = new DnsEngine({ resolver: fail, cacheSize: 64, clock });
    expect((await ask(e, query('www.example.com', 'A'))).rcode).toBe('SERVFAIL');
    expect(e.stats.get('servfail')).toBe(1);

    const stale = new DnsEngine({ resolver: fail, cacheSize: 64, serveStale: true, clock });
    stale.cache.insertResponse(wwwA, now - 120e9); // expired a minute ago
    const s = await ask(stale, query('www.example.com', 'A'));
    expect(s.rcode).toBe('NOERROR');
    expect(s.answers![0]!.ttl).toBe(30); // RFC 8767 suggests 30 s
    expect(stale.stats.get('staleServed')).toBe(1);
  });

  it('keeps what was fetched with CD=1 from CD=0 queries, and the other way round', async () => {
    // A validating upstream: with CD=1 it hands over data that fails validation, with CD=0
    // it answers SERVFAIL. The CD=1 answer must never reach a CD=0 client, from the cache
    // or by joining its fetch (docs/CORE.md, "Cached answers").
    const bogus = response('bank.example', 'A', { answers: [{ type: 'A', name: 'bank.example', ttl: 60, data: '198.18.66.6' }] });
    const asked: Q[] = [];
    const validating: Resolver = {
      async resolve(q: Q) {
        asked.push(q);
        if (q.checkingDisabled === true) return bogus;
        throw new Error('SERVFAIL: validation failed');
      },
    };
    const e = new DnsEngine({ resolver: validating, cacheSize: 64, clock });
    const cd1 = await ask(e, query('bank.example', 'A', { cd: true }));
    expect(cd1.answers[0]!.data).toBe('198.18.66.6');
    expect(cd1.flags & dnsPacket.CHECKING_DISABLED).toBe(dnsPacket.CHECKING_DISABLED);
    const cd0 = await ask(e, query('bank.example', 'A'));
    expect(cd0.rcode).toBe('SERVFAIL');
    expect(cd0.answers.length).toBe(0);
    expect(asked.map((q) => q.checkingDisabled === true)).toEqual([true, false]);
    // Both at once: neither waits on the other's fetch.
    now += 120e9;
    const [a, b] = await Promise.all([ask(e, query('bank.example', 'A', { cd: true, id: 1 })), ask(e, query('bank.example', 'A', { id: 2 }))]);
    expect([a.rcode, b.rcode]).toEqual(['NOERROR', 'SERVFAIL']);
    // The CD=1 answer is cached for CD=1 queries.
    const n = asked.length;
    expect((await ask(e, query('bank.example', 'A', { cd: true }))).answers[0]!.data).toBe('198.18.66.6');
    expect(asked.length).toBe(n);
  });

  it('answers a fetch that was out when the operator flushed, but caches nothing of it', async () => {
    const r = scripted({ 'www.example.com/1': wwwA }, 20);
    const e = new DnsEngine({ resolver: r, cacheSize: 64, clock });
    const pending = ask(e, query('www.example.com', 'A'));
    await new Promise((res) => setTimeout(res, 5));
    e.cache.clearShards(); // flush --all while the question is out
    expect((await pending).answers[0]!.data).toBe('198.18.1.1');
    await ask(e, query('www.example.com', 'A'));
    expect(r.asked.length).toBe(2); // not cached: asked again
    await ask(e, query('www.example.com', 'A'));
    expect(r.asked.length).toBe(2); // the fetch after the flush is cached
  });

  it('refuses a query without RD, cached or not, without asking the upstream, and counts it', async () => {
    const r = scripted({ 'www.example.com/1': wwwA, 'cold.example.com/1': wwwA });
    const e = new DnsEngine({ resolver: r, cacheSize: 64, clock });
    e.cache.insertResponse(wwwA, now);
    for (const name of ['www.example.com', 'cold.example.com']) {
      for (const edns of [undefined, { udpSize: 1232 }]) {
        const a = await ask(e, query(name, 'A', { rd: false, id: 31, edns }));
        expect(a.rcode).toBe('REFUSED');
        expect(a.id).toBe(31);
        expect(a.answers.length).toBe(0);
        expect(a.flags & dnsPacket.RECURSION_DESIRED).toBe(0);
        expect(a.questions[0]!.name).toBe(name);
      }
    }
    expect(r.asked.length).toBe(0);
    expect(e.stats.get('notRecursive')).toBe(4);
    expect(e.stats.get('cacheHits')).toBe(0);
    // With RD the cached name is a hit again.
    expect((await ask(e, query('www.example.com', 'A'))).answers.length).toBe(1);
  });

  it('relays an uncacheable answer (REFUSED) under the client ID and question', async () => {
    const refused = response('other.zone', 'A', {}, { rcode: 'REFUSED' });
    const e = new DnsEngine({ resolver: scripted({ 'other.zone/1': refused }), cacheSize: 64, clock });
    const a = await ask(e, query('OTHER.zone', 'A', { id: 4242 }));
    expect(a.id).toBe(4242);
    expect(a.rcode).toBe('REFUSED');
    expect(a.questions![0]!.name).toBe('OTHER.zone');
    expect(e.stats.get('relayed')).toBe(1);
  });

  // Relayed answers: what the cache refuses goes back as the upstream sent it, under the
  // client's ID, question bytes, RD and CD, with QR and RA set; in place over the query
  // (AF_XDP), into a separate buffer (kernel UDP) and over TCP.
  const withoutRa = (m: Buffer): Buffer => {
    const b = Buffer.from(m);
    b[3] = b[3]! & ~0x80; // an authoritative upstream does not set RA
    return b;
  };
  const relayedKinds: [string, Buffer][] = [
    ['REFUSED', withoutRa(response('other.zone', 'A', {}, { rcode: 'REFUSED' }))],
    ['NOTIMP', withoutRa(response('other.zone', 'A', {}, { rcode: 'NOTIMP' }))],
    ['a TTL-0 answer', withoutRa(response('other.zone', 'A', { answers: [{ type: 'A', name: 'other.zone', ttl: 0, data: '198.18.9.9' }] }))],
  ];
  for (const [kind, upstream] of relayedKinds) {
    for (const path of ['in place', 'separate buffer', 'tcp'] as const) {
      it(`relays ${kind} with the client's ID, question and RA (${path})`, async () => {
        const e = new DnsEngine({ resolver: scripted({ 'other.zone/1': upstream }), cacheSize: 64, clock });
        const q = query('OTHER.zone', 'A', { id: 4242 });
        const buf = Buffer.alloc(4096);
        q.copy(buf, 64);
        const out = path === 'in place' ? buf : Buffer.alloc(4096);
        const outOff = path === 'in place' ? 64 : 0;
        const n = await e.handle(buf, 64, q.length, out, outOff, path === 'tcp', path === 'in place' ? 2000 : undefined);
        const a = decode(out.subarray(outOff, outOff + n));
        expect(a.id).toBe(4242);
        expect(a.questions![0]!.name).toBe('OTHER.zone');
        expect(a.flags! & 0x0080).toBe(0x0080); // RA
        expect(a.flags! & 0x0100).toBe(0x0100); // RD echoed
        expect(a.flags! & 0x0400).toBe(0); // never AA
        expect(a.type).toBe('response');
        expect(a.rcode).toBe(kind === 'NOTIMP' ? 'NOTIMP' : kind === 'REFUSED' ? 'REFUSED' : 'NOERROR');
        if (kind === 'a TTL-0 answer') expect(a.answers![0]!.data).toBe('198.18.9.9');
        expect(e.stats.get('relayed')).toBe(1);
      });
    }
  }

  it('cuts a relayed answer over the client\'s UDP limit to its question, with TC=1', async () => {
    const big = response('big.zone', 'TXT', { answers: Array.from({ length: 8 }, (_, i) => ({ type: 'TXT' as const, name: 'big.zone', ttl: 0, data: 'x'.repeat(200) + i })) });
    const e = new DnsEngine({ resolver: scripted({ 'big.zone/16': big }), cacheSize: 64, clock });
    const a = await ask(e, query('big.zone', 'TXT', { id: 77 }));
    expect(a.id).toBe(77);
    expect(a.flags! & 0x0200).toBe(0x0200);
    expect(a.answers!.length).toBe(0);
    expect(a.raw.length).toBeLessThanOrEqual(512);
    const t = await ask(e, query('big.zone', 'TXT', { id: 78 }), true);
    expect(t.answers!.length).toBe(8); // TCP takes it whole
    expect(t.flags! & 0x0200).toBe(0);
  });

  it('caches NXDOMAIN for the SOA minimum', async () => {
    const nx = response('nope.example.com', 'A', { authorities: [SOA('example.com', 3600, 30)] }, { rcode: 'NXDOMAIN' });
    const r = scripted({ 'nope.example.com/1': nx });
    const e = new DnsEngine({ resolver: r, cacheSize: 64, clock });
    expect((await ask(e, query('nope.example.com', 'A'))).rcode).toBe('NXDOMAIN');
    now += 29e9;
    expect((await ask(e, query('nope.example.com', 'A'))).rcode).toBe('NXDOMAIN');
    expect(r.asked.length).toBe(1);
    now += 2e9;
    await ask(e, query('nope.example.com', 'A'));
    expect(r.asked.length).toBe(2);
  });

  it('truncates with TC=1 over UDP and gives the whole answer over TCP', async () => {
    const answers = Array.from({ length: 40 }, (_, i) => ({ type: 'TXT', name: 'big.example', ttl: 60, data: `record ${i} with some padding text` }) as dnsPacket.Answer);
    const e = new DnsEngine({ resolver: scripted({ 'big.example/16': response('big.example', 'TXT', { answers }) }), cacheSize: 64, clock });
    const udp = await ask(e, query('big.example', 'TXT'));
    expect(udp.flags! & dnsPacket.TRUNCATED_RESPONSE).toBe(dnsPacket.TRUNCATED_RESPONSE);
    expect(udp.raw.length).toBeLessThanOrEqual(512);
    const tcp = await ask(e, query('big.example', 'TXT'), true);
    expect(tcp.flags! & dnsPacket.TRUNCATED_RESPONSE).toBe(0);
    expect(tcp.answers!.length).toBe(40);
  });

  it('never relays TC=1 to a TCP client', async () => {
    const tc = Buffer.from(response('tc.example', 'A', {}));
    tc[2]! |= 0x02;
    const e = new DnsEngine({ resolver: scripted({ 'tc.example/1': tc }), cacheSize: 64, clock });
    expect((await ask(e, query('tc.example', 'A'), true)).rcode).toBe('SERVFAIL');
    expect(e.stats.get('unrelayable')).toBe(1);
  });

  it('keeps TC=1 on a truncated answer it relays over UDP, so the client retries over TCP', async () => {
    // The forwarder hands over a truncated answer when it cannot get the whole one over
    // TCP (its connections full, TCP blocked): a UDP client must see TC, not an empty NOERROR.
    const tc = Buffer.from(response('tc.example', 'DNSKEY', {}));
    tc[2]! |= 0x02;
    const e = new DnsEngine({ resolver: scripted({ 'tc.example/48': tc }), cacheSize: 64, clock });
    for (const edns of [undefined, { udpSize: 1232 }]) {
      const a = await ask(e, query('tc.example', 'DNSKEY', { edns }));
      expect(a.rcode).toBe('NOERROR');
      expect(a.flags & dnsPacket.TRUNCATED_RESPONSE).toBe(dnsPacket.TRUNCATED_RESPONSE);
    }
  });

  it('relays an answer with its own OPT, never the upstream\'s, and top-bit TTLs as 0', async () => {
    // The upstream's OPT says its own UDP size (and could carry options): a client without
    // EDNS must get no OPT at all (RFC 6891 7), one with EDNS ours.
    const up = Buffer.from(
      dnsPacket.encode({
        type: 'response',
        id: 1,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: [{ name: 'zero.example', type: 'A', class: 'IN' }],
        answers: [
          { type: 'A', name: 'zero.example', ttl: 0, data: '198.18.9.9' },
          { type: 'A', name: 'zero.example', ttl: 0x80000001, data: '198.18.9.10' },
        ],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [{ code: 10, data: Buffer.alloc(16, 7) }] } as unknown as dnsPacket.Answer],
      } as dnsPacket.Packet),
    );
    const e = new DnsEngine({ resolver: scripted({ 'zero.example/1': up }), cacheSize: 64, clock, udpSize: 1232 });
    const plain = await ask(e, query('zero.example', 'A'));
    expect(plain.answers.map((a) => a.data)).toEqual(['198.18.9.9', '198.18.9.10']);
    expect(plain.answers.map((a) => a.ttl)).toEqual([0, 0]);
    expect(plain.additionals.length).toBe(0);
    const withEdns = await ask(e, query('zero.example', 'A', { edns: { udpSize: 4096, do: true } }));
    expect(withEdns.answers.length).toBe(2);
    const opts = withEdns.additionals.filter((a) => a.type === 'OPT') as unknown as { udpPayloadSize: number; flag_do: boolean; options: unknown[] }[];
    expect(opts.length).toBe(1);
    expect(opts[0]!.udpPayloadSize).toBe(1232);
    expect(opts[0]!.flag_do).toBe(true);
    expect(opts[0]!.options.length).toBe(0);
    expect(e.stats.get('relayed')).toBe(2);
  });

  it('answers FORMERR, NOTIMP and BADVERS, and drops what must not be answered', async () => {
    const e = new DnsEngine({ resolver: scripted({}), cacheSize: 64, clock });
    const out = Buffer.alloc(512);
    const bad = Buffer.from(query('www.example.com', 'A'));
    bad.writeUInt16BE(5, 4); // QDCOUNT lies
    const n = e.handle(bad, 0, bad.length, out, 0, false) as number;
    expect(n).toBe(12);
    expect(out[3]! & 0xf).toBe(1); // FORMERR
    expect(e.handle(Buffer.alloc(5), 0, 5, out, 0, false)).toBe(0); // no header: dropped
    const resp = Buffer.from(wwwA);
    expect(e.handle(resp, 0, resp.length, out, 0, false)).toBe(0); // never answer an answer
    const notify = Buffer.from(query('www.example.com', 'SOA'));
    notify.writeUInt16BE(0x2000, 2);
    const m = e.handle(notify, 0, notify.length, out, 0, false) as number;
    expect(out[3]! & 0xf).toBe(4); // NOTIMP
    expect(m).toBeGreaterThan(12);
    const v1 = Buffer.from(query('www.example.com', 'A', { edns: {} }));
    v1[v1.length - 5] = 1; // EDNS version 1
    const k = e.handle(v1, 0, v1.length, out, 0, false) as number;
    const d = decode(out.subarray(0, k));
    expect((d.additionals![0] as unknown as { extendedRcode: number }).extendedRcode).toBe(1); // BADVERS = 16
    expect([e.stats.get('formerr'), e.stats.get('dropped'), e.stats.get('notimp'), e.stats.get('badvers')]).toEqual([1, 2, 1, 1]);
    expect(e.stats.vector('rcodes')[16]).toBe(1);
  });
});
