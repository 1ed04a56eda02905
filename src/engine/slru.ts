/**
 * Segmented LRU over integer slots, in typed arrays (no per-entry objects).
 *
 * New slots enter the probationary segment at its MRU end. A hit on a
 * probationary slot moves it to the protected segment's MRU end; when the
 * protected segment is over its share, its LRU slot falls back to the MRU end
 * of the probationary segment. Victims come from the probationary LRU end
 * (the protected LRU end only when probation is empty). One-hit wonders thus
 * only ever compete among themselves for the probationary share.
 *
 * With a protected share of 0 this is exactly LRU (a hit moves the slot to
 * the probationary MRU end), which the benchmark uses as the baseline.
 */

export const SEG_NONE = 0;
export const SEG_PROBATION = 1;
export const SEG_PROTECTED = 2;

export class SlruLists {
  readonly capacity: number;
  /** Most slots the protected segment holds. */
  readonly protectedCap: number;
  readonly prev: Int32Array;
  readonly next: Int32Array;
  readonly seg: Uint8Array;
  /** heads are MRU ends, tails LRU ends */
  probHead = -1;
  probTail = -1;
  protHead = -1;
  protTail = -1;
  probCount = 0;
  protCount = 0;

  constructor(capacity: number, protectedRatio = 0.8) {
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new RangeError(`SLRU capacity ${capacity}`);
    if (!(protectedRatio >= 0 && protectedRatio <= 1)) throw new RangeError(`SLRU protected ratio ${protectedRatio}`);
    this.capacity = capacity;
    this.protectedCap = Math.floor(capacity * protectedRatio);
    this.prev = new Int32Array(capacity).fill(-1);
    this.next = new Int32Array(capacity).fill(-1);
    this.seg = new Uint8Array(capacity);
  }

  get size(): number {
    return this.probCount + this.protCount;
  }

  private unlink(s: number): void {
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (this.seg[s] === SEG_PROBATION) {
      if (p >= 0) this.next[p] = n;
      else this.probHead = n;
      if (n >= 0) this.prev[n] = p;
      else this.probTail = p;
      this.probCount--;
    } else {
      if (p >= 0) this.next[p] = n;
      else this.protHead = n;
      if (n >= 0) this.prev[n] = p;
      else this.protTail = p;
      this.protCount--;
    }
    this.prev[s] = -1;
    this.next[s] = -1;
    this.seg[s] = SEG_NONE;
  }

  private pushProbation(s: number): void {
    const h = this.probHead;
    this.prev[s] = -1;
    this.next[s] = h;
    if (h >= 0) this.prev[h] = s;
    else this.probTail = s;
    this.probHead = s;
    this.seg[s] = SEG_PROBATION;
    this.probCount++;
  }

  private pushProtected(s: number): void {
    const h = this.protHead;
    this.prev[s] = -1;
    this.next[s] = h;
    if (h >= 0) this.prev[h] = s;
    else this.protTail = s;
    this.protHead = s;
    this.seg[s] = SEG_PROTECTED;
    this.protCount++;
  }

  /** Adds a slot not currently listed, at the probationary MRU end. */
  insert(s: number): void {
    this.pushProbation(s);
  }

  /** Records a hit on a listed slot. */
  touch(s: number): void {
    if (this.seg[s] === SEG_PROTECTED && this.protHead === s) return;
    this.unlink(s);
    this.pushProtected(s);
    while (this.protCount > this.protectedCap) {
      const t = this.protTail;
      this.unlink(t);
      this.pushProbation(t);
    }
  }

  /** Moves a listed slot to the MRU end of the segment it is in (a refresh, not a hit). */
  refresh(s: number): void {
    const seg = this.seg[s];
    this.unlink(s);
    if (seg === SEG_PROTECTED) this.pushProtected(s);
    else this.pushProbation(s);
  }

  remove(s: number): void {
    if (this.seg[s] !== SEG_NONE) this.unlink(s);
  }

  /** Next slot to evict, or -1 when empty. */
  victim(): number {
    return this.probTail >= 0 ? this.probTail : this.protTail;
  }

  /** Slots from LRU to MRU: probationary first, then protected (tests and tools). */
  order(): number[] {
    const out: number[] = [];
    for (let s = this.probTail; s >= 0; s = this.prev[s]!) out.push(s);
    for (let s = this.protTail; s >= 0; s = this.prev[s]!) out.push(s);
    return out;
  }
}
