/**
 * One upstream fetch per name across every engine: a table of the questions being
 * fetched now, in shared memory (one SharedArrayBuffer, typed arrays, Atomics), so that
 * a miss on one thread for a name another thread is already fetching waits for that
 * fetch instead of asking upstream again. Each Forwarder still coalesces within its own
 * engine (forwarder.ts); this table does it between engines.
 *
 *   claim(key) ── entry for this key held? ── yes: a Promise of the owner's outcome
 *       │ no                                        (cached: look the cache up again;
 *       ├─ bucket full, or its lock not had in       anything else: fetch on your own)
 *       │  lockWaitMs ─────────────────────► SOLO: fetch on your own (counted)
 *       ▼
 *   a ticket: you own the fetch; release(ticket, outcome) when the answer is cached
 *   (or is not), which wakes every waiter
 *
 * Layout: `capacity` entries (a power of two) in buckets of WAYS; a key lives in the
 * bucket of its keyHash, in any free way. Per bucket one lock word; per entry, in
 * parallel Int32 arrays: state, hash, key length, owner tag, waiters of this generation,
 * outcome history (two words); a Float64 claim time; the key bytes (MAX_KEY_LEN, padded).
 *
 *   state = generation (28 bits) << 3 | code (3 bits)
 *     code FREE (never used), BUSY (an owner is fetching), or the outcome the entry's
 *     last generation ended with (CACHED, UNCACHED, FAILED, OWNER_DIED, EXPIRED), which
 *     also means free. A claim takes a free entry as generation + 1.
 *
 * Rules that make the races safe:
 * - A free entry changes only under its bucket's lock (a claim writes the key, owner
 *   and time, then stores BUSY), and the lock is held while the bucket is searched:
 *   two threads can never both find a key absent and both take an entry for it.
 * - An entry leaves BUSY by one compare-and-swap from BUSY(g) to an outcome of g, made
 *   by exactly one of: its owner's release, reclaim() of a dead owner's entries, or the
 *   deadline (a waiter that timed out, or a claim that met the entry past its deadline).
 *   Whoever loses the CAS does nothing; the winner notifies the state word (a release
 *   only if a waiter was counted: a joiner counts itself, under the lock, before it
 *   starts waiting, so a release that reads no waiters after its CAS is followed by
 *   waits that find the state changed at once). So an entry's outcome is set once, and
 *   the outcome travels in the word waiters watch.
 * - A waiter watches the state word with Atomics.waitAsync (works on the main thread
 *   and on workers) for the value BUSY(g). If the entry was already reused when the
 *   waiter looks (the generation moved on), the outcome of g is in the entry's history
 *   (4 bits for each of the last 16 generations, written by the claim that reuses the
 *   entry before it stores BUSY; a claim reuses the free way of its bucket claimed
 *   longest ago): a waiter whose thread was busy meanwhile still gets its owner's
 *   outcome. Beyond 16 reuses the waiter gets 'lost' and fetches on its own (counted).
 *   Generations make a reused entry (ABA) visible to waiters and to a late release
 *   (its ticket carries the generation's low 14 bits).
 * - A thread that dies (a worker terminated at any instruction) leaves entries BUSY and
 *   perhaps a bucket locked. The main thread calls reclaim(tag) from the worker's exit
 *   event, when the thread can write nothing more: its BUSY entries end as OWNER_DIED,
 *   every entry's waiters are woken (the dead thread may have settled one without
 *   notifying), and its bucket locks are opened. Whatever it was writing under a lock
 *   went to a free entry that nobody reads before the next claim overwrites it.
 * - An owner that is alive but stuck holds its entries no longer than deadlineMs from
 *   its claim: its waiters time out and take the entry (EXPIRED), and a claim that
 *   meets it later does the same. Its late release then finds the entry gone (counted).
 *
 * Costs: the owner path is a lock CAS, a scan of WAYS state words (key bytes compared
 * only on an equal hash), the key copy, and one store to unlock; the release one CAS,
 * and one notify when someone waits. Nothing is allocated for an owner; a waiter
 * allocates the promise of its Atomics.waitAsync and one continuation. The bucket lock
 * is held for that scan and copy only. A thread that finds it held spins a little, then sleeps 50 µs at a time
 * (Atomics.wait, which Node allows on the main thread too), which hands the CPU to a
 * holder the scheduler took it from (on a busy machine this is common: a 2 ms bound
 * gave up several times per run of the 4-worker test on 2 cores); after lockWaitMs
 * (20 ms) it fetches on its own: a lock held that long is a dead thread's, until
 * reclaim() opens it.
 *
 * Time: `nowMs` and `clock` must be one clock for every thread (CLOCK_MONOTONIC in ms,
 * as fastMonotonicNs() / 1e6); performance.now() alone is per thread.
 * Tags: a number per thread, never reused in the process: worker_threads' threadId (0 on
 * the main thread). Read a Worker's threadId when it starts: it reads -1 after exit.
 */
