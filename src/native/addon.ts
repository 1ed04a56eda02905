/**
 * The native addon's surface, described as TypeScript interfaces so that the code above
 * it can be handed a fake in unprivileged tests, and loaded lazily so that modules that
 * only need pure logic never require a built addon.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HeimdallError } from '../errors.js';
import type { NativeXskSocketConstructor } from './xsk-types.js';

/** Byte offsets of one struct as the C compiler laid it out. */
export interface StructLayout {
  size: number;
  [field: string]: number;
}

/** Everything the addon reads from bpf/heimdall.h. */
export interface Layout {
  HOT_NAME_MAX: number;
  HOT_RECORDS_MAX: number;
  HOT_RR_MAX: number;
  /** The small class (struct hot_small, in map hot_slots): what an answer must fit to be in it. */
  HOT_SMALL_NAME_MAX: number;
  HOT_SMALL_RECORDS_MAX: number;
  HOT_SMALL_RR_MAX: number;
  HOT_ENTRIES_DEFAULT: number;
  MAX_QUEUES: number;
  MAX_PORTS: number;
  HOT_KEY_DO: number;
  HOT_KEY_CD: number;
  HOT_VAL_RCODE_MASK: number;
  HOT_VAL_AD: number;
  HOT_HASH_MUL1: bigint;
  HOT_HASH_MUL2: bigint;
  PROG_NAME: string;
  key: StructLayout;
  /** struct hot_value, the large class (map hot_map). */
  value: StructLayout;
  /** struct hot_small: its size and where name, ttl_off and records sit; the head's fields are at value's offsets. */
  small: StructLayout;
  statNames: string[];
  statHelp: string[];
  maps: Record<'hot' | 'hotSlots' | 'hits' | 'stats' | 'xsks' | 'runtime' | 'acl4' | 'acl6' | 'local' | 'acl16' | 'rrl', string>;
  RRL_BUCKETS_DEFAULT: number;
  RRL_BURST: number;
  RRL_UNIT_SHIFT: number;
  RRL_STAMP_SHIFT: number;
  RRL_STAMP_AHEAD: number;
  RRL_WINDOW_MAX: number;
  RRL_BUCKET_SIZE: number;
  RRL_MUL1: number;
  RRL_MUL2: number;
  RRL_TOKEN_ERROR: number;
  RRL_TOKEN_ALL: number;
  RRL_CLASS: Record<'answer' | 'nodata' | 'nxdomain' | 'error', number>;
  ACL: { refuse: number; allow: number; deny: number; rrlExempt: number; refine: number; max: number; table16Entries: number; table16Stride: number };
  /** Addresses served per family, and the size of struct heimdall_local. */
  LOCAL_MAX: number;
  LOCAL_SIZE: number;
  /** Source port -> service name: the ports the program drops queries from. */
  guardedPorts: Record<string, string>;
}

/** The XDP program's runtime settings (struct heimdall_runtime). */
export interface NativeRuntime {
  answersOff: boolean;
  /** In the buckets' units (bpf/heimdall.h RRL_UNIT_SHIFT). */
  rrlCost: number;
  rrlAllCost: number;
  rrlDebt: number;
  rrlSlip: number;
  rrlV4Prefix: number;
  rrlV6Prefix: number;
}

export interface NativeProgramOptions {
  ports: number[];
  udpSize: number;
  hotEntries: number;
  /** Rate-limit buckets, a power of two. */
  rrlBuckets: number;
}

export interface NativeAttachResult {
  ifindex: number;
  mode: 'native' | 'generic';
  replaced: { id: number; name: string } | null;
  /** Through libxdp's dispatcher: its id, heimdall's program in it and its place in the run order (1-based). */
  dispatcher: { id: number; progId: number; position: number; count: number } | null;
  /** Attached directly although a dispatcher was allowed: why. */
  directReason: string | null;
}

export interface NativeTestRun {
  action: number;
  frame: Buffer;
  durationNs: number;
}

export interface NativeBenchRun {
  action: number;
  meanNs: number;
  /** Runs that ended in each XDP action (index XdpAction.ABORTED..REDIRECT). */
  actions: number[];
}

