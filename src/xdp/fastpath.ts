/**
 * FastPath: the typed face of the loaded XDP program. It validates arguments before
 * they reach the addon, owns the hot map's mirror (which keys are in it, under which
 * hit-counter slot) and names the kernel's counters.
 */
import { BPF_OBJECT_PATH, loadAddon, type Layout, type NativeAddon, type NativeAttachResult, type NativeXdpProgram } from '../native/addon.js';
import type { CachedAnswer } from '../dns/answer.js';
import { HeimdallError } from '../errors.js';
import { ATTACH_MODES, XDP_ATTACH, type AttachMode, type XdpAttach } from '../config.js';
import { encodeHotEntry, hotKeyFromCacheKey, hotScratch, type HotEntry, type HotScratch } from './hot-entry.js';
import type { AccessList } from '../edge/acl.js';
import { RRL_BUCKET_BYTES, RRL_DEFAULTS, rrlRuntime, type RrlSettings } from '../edge/rrl.js';
import type { Addr } from '../net/addr.js';

export type { AttachMode } from '../config.js';

export interface FastPathOptions {
  /** Path of the BPF object; defaults to the built bpf/heimdall.bpf.o. */
  objectPath?: string;
  /** UDP ports answered (default [53]). */
  ports?: number[];
  /** Our EDNS UDP size and the largest reply payload XDP sends (default 1232). */
  udpSize?: number;
  /** Capacity of the hot map (default from bpf/heimdall.h). */
  hotEntries?: number;
  /** Rate-limit buckets, a power of two (default from bpf/heimdall.h). */
  rrlBuckets?: number;
}

/** XDP actions, from the kernel's enum xdp_action. */
export const XdpAction = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;

export type XdpStats = Record<string, bigint>;

function checkPort(p: number): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`port must be 1..65535, got ${p}`);
}

export class FastPath {
  readonly layout: Layout;
  private readonly native: NativeXdpProgram;
  /**
   * key (latin1) -> hit slot × 2, plus 1 when the entry is in the small class (hot_slots)
   * rather than the large (hot_map): exactly what is in the kernel's hot maps. One map,
   * not two: a promotion burst grows and probes each of them once per name.
   */
  private readonly placed = new Map<string, number>();
  /** hot-map key (latin1) -> the cache key (latin1) whose entry sits under it. */
  private readonly owners = new Map<string, string>();
  /** Where put() encodes (the addon copies what it writes into the kernel). */
  private readonly scratch: HotScratch;
  /** Seed of the hot key's name hash, chosen by the addon at load. */
  readonly hashSeed: bigint;
  private readonly freeSlots: number[] = [];
  private readonly hitsBuf: Float64Array;
  private attachedTo: string | null = null;
  private answersOn = true;
  /** Rate limiting starts off; the service turns it on with its settings. */
  private rrl: RrlSettings = { ...RRL_DEFAULTS, rate: 0 };

  private constructor(
    private readonly addon: NativeAddon,
    native: NativeXdpProgram,
    readonly capacity: number,
  ) {
    this.layout = addon.layout;
    this.native = native;
    for (let s = capacity - 1; s >= 0; s--) this.freeSlots.push(s);
    this.hitsBuf = new Float64Array(capacity);
    this.hashSeed = native.describe().hashSeed;
    this.scratch = hotScratch(this.layout);
  }

  static open(opts: FastPathOptions = {}, addon: NativeAddon = loadAddon()): FastPath {
    const ports = opts.ports ?? [53];
    if (ports.length < 1 || ports.length > addon.layout.MAX_PORTS) {
      throw new RangeError(`between 1 and ${addon.layout.MAX_PORTS} ports`);
    }
    ports.forEach(checkPort);
    const udpSize = opts.udpSize ?? 1232;
    if (!Number.isInteger(udpSize) || udpSize < 512 || udpSize > 65535) throw new RangeError('udpSize must be 512..65535');
    const hotEntries = opts.hotEntries ?? addon.layout.HOT_ENTRIES_DEFAULT;
    if (!Number.isInteger(hotEntries) || hotEntries < 1) throw new RangeError('hotEntries must be a positive integer');
    const rrlBuckets = opts.rrlBuckets ?? addon.layout.RRL_BUCKETS_DEFAULT;
    if (!Number.isInteger(rrlBuckets) || rrlBuckets < 1 || (rrlBuckets & (rrlBuckets - 1)) !== 0) throw new RangeError('rrlBuckets must be a power of two');
    const native = new addon.XdpProgram(opts.objectPath ?? BPF_OBJECT_PATH, { ports, udpSize, hotEntries, rrlBuckets });
    return new FastPath(addon, native, hotEntries);
  }