import { threadId } from 'node:worker_threads';
import { MAX_KEY_LEN } from '../dns/constants.js';
import { recordHashKey, useHashKey } from '../dns/key.js';
import { fastMonotonicNs } from '../engine/clock.js';

/** Entries per bucket: a key may be in any of its bucket's ways. */
export const WAYS = 8;
/** claim(): fetch on your own, there is nothing to release (the table is full there). */
export const SOLO = -1;
/**
 * claim(..., wait = false) found the bucket's lock held past a short spin: try again later
 * (an await, so the thread's event loop is not blocked while a descheduled holder waits
 * for the CPU). A caller that gives up calls giveUp() and fetches on its own.
 */
export const CONTENDED = -2;
/** Most entries: the ticket keeps an entry's index in 16 bits. */
export const MAX_CAPACITY = 1 << 16;

/** How a waiter's wait ended. Only after 'cached' is the answer worth looking up; after any other, fetch. */
export type FetchOutcome =
  | 'cached' // the owner stored the answer in the cache
  | 'uncached' // the owner had an answer the cache does not keep (relayed)
  | 'failed' // the owner got no answer (SERVFAIL, timeout, busy)
  | 'ownerDied' // the owner's thread exited (reclaim)
  | 'expired' // the owner held the entry past the deadline
  | 'lost'; // the entry was reused more than 16 times before the waiter looked

/** What an owner tells its waiters. */
export type ReleaseOutcome = 'cached' | 'uncached' | 'failed';

const FREE = 0;
const BUSY = 1;
const CACHED = 2;
const UNCACHED = 3;
const FAILED = 4;
const OWNER_DIED = 5;
const EXPIRED = 6;
const CODE_MASK = 7;
const GEN_SHIFT = 3;
const GEN_MASK = 0x0fffffff;
/** Generations an entry remembers the outcome of (4 bits each, 8 to a word, two words). */
const HISTORY = 16;
const SLOT_BITS = 16;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const TICKET_GEN_MASK = 0x3fff;

const OUTCOME_OF_CODE: readonly FetchOutcome[] = ['lost', 'lost', 'cached', 'uncached', 'failed', 'ownerDied', 'expired', 'lost'];

/** Key bytes per entry, padded to a multiple of 8. */
const KEY_STRIDE = (MAX_KEY_LEN + 7) & ~7;

// Header (Int32 words).
const H_MAGIC = 0;
const H_CAPACITY = 1;
const H_DEADLINE = 2;
const H_HASH_K0 = 3; // the creator's keyHash key (src/dns/key.ts), adopted by every view
const H_HASH_K1 = 4;
const HEADER_WORDS = 6;
const MAGIC = 0x46455443; // 'FETC'

/** Busy-wait rounds on a held bucket lock before sleeping. */
const SPINS = 64;
/** How long one sleep on a held bucket lock lasts, ms. */
const LOCK_SLEEP_MS = 0.05;

const noop = (): void => {};

type WaitAsync = (a: Int32Array, index: number, value: number, timeoutMs: number) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
// Atomics.waitAsync is in Node 16+, but in TypeScript's lib only from ES2024.
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export interface FetchTableOptions {
  /** Entries: a power of two, WAYS..MAX_CAPACITY (see fetchTableCapacity). */
  capacity: number;
  /** Longest an owner may hold an entry, ms (default 4500: the forwarder's 4 s deadline and time to store the answer). */
  deadlineMs?: number;
}

export interface FetchTableThread {
  /** This thread's tag (default: worker_threads threadId). */
  tag?: number;
  /** Shared clock in ms (default CLOCK_MONOTONIC: fastMonotonicNs() / 1e6). */
  clock?: () => number;
  /** Longest a claim waits for a bucket lock before fetching on its own, ms (default 20). */
  lockWaitMs?: number;
}

