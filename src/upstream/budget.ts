/**
 * The process-wide budget of questions in flight upstream, shared by every engine host
 * (the main thread's and each AF_XDP worker's) through one Int32Array over a
 * SharedArrayBuffer, as the ask counts are (src/hot/asks.ts); and, in the same buffer,
 * each client network's share of it.
 *
 * Layout (Int32 slots):
 *   [0] questions in flight now, every engine together
 *   [1] the limit (written once by the main thread; workers read it)
 *   [2 + engine id] what that engine holds now
 *   then a header for the networks (per-network limit, table size, rows, hash seeds),
 *   the network table (NET_SLOTS counters), and one row of NET_SLOTS per engine.
 *
 * take() and give() are one atomic add each, on the miss path only (never on a cache
 * hit). The per-engine slots exist so a worker that dies while holding part of the
 * budget does not shrink it for good: the main thread gives back what the dead engine
 * held (forget()) before its replacement starts.
 *
 * Client networks (a /24 or /56: src/net/addr.ts prefixKey). A network may hold at most
 * `perNetwork` of the process's questions (default a quarter of the limit), whichever
 * engines started them: RSS spreads one network's addresses over every queue, and a
 * share counted per engine let it hold engines × share, the whole budget with 4 engines
 * or more. The count is a table of counters in shared memory indexed by a seeded hash of
 * the prefix key, two counters per network (count-min): a question adds one to both, and
 * a network is at its share when the smaller of its two reads perNetwork. A counter is the
 * sum of every network hashed to it, so a collision can only make the limit stricter for
 * the networks that collide, never let one hold more than its share; both counters must
 * collide for it to bite. Why not exact entries (a key per entry, open addressing): taking
 * and freeing an entry across threads needs a lock or tombstones, and a full table needs a
 * rule of its own; the counters need neither and are one atomic add each. How strict a
 * collision can be: the networks at their share number at most limit / perNetwork (4 by
 * default), so at most 8 counters are full; a network is refused outright only if both of
 * its counters are among them, about (8 / NET_SLOTS)^2, 6e-5 at the default 1,024 slots.
 * The seed is random per process (hash-flooding a chosen victim needs it).
 *
 * Each engine also records its takes in its own row, so forget() gives back what a dead
 * engine's networks held. A take adds to the engine's row first and the table second: a
 * worker terminated between the two leaves the table one lower than the rows say, so
 * after forget() that network's counters read at most one less than it holds (laxer by
 * one question per death), never a leak that shrinks a network's share for good.
 */
import { randomInt } from 'node:crypto';

const IN_USE = 0;
const LIMIT = 1;
const FIRST_ENGINE = 2;
/** Engine ids 0..MAX_ENGINE_ID (0 is the main thread, 1..64 the workers). */
export const MAX_ENGINE_ID = 64;
const PER_NET = FIRST_ENGINE + MAX_ENGINE_ID + 1;
const NET_SLOTS_AT = PER_NET + 1;
const ROWS_AT = PER_NET + 2;
const SEED_A = PER_NET + 3;
const SEED_B = PER_NET + 4;
const NET_TABLE = PER_NET + 5;

/** Counters of the network table for a process limit: a power of two, at least limit / 2, 256..65536. */
export function networkSlots(limit: number): number {
  let n = 256;
  while (n < limit / 2 && n < 65_536) n *= 2;
  return n;
}

/** Bytes of the buffer for `limit` and `engines` rows (the memory bound counts it). */
export function sharedInflightBytes(limit: number, engines = MAX_ENGINE_ID + 1): number {
  return (NET_TABLE + networkSlots(limit) * (1 + engines)) * 4;
}