  /**
   * Attaches the program: `how` 'dispatcher' through libxdp's dispatcher (other XDP
   * programs keep running beside it, in run-priority order), 'direct' alone, 'auto' the
   * dispatcher where it can, else direct (the result says why).
   */
  attach(ifname: string, mode: AttachMode = 'auto', force = false, how: XdpAttach = 'direct'): NativeAttachResult {
    if (typeof ifname !== 'string' || ifname.length === 0 || ifname.length > 15) throw new TypeError('interface name must be 1..15 characters');
    if (!ATTACH_MODES.includes(mode)) throw new RangeError('mode must be native, generic or auto');
    if (!XDP_ATTACH.includes(how)) throw new RangeError('how must be auto, dispatcher or direct');
    const r = this.native.attach(ifname, mode, force, how);
    this.attachedTo = ifname;
    return r;
  }

  /** Removes the program from its interface if it is still ours there. */
  detach(): boolean {
    if (!this.attachedTo) return false;
    this.attachedTo = null;
    return this.native.detach();
  }

  get attachedInterface(): string | null {
    return this.attachedTo;
  }

  /** Turns XDP answers on or off at run time (off: every query goes to userspace). */
  setAnswers(on: boolean): void {
    this.answersOn = on;
    this.writeRuntime();
  }

  /** Rate limiting of the program's responses (rate 0: off); userspace shares the buckets. */
  setRateLimit(s: RrlSettings): void {
    this.rrl = { ...s };
    this.writeRuntime();
  }

  private writeRuntime(): void {
    this.native.setRuntime({ answersOff: !this.answersOn, ...rrlRuntime(this.rrl) });
  }

  /** The rate-limit buckets, mapped (see src/edge/rrl.ts); workers map their own from the fd. */
  rrlRegion(): { region: ArrayBuffer; buckets: number; seed: number } {
    const d = this.native.describe();
    return { region: this.addon.mapRegion(d.rrlMapFd, d.rrlBuckets * RRL_BUCKET_BYTES), buckets: d.rrlBuckets, seed: d.rrlSeed };
  }

  /** Forgets every client's rate-limit history (all buckets full again). */
  clearRateLimit(): void {
    new Uint8Array(this.rrlRegion().region).fill(0);
  }

  /**
   * Loads the access lists into the program's tries: new entries first, then the ones
   * no longer wanted, so no source is ever between two policies with neither.
   */
  setAccessList(acl: AccessList): void {
    const want = new Map<string, { map: string; key: Buffer; value: Buffer }>();
    for (const e of acl.list()) {
      const v4 = e.cidr.family === 4;
      const key = Buffer.alloc(v4 ? 8 : 20);
      key.writeUInt32LE(e.cidr.len, 0);
      key.set(e.cidr.bytes.subarray(0, v4 ? 4 : 16), 4);
      const value = Buffer.from([e.value, 0, 0, 0]);
      const map = v4 ? this.layout.maps.acl4 : this.layout.maps.acl6;
      want.set(`${map}/${key.toString('hex')}`, { map, key, value });
    }
    // One trie per family, each of ACL.max entries (the config refuses more up front, src/config.ts).
    for (const map of [this.layout.maps.acl4, this.layout.maps.acl6]) {
      let n = 0;
      for (const w of want.values()) if (w.map === map) n++;
      if (n > this.layout.ACL.max) throw new HeimdallError('E_BAD_OPTION', `access lists hold at most ${this.layout.ACL.max} prefixes per family, got ${n} for ${map}`);
    }
    for (const w of want.values()) this.native.edgePut(w.map, w.key, w.value);
    // The IPv4 table by /16: a block's own answer, or "refine" where a longer prefix lies
    // inside it (bpf/heimdall.h ACL16_ENTRIES). Written after the tries it defers to.
    const { table16Entries: n, table16Stride: stride, refine } = this.layout.ACL;
    const refined = new Set<number>();
    for (const e of acl.list()) {
      if (e.cidr.family === 4 && e.cidr.len > 16) refined.add((e.cidr.bytes[0]! << 8) | e.cidr.bytes[1]!);
    }
    const table = new Uint8Array(this.acl16Region());
    const probe: Addr = { family: 4, bytes: new Uint8Array(16) };
    for (let b = 0; b < n; b++) {
      probe.bytes[0] = b >> 8;
      probe.bytes[1] = b & 0xff;
      table[b * stride] = refined.has(b) ? refine : acl.decide(probe);
    }
    for (const map of [this.layout.maps.acl4, this.layout.maps.acl6]) {
      for (const key of this.native.edgeKeys(map)) if (!want.has(`${map}/${key.toString('hex')}`)) this.native.edgeDelete(map, key);
    }
  }

