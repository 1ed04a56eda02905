/**
 * Worker-thread safety: a worker opens one AF_XDP socket per queue of the veth, serves
 * live traffic, and then goes away without close(): terminated while idle or while
 * spinning inside the poll callback, process.exit() or an uncaught exception inside the
 * poll callback with frames held, or an event loop that runs empty. The process must
 * survive, the sockets and their ring mappings must be gone, the queues must be free for
 * new sockets, and the XSKMAP entries must be gone (queries fall back to the kernel).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../../helpers/privilege.js';
import { createPairLab, type JsonChild, type PairLab } from '../../helpers/netns.js';
import { BPF_PASS_OBJECT_PATH } from '../../../src/native/addon.js';
import { dig, flood, startAgent, type AgentStats, stopAgent } from './lab.js';

interface Finish {
  code: number;
  workerError: string | null;
  servedBefore: number;
  resources: { ringMappings: number; socketFds: number; present: string[] };
  rebound: { queue: number; ok: boolean; tries: number; error: string | null }[];
}

describePrivileged('AF_XDP sockets in worker threads leave nothing behind', { netns: true, tools: ['dig'] }, () => {
  let lab: PairLab;
  let agent: JsonChild;
  let baseline: { ringMappings: number; socketFds: number };

  beforeAll(async () => {
    lab = createPairLab('xw', { peerXdpPass: BPF_PASS_OBJECT_PATH });
    agent = startAgent(lab);
    await agent.call({ cmd: 'open', ifname: lab.applianceIf, queues: 2, attach: 'native', echo: false });
    await agent.call({ cmd: 'close' }); // the program stays attached; the queues are the workers'
    baseline = await agent.call({ cmd: 'resources' });
    expect(baseline.ringMappings).toBe(0);
  }, 60_000);

  afterAll(() => stopAgent(agent, lab));

  const cases: [string, (f: Finish) => void][] = [
    ['terminate', (f) => expect(f.code).toBe(1)],
    ['terminate-busy', (f) => expect(f.code).toBe(1)],
    ['exit', (f) => expect(f.code).toBe(3)],
    ['throw', (f) => expect(f.workerError).toMatch(/worker dies holding \d+ frames/)],
    ['natural', (f) => expect(f).toMatchObject({ code: 0, workerError: null })],
  ];

  for (const [how, check] of cases) {
    it(`worker ${how}: the process lives on, the sockets are gone, the queues are free`, async () => {
      const started = await agent.call<{ inodes: string[]; modes: string[]; resources: { ringMappings: number; present: string[] } }>({
        cmd: 'worker-start',
        how,
      });
      expect(started.modes).toEqual(['copy', 'copy']);
      expect(started.resources.ringMappings).toBe(baseline.ringMappings + 8); // fill, completion, RX, TX per socket
      expect(started.resources.present).toEqual(started.inodes);

      // Live traffic while the worker goes: queries paced over ~1.5 s from 16 ports. The
      // 'exit' and 'throw' workers end inside a poll callback after the host raises its
      // flag, so traffic must still be arriving then: with 0.4 s, a loaded machine
      // sometimes finished the flood first, and the worker waited for a packet that
      // never came (this once looked like a hang of process.exit()).
      const load = flood(lab, { server: lab.appliance4, sockets: 16, perSocket: 40, spreadMs: 1500, waitMs: 200 });
      const fin = await agent.call<Finish>({ cmd: 'worker-finish', how, afterBatches: 10 }, 30_000);
      const served = await load;

      check(fin);
      expect(fin.servedBefore).toBeGreaterThanOrEqual(10); // it was mid-flight
      expect(served.received).toBeGreaterThan(0);
      expect(served.bad).toBe(0);
      // Nothing of the worker's sockets is left in this process, and the kernel let go of them.
      expect(fin.resources.present).toEqual([]);
      expect(fin.resources.ringMappings).toBe(baseline.ringMappings);
      expect(fin.resources.socketFds).toBe(baseline.socketFds);
      for (const r of fin.rebound) expect(r).toMatchObject({ ok: true, error: null });

      // The XSKMAP entries went with the sockets: queries now fall back to the kernel.
      const before = await agent.call<AgentStats>({ cmd: 'stats' });
      dig(lab, lab.appliance4, ['after.example', 'A', '+noedns', '+nocookie', '+time=1']);
      const after = await agent.call<AgentStats>({ cmd: 'stats' });
      expect(after.xdp.REDIRECT_FALLBACK! - before.xdp.REDIRECT_FALLBACK!).toBeGreaterThanOrEqual(1);
    });
  }
});
