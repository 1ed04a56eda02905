/**
 * AF_XDP end to end on a veth: the XDP program (answers off) redirects every DNS query
 * to one XskSocket per rx queue in the appliance namespace, a TypeScript echo responder
 * turns each query frame into a reply in place and sends it on the TX ring, and real
 * clients in the client namespace (dig, and a many-port load) get their replies. The
 * socket counters, the XDP counters and the frame accounting must all agree.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../../helpers/privilege.js';
import { createPairLab, type JsonChild, type PairLab } from '../../helpers/netns.js';
import { BPF_PASS_OBJECT_PATH } from '../../../src/native/addon.js';
import { dig, flood, startAgent, type AgentStats } from './lab.js';

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describePrivileged('AF_XDP sockets answer real clients through the XDP redirect', { netns: true, tools: ['dig'] }, () => {
  let lab: PairLab;
  let agent: JsonChild;
  let initialFree: number[];
  let base: AgentStats;

  beforeAll(async () => {
    // Replies leave by AF_XDP TX on the appliance end; the peer runs XDP as in production.
    lab = createPairLab('xe', { peerXdpPass: BPF_PASS_OBJECT_PATH });
    agent = startAgent(lab);
    const r = await agent.call<{ sockets: { mode: string; registered: boolean; queueId: number }[]; frames: { free: number; fill: number; total: number }[] }>({
      cmd: 'open',
      ifname: lab.applianceIf,
      queues: 2,
      attach: 'native',
      xsk: { mode: 'auto', ringSize: 512, batchSize: 64 },
    });
    expect(r.sockets.map((s) => [s.queueId, s.mode, s.registered])).toEqual([
      [0, 'copy', true],
      [1, 'copy', true],
    ]);
    for (const f of r.frames) expect(f).toMatchObject({ total: 1024, fill: 512, free: 512 });
    initialFree = r.frames.map((f) => f.free);
  }, 60_000);

  afterAll(async () => {
    if (agent) {
      await agent.call({ cmd: 'close' }).catch(() => undefined);
      await agent.call({ cmd: 'detach' }).catch(() => undefined);
      agent.kill();
    }
    lab?.destroy();
  });

  it('answers dig over IPv4 and IPv6, echoing ID and question', () => {
    for (const server of [lab.appliance4, lab.appliance6]) {
      for (const name of ['WwW.Example.ORG', 'a.b.c.example']) {
        const out = dig(lab, server, [name, 'A', '+noedns', '+nocookie']);
        expect(out).toMatch(/status: NOERROR/);
        expect(out).toMatch(/flags: qr rd ra/);
        expect(out).toContain(`;${name}.`);
      }
      // With EDNS the OPT record comes back as sent.
      expect(dig(lab, server, ['edns.example', 'AAAA', '+edns=0', '+nocookie'])).toMatch(/EDNS: version: 0/);
    }
  });

  it('serves a many-port load on both rx queues with counters that agree and no frame lost', async () => {
    base = await agent.call<AgentStats>({ cmd: 'quiesce' });
    const [v4, v6] = await Promise.all([
      flood(lab, { server: lab.appliance4, sockets: 24, perSocket: 80, waitMs: 5000 }),
      flood(lab, { server: lab.appliance6, sockets: 8, perSocket: 50, waitMs: 5000 }),
    ]);
    expect(v4).toMatchObject({ sent: 1920, received: 1920, bad: 0 });
    expect(v6).toMatchObject({ sent: 400, received: 400, bad: 0 });

    // Completions may trail the last reply: reclaim until nothing is in flight.
    const s = await agent.call<AgentStats>({ cmd: 'quiesce' });
    const d = (k: string): number => s.xdp[k]! - base.xdp[k]!;
    const rx = s.sockets.map((x) => x.stats.rxPackets - base.sockets[x.queue]!.stats.rxPackets);
    const tx = s.sockets.map((x) => x.stats.txPackets - base.sockets[x.queue]!.stats.txPackets);
    const completed = s.sockets.map((x) => x.stats.completed - base.sockets[x.queue]!.stats.completed);
    const queries = 1920 + 400;

    // Both rx queues carried traffic (the client's flows hash over the veth's 2 queues).
    for (const n of rx) expect(n).toBeGreaterThan(0);
    // XDP redirected every query and no socket was missing; each one reached a socket.
    expect(d('USER_DISABLED')).toBe(sum(rx));
    expect(d('REDIRECT_FALLBACK')).toBe(0);
    expect(sum(rx)).toBe(queries);
    expect(sum(tx)).toBe(queries);
    expect(completed).toEqual(tx);
    expect(sum(s.sockets.map((x) => x.echo.replied - base.sockets[x.queue]!.echo.replied))).toBe(queries);
    expect(Math.max(...s.sockets.map((x) => x.echo.maxBatch))).toBeGreaterThan(1); // batches, not one call per packet
    for (const x of s.sockets) {
      // The kernel dropped nothing and rejected no descriptor.
      expect(x.stats).toMatchObject({ rxDropped: 0, rxInvalidDescs: 0, txInvalidDescs: 0, rxRingFull: 0, kickErrors: 0 });
      // No frame leaked: all back in the free list or on the fill ring, as at the start.
      expect(x.stats.frames).toMatchObject({ held: 0, txQueued: 0, tx: 0, anomalies: 0, fill: 512 });
      expect(x.stats.frames.free).toBe(initialFree[x.queue]);
    }
  });

  it('after close, queries fall back to the kernel (the sockets left the XSKMAP) and nothing is left', async () => {
    const closed = await agent.call<{ frames: { umemAfterClose: number; held: number; tx: number }[] }>({ cmd: 'close' });
    for (const f of closed.frames) expect(f).toMatchObject({ umemAfterClose: 0, held: 0, tx: 0 });
    const before = await agent.call<AgentStats>({ cmd: 'stats' });
    const out = dig(lab, lab.appliance4, ['gone.example', 'A', '+noedns', '+nocookie']);
    expect(out).not.toMatch(/status: NOERROR/);
    const after = await agent.call<AgentStats>({ cmd: 'stats' });
    expect(after.xdp.REDIRECT_FALLBACK! - before.xdp.REDIRECT_FALLBACK!).toBeGreaterThanOrEqual(1);
    const res = await agent.call<{ ringMappings: number }>({ cmd: 'resources' });
    expect(res.ringMappings).toBe(0);
  });
});