/** What one thread's table counted (plain fields: each thread counts its own). */
export interface FetchTableStats {
  /** Claims that got a ticket: this thread fetches, others may wait on it. */
  owned: number;
  /** Claims that waited on a fetch already in flight (on any thread, this one included). */
  joined: number;
  /** Claims that found their bucket full: fetched on their own. */
  full: number;
  /** Claims that did not get their bucket's lock within lockWaitMs: fetched on their own. */
  contended: number;
  /** Claims that found their bucket's lock held past a short spin and slept for it (held by a descheduled thread). */
  lockSleeps: number;
  /** Waits that ended at the owner's deadline (outcome 'expired'). */
  deadlineExpired: number;
  /** Entries this thread took from an owner past its deadline. */
  staleReclaimed: number;
  /** Entries this thread took from dead threads (reclaim). */
  ownerDied: number;
  /** Waits whose outcome was forgotten (outcome 'lost'). */
  lost: number;
  /** Releases that found their entry already taken (past the deadline). */
  lateReleases: number;
}

/** A capacity for a process whose upstream budget is `inflight` questions: the power of two at least 4 ×, at least 64. */
export function fetchTableCapacity(inflight: number): number {
  let c = 64;
  while (c < 4 * inflight && c < MAX_CAPACITY) c *= 2;
  return c;
}

/** Bytes of a table of `capacity` entries (its one SharedArrayBuffer). */
export function fetchTableBytes(capacity: number): number {
  return layout(capacity).bytes;
}

function layout(capacity: number): { locks: number; state: number; hash: number; len: number; owner: number; waiters: number; hist: number; words: number; timeByte: number; keyByte: number; bytes: number } {
  const buckets = capacity / WAYS;
  const locks = HEADER_WORDS;
  const state = locks + buckets;
  const hash = state + capacity;
  const len = hash + capacity;
  const owner = len + capacity;
  const waiters = owner + capacity;
  const hist = waiters + capacity;
  const words = hist + 2 * capacity;
  const timeByte = (words * 4 + 7) & ~7;
  const keyByte = timeByte + capacity * 8;
  return { locks, state, hash, len, owner, waiters, hist, words, timeByte, keyByte, bytes: keyByte + capacity * KEY_STRIDE };
}

export class FetchTable {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  readonly deadlineMs: number;
  readonly tag: number;
  private readonly w: Int32Array;
  private readonly t: Float64Array;
  private readonly k: Uint8Array;
  private readonly LOCKS: number;
  private readonly STATE: number;
  private readonly HASH: number;
  private readonly LEN: number;
  private readonly OWNER: number;
  private readonly WAITERS: number;
  private readonly HIST: number;
  private readonly bucketMask: number;
  private readonly clock: () => number;
  private readonly lockWaitMs: number;
  /** Waits of this thread not yet ended, and the timer that keeps the thread alive meanwhile. */
  private waits = 0;
  private keepAlive: NodeJS.Timeout | null = null;
  private readonly s: FetchTableStats = { owned: 0, joined: 0, full: 0, contended: 0, lockSleeps: 0, deadlineExpired: 0, staleReclaimed: 0, ownerDied: 0, lost: 0, lateReleases: 0 };