  private acl16?: ArrayBuffer;

  private acl16Region(): ArrayBuffer {
    const { table16Entries, table16Stride } = this.layout.ACL;
    this.acl16 ??= this.addon.mapRegion(this.native.describe().acl16MapFd, table16Entries * table16Stride);
    return this.acl16;
  }

  /** The destinations the program answers for (every other one passes to the kernel). */
  setLocalAddresses(addrs: readonly Addr[]): void {
    const max = this.layout.LOCAL_MAX;
    const v4 = addrs.filter((a) => a.family === 4);
    const v6 = addrs.filter((a) => a.family === 6);
    if (v4.length > max || v6.length > max) {
      throw new HeimdallError('E_BAD_OPTION', `at most ${max} IPv4 and ${max} IPv6 addresses can be served; name the ones to serve with --listen`);
    }
    // struct heimdall_local: n4, n6, v4[max] and v6[max][16 bytes], addresses in network order.
    const value = Buffer.alloc(this.layout.LOCAL_SIZE);
    value.writeUInt32LE(v4.length, 0);
    value.writeUInt32LE(v6.length, 4);
    v4.forEach((a, i) => value.set(a.bytes.subarray(0, 4), 8 + 4 * i));
    v6.forEach((a, i) => value.set(a.bytes.subarray(0, 16), 8 + 4 * max + 16 * i));
    this.native.edgePut(this.layout.maps.local, Buffer.alloc(4), value);
  }

  /** Writes (or rewrites) an answer into the hot map. Returns its hit slot. */
  put(answer: CachedAnswer): number {
    const keyId = this.keyId(answer);
    const was = this.placed.get(keyId);
    const hotKey = hotKeyFromCacheKey(answer.key, this.layout, this.hashSeed, this.scratch.key);
    const hk = hotKey.toString('latin1');
    const owner = this.owners.get(hk);
    if (owner !== undefined && owner !== keyId) {
      // Two names with one 64-bit hash (and type, class, DO): the first keeps the entry,
      // and the program would send the second to userspace anyway (name mismatch).
      throw new HeimdallError('E_HOT_COLLISION', 'hot map key already holds another name');
    }
    let slot = was === undefined ? this.freeSlots.pop() : was >>> 1;
    if (slot === undefined) throw new HeimdallError('E_HOT_FULL', `hot map is full (${this.capacity} entries)`);
    let small: boolean;
    try {
      const entry: HotEntry = encodeHotEntry(answer, slot, this.layout, this.hashSeed, hotKey, this.scratch);
      if (was === undefined) this.native.hitsReset(slot);
      // A small entry whose window of slots is full lands in hot_map, large.
      small = this.native.hotPut(entry.key, entry.value) === 'small';
    } catch (e) {
      if (was === undefined) this.freeSlots.push(slot);
      throw e;
    }
    if (owner === undefined) this.owners.set(hk, keyId);
    // An answer that changed class on replace: the new entry is written first, so the
    // name is never without one; then the old class's copy goes (the program looks in
    // hot_slots first, so until then a small copy, old or new, is what it serves). If
    // that delete fails, the name stays recorded in its old class: the next put of it
    // tries the delete again and delete() clears both classes, so an old small copy
    // cannot go on shadowing the new answer unnoticed (the caller counts the error).
    if (was !== undefined && (was & 1) !== (small ? 1 : 0)) this.native.hotDelete(hotKey, was & 1 ? 'small' : 'large');
    this.placed.set(keyId, slot * 2 + (small ? 1 : 0));
    return slot;
  }

