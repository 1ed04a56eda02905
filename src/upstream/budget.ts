/**
 * The process-wide budget of questions in flight upstream, shared by every engine host
 * (the main thread's and each AF_XDP worker's) through one Int32Array over a
 * SharedArrayBuffer, as the ask counts are (src/hot/asks.ts).
 *
 * Layout (Int32 slots):
 *   [0] questions in flight now, every engine together
 *   [1] the limit (written once by the main thread; workers read it)
 *   [2 + engine id] what that engine holds now
 *
 * take() and give() are one atomic add each, on the miss path only (never on a cache
 * hit). The per-engine slots exist so a worker that dies while holding part of the
 * budget does not shrink it for good: the main thread gives back what the dead engine
 * held (forget()) before its replacement starts.
 */

const IN_USE = 0;
const LIMIT = 1;
const FIRST_ENGINE = 2;
/** Engine ids 0..MAX_ENGINE_ID (0 is the main thread, 1..64 the workers). */
export const MAX_ENGINE_ID = 64;
const SLOTS = FIRST_ENGINE + MAX_ENGINE_ID + 1;

export class SharedInflight {
  private readonly a: Int32Array;

  /** Over `buffer` (from another thread's SharedInflight.buffer), or a fresh one with `limit`. */
  constructor(init: { limit: number } | { buffer: SharedArrayBuffer }) {
    if ('buffer' in init) {
      this.a = new Int32Array(init.buffer, 0, SLOTS);
    } else {
      if (!Number.isInteger(init.limit) || init.limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${String(init.limit)}`);
      this.a = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
      this.a[LIMIT] = init.limit;
    }
  }

  get buffer(): SharedArrayBuffer {
    return this.a.buffer as SharedArrayBuffer;
  }

  get limit(): number {
    return this.a[LIMIT]!;
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

  /** Engine `id` is gone (its thread exited): what it held is free again. */
  forget(id: number): void {
    const held = Atomics.exchange(this.a, FIRST_ENGINE + id, 0);
    if (held > 0) Atomics.sub(this.a, IN_USE, held);
  }
}

/** What one engine's forwarder uses of the shared budget. */
export interface InflightShare {
  take(): boolean;
  give(): void;
}

/** The share of engine `id` in `shared`. */
export function engineShare(shared: SharedInflight, id: number): InflightShare {
  if (!Number.isInteger(id) || id < 0 || id > MAX_ENGINE_ID) throw new RangeError(`engine id must be 0..${MAX_ENGINE_ID}, got ${String(id)}`);
  return { take: () => shared.take(id), give: () => shared.give(id) };
}
