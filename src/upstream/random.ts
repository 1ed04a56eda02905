/**
 * Unpredictable query IDs and source ports, from the CSPRNG in batches
 * (one randomFillSync per 2048 values instead of one call per query).
 *
 * Source ports come from the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, which also governs IPv6) minus
 * ip_local_reserved_ports, so a query socket never takes a port that a
 * local service expects to bind.
 */
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';

const BATCH = 2048;
const pool = new Uint16Array(BATCH);
let next = BATCH;

/** A uniformly random 16-bit value. */
export function randomU16(): number {
  if (next >= BATCH) {
    randomFillSync(pool);
    next = 0;
  }
  return pool[next++]!;
}

export interface PortRange {
  low: number;
  high: number;
  /** Ports inside [low, high] never to pick. */
  reserved?: ReadonlySet<number>;
}

/** Linux's default ephemeral range, used when /proc cannot be read. */
export const FALLBACK_PORT_RANGE: PortRange = { low: 32768, high: 60999 };

function parseReserved(text: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    const hi = b ?? a;
    if (!(Number.isInteger(a) && Number.isInteger(hi)) || hi - a > 65535) continue;
    for (let p = a; p <= hi; p++) out.add(p);
  }
  return out;
}

/** The kernel's ephemeral port range and reserved ports, read once by the caller. */
export function kernelPortRange(): PortRange {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (!Number.isInteger(low) || !Number.isInteger(high) || low! < 1024 || high! > 65535 || low! >= high!) return FALLBACK_PORT_RANGE;
    let reserved: Set<number> | undefined;
    try {
      reserved = parseReserved(readFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', 'utf8'));
    } catch {
      reserved = undefined;
    }
    return reserved && reserved.size > 0 ? { low: low!, high: high!, reserved } : { low: low!, high: high! };
  } catch {
    return FALLBACK_PORT_RANGE;
  }
}

/**
 * A uniformly random port in the range (rejection sampling: no modulo bias),
 * skipping reserved ones; 0 (let the kernel pick) if none is found quickly.
 */
export function randomPort(r: PortRange): number {
  const span = r.high - r.low + 1;
  const limit = Math.floor(65536 / span) * span;
  for (let tries = 0; tries < 256; tries++) {
    const v = randomU16();
    if (v >= limit) continue;
    const port = r.low + (v % span);
    if (r.reserved === undefined || !r.reserved.has(port)) return port;
  }
  return 0;
}
