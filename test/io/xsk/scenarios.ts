/**
 * Error-path scenarios the lab agent runs inside the appliance namespace: argument
 * validation in TS and native code, errno codes of failed binds, closing with frames
 * held / queued / in flight, closing from inside the poll callback, and a socket that
 * JavaScript drops without close() (the finalizer). Each returns plain JSON for the test.
 * Scenarios that need traffic have an 'arm' phase (before the test sends queries) and a
 * 'check' phase (after).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { loadAddon } from '../../../src/native/addon.js';
import type { NativeXskSocket } from '../../../src/native/xsk-types.js';
import type { FastPath } from '../../../src/xdp/fastpath.js';
import { XskSocket, type XskOptions } from '../../../src/io/xsk.js';
import type { EchoCounters } from './echo.js';
import { echoQuery } from './echo.js';

export interface AgentContext {
  fp: FastPath;
  ifname: string;
  queues: number;
  sockets: XskSocket[];
  counters: EchoCounters[];
}

/** AF_XDP ring mappings and socket fds of this process; `present`: which of `inodes` remain. */
export function resources(inodes: string[] = []): { ringMappings: number; socketFds: number; present: string[] } {
  const maps = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => /socket:\[\d+\]/.test(l));
  const fds: string[] = [];
  for (const f of readdirSync('/proc/self/fd')) {
    try {
      const l = readlinkSync(`/proc/self/fd/${f}`);
      if (l.startsWith('socket:')) fds.push(l);
    } catch {
      // the fd of readdir itself
    }
  }
  const present = inodes.filter((i) => fds.includes(i) || maps.some((l) => l.endsWith(i)));
  return { ringMappings: maps.length, socketFds: fds.length, present };
}

/** Opens a socket once its queue is free again (see XskSocket.openWhenFree). */
export async function openWithRetry(o: XskOptions): Promise<{ sock: XskSocket | null; error: string | null }> {
  try {
    return { sock: await XskSocket.openWhenFree(o), error: null };
  } catch (e) {
    const err = e as Error & { code?: string };
    return { sock: null, error: `${err.code}: ${err.message}` };
  }
}

