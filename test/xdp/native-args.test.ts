/**
 * The addon's XdpProgram and test-run functions called directly, as a caller other than
 * FastPath might: a wrong argument type is a TypeError and a value out of range a
 * RangeError, never a crash; a constructor that fails, before the kernel load or after
 * it, leaves no fd behind; a closed program refuses every method.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { machine, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { buildFrame } from '../helpers/frames.js';
import { query } from '../helpers/dns.js';
import {
  BPF_OBJECT_PATH,
  BPF_PASS_OBJECT_PATH,
  loadAddon,
  type NativeAddon,
  type NativeProgramOptions,
  type NativeXdpProgram,
} from '../../src/native/addon.js';
import { XdpAction } from '../../src/xdp/fastpath.js';

const OPTS: NativeProgramOptions = { ports: [53], udpSize: 1232, hotEntries: 64, rrlBuckets: 1024 };
const FAILURES = 50;

/** The constructor and methods with the TypeScript types taken off. */
type Loose = (...args: unknown[]) => unknown;
const construct = (addon: NativeAddon, ...args: unknown[]): NativeXdpProgram =>
  new (addon.XdpProgram as unknown as new (...a: unknown[]) => NativeXdpProgram)(...args);
const call = (p: NativeXdpProgram, method: keyof NativeXdpProgram, ...args: unknown[]): unknown =>
  (p[method] as unknown as Loose).apply(p, args);

const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The fd count once two readings a moment apart agree. */
async function settledFdCount(): Promise<number> {
  let n = fdCount();
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const m = fdCount();
    if (m === n) return m;
    n = m;
  }
  return n;
}