/** A 32-bit hash of a prefix key's characters, seeded. */
function hashKey(key: string, seed: number): number {
  let h = seed ^ Math.imul(key.length, 0x9e3779b1);
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 15;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export interface SharedInflightOptions {
  limit: number;
  /** Most one client network may hold, every engine together (default limit / 4, at least 1). */
  perNetwork?: number;
  /** Engine ids in use are 0..engines-1 (default MAX_ENGINE_ID + 1): one row each. */
  engines?: number;
}

export class SharedInflight {
  private readonly a: Int32Array;
  private readonly slots: number;
  private readonly rows: number;
  private readonly seedA: number;
  private readonly seedB: number;

  /** Over `buffer` (from another thread's SharedInflight.buffer), or a fresh one with `limit`. */
  constructor(init: SharedInflightOptions | { buffer: SharedArrayBuffer }) {
    if ('buffer' in init) {
      this.a = new Int32Array(init.buffer);
    } else {
      if (!Number.isInteger(init.limit) || init.limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${String(init.limit)}`);
      const per = init.perNetwork ?? Math.max(1, Math.floor(init.limit / 4));
      if (!Number.isInteger(per) || per < 1) throw new RangeError(`per-network in-flight limit must be a positive integer, got ${String(init.perNetwork)}`);
      const engines = init.engines ?? MAX_ENGINE_ID + 1;
      if (!Number.isInteger(engines) || engines < 1 || engines > MAX_ENGINE_ID + 1) throw new RangeError(`engines must be 1..${MAX_ENGINE_ID + 1}, got ${String(init.engines)}`);
      this.a = new Int32Array(new SharedArrayBuffer(sharedInflightBytes(init.limit, engines)));
      this.a[LIMIT] = init.limit;
      this.a[PER_NET] = per;
      this.a[NET_SLOTS_AT] = networkSlots(init.limit);
      this.a[ROWS_AT] = engines;
      this.a[SEED_A] = randomInt(0x7fffffff);
      this.a[SEED_B] = randomInt(0x7fffffff);
    }
    this.slots = this.a[NET_SLOTS_AT]!;
    this.rows = this.a[ROWS_AT]!;
    this.seedA = this.a[SEED_A]!;
    this.seedB = this.a[SEED_B]!;
  }

  get buffer(): SharedArrayBuffer {
    return this.a.buffer as SharedArrayBuffer;
  }

  get limit(): number {
    return this.a[LIMIT]!;
  }

  /** Most questions one client network may hold in the whole process. */
  get perNetwork(): number {
    return this.a[PER_NET]!;
  }

  /** Engine ids that have a row (0..engines-1). */
  get engines(): number {
    return this.rows;
  }

  /** Questions in flight in the whole process now. */
  get inUse(): number {
    return Atomics.load(this.a, IN_USE);
  }

  /** What engine `id` holds now. */
  held(id: number): number {
    return Atomics.load(this.a, FIRST_ENGINE + id);
  }

  /** One question for engine `id`, or false when the process is at its limit. */
  take(id: number): boolean {
    const before = Atomics.add(this.a, IN_USE, 1);
    if (before >= this.a[LIMIT]!) {
      Atomics.sub(this.a, IN_USE, 1);
      return false;
    }
    Atomics.add(this.a, FIRST_ENGINE + id, 1);
    return true;
  }

  give(id: number): void {
    Atomics.sub(this.a, FIRST_ENGINE + id, 1);
    Atomics.sub(this.a, IN_USE, 1);
  }

  /** The two counters of network key `client`, packed (for takeNetwork/giveNetwork). */
  networkOf(client: string): number {
    const m = this.slots - 1;
    const x = hashKey(client, this.seedA) & m;
    let y = hashKey(client, this.seedB) & m;
    if (y === x) y ^= 1; // two different counters, or the network would count double
    return (x | (y << 16)) >>> 0;
  }

  /** One question of network `net` (from networkOf) for engine `id`, or false when the network holds its share. */
  takeNetwork(id: number, net: number): boolean {
    const a = this.a;
    const x = net & 0xffff;
    const y = net >>> 16;
    const row = NET_TABLE + this.slots * (1 + id);
    // The engine's row first (the header says why), then the table, checked as it is added to.
    Atomics.add(a, row + x, 1);
    Atomics.add(a, row + y, 1);
    const cx = Atomics.add(a, NET_TABLE + x, 1);
    const cy = Atomics.add(a, NET_TABLE + y, 1);
    if (Math.min(cx, cy) < a[PER_NET]!) return true;
    this.giveNetwork(id, net);
    return false;
  }

  /** Gives back one question of network `net` for engine `id`: the table first, then the engine's row. */
  giveNetwork(id: number, net: number): void {
    const a = this.a;
    const x = net & 0xffff;
    const y = net >>> 16;
    const row = NET_TABLE + this.slots * (1 + id);
    Atomics.sub(a, NET_TABLE + x, 1);
    Atomics.sub(a, NET_TABLE + y, 1);
    Atomics.sub(a, row + x, 1);
    Atomics.sub(a, row + y, 1);
  }

  /** Questions network key `client` holds now, as the table reads it (at least the true count). */
  networkHeld(client: string): number {
    const net = this.networkOf(client);
    return Math.min(Atomics.load(this.a, NET_TABLE + (net & 0xffff)), Atomics.load(this.a, NET_TABLE + (net >>> 16)));
  }

  /** Engine `id` is gone (its thread exited): what it held, and its networks held, is free again. */
  forget(id: number): void {
    const held = Atomics.exchange(this.a, FIRST_ENGINE + id, 0);
    if (held > 0) Atomics.sub(this.a, IN_USE, held);
    if (id >= this.rows) return;
    const row = NET_TABLE + this.slots * (1 + id);
    for (let i = 0; i < this.slots; i++) {
      const n = Atomics.exchange(this.a, row + i, 0);
      if (n !== 0) Atomics.sub(this.a, NET_TABLE + i, n);
    }
  }
}

/** What one engine's forwarder uses of the shared budget. */
export interface InflightShare {
  take(): boolean;
  give(): void;
  /** The network table's counters for client prefix key `client` (computed once per question). */
  networkOf(client: string): number;
  /** One question for that network, or false when it holds its share of the process. */
  takeNetwork(net: number): boolean;
  giveNetwork(net: number): void;
}

/** The share of engine `id` in `shared`. */
export function engineShare(shared: SharedInflight, id: number): InflightShare {
  if (!Number.isInteger(id) || id < 0 || id > MAX_ENGINE_ID) throw new RangeError(`engine id must be 0..${MAX_ENGINE_ID}, got ${String(id)}`);
  if (id >= shared.engines) throw new RangeError(`engine id ${id} has no row: the budget was made for ${shared.engines} engines`);
  return {
    take: () => shared.take(id),
    give: () => shared.give(id),
    networkOf: (client) => shared.networkOf(client),
    takeNetwork: (net) => shared.takeNetwork(id, net),
    giveNetwork: (net) => shared.giveNetwork(id, net),
  };
}
