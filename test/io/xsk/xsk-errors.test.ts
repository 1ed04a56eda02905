/**
 * AF_XDP error paths on a real veth: argument checks in TS and in the addon (TypeError /
 * RangeError before anything reaches a ring), errno codes and hints of failed binds,
 * closing with frames held, queued and in flight, closing from inside the poll callback,
 * a socket dropped without close() (its finalizer), and create/close churn. None may
 * crash the process or leave a socket, a ring mapping or a busy queue behind.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../../helpers/privilege.js';
import { createPairLab, sh, type JsonChild, type PairLab } from '../../helpers/netns.js';
import { BPF_PASS_OBJECT_PATH } from '../../../src/native/addon.js';
import type { FrameAccounting } from '../../../src/io/xsk.js';
import { flood, startAgent, stopAgent } from './lab.js';
import type { Outcome } from './scenarios.js';

interface Resources {
  ringMappings: number;
  socketFds: number;
  present: string[];
}

describePrivileged('AF_XDP error paths: no crash, no leak', { netns: true }, () => {
  let lab: PairLab;
  let agent: JsonChild;
  let baseline: Resources;

  beforeAll(async () => {
    lab = createPairLab('xr', { peerXdpPass: BPF_PASS_OBJECT_PATH });
    agent = startAgent(lab);
    await agent.call({ cmd: 'open', ifname: lab.applianceIf, queues: 2, attach: 'native', echo: false });
    await agent.call({ cmd: 'close' });
    baseline = await agent.call<Resources>({ cmd: 'resources' });
  }, 60_000);

  afterAll(() => stopAgent(agent, lab));

  it('rejects bad arguments with TypeError/RangeError and failed binds with errno codes', async () => {
    const r = await agent.call<{
      outcomes: Outcome[];
      filledAfterBad: number;
      txWaitingAfterBad: number;
      txAfterBad: number;
      filledAfterGood: number;
      detachedByteLength: number;
      tsViewByteLength: number;
      describeAfterClose: { open: boolean; fd: number };
    }>({ cmd: 'scenario', name: 'validation' });
    const by = Object.fromEntries(r.outcomes.map((o) => [o.case, o]));
    const expectThrow = (c: string, cls: string, code?: string): void => {
      expect(by[c], c).toBeDefined();
      expect(by[c]!.threw, `${c}: ${by[c]!.message}`).toBe(cls);
      if (code) expect(by[c]!.code, c).toBe(code);
    };
    for (const c of ['ts queueId -1', 'ts frameSize 1000', 'ts ringSize 100', 'ts mode fast', 'ts batchSize 0']) expectThrow(c, 'RangeError');
    expectThrow('ts ifname empty', 'TypeError');
    for (const c of ['native frameSize 3000', 'native ringSize 100', 'native queueId 64']) expectThrow(c, 'RangeError');
    expectThrow('native no options', 'TypeError');
    expectThrow('no such interface', 'Error', 'ENODEV');
    expectThrow('zerocopy on veth', 'Error', 'EOPNOTSUPP');
    expect(by['zerocopy on veth']!.message).toMatch(/use mode 'copy' or 'auto'/);
    expectThrow('queue beyond the device', 'Error', 'EINVAL');
    expect(by['queue beyond the device']!.syscall).toBe('xsk_socket__create');
    expectThrow('map fd is a pipe', 'Error');
    expect(by['map fd is a pipe']!.syscall).toBe('bpf_obj_get_info_by_fd');
    expectThrow('second socket on a bound queue', 'Error', 'EBUSY');
    expect(by['second socket on a bound queue']!.message).toMatch(/another socket/);
    for (const c of ['fill unaligned', 'fill beyond the UMEM', 'fill n beyond array', 'fill offset beyond array', 'fill n fraction', 'rx max beyond pairs',
      'tx crossing a frame', 'tx empty', 'tx beyond the UMEM', 'complete max beyond array']) expectThrow(c, 'RangeError');
    expectThrow('fill Int32Array', 'TypeError');
    expectThrow('register a non-XSKMAP fd', 'Error');
    expect(by['register a non-XSKMAP fd']!.syscall).toBe('bpf_obj_get_info_by_fd');
    expectThrow('poll not a function', 'TypeError');
    // Nothing of a rejected batch reached a ring; a good one did.
    expect(r.filledAfterBad).toBe(0);
    expect(r.txAfterBad).toBe(0);
    expect(r.txWaitingAfterBad).toBe(0);
    expect(by['fill 8 good frames']!.threw).toBeNull();
    expect(r.filledAfterGood).toBe(8);
    // After close: idempotent, calls throw, the UMEM buffer and its views are empty.
    expect(by['close twice']!.threw).toBeNull();
    expectThrow('rx after close', 'Error');
    expectThrow('umem after close', 'Error');
    expectThrow('txWaiting after close', 'Error');
    expect(by['ts receive after close']!.message).toMatch(/closed/);
    expect(by['ts release after close']!.message).toMatch(/closed/);
    expect(r.detachedByteLength).toBe(0);
    expect(r.tsViewByteLength).toBe(0);
    expect(r.describeAfterClose).toMatchObject({ open: false, fd: -1 });
    expect(await agent.call<Resources>({ cmd: 'resources' })).toMatchObject({ ringMappings: baseline.ringMappings, socketFds: baseline.socketFds });
  });

  it('closes with frames held, queued and in flight', async () => {
    const armed = await agent.call<{ inodes: string[] }>({ cmd: 'scenario', name: 'outstanding', phase: 'arm' });
    // Queries nobody answers yet: they wait on the RX rings (fewer than one batch per queue).
    const sent = await flood(lab, { server: lab.appliance4, sockets: 16, perSocket: 3, waitMs: 100 });
    expect(sent.received).toBe(0);
    const r = await agent.call<{
      before: { received: number; own: number; frames: FrameAccounting }[];
      afterClose: { frames: FrameAccounting; viewByteLength: number; release: string | null; receive: string | null; flush: string | null }[];
      resources: Resources;
      rebound: { ok: boolean; error: string | null }[];
    }>({ cmd: 'scenario', name: 'outstanding', phase: 'check' });
    expect(r.before.reduce((a, b) => a + b.received, 0)).toBe(48);
    for (const b of r.before) {
      // A third on the TX ring, a third queued, a third held, plus one frame of its own.
      expect(b.own).toBeGreaterThanOrEqual(0);
      expect(b.frames.tx).toBe(Math.floor(b.received / 3));
      expect(b.frames.txQueued).toBe(Math.floor((2 * b.received) / 3) - Math.floor(b.received / 3));
      expect(b.frames.held + b.frames.txQueued + b.frames.tx).toBe(b.received + 1);
      expect(b.frames.free + b.frames.fill + b.frames.held + b.frames.txQueued + b.frames.tx).toBe(b.frames.total);
    }
    for (const [q, a] of r.afterClose.entries()) {
      expect(a.frames).toEqual(r.before[q]!.frames); // where the frames were when it closed
      expect(a.viewByteLength).toBe(0);
      expect(a.release).toMatch(/closed/);
      expect(a.receive).toMatch(/closed/);
    }
    expect(r.resources.present).toEqual([]);
    expect(r.resources.ringMappings).toBe(baseline.ringMappings);
    expect(armed.inodes).toHaveLength(2);
    for (const x of r.rebound) expect(x).toMatchObject({ ok: true, error: null });
  });

  it('closes from inside its own poll callback', async () => {
    await agent.call({ cmd: 'scenario', name: 'close-in-callback', phase: 'arm' });
    await flood(lab, { server: lab.appliance4, sockets: 16, perSocket: 4, waitMs: 100 });
    const r = await agent.call<{ calls: number; held: number; viewByteLength: number; resources: Resources }>({
      cmd: 'scenario',
      name: 'close-in-callback',
      phase: 'check',
    });
    expect(r.calls).toBe(1);
    expect(r.held).toBeGreaterThan(0);
    expect(r.viewByteLength).toBe(0);
    expect(r.resources.present).toEqual([]);
  });

  it('frees a socket dropped without close() and empties the UMEM views it leaves', async () => {
    const r = await agent.call<{ before: Resources; viewByteLength: number; read: number | null; resources: Resources; rebound: boolean }>({
      cmd: 'scenario',
      name: 'dropped',
    });
    expect(r.before.present).toHaveLength(1);
    expect(r.viewByteLength).toBe(0);
    expect(r.read).toBeNull(); // a read of the old view finds nothing, never freed memory
    expect(r.resources.present).toEqual([]);
    expect(r.rebound).toBe(true);
  });

  it('survives the interface disappearing under a polling socket, and closes cleanly', async () => {
    // A second veth inside the appliance namespace, deleted while a socket polls it.
    sh('ip', ['-n', lab.appliance, 'link', 'add', 'xgone0', 'type', 'veth', 'peer', 'name', 'xgone1']);
    sh('ip', ['-n', lab.appliance, 'link', 'set', 'xgone0', 'up']);
    sh('ip', ['-n', lab.appliance, 'link', 'set', 'xgone1', 'up']);
    try {
      await agent.call({ cmd: 'scenario', name: 'interface-gone', phase: 'arm', ifname: 'xgone0' });
    } finally {
      sh('ip', ['-n', lab.appliance, 'link', 'del', 'xgone0'], { allowFail: true });
    }
    const r = await agent.call<{ errors: Outcome[]; calls: number; flushed: Outcome; kickErrors: number; lastKickErrno: number; close: Outcome; resources: Resources }>({
      cmd: 'scenario',
      name: 'interface-gone',
      phase: 'check',
    });
    // The kernel unbinds the socket silently (xsk_poll reports no EPOLLERR): no callback;
    // the next transmit's kick fails and is counted instead of thrown.
    expect(r.errors).toEqual([]);
    expect(r.calls).toBe(0);
    expect(r.flushed.threw).toBeNull();
    expect(r.kickErrors).toBeGreaterThanOrEqual(1);
    expect(r.lastKickErrno).toBe(6); // ENXIO: the socket is no longer bound
    expect(r.close.threw).toBeNull();
    expect(r.resources.present).toEqual([]);
  });

  it('creates and closes sockets in a loop without growth', async () => {
    const r = await agent.call<{ before: Resources; after: Resources; rssGrowthMiB: number }>({ cmd: 'scenario', name: 'churn', count: 40 }, 30_000);
    expect(r.after).toMatchObject({ ringMappings: r.before.ringMappings, socketFds: r.before.socketFds });
    expect(r.rssGrowthMiB).toBeLessThan(16);
  });
});