  /** Removes the entry of a cache key (see src/dns/key.ts). Returns whether the kernel had it. */
  delete(cacheKey: Uint8Array): boolean {
    const keyId = Buffer.from(cacheKey.buffer, cacheKey.byteOffset, cacheKey.byteLength).toString('latin1');
    const hotKey = hotKeyFromCacheKey(cacheKey, this.layout, this.hashSeed, this.scratch.key);
    const hk = hotKey.toString('latin1');
    const owner = this.owners.get(hk);
    if (owner !== undefined && owner !== keyId) return false; // the entry there is another name's
    const was = this.placed.get(keyId);
    const removed = this.native.hotDelete(hotKey); // from both classes
    this.owners.delete(hk);
    if (was !== undefined) {
      this.placed.delete(keyId);
      this.freeSlots.push(was >>> 1);
    }
    return removed;
  }

  /** Raw key/value write (the class by the value's size), for tests of the program's own checks. */
  putRaw(key: Buffer, value: Buffer): void {
    this.native.hotPut(key, value);
  }

  /** The hit slot of a cache key in the hot map, if it is there. */
  slotOf(cacheKey: Uint8Array): number | undefined {
    const was = this.placed.get(Buffer.from(cacheKey.buffer, cacheKey.byteOffset, cacheKey.byteLength).toString('latin1'));
    return was === undefined ? undefined : was >>> 1;
  }

  /** Hits the kernel has served for the entry in a slot. */
  hits(slot: number): bigint {
    return this.native.hitsRead(slot);
  }

  /**
   * Hits the kernel has served in every slot, indexed by slot, read from the mapped
   * counters (no syscall). The array is reused: it is valid until the next call.
   */
  allHits(): Float64Array {
    this.native.hitsReadAll(this.hitsBuf);
    return this.hitsBuf;
  }

  hotKeys(): Buffer[] {
    return this.native.hotKeys();
  }

  get size(): number {
    return this.placed.size;
  }

  /** The kernel's outcome counters by name, summed over CPUs. */
  stats(): XdpStats {
    const raw = this.native.stats();
    const out: XdpStats = {};
    this.layout.statNames.forEach((n, i) => {
      out[n] = raw[i] ?? 0n;
    });
    return out;
  }

  resetStats(): void {
    this.native.statsReset();
  }

  testRun(frame: Buffer, repeat = 1): { action: number; frame: Buffer; durationNs: number } {
    if (!Buffer.isBuffer(frame)) throw new TypeError('frame must be a Buffer');
    // The fd is asked for on every run, never kept: after close() its number can be reused.
    const { open, progFd } = this.native.describe();
    if (!open) throw new Error('XdpProgram is closed');
    return this.addon.testRun(progFd, frame, repeat);
  }

  /** `iterations` test runs on fresh copies of the frame, or cycling through a batch of frames. */
  benchRun(frame: Buffer | readonly Buffer[], iterations: number): { action: number; meanNs: number; actions: number[] } {
    if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('iterations must be a positive integer');
    const { open, progFd } = this.native.describe();
    if (!open) throw new Error('XdpProgram is closed');
    return this.addon.benchRun(progFd, frame, iterations);
  }

  describe(): ReturnType<NativeXdpProgram['describe']> {
    return this.native.describe();
  }

  /** CLOCK_MONOTONIC in ns, the program's clock. */
  nowNs(): number {
    return Number(this.addon.monotonicNs());
  }

  close(): void {
    this.native.close();
  }

  private keyId(a: CachedAnswer): string {
    return Buffer.from(a.key.buffer, a.key.byteOffset, a.key.byteLength).toString('latin1');
  }
}

/** Sums of the outcome counters by kind: answered, passed to the kernel, sent to userspace. */
export function summarizeStats(s: XdpStats): { tx: bigint; pass: bigint; user: bigint; drop: bigint } {
  let tx = 0n;
  let pass = 0n;
  let user = 0n;
  let drop = 0n;
  for (const [name, v] of Object.entries(s)) {
    if (name === 'TX' || name.startsWith('TX_')) tx += v;
    else if (name.startsWith('PASS_')) pass += v;
    else if (name.startsWith('USER_')) user += v;
    else if (name.startsWith('DROP_')) drop += v;
  }
  return { tx, pass, user, drop };
}