export interface NativeXdpProgram {
  attach(ifname: string, mode: 'native' | 'generic' | 'auto', force: boolean, how: 'auto' | 'dispatcher' | 'direct'): NativeAttachResult;
  detach(): boolean;
  /**
   * Writes a hot entry and says which class holds it: a small value (layout.small.size)
   * goes to its slot in hot_slots, or to hot_map in the large layout when its window of
   * slots is full; a large one (layout.value.size) to hot_map.
   */
  hotPut(key: Buffer, value: Buffer): 'small' | 'large';
  /** Removes the key from one class, or from both; true when a map had it. */
  hotDelete(key: Buffer, cls?: 'small' | 'large'): boolean;
  hotGet(key: Buffer): Buffer | null;
  hotKeys(): Buffer[];
  hitsRead(slot: number): bigint;
  hitsReset(slot: number): void;
  /** Every slot's hit counter (summed over CPUs) into out[slot]; returns the slots read. */
  hitsReadAll(out: Float64Array): number;
  stats(): BigUint64Array;
  statsReset(): void;
  setRuntime(rt: NativeRuntime): void;
  /** One entry of an access-list trie or own-address set, by map name (layout.maps). */
  edgePut(map: string, key: Buffer, value: Buffer): void;
  edgeDelete(map: string, key: Buffer): boolean;
  edgeKeys(map: string): Buffer[];
  close(): void;
  describe(): {
    open: boolean;
    progId: number;
    /** The program's fd in this process, for testRun/benchRun; -1 once closed. */
    progFd: number;
    ifindex: number;
    /** The program running on the interface: this one's id, or its copy's in a dispatcher; 0 when not attached. */
    attachedProgId: number;
    viaDispatcher: boolean;
    hotCapacity: number;
    /** Slots of hot_slots, the small entries' table (a power of two); 0 once closed. */
    hotSlots: number;
    xsksMapFd: number;
    /** The rate-limit buckets' map, for mapRegion (any thread of this process). */
    rrlMapFd: number;
    /** The small hot entries' table (hot_slots), for mapRegion: tests that write it from another thread. */
    hotSlotsMapFd: number;
    /** The IPv4 access table by /16 (acl16), for mapRegion. */
    acl16MapFd: number;
    rrlBuckets: number;
    rrlSeed: number;
    cpus: number;
    hashSeed: bigint;
  };
}

export interface XdpStatus {
  ifindex: number;
  progId: number;
  name: string;
  mode: 'native' | 'generic' | 'hw' | 'none';
  /** A libxdp dispatcher: its programs in run order. */
  dispatcher: { id: number; programs: { id: number; name: string; priority: number }[] } | null;
}

export interface NativeAddon {
  XdpProgram: new (path: string, options: NativeProgramOptions) => NativeXdpProgram;
  XskSocket: NativeXskSocketConstructor;
  layout: Layout;
  monotonicNs(): bigint;
  xdpStatus(ifname: string): XdpStatus;
  detachStale(ifname: string): boolean;
  /** Why this process cannot attach through libxdp's dispatcher ('' when it can); asks the kernel with the object at probeObject (BPF_PASS_OBJECT_PATH). */
  dispatcherUnavailable(probeObject: string): string;
  /** BPF_PROG_TEST_RUN of the XDP program behind progFd (XdpProgram.describe().progFd), for tests and benchmarks. */
  testRun(progFd: number, frame: Buffer, repeat?: number): NativeTestRun;
  /** `iterations` test runs, each on a fresh copy of the frame (cycling through an array of frames); the kernel's mean time per run. */
  benchRun(progFd: number, frame: Buffer | readonly Buffer[], iterations: number): NativeBenchRun;
  /** A shared mapping of an mmapable BPF map of this process (the rate-limit buckets). */
  mapRegion(fd: number, bytes: number): ArrayBuffer;
  /** The CPUs thread `tid` of this process may run on (0: the calling thread); threads it creates later inherit them. */
  setAffinity(tid: number, cpus: readonly number[]): void;
  /** What the kernel dropped for socket fd of this process (SO_MEMINFO's drops); for a TCP listener, connections refused with its accept queue full. */
  socketDrops(fd: number): number;
}

/** Paths of build outputs, the same from src/ (tests, tsx) and dist/ (the CLI). */
export const ADDON_PATH = fileURLToPath(new URL('../../build/Release/heimdall.node', import.meta.url));
export const BPF_OBJECT_PATH = fileURLToPath(new URL('../../bpf/heimdall.bpf.o', import.meta.url));
export const BPF_PASS_OBJECT_PATH = fileURLToPath(new URL('../../bpf/xdp_pass.bpf.o', import.meta.url));

let cached: NativeAddon | undefined;

/** Loads the addon once per thread; a missing build is an operator error, not a crash. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  if (!existsSync(ADDON_PATH)) {
    throw new HeimdallError('E_NOT_BUILT', `native addon not built (${ADDON_PATH}): run 'npm run build'`);
  }
  const require = createRequire(import.meta.url);
  cached = require(ADDON_PATH) as NativeAddon;
  return cached;
}
