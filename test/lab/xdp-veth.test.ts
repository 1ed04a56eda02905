/**
 * The XDP program on a real veth: attached in an appliance namespace this test creates,
 * one hot entry written through the addon, and real clients (dig, kdig) in a client
 * namespace getting the answer over IPv4 and IPv6, with the counters showing XDP sent it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';
import { createPairLab, JsonChild, sh, type PairLab } from '../helpers/netns.js';
import { response } from '../helpers/dns.js';
import { BPF_PASS_OBJECT_PATH } from '../../src/native/addon.js';

const AGENT = fileURLToPath(new URL('./agent.ts', import.meta.url));

type Stats = { stats: Record<string, string> };

for (const mode of ['native', 'generic'] as const) {
  describePrivileged(`XDP answers real clients on a veth (${mode} mode)`, { netns: true, tools: ['dig', 'kdig'] }, () => {
    let lab: PairLab;
    let agent: JsonChild;
    let slot: number;

    beforeAll(async () => {
      // Native XDP_TX on veth needs XDP on the peer; generic mode needs nothing there.
      lab = createPairLab(mode === 'native' ? 'n' : 'g', { peerXdpPass: mode === 'native' ? BPF_PASS_OBJECT_PATH : undefined });
      agent = new JsonChild('ip', ['netns', 'exec', lab.appliance, process.execPath, '--import', 'tsx', AGENT]);
      const a = await agent.call<{ mode: string }>({ cmd: 'attach', ifname: lab.applianceIf, mode });
      expect(a.mode).toBe(mode);
      const msg = response('www.lab.example', 'A', {
        answers: [{ type: 'A', name: 'www.lab.example', ttl: 120, data: '198.18.99.1' }],
      });
      slot = (await agent.call<{ slot: number }>({ cmd: 'put', response: msg.toString('base64') })).slot;
      const msgDo = response('www.lab.example', 'A', { answers: [{ type: 'A', name: 'www.lab.example', ttl: 120, data: '198.18.99.2' }] }, { dnssecOk: true });
      await agent.call({ cmd: 'put', response: msgDo.toString('base64'), do: true });
    }, 60_000);

    afterAll(async () => {
      if (agent) {
        const d = await agent.call<{ removed: boolean }>({ cmd: 'detach' }).catch(() => ({ removed: false }));
        expect(d.removed).toBe(true);
        agent.kill();
      }
      if (lab) {
        // Detach left the interface as it was: no program on the appliance end.
        const link = sh('ip', ['-n', lab.appliance, '-d', 'link', 'show', lab.applianceIf], { allowFail: true });
        expect(link).not.toMatch(/prog\/xdp/);
        lab.destroy();
      }
    });

    const dig = (server: string, args: string[]) =>
      sh('ip', ['netns', 'exec', lab.client, 'dig', `@${server}`, '+tries=1', '+time=2', ...args], { allowFail: true });

    it('answers dig over IPv4 from XDP, case as asked, TTL counting down', async () => {
      const before = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      const out = dig(lab.appliance4, ['WwW.LaB.eXample', 'A', '+noedns', '+nocookie']);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/;WwW\.LaB\.eXample\.\s+IN\s+A/); // question echoed with its case
      // the owner is the question's name: the cache compresses it against the question (src/dns/scrub.ts), so it reads in the client's case
      expect(out).toMatch(/WwW\.LaB\.eXample\.\s+1[12]\d\s+IN\s+A\s+198\.18\.99\.1/);
      expect(out).toMatch(/flags: qr rd ra;/);
      const after = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      expect(BigInt(after.TX!) - BigInt(before.TX!)).toBe(1n);
    });

    it('answers dig over IPv6 with EDNS and a cookie option', async () => {
      const before = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      const out = dig(lab.appliance6, ['www.lab.example', 'A', '+edns=0', '+cookie']);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/EDNS: version: 0, flags:; udp: 1232/);
      expect(out).toMatch(/198\.18\.99\.1/);
      const after = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      expect(BigInt(after.TX!) - BigInt(before.TX!)).toBe(1n);
    });

    it('answers kdig with DO from the DNSSEC variant, over IPv4 and IPv6', async () => {
      for (const server of [lab.appliance4, lab.appliance6]) {
        const out = sh('ip', ['netns', 'exec', lab.client, 'kdig', `@${server}`, '+dnssec', '+timeout=2', '+retry=0', 'www.lab.example', 'A'], {
          allowFail: true,
        });
        expect(out).toMatch(/status: NOERROR/);
        expect(out).toMatch(/198\.18\.99\.2/);
        expect(out).toMatch(/EDNS PSEUDOSECTION:\s+;; Version: 0; flags: do; UDP size: 1232/);
      }
      const hits = await agent.call<{ hits: string }>({ cmd: 'hits', slot });
      expect(BigInt(hits.hits)).toBeGreaterThanOrEqual(2n);
    });

    it('leaves a cold name to the kernel (nothing listens there: no answer)', async () => {
      const before = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      const out = dig(lab.appliance4, ['cold.lab.example', 'A', '+noedns']);
      expect(out).not.toMatch(/status: NOERROR/);
      const after = (await agent.call<Stats>({ cmd: 'stats' })).stats;
      expect(BigInt(after.USER_MISS!) - BigInt(before.USER_MISS!)).toBeGreaterThanOrEqual(1n);
      expect(BigInt(after.REDIRECT_FALLBACK!) - BigInt(before.REDIRECT_FALLBACK!)).toBeGreaterThanOrEqual(1n);
    });
  });
}