/** Runs fn until it stops failing with EBUSY (a queue just closed); returns its value and the retries. */
async function whenFree<T>(fn: () => T): Promise<{ value: T; retries: number }> {
  for (let retries = 0; ; retries++) {
    try {
      return { value: fn(), retries };
    } catch (e) {
      if ((e as { code?: string }).code !== 'EBUSY' || retries > 200) throw e;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** What a scenario step did: threw or not, and the error's code and failing call. */
export interface Outcome {
  case: string;
  threw: string | null;
  code?: string;
  syscall?: string;
  message?: string;
}

function attempt(name: string, fn: () => unknown): Outcome {
  try {
    fn();
    return { case: name, threw: null };
  } catch (e) {
    const err = e as Error & { code?: string; syscall?: string };
    return { case: name, threw: err.constructor.name, code: err.code, syscall: err.syscall, message: err.message };
  }
}

/** attempt(), repeated while the queue is still busy from a socket closed just before. */
async function attemptWhenFree(name: string, fn: () => unknown): Promise<Outcome> {
  for (let i = 0; ; i++) {
    const o = attempt(name, fn);
    if (o.code !== 'EBUSY' || i > 200) return o;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const armed: Record<string, unknown> = {};

async function validation(ctx: AgentContext): Promise<unknown> {
  const addon = loadAddon();
  const base = { ifname: ctx.ifname, queueId: 0, xsksMapFd: -1, ringSize: 64 };
  const nat = { frameSize: 2048, frameCount: 128, ringSize: 64, mode: 'copy' as const, needWakeup: true };
  const out: Outcome[] = [
    attempt('ts queueId -1', () => XskSocket.open({ ...base, queueId: -1 })),
    attempt('ts frameSize 1000', () => XskSocket.open({ ...base, frameSize: 1000 })),
    attempt('ts ringSize 100', () => XskSocket.open({ ...base, ringSize: 100 })),
    attempt('ts ifname empty', () => XskSocket.open({ ...base, ifname: '' })),
    attempt('ts mode fast', () => XskSocket.open({ ...base, mode: 'fast' as 'copy' })),
    attempt('ts batchSize 0', () => XskSocket.open({ ...base, batchSize: 0 })),
    attempt('native frameSize 3000', () => new addon.XskSocket(ctx.ifname, 0, { ...nat, frameSize: 3000 })),
    attempt('native ringSize 100', () => new addon.XskSocket(ctx.ifname, 0, { ...nat, ringSize: 100 })),
    attempt('native queueId 64', () => new addon.XskSocket(ctx.ifname, 64, nat)),
    attempt('native no options', () => new (addon.XskSocket as unknown as new (a: string) => unknown)(ctx.ifname)),
    attempt('no such interface', () => XskSocket.open({ ...base, ifname: 'nosuch0' })),
    await attemptWhenFree('zerocopy on veth', () => XskSocket.open({ ...base, mode: 'zerocopy' })),
    attempt('queue beyond the device', () => XskSocket.open({ ...base, queueId: 5 })),
    await attemptWhenFree('map fd is a pipe', () => XskSocket.open({ ...base, xsksMapFd: 0 })),
  ];
  const a = await XskSocket.openWhenFree(base);
  out.push(attempt('second socket on a bound queue', () => XskSocket.open(base)));

  // Ring calls on the native object directly: bad input never reaches a ring.
  const n = (await whenFree(() => new addon.XskSocket(ctx.ifname, 1, nat))).value;
  const u32 = new Uint32Array(8);
  out.push(
    attempt('fill unaligned', () => n.fill(Uint32Array.of(100), 1)),
    attempt('fill beyond the UMEM', () => n.fill(Uint32Array.of(128 * 2048), 1)),
    attempt('fill n beyond array', () => n.fill(u32, 9)),
    attempt('fill offset beyond array', () => n.fill(u32, 1, 8)),
    attempt('fill Int32Array', () => n.fill(new Int32Array(4) as unknown as Uint32Array, 1)),
    attempt('fill n fraction', () => n.fill(u32, 1.5)),
    attempt('rx max beyond pairs', () => n.rx(u32, 5)),
    attempt('tx crossing a frame', () => n.tx(Uint32Array.of(2048 + 2000, 100), 1)),
    attempt('tx empty', () => n.tx(Uint32Array.of(0, 0), 1)),
    attempt('tx beyond the UMEM', () => n.tx(Uint32Array.of(128 * 2048, 60), 1)),
    attempt('complete max beyond array', () => n.complete(u32, 9)),
    attempt('poll not a function', () => (n as unknown as { poll(x: number): void }).poll(1)),
    attempt('register a non-XSKMAP fd', () => n.register(1)),
  );
  const afterBad = n.stats();
  const txWaitingAfterBad = n.txWaiting();
  const good = attempt('fill 8 good frames', () => n.fill(Uint32Array.from({ length: 8 }, (_, i) => i * 2048), 8));
  const afterGood = n.stats();
  const ab = n.umem();
  n.close();
  out.push(
    good,
    attempt('close twice', () => n.close()),
    attempt('rx after close', () => n.rx(u32, 1)),
    attempt('umem after close', () => n.umem()),
    attempt('txWaiting after close', () => n.txWaiting()),
  );
  a.close();
  out.push(attempt('ts receive after close', () => a.receive()), attempt('ts release after close', () => a.release(0)));
  return {
    outcomes: out,
    filledAfterBad: afterBad.filled,
    txAfterBad: afterBad.txPackets,
    txWaitingAfterBad,
    filledAfterGood: afterGood.filled,
    detachedByteLength: ab.byteLength,
    tsViewByteLength: a.umem.byteLength,
    describeAfterClose: n.describe(),
  };
}

async function outstanding(ctx: AgentContext, phase: string): Promise<unknown> {
  if (phase === 'arm') {
    const socks = [];
    for (let q = 0; q < ctx.queues; q++) {
      socks.push(await XskSocket.openWhenFree({ ifname: ctx.ifname, queueId: q, xsksMapFd: ctx.fp.describe().xsksMapFd, ringSize: 256, batchSize: 64 }));
    }
    armed.outstanding = socks;
    return { ok: true, inodes: socks.map((s) => readlinkSync(`/proc/self/fd/${s.fd}`)) };
  }
  const socks = armed.outstanding as XskSocket[];
  const inodes = socks.map((s) => readlinkSync(`/proc/self/fd/${s.fd}`));
  const before = [];
  for (const s of socks) {
    s.reclaim();
    const n = s.receive();
    // Received frames in every state: some sent (on the TX ring), some queued, some held.
    let i = 0;
    for (; i < Math.floor(n / 3); i++) {
      const addr = s.rxDescs[2 * i]!;
      s.send(addr, echoQuery(s.umem, addr, s.rxDescs[2 * i + 1]!) || 60);
    }
    s.flush();
    for (; i < Math.floor((2 * n) / 3); i++) s.send(s.rxDescs[2 * i]!, 60);
    const own = s.allocFrame();
    before.push({ received: n, own, frames: s.accounting() });
  }
  const views = socks.map((s) => s.umem);
  for (const s of socks) s.close();
  const afterClose = socks.map((s, q) => ({
    frames: s.accounting(),
    viewByteLength: views[q]!.byteLength,
    release: attempt('release after close', () => s.release(s.rxDescs[s.rxDescs.length - 2]!)).message ?? null,
    receive: attempt('receive after close', () => s.receive()).message ?? null,
    flush: attempt('flush after close', () => s.flush()).message ?? null,
  }));
  const rebound = [];
  for (let q = 0; q < ctx.queues; q++) {
    const r = await openWithRetry({ ifname: ctx.ifname, queueId: q, xsksMapFd: -1, ringSize: 64 });
    rebound.push({ ok: r.sock !== null, error: r.error });
    r.sock?.close();
  }
  delete armed.outstanding;
  return { before, afterClose, resources: resources(inodes), rebound };
}

async function closeInCallback(ctx: AgentContext, phase: string): Promise<unknown> {
  if (phase === 'arm') {
    const s = await XskSocket.openWhenFree({ ifname: ctx.ifname, queueId: 0, xsksMapFd: ctx.fp.describe().xsksMapFd, ringSize: 64 });
    const state = { calls: 0, held: 0, inode: readlinkSync(`/proc/self/fd/${s.fd}`), view: s.umem };
    s.onReadable((sock) => {
      state.calls++;
      state.held = sock.receive();
      sock.close(); // from inside the uv poll callback, with the frames held
    });
    armed.cic = state;
    return { ok: true };
  }
  const state = armed.cic as { calls: number; held: number; inode: string; view: Uint8Array };
  await new Promise((r) => setTimeout(r, 50));
  delete armed.cic;
  return { calls: state.calls, held: state.held, viewByteLength: state.view.byteLength, resources: resources([state.inode]) };
}

async function dropped(ctx: AgentContext): Promise<unknown> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('agent needs --expose-gc');
  let inode = '';
  let view: Uint8Array;
  let held: XskSocket | null = await XskSocket.openWhenFree({ ifname: ctx.ifname, queueId: 0, xsksMapFd: ctx.fp.describe().xsksMapFd, ringSize: 64 });
  // The socket object becomes unreachable here; only a view of its UMEM survives.
  (() => {
    const s = held!;
    held = null;
    inode = readlinkSync(`/proc/self/fd/${s.fd}`);
    view = s.umem;
    view[0] = 1;
  })();
  const before = resources([inode]);
  for (let i = 0; i < 10 && view!.byteLength > 0; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  const r = await openWithRetry({ ifname: ctx.ifname, queueId: 0, xsksMapFd: -1, ringSize: 64 });
  r.sock?.close();
  return { before, viewByteLength: view!.byteLength, read: view![0] ?? null, resources: resources([inode]), rebound: r.sock !== null };
}

/** A socket whose interface is deleted under it: what the worker sees, and a clean close. */
async function interfaceGone(phase: string, ifname: string): Promise<unknown> {
  if (phase === 'arm') {
    const s = XskSocket.open({ ifname, queueId: 0, ringSize: 64 });
    const state = { sock: s, inode: readlinkSync(`/proc/self/fd/${s.fd}`), errors: [] as Outcome[], calls: 0 };
    s.onReadable(
      () => state.calls++,
      (e) => state.errors.push(attempt('poll error', () => { throw e; })),
    );
    armed.gone = state;
    return { ok: true, mode: s.mode };
  }
  const state = armed.gone as { sock: XskSocket; inode: string; errors: Outcome[]; calls: number };
  await new Promise((r) => setTimeout(r, 100));
  // A transmit attempt is how a worker learns of it: the kick fails and is counted.
  const s = state.sock;
  const frame = s.allocFrame();
  s.umem.fill(0, frame, frame + 60);
  s.send(frame, 60);
  const flushed = attempt('flush after the interface went away', () => s.flush());
  const stats = s.stats();
  const close = attempt('close after the interface went away', () => s.close());
  delete armed.gone;
  return { errors: state.errors, calls: state.calls, flushed, kickErrors: stats.kickErrors, lastKickErrno: stats.lastKickErrno, close, resources: resources([state.inode]) };
}

/** Native sockets created and closed in a loop: no fd, mapping or memory growth. */
async function churn(ctx: AgentContext, count: number): Promise<unknown> {
  const addon = loadAddon();
  const before = resources();
  const rss0 = process.memoryUsage().rss;
  let busyRetries = 0;
  for (let i = 0; i < count; i++) {
    const opts = { frameSize: 2048, frameCount: 512, ringSize: 256, mode: 'auto' as const, needWakeup: true };
    const r = await whenFree((): NativeXskSocket => new addon.XskSocket(ctx.ifname, i % ctx.queues, opts));
    busyRetries += r.retries;
    r.value.register(ctx.fp.describe().xsksMapFd);
    r.value.close();
  }
  return { before, after: resources(), rssGrowthMiB: (process.memoryUsage().rss - rss0) / 2 ** 20, busyRetries };
}

export async function runScenario(ctx: AgentContext, name: string, m: Record<string, unknown>): Promise<unknown> {
  switch (name) {
    case 'validation':
      return validation(ctx);
    case 'outstanding':
      return outstanding(ctx, String(m.phase));
    case 'close-in-callback':
      return closeInCallback(ctx, String(m.phase));
    case 'dropped':
      return dropped(ctx);
    case 'interface-gone':
      return interfaceGone(String(m.phase), String(m.ifname));
    case 'churn':
      return churn(ctx, Number(m.count ?? 50));
    default:
      throw new Error(`unknown scenario ${name}`);
  }
}
