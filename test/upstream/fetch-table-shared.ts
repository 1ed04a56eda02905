/**
 * What fetch-table-threads.test.ts and its worker (fetch-table-agent.ts) share: the
 * control words in shared memory, the keys and the outcome owners give.
 */
import { keyHash, makeKey } from '../../src/dns/index.js';
import type { ReleaseOutcome } from '../../src/upstream/fetch-table.js';

/** Control words (Int32 indices into workerData.ctl). */
export const Ctl = {
  /** Barrier: arrivals so far (monotonic). */
  ARRIVED: 0,
  /** Demo: 1 once every worker may start. */
  START: 1,
  /** Churn: operations done by the churning worker (it is alive and busy). */
  PROGRESS: 2,
  /** Per key: owners now (random scenario); cached flag (demo). */
  PER_KEY: 16,
} as const;
/** Keys of the random scenario and names of the demo at most. */
export const MAX_KEYS = 256;
/** Demo: upstream queries per name start here. */
export const UPSTREAM = Ctl.PER_KEY + MAX_KEYS;
export const CTL_WORDS = UPSTREAM + MAX_KEYS;

export const OUTCOMES: readonly ReleaseOutcome[] = ['cached', 'uncached', 'failed'];
/** The outcome every owner of key k gives in round r: what its waiters must get. */
export const outcomeFor = (k: number, r: number): ReleaseOutcome => OUTCOMES[(k * 7 + r) % 3]!;

/** Key k of the random scenarios; keys 0..7 come in pairs that are given one hash (collisions). */
export function randomKey(k: number): { key: Uint8Array; hash: number } {
  const key = makeKey(`k${k}.threads.test`, 1, 1, false);
  return { key, hash: k < 8 ? 0x1234 + (k >> 1) : keyHash(key, 0, key.length) };
}

export interface AgentData {
  scenario: 'random' | 'hold' | 'join' | 'churn' | 'demo' | 'lock';
  table: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  /** Index among the workers of the run (seeds, barriers). */
  index: number;
  workers: number;
  seed: number;
  /** random: rounds, clients per worker, operations per client and round, keys. */
  rounds?: number;
  clients?: number;
  ops?: number;
  keys?: number;
  /** hold / join: the names to claim. */
  names?: string[];
  /** demo: use the table (false: the control run, every worker fetches what it misses). */
  useTable?: boolean;
}