  /** A fresh table (`capacity`, `deadlineMs`), or this thread's view of one (`buffer` from another thread's FetchTable.buffer). */
  constructor(init: FetchTableOptions | { buffer: SharedArrayBuffer }, thread: FetchTableThread = {}) {
    let capacity: number;
    let deadlineMs: number;
    if ('buffer' in init) {
      const h = new Int32Array(init.buffer, 0, HEADER_WORDS);
      if (h[H_MAGIC] !== MAGIC) throw new RangeError('not a fetch table buffer');
      capacity = h[H_CAPACITY]!;
      deadlineMs = h[H_DEADLINE]!;
      if (init.buffer.byteLength < layout(capacity).bytes) throw new RangeError('fetch table buffer too small for its capacity');
      this.buffer = init.buffer;
      useHashKey(h[H_HASH_K0]!, h[H_HASH_K1]!); // its callers' hashes must match the creator's
    } else {
      capacity = init.capacity;
      deadlineMs = init.deadlineMs ?? 4500;
      if (!Number.isInteger(capacity) || capacity < WAYS || capacity > MAX_CAPACITY || (capacity & (capacity - 1)) !== 0) {
        throw new RangeError(`fetch table capacity must be a power of two, ${WAYS}..${MAX_CAPACITY}, got ${String(capacity)}`);
      }
      if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > 600_000) throw new RangeError(`fetch table deadline must be 1..600000 ms, got ${String(deadlineMs)}`);
      this.buffer = new SharedArrayBuffer(layout(capacity).bytes);
      const h = new Int32Array(this.buffer, 0, HEADER_WORDS);
      h[H_CAPACITY] = capacity;
      h[H_DEADLINE] = deadlineMs;
      [h[H_HASH_K0], h[H_HASH_K1]] = recordHashKey();
      Atomics.store(h, H_MAGIC, MAGIC);
    }
    const tag = thread.tag ?? threadId;
    if (!Number.isInteger(tag) || tag < 0 || tag >= 0x7fffffff) throw new RangeError(`fetch table thread tag must be 0..2^31-2, got ${String(tag)}`);
    const lockWaitMs = thread.lockWaitMs ?? 20;
    if (!(lockWaitMs >= 0 && lockWaitMs <= 1000)) throw new RangeError(`lockWaitMs must be 0..1000, got ${String(lockWaitMs)}`);
    const l = layout(capacity);
    this.capacity = capacity;
    this.deadlineMs = deadlineMs;
    this.tag = tag;
    this.w = new Int32Array(this.buffer, 0, l.words);
    this.t = new Float64Array(this.buffer, l.timeByte, capacity);
    this.k = new Uint8Array(this.buffer, l.keyByte, capacity * KEY_STRIDE);
    this.LOCKS = l.locks;
    this.STATE = l.state;
    this.HASH = l.hash;
    this.LEN = l.len;
    this.OWNER = l.owner;
    this.WAITERS = l.waiters;
    this.HIST = l.hist;
    this.bucketMask = capacity / WAYS - 1;
    this.clock = thread.clock ?? (() => fastMonotonicNs() / 1e6);
    this.lockWaitMs = lockWaitMs;
  }

  /**
   * A miss for key[0, len) (its keyHash `hash`) at `nowMs`:
   * - a ticket (≥ 0): this thread fetches; it must call release(ticket, outcome) when done,
   *   whatever happens (a finally). Look the cache up once more first: a fetch may have
   *   ended between the caller's lookup and this claim.
   * - SOLO: fetch on your own, nothing to release (bucket full or its lock not had).
   * - a Promise: another fetch of this key is in flight; it resolves with its outcome.
   */
  claim(key: Uint8Array, len: number, hash: number, nowMs: number, wait = true): number | Promise<FetchOutcome> {
    if (len < 1 || len > KEY_STRIDE) throw new RangeError(`key length must be 1..${KEY_STRIDE}, got ${len}`);
    hash |= 0; // as the Int32Array holds it
    const w = this.w;
    const b = hash & this.bucketMask;
    if (!this.lock(b, wait)) {
      if (!wait) return CONTENDED;
      this.s.contended++;
      return SOLO;
    }
    const first = b * WAYS;
    const STATE = this.STATE;
    let free = -1;
    let freeAt = Infinity;
    let found = -1;
    let foundState = 0;
    for (let i = first; i < first + WAYS; i++) {
      let s = Atomics.load(w, STATE + i);
      if ((s & CODE_MASK) === BUSY) {
        if (this.t[i]! + this.deadlineMs <= nowMs) {
          // Stale-owner guard: held past its deadline, whatever key it holds.
          const ended = (s & ~CODE_MASK) | EXPIRED;
          if (Atomics.compareExchange(w, STATE + i, s, ended) === s) {
            this.s.staleReclaimed++;
            Atomics.notify(w, STATE + i);
          }
          s = Atomics.load(w, STATE + i);
        } else if (found < 0 && w[this.HASH + i] === hash && w[this.LEN + i] === len && this.keyAt(i, key, len)) {
          found = i;
          foundState = s;
          continue;
        }
      }
      // Of the free ways, the one claimed longest ago: an entry is reused as seldom as the
      // bucket allows, so a waiter slow to look finds its outcome still in the history.
      if ((s & CODE_MASK) !== BUSY && this.t[i]! < freeAt) {
        free = i;
        freeAt = this.t[i]!;
      }
    }
    if (found >= 0) {
      const deadlineAt = this.t[found]! + this.deadlineMs;
      // Counted before the wait starts, so that a release that reads 0 here knows this
      // waiter will find the state changed when it starts waiting (and needs no notify).
      Atomics.add(w, this.WAITERS + found, 1);
      Atomics.store(w, this.LOCKS + b, 0);
      this.s.joined++;
      // A pending Atomics.waitAsync does not keep a thread's event loop alive: a ref'd timer does.
      if (this.waits++ === 0) (this.keepAlive ??= setInterval(noop, 0x7fffffff)).ref();
      return this.wait(found, foundState >>> GEN_SHIFT, deadlineAt, nowMs);
    }
    if (free < 0) {
      Atomics.store(w, this.LOCKS + b, 0);
      this.s.full++;
      return SOLO;
    }
    // Take the free entry: remember how its last generation ended, then write it and store BUSY last.
    const prev = Atomics.load(w, STATE + free);
    const prevGen = prev >>> GEN_SHIFT;
    const hw = this.HIST + 2 * free + ((prevGen >>> 3) & 1);
    const sh = (prevGen & 7) * 4;
    Atomics.store(w, hw, (w[hw]! & ~(0xf << sh)) | ((prev & CODE_MASK) << sh));
    w[this.HASH + free] = hash;
    w[this.LEN + free] = len;
    w[this.OWNER + free] = this.tag;
    Atomics.store(w, this.WAITERS + free, 0);
    this.t[free] = nowMs;
    const k = this.k;
    const at = free * KEY_STRIDE;
    for (let i = 0; i < len; i++) k[at + i] = key[i]!;
    const gen = (prevGen + 1) & GEN_MASK;
    Atomics.store(w, STATE + free, (gen << GEN_SHIFT) | BUSY);
    Atomics.store(w, this.LOCKS + b, 0);
    this.s.owned++;
    return free | ((gen & TICKET_GEN_MASK) << SLOT_BITS);
  }

  /**
   * Ends the fetch of `ticket` (from claim; SOLO is ignored) and wakes its waiters with
   * `outcome`. False when the entry was already taken (past its deadline): counted, and
   * nothing else is touched.
   */
  release(ticket: number, outcome: ReleaseOutcome): boolean {
    if (ticket < 0) return false;
    const code = outcome === 'cached' ? CACHED : outcome === 'uncached' ? UNCACHED : FAILED;
    const slot = ticket & SLOT_MASK;
    const i = this.STATE + slot;
    const w = this.w;
    const s = Atomics.load(w, i);
    if ((s & CODE_MASK) !== BUSY || ((s >>> GEN_SHIFT) & TICKET_GEN_MASK) !== ticket >>> SLOT_BITS || w[this.OWNER + slot] !== this.tag ||
      Atomics.compareExchange(w, i, s, (s & ~CODE_MASK) | code) !== s) {
      this.s.lateReleases++;
      return false;
    }
    // A notify takes a lock every thread of the process shares (V8's wait list): only when someone waits.
    if (Atomics.load(w, this.WAITERS + slot) !== 0) Atomics.notify(w, i);
    return true;
  }

  /**
   * Thread `tag` is gone (called on the main thread from the Worker's exit event): its
   * entries end as 'ownerDied', every waiter is woken, its bucket locks are opened.
   * Returns how many entries it held.
   */
  reclaim(tag: number): number {
    const w = this.w;
    let n = 0;
    for (let i = 0; i < this.capacity; i++) {
      const si = this.STATE + i;
      const s = Atomics.load(w, si);
      if ((s & CODE_MASK) === BUSY && Atomics.load(w, this.OWNER + i) === tag && Atomics.compareExchange(w, si, s, (s & ~CODE_MASK) | OWNER_DIED) === s) n++;
      // Every entry: the dead thread may have settled one and died before its notify.
      Atomics.notify(w, si);
    }
    for (let b = 0; b <= this.bucketMask; b++) Atomics.compareExchange(w, this.LOCKS + b, tag + 1, 0);
    this.s.ownerDied += n;
    return n;
  }

  /** Entries held now and bucket locks held, in all and by thread tag (tests and the gauge; reads the whole table). */
  inspect(): { busy: number; locked: number; busyBy: Map<number, number>; lockedBy: Map<number, number> } {
    let busy = 0;
    let locked = 0;
    const busyBy = new Map<number, number>();
    const lockedBy = new Map<number, number>();
    for (let i = 0; i < this.capacity; i++) {
      if ((Atomics.load(this.w, this.STATE + i) & CODE_MASK) === BUSY) {
        busy++;
        const o = this.w[this.OWNER + i]!;
        busyBy.set(o, (busyBy.get(o) ?? 0) + 1);
      }
    }
    for (let b = 0; b <= this.bucketMask; b++) {
      const holder = Atomics.load(this.w, this.LOCKS + b);
      if (holder === 0) continue;
      locked++;
      lockedBy.set(holder - 1, (lockedBy.get(holder - 1) ?? 0) + 1);
    }
    return { busy, locked, busyBy, lockedBy };
  }

  stats(): FetchTableStats {
    return { ...this.s };
  }

  // ---- inside ------------------------------------------------------------------

  /** A caller that got CONTENDED and will not try again: counted as contended (it fetches on its own). */
  giveUp(): void {
    this.s.contended++;
  }

  /**
   * Takes bucket b's lock, or false after lockWaitMs (its holder descheduled or dead);
   * without `wait`, false after the spin (the caller tries again later, asynchronously).
   */
  private lock(b: number, wait = true): boolean {
    const w = this.w;
    const at = this.LOCKS + b;
    const me = this.tag + 1;
    if (Atomics.compareExchange(w, at, 0, me) === 0) return true;
    let since = -1;
    for (let spin = 0; ; spin++) {
      const holder = Atomics.load(w, at);
      if (holder === 0) {
        if (Atomics.compareExchange(w, at, 0, me) === 0) return true;
        continue;
      }
      if (spin < SPINS) continue;
      if (!wait) return false;
      const now = performance.now();
      if (since < 0) {
        since = now;
        this.s.lockSleeps++;
      } else if (now - since >= this.lockWaitMs) {
        return false;
      }
      // Sleep a little (nobody notifies: unlocking stays one store): a descheduled holder gets the CPU.
      Atomics.wait(w, at, holder, LOCK_SLEEP_MS);
    }
  }

  private waitEnded(): void {
    if (--this.waits === 0) this.keepAlive!.unref();
  }

  private keyAt(slot: number, key: Uint8Array, len: number): boolean {
    const k = this.k;
    const at = slot * KEY_STRIDE;
    for (let i = 0; i < len; i++) if (k[at + i] !== key[i]) return false;
    return true;
  }

  /** Waits for entry `slot` to leave BUSY(gen), at most until deadlineAt. */
  private wait(slot: number, gen: number, deadlineAt: number, nowMs: number): Promise<FetchOutcome> {
    const r = waitAsync(this.w, this.STATE + slot, (gen << GEN_SHIFT) | BUSY, Math.max(0, deadlineAt - nowMs));
    if (!r.async) return Promise.resolve(this.settled(slot, gen, deadlineAt));
    return r.value.then(() => this.settled(slot, gen, deadlineAt));
  }

  /** After a wake: the outcome of generation `gen`, or another wait (woken early, or by reclaim's sweep). */
  private settled(slot: number, gen: number, deadlineAt: number): FetchOutcome | Promise<FetchOutcome> {
    const w = this.w;
    const si = this.STATE + slot;
    const busy = (gen << GEN_SHIFT) | BUSY;
    for (;;) {
      const s = Atomics.load(w, si);
      if (s === busy) {
        const now = this.clock();
        if (now < deadlineAt) return this.wait(slot, gen, deadlineAt, now);
        const ended = (gen << GEN_SHIFT) | EXPIRED;
        if (Atomics.compareExchange(w, si, busy, ended) !== busy) continue; // settled just now: read it
        this.s.staleReclaimed++;
        Atomics.notify(w, si);
        this.s.deadlineExpired++;
        this.waitEnded();
        return 'expired';
      }
      const cur = s >>> GEN_SHIFT;
      let code = FREE;
      if (cur === gen) {
        code = s & CODE_MASK;
      } else if (((cur - gen) & GEN_MASK) <= HISTORY) {
        // Reused since: the claim that reused it wrote how `gen` ended before storing BUSY.
        code = (Atomics.load(w, this.HIST + 2 * slot + ((gen >>> 3) & 1)) >>> ((gen & 7) * 4)) & 0xf;
        // Reused so often meanwhile that the history moved past `gen`: lost.
        if ((((Atomics.load(w, si) >>> GEN_SHIFT) - gen) & GEN_MASK) > HISTORY) code = FREE;
      }
      const out = OUTCOME_OF_CODE[code]!;
      if (out === 'expired') this.s.deadlineExpired++;
      else if (out === 'lost') this.s.lost++;
      this.waitEnded();
      return out;
    }
  }
}
