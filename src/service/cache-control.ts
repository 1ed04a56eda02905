/**
 * What the control socket asks of one engine (a worker's or the main thread's): look a
 * name up in its cache, flush a name or everything, and publish its upstreams' figures
 * (src/engine/upstream-stats.ts) for the main thread to read.
 * The same function runs in every engine thread (src/service/worker.ts, service.ts); the
 * main thread gathers the answers and adds the XDP hot map's part.
 */
import { KEY_CD } from '../dns/constants.js';
import { remainingSeconds, type CachedAnswer } from '../dns/answer.js';
import { textToWire } from '../dns/name.js';
import type { EngineHost } from '../engine/host.js';

const TYPES: Readonly<Record<string, number>> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35, DS: 43,
  RRSIG: 46, NSEC: 47, DNSKEY: 48, NSEC3: 50, TLSA: 52, SVCB: 64, HTTPS: 65, CAA: 257,
};

/** A query type by mnemonic (A, AAAA, ...) or TYPEnnn; throws a one-line error. */
export function parseQtype(text: string): number {
  const t = text.toUpperCase();
  if (TYPES[t] !== undefined) return TYPES[t];
  const m = /^TYPE(\d{1,5})$/.exec(t);
  if (m && Number(m[1]) <= 65535) return Number(m[1]);
  throw new Error(`unknown query type '${text}' (e.g. A, AAAA, MX, or TYPE65)`);
}

export function qtypeText(n: number): string {
  return Object.entries(TYPES).find(([, v]) => v === n)?.[0] ?? `TYPE${n}`;
}

export type EngineRequest =
  | { op: 'lookup'; name: string; qtype?: number }
  | { op: 'flush'; name: string; qtype?: number }
  | { op: 'flushAll' }
  | { op: 'upstreams' };

export interface CachedEntryInfo {
  engine: number;
  type: string;
  dnssecOk: boolean;
  /** Fetched with CD=1: only ever given to CD=1 queries (docs/CORE.md, "Cached answers"). */
  checkingDisabled: boolean;
  rcode: number;
  /** Seconds of TTL left (0: expired, kept for serve-stale or the next sweep). */
  ttlLeft: number;
  /** The cache key, hex (the main thread looks it up in the hot map). */
  key: string;
}

/** The cache keys of `name` (any DO bit; of `qtype` if given) in this cache. */
export function entriesOf(host: EngineHost, name: string, qtype?: number): CachedAnswer[] {
  const wire = textToWire(name.endsWith('.') ? name : `${name}.`);
  const lower = Uint8Array.from(wire, (c) => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c));
  return host.engine.cache.entriesWithName(lower, qtype);
}

/** A flush's keys (hex): removed from the cache, and found but not removed. */
export interface FlushResult {
  removed: string[];
  kept: string[];
}

export function engineControl(host: EngineHost, engineId: number, req: EngineRequest, nowNs: number): unknown {
  switch (req.op) {
    case 'lookup':
      return entriesOf(host, req.name, req.qtype).map(
        (a): CachedEntryInfo => ({ engine: engineId, type: qtypeText(a.qtype), dnssecOk: a.dnssecOk, checkingDisabled: (a.key[a.key.length - 1]! & KEY_CD) !== 0, rcode: a.rcode, ttlLeft: remainingSeconds(a, nowNs), key: Buffer.from(a.key).toString('hex') }),
      );
    case 'flush': {
      // What was really removed is counted apart from what was found but not removed (gone
      // meanwhile, or in a shard that stayed busy past the patient wait).
      const out: FlushResult = { removed: [], kept: [] };
      for (const a of entriesOf(host, req.name, req.qtype)) (host.engine.cache.delete(a.key) ? out.removed : out.kept).push(Buffer.from(a.key).toString('hex'));
      return out;
    }
    case 'flushAll': {
      return host.engine.cache.clearShards();
    }
    case 'upstreams':
      // Brought into the stats block now: the main thread then reads every engine's there.
      host.publish();
      return host.forwarder.health.length;
  }
}