describePrivileged('the native XdpProgram under wrong arguments', {}, () => {
  let addon: NativeAddon;
  let p: NativeXdpProgram;
  const frame = buildFrame(query('www.example.com', 'A'));

  beforeAll(() => {
    addon = loadAddon();
  });

  describe('constructor', () => {
    it('throws TypeError for arguments of the wrong type', () => {
      const bad: unknown[][] = [
        [],
        [BPF_OBJECT_PATH],
        [42, OPTS],
        [BPF_OBJECT_PATH, null],
        [BPF_OBJECT_PATH, 'options'],
        [BPF_OBJECT_PATH, { ...OPTS, ports: 53 }],
        [BPF_OBJECT_PATH, { ...OPTS, ports: ['53'] }],
        [BPF_OBJECT_PATH, { ...OPTS, ports: [null] }],
        [BPF_OBJECT_PATH, { ...OPTS, udpSize: '1232' }],
        [BPF_OBJECT_PATH, { ...OPTS, hotEntries: undefined }],
        [BPF_OBJECT_PATH, { ...OPTS, hotEntries: 64n }],
      ];
      for (const args of bad) expect(() => construct(addon, ...args), show(args)).toThrow(TypeError);
    });

    it('throws RangeError for options out of range', () => {
      const bad: Partial<Record<keyof NativeProgramOptions, unknown>>[] = [
        { ports: [] },
        { ports: Array.from({ length: addon.layout.MAX_PORTS + 1 }, (_, i) => 1000 + i) },
        { ports: [0] },
        { ports: [65536] },
        { ports: [53.5] },
        { ports: [-53] },
        { udpSize: 511 },
        { udpSize: 65536 },
        { udpSize: NaN },
        { hotEntries: 0 },
        { hotEntries: -1 },
        { hotEntries: 1.5 },
        { hotEntries: Infinity },
        { hotEntries: 2 ** 32 },
      ];
      for (const o of bad) expect(() => construct(addon, BPF_OBJECT_PATH, { ...OPTS, ...o }), show(o)).toThrow(RangeError);
      expect(() => construct(addon, BPF_OBJECT_PATH, { ...OPTS, hotEntries: 2 ** 31 })).toThrow(/too large for per-CPU hit counters/);
    });
  });

  describe('methods', () => {
    beforeEach(() => {
      p = new addon.XdpProgram(BPF_OBJECT_PATH, OPTS);
    });
    afterEach(() => p?.close());

    it('throw TypeError for arguments of the wrong type', () => {
      const { key, value } = addon.layout;
      const k = Buffer.alloc(key.size);
      const v = Buffer.alloc(value.size);
      const bad: [keyof NativeXdpProgram, ...unknown[]][] = [
        ['attach', 1, 'auto', false],
        ['attach', 'lo', 5, false],
        ['attach', 'lo', 'auto', false, 7],
        ['attach'],
        ['hotPut', 'key', v],
        ['hotPut', k, Array.from(v)],
        ['hotDelete'],
        ['hotGet', {}],
        ['hitsRead', '0'],
        ['hitsRead', 0n],
        ['hitsReset', null],
        ['hitsReadAll', new Float32Array(OPTS.hotEntries)],
        ['hitsReadAll', []],
        ['setRuntime', true],
        ['setRuntime'],
      ];
      for (const [m, ...args] of bad) expect(() => call(p, m, ...args), `${m}(${args.map(String).join(', ')})`).toThrow(TypeError);
      expect(p.describe().open).toBe(true);
    });

    it('throw RangeError for values out of range', () => {
      const { key, value } = addon.layout;
      const bad: [keyof NativeXdpProgram, ...unknown[]][] = [
        ['hotPut', Buffer.alloc(key.size - 1), Buffer.alloc(value.size)],
        ['hotPut', Buffer.alloc(key.size), Buffer.alloc(value.size + 1)],
        ['hotGet', Buffer.alloc(key.size + 1)],
        ['hitsRead', OPTS.hotEntries],
        ['hitsRead', -1],
        ['hitsRead', 0.5],
        ['hitsReset', OPTS.hotEntries],
        ['hitsReadAll', new Float64Array(OPTS.hotEntries - 1)],
      ];
      for (const [m, ...args] of bad) expect(() => call(p, m, ...args), `${m}(${args.map(String).join(', ')})`).toThrow(RangeError);
      expect(p.hitsRead(OPTS.hotEntries - 1)).toBe(0n);
    });

    it('all but describe, detach and close throw once closed, and close twice is fine', () => {
      const fd = p.describe().progFd;
      expect(fd).toBeGreaterThanOrEqual(0);
      p.close();
      p.close();
      const k = Buffer.alloc(addon.layout.key.size);
      const v = Buffer.alloc(addon.layout.value.size);
      const calls: [keyof NativeXdpProgram, ...unknown[]][] = [
        ['attach', 'lo', 'generic', false],
        ['hotPut', k, v],
        ['hotDelete', k],
        ['hotGet', k],
        ['hotKeys'],
        ['hitsRead', 0],
        ['hitsReset', 0],
        ['hitsReadAll', new Float64Array(OPTS.hotEntries)],
        ['stats'],
        ['statsReset'],
        ['setRuntime', { answersOff: false }],
      ];
      for (const [m, ...args] of calls) expect(() => call(p, m, ...args), m).toThrow(/XdpProgram is closed/);
      expect(p.detach()).toBe(false);
      expect(p.describe()).toMatchObject({ open: false, progFd: -1 });
      // The fd the program had is closed (or, reused, no longer an XDP program).
      expect(() => addon.testRun(fd, frame)).toThrow();
    });
  });

  describe('testRun and benchRun', () => {
    beforeAll(() => {
      p = new addon.XdpProgram(BPF_OBJECT_PATH, OPTS);
    });
    afterAll(() => p?.close());

    it('run the program behind describe().progFd with the same results as before the move', () => {
      const fd = p.describe().progFd;
      const r = addon.testRun(fd, frame);
      expect(Object.keys(r).sort()).toEqual(['action', 'durationNs', 'frame']);
      expect(Object.values(XdpAction)).toContain(r.action);
      expect(Buffer.isBuffer(r.frame)).toBe(true);
      expect(typeof r.durationNs).toBe('number');
      expect(addon.testRun(fd, frame, 4).action).toBe(r.action);
      const b = addon.benchRun(fd, frame, 10);
      expect(Object.keys(b).sort()).toEqual(['action', 'actions', 'meanNs']);
      expect(b.action).toBe(r.action);
      expect(b.meanNs).toBeGreaterThanOrEqual(0);
      expect(b.actions).toHaveLength(5);
      expect(b.actions[r.action]).toBe(10);
    });

    it('benchRun cycles through an array of frames in order, counting each run\'s action', () => {
      const fd = p.describe().progFd;
      // Serve 198.18.0.1 (struct heimdall_local: n4, n6, v4[]): the query, from a source in
      // no access list, is answered REFUSED with XDP_TX; a frame cut inside its IPv4
      // header passes to the kernel.
      const local = Buffer.alloc(addon.layout.LOCAL_SIZE);
      local.writeUInt32LE(1, 0);
      local.set([198, 18, 0, 1], 8);
      p.edgePut(addon.layout.maps.local, Buffer.alloc(4), local);
      const short = frame.subarray(0, 20);
      const a = addon.testRun(fd, frame).action;
      const s = addon.testRun(fd, short).action;
      expect(a).toBe(XdpAction.TX);
      expect(s).toBe(XdpAction.PASS);
      // 7 runs over [frame, short, short]: frame at runs 0, 3, 6; short at the other four.
      const b = addon.benchRun(fd, [frame, short, short], 7);
      expect(b.actions[a]).toBe(3);
      expect(b.actions[s]).toBe(4);
      expect(b.action).toBe(a);
      const benchRun = addon.benchRun as unknown as Loose;
      expect(() => benchRun(fd, [], 1)).toThrow(RangeError);
      expect(() => benchRun(fd, [frame, 'x'], 1)).toThrow(TypeError);
    });

    it('throw TypeError or RangeError for bad arguments, and refuse an fd that is no XDP program', () => {
      const fd = p.describe().progFd;
      const testRun = addon.testRun as unknown as Loose;
      const benchRun = addon.benchRun as unknown as Loose;
      expect(() => testRun()).toThrow(TypeError);
      expect(() => testRun(String(fd), frame)).toThrow(TypeError);
      expect(() => testRun(fd, 'frame')).toThrow(TypeError);
      expect(() => testRun(fd, Array.from(frame))).toThrow(TypeError);
      expect(() => testRun(fd, frame, '1')).toThrow(TypeError);
      expect(() => testRun(-1, frame)).toThrow(RangeError);
      expect(() => testRun(fd, frame, -1)).toThrow(RangeError);
      expect(() => benchRun(fd, frame)).toThrow(TypeError);
      expect(() => benchRun(fd, frame, 0)).toThrow(RangeError);
      expect(() => benchRun(fd, null, 1)).toThrow(TypeError);
      expect(() => addon.testRun(0, frame)).toThrow('progFd 0 is not an open BPF program'); // stdin
      const mapFd = p.describe().xsksMapFd;
      expect(() => addon.testRun(mapFd, frame)).toThrow(`progFd ${mapFd} is not an XDP program`);
    });
  });
});

