/**
 * Upstream addresses: the "addr[:port]" lists an operator writes
 * ("198.18.0.3,198.18.0.4:5353,[fd00::3]:53"), parsed strictly into the
 * canonical form the UDP layer compares reply sources against.
 *
 * Only IP literals: a forwarder that had to resolve its upstreams' names
 * would depend on itself.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { UpstreamError } from './errors.js';

export interface UpstreamAddr {
  /** IP literal in canonical form (IPv6 compressed and lowercased, no brackets). */
  host: string;
  port: number;
  family: 4 | 6;
}

export const DEFAULT_DNS_PORT = 53;

function bad(entry: string, why: string): UpstreamError {
  return new UpstreamError('UPSTREAM_BAD_CONFIG', `upstream '${entry}': ${why}`);
}

function parsePort(entry: string, text: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw bad(entry, `port '${text}' is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw bad(entry, `port ${port} is outside 1..65535`);
  return port;
}

/** Canonical text of an IPv6 literal (RFC 5952 form, as the kernel reports sources). */
function canonicalV6(addr: string): string {
  return new URL(`http://[${addr}]/`).hostname.slice(1, -1);
}

function checkV4(entry: string, host: string): void {
  const first = Number(host.split('.')[0]);
  if (host === '0.0.0.0') throw bad(entry, 'the unspecified address is not an upstream');
  if (host === '255.255.255.255' || (first >= 224 && first <= 239)) throw bad(entry, 'broadcast or multicast address');
}

function v6Addr(entry: string, text: string): { host: string; family: 4 | 6 } {
  if (text.includes('%')) throw bad(entry, 'IPv6 scope IDs (link-local upstreams) are not supported');
  if (!isIPv6(text)) throw bad(entry, `'${text}' is not an IPv6 address`);
  const host = canonicalV6(text);
  // IPv4-mapped: talk IPv4, so the reply source compares equal.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    const v4 = `${hi >>> 8}.${hi & 0xff}.${lo >>> 8}.${lo & 0xff}`;
    checkV4(entry, v4);
    return { host: v4, family: 4 };
  }
  if (host === '::') throw bad(entry, 'the unspecified address is not an upstream');
  if (host.startsWith('ff')) throw bad(entry, 'multicast address');
  return { host, family: 6 };
}

/** One list entry: "198.18.0.3", "198.18.0.3:5353", "[fd00::3]", "[fd00::3]:53" or bare "fd00::3". */
export function parseUpstream(entry: string): UpstreamAddr {
  const e = entry.trim();
  if (e === '') throw bad(entry, 'empty entry');
  if (e.startsWith('[')) {
    const m = /^\[([^\]]*)\](?::(.*))?$/.exec(e);
    if (!m) throw bad(entry, "expected '[IPv6]' or '[IPv6]:port'");
    const a = v6Addr(entry, m[1]!);
    return { ...a, port: m[2] === undefined ? DEFAULT_DNS_PORT : parsePort(entry, m[2]) };
  }
  const colons = e.split(':').length - 1;
  if (colons > 1) {
    // Bare IPv6 without a port; a port needs brackets.
    return { ...v6Addr(entry, e), port: DEFAULT_DNS_PORT };
  }
  const [host, portText] = colons === 1 ? (e.split(':') as [string, string]) : [e, undefined];
  if (!isIPv4(host)) {
    throw bad(entry, /[a-z]/i.test(host) ? 'not an IP address (host names are not resolved)' : `'${host}' is not an IPv4 address`);
  }
  checkV4(entry, host);
  return { host, port: portText === undefined ? DEFAULT_DNS_PORT : parsePort(entry, portText), family: 4 };
}

/**
 * Parses a comma-separated upstream list. Throws UpstreamError
 * (UPSTREAM_BAD_CONFIG) naming the bad entry: empty list or entry, host
 * names, bad ports, scope IDs, unspecified/multicast addresses, duplicates.
 */
export function parseUpstreams(list: string): UpstreamAddr[] {
  if (typeof list !== 'string' || list.trim() === '') {
    throw new UpstreamError('UPSTREAM_BAD_CONFIG', 'upstream list is empty: give at least one address, e.g. 198.18.0.3:53');
  }
  const out: UpstreamAddr[] = [];
  const seen = new Set<string>();
  for (const entry of list.split(',')) {
    const u = parseUpstream(entry);
    const k = formatUpstream(u);
    if (seen.has(k)) throw bad(entry, `listed twice (${k})`);
    seen.add(k);
    out.push(u);
  }
  return out;
}

/** "198.18.0.3:53" or "[fd00::3]:53". */
export function formatUpstream(u: UpstreamAddr): string {
  return u.family === 6 ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

/** Validates an UpstreamAddr given in code (not parsed) and returns it canonicalized. */
export function checkUpstreamAddr(u: UpstreamAddr): UpstreamAddr {
  if (u === null || typeof u !== 'object' || typeof u.host !== 'string') {
    throw new UpstreamError('UPSTREAM_BAD_CONFIG', 'upstream must be { host, port, family }');
  }
  const p = parseUpstream(u.family === 6 || isIPv6(u.host) ? `[${u.host}]:${String(u.port)}` : `${u.host}:${String(u.port)}`);
  if (u.family !== undefined && p.family !== u.family) {
    throw new UpstreamError('UPSTREAM_BAD_CONFIG', `upstream ${u.host}: family ${String(u.family)} does not match the address`);
  }
  return p;
}
