/**
 * The upstream hardening switches of the one config reach the forwarder: with the
 * defaults a query goes out in random case with a client cookie and the reply is
 * minimal; with --no-caps-for-id, --no-upstream-cookies and --no-minimal-responses it
 * goes out as asked, without a cookie, and the authority records come back.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveConfig, type ConfigInput } from '../../src/config.js';
import { EngineHost } from '../../src/engine/host.js';
import { AskCounter } from '../../src/hot/asks.js';
import { query } from '../helpers/dns.js';

const NAME = 'www.hardening.example';

/** A loopback upstream that answers with one A and one NS in authority, and keeps every query. */
async function upstream(): Promise<{ port: number; seen: Buffer[]; close: () => void }> {
  const s = dgram.createSocket('udp4');
  const seen: Buffer[] = [];
  s.on('message', (m, r) => {
    seen.push(m);
    const d = dnsPacket.decode(m);
    const q = d.questions![0]!;
    s.send(dnsPacket.encode({
      type: 'response', id: d.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [q],
      answers: [{ type: 'A', name: q.name, ttl: 300, data: '198.18.0.1' }],
      authorities: [{ type: 'NS', name: 'hardening.example', ttl: 300, data: 'ns.hardening.example' }],
    } as dnsPacket.Packet), r.port, r.address);
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  return { port: (s.address() as { port: number }).port, seen, close: () => s.close() };
}

const closers: (() => unknown)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function ask(o: Partial<ConfigInput>): Promise<{ sent: dnsPacket.Packet; reply: dnsPacket.Packet }> {
  const up = await upstream();
  closers.push(up.close);
  const cfg = resolveConfig({ iface: 'hx0', upstream: `127.0.0.1:${up.port}`, ...o }, () => 1);
  const host = new EngineHost({ engine: cfg.mainEngine, upstreams: cfg.upstreams, asks: new AskCounter(undefined, 10), onPromotion: () => {} });
  closers.push(() => host.close());
  const q = query(NAME, 'A', { edns: {} });
  const out = new Uint8Array(4096);
  const n = await host.engine.handle(q, 0, q.length, out, 0, false);
  return { sent: dnsPacket.decode(up.seen[0]!), reply: dnsPacket.decode(Buffer.from(out.subarray(0, n))) };
}

const cookie = (p: dnsPacket.Packet) =>
  (p.additionals?.find((a) => a.type === 'OPT') as unknown as { options: { code: number }[] } | undefined)?.options.some((o) => o.code === 10) ?? false;

describe('upstream hardening settings', () => {
  it('on by default: random case, a client cookie, a minimal reply', async () => {
    const { sent, reply } = await ask({});
    expect(sent.questions![0]!.name.toLowerCase()).toBe(NAME);
    expect(cookie(sent)).toBe(true);
    expect(reply.answers).toHaveLength(1);
    expect(reply.authorities ?? []).toHaveLength(0);
  });

  it('off when asked: the name as asked, no cookie, authority relayed', async () => {
    // Random case can come out all lowercase for a short name; this one has 18 letters.
    const { sent, reply } = await ask({ capsForId: false, upstreamCookies: false, minimalResponses: false });
    expect(sent.questions![0]!.name).toBe(NAME);
    expect(cookie(sent)).toBe(false);
    expect(reply.authorities ?? []).toHaveLength(1);
  });

  it('sends mixed case under 0x20 (over a few questions)', async () => {
    const up = await upstream();
    closers.push(up.close);
    const cfg = resolveConfig({ iface: 'hx0', upstream: `127.0.0.1:${up.port}` }, () => 1);
    const host = new EngineHost({ engine: cfg.mainEngine, upstreams: cfg.upstreams, asks: new AskCounter(undefined, 10), onPromotion: () => {} });
    closers.push(() => host.close());
    for (let i = 0; i < 4; i++) {
      const q = query(`n${i}.${NAME}`, 'A');
      await host.engine.handle(q, 0, q.length, new Uint8Array(4096), 0, false);
    }
    expect(up.seen.some((m) => /[A-Z]/.test(dnsPacket.decode(m).questions![0]!.name))).toBe(true);
  });
});