describePrivileged('the native XdpProgram when its constructor fails', { tools: ['clang'] }, () => {
  let addon: NativeAddon;
  let dir: string;
  /** heimdall.bpf.o with its XSKMAP under another name: the object loads, then the lookup of xsks_map fails. */
  let missingMapObject: string;

  beforeAll(() => {
    addon = loadAddon();
    dir = mkdtempSync(join(tmpdir(), 'hx-native-args-'));
    missingMapObject = join(dir, 'no-xsks-map.bpf.o');
    const bpfDir = join(BPF_OBJECT_PATH, '..');
    execFileSync('clang', [
      '-O2',
      '-g',
      '-target',
      'bpf',
      `-I/usr/include/${machine()}-linux-gnu`,
      '-Dxsks_map=xsks_gone',
      '-c',
      join(bpfDir, 'heimdall.bpf.c'),
      '-o',
      missingMapObject,
    ]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sees the fds of a loaded program, so a leak would show', async () => {
    const before = await settledFdCount();
    const p = new addon.XdpProgram(BPF_OBJECT_PATH, OPTS);
    // The program and its maps: at least hot, hits, stats, xsks, runtime.
    expect(fdCount()).toBeGreaterThanOrEqual(before + 6);
    p.close();
    expect(await settledFdCount()).toBe(before);
  });

  it('fails after the kernel load with ENOENT for a map the object lacks', () => {
    let err: (Error & { code?: string; syscall?: string }) | undefined;
    try {
      new addon.XdpProgram(missingMapObject, OPTS).close();
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/map xsks_map missing from the BPF object/);
    expect(err).toMatchObject({ code: 'ENOENT', syscall: 'bpf_object__find_map_by_name' });
  });

  it(`leaves no fd behind after ${FAILURES} failed constructions at each step`, async () => {
    const failures: [string, () => unknown][] = [
      ['unreadable path', () => new addon.XdpProgram(join(dir, 'absent.bpf.o'), OPTS)],
      ['object without the config (after open)', () => new addon.XdpProgram(BPF_PASS_OBJECT_PATH, OPTS)],
      ['hot map too large for per-CPU counters', () => new addon.XdpProgram(BPF_OBJECT_PATH, { ...OPTS, hotEntries: 2 ** 31 })],
      ['map missing (after load)', () => new addon.XdpProgram(missingMapObject, OPTS)],
    ];
    for (const [what, fail] of failures) {
      const before = await settledFdCount();
      for (let i = 0; i < FAILURES; i++) expect(fail, what).toThrow();
      expect(await settledFdCount(), what).toBe(before);
    }
  });
});
