/**
 * The configuration of a running heimdall-xdp, resolved once into one frozen, typed
 * object. Every default and every bound is here, under one name per setting: the CLI
 * builds its flags from SETTINGS, `resolveConfig` checks and completes what it was
 * given, and everything downstream reads the result and computes no default of its own.
 * A config file (src/config-file.ts) produces the same ConfigInput.
 */
import { DEFAULT_TTL_POLICY } from './dns/answer.js';
import { EDNS_UDP_SIZE, MAX_EDNS_UDP_SIZE } from './dns/constants.js';
import { AccessList, DEFAULT_ALLOW, parseAclList } from './edge/acl.js';
import { RRL_DEFAULTS, type RrlSettings } from './edge/rrl.js';
import { HeimdallError } from './errors.js';
import { LOG_FORMATS, type LogFormat } from './log.js';
import { formatAddr, parseAddr, parseCidr, type Addr, type Cidr } from './net/addr.js';
import { parseUpstreams, type UpstreamAddr } from './upstream/upstream.js';

export type AttachMode = 'auto' | 'native' | 'generic';
export const ATTACH_MODES: readonly AttachMode[] = ['auto', 'native', 'generic'];
/** How the program goes on the interface: through libxdp's dispatcher (shared with other XDP programs) or alone. */
export type XdpAttach = 'auto' | 'dispatcher' | 'direct';
export const XDP_ATTACH: readonly XdpAttach[] = ['auto', 'dispatcher', 'direct'];

/** Share of the cache size the XDP hot map gets by default (the Heimdall guide's 10%). */
export const HOT_SHARE = 0.1;

/** Hot-map entries for a cache of `cacheSize` entries when none is configured. */
export function hotSizeFor(cacheSize: number): number {
  return Math.max(1, Math.floor(cacheSize * HOT_SHARE));
}

/** The integer settings: default and bounds, in one table the CLI and the resolver share. */
export const SETTINGS = {
  port: { flag: '--port', min: 1, max: 65535, default: 53, help: 'UDP and TCP port served' },
  queues: { flag: '--queues', min: 1, max: 64, default: undefined, help: 'rx queues to serve with one AF_XDP worker each (default: all of the interface)' },
  cacheSize: { flag: '--cache-size', min: 16, max: 50_000_000, default: 100_000, help: 'userspace cache entries: one cache in shared memory for every worker and the main thread (lower on reload; higher needs a restart)' },
  hotSize: { flag: '--hot-size', min: 1, max: 10_000_000, default: undefined, help: `XDP hot map entries (default: ${HOT_SHARE * 100}% of the cache size)` },
  promoteAfter: { flag: '--promote-after', min: 1, max: 1000, default: 3, help: 'asks of a name (on any queue, within about a minute) before its answer is promoted into the XDP hot map' },
  udpSize: { flag: '--udp-size', min: 512, max: MAX_EDNS_UDP_SIZE, default: EDNS_UDP_SIZE, help: 'EDNS UDP payload size advertised and served' },
  tcpMaxConnections: { flag: '--tcp-max-connections', min: 1, max: 1_000_000, default: 1000, help: 'TCP connections open at most (at the limit the least recently active idle one is closed for a new one)' },
  tcpMaxPerClient: { flag: '--tcp-max-per-client', min: 1, max: 1_000_000, default: 64, help: 'TCP connections open at most from one client network (/24, /56)' },
  tcpIdleTimeout: { flag: '--tcp-idle-timeout', min: 1, max: 3_600_000, default: 10_000, help: 'ms before an idle TCP connection is closed (500 ms while over half the connection limit is in use)' },
  cacheBytes: { flag: '--cache-bytes', min: 65_536, max: 2 ** 45, default: undefined, help: "bytes of DNS data the one userspace cache holds (its arena; default: 512 per cache entry); each entry's metadata comes on top, docs/LIMITS.md (lower on reload; higher needs a restart)" },
  cacheMinTtl: { flag: '--cache-min-ttl', min: 0, max: 86_400, default: DEFAULT_TTL_POLICY.minTtl, help: 'seconds: the least time an answer is cached, even if its TTL is lower (Unbound cache-min-ttl)' },
  cacheMaxTtl: { flag: '--cache-max-ttl', min: 1, max: 0x7fffffff, default: DEFAULT_TTL_POLICY.maxTtl, help: 'seconds: the most time a positive answer is cached, and the highest TTL served (Unbound cache-max-ttl)' },
  cacheMaxNegativeTtl: { flag: '--cache-max-negative-ttl', min: 1, max: 0x7fffffff, default: DEFAULT_TTL_POLICY.negativeMaxTtl, help: 'seconds: the most time a negative answer (NXDOMAIN, NODATA) is cached (Unbound cache-max-negative-ttl)' },
  upstreamInflight: { flag: '--upstream-inflight', min: 1, max: 65_536, default: 1024, help: 'distinct questions in flight upstream per engine; beyond it a miss gets SERVFAIL at once' },
  upstreamInflightTotal: { flag: '--upstream-inflight-total', min: 1, max: 1_000_000, default: 2048, help: 'distinct questions in flight upstream in the whole process (every engine)' },
  upstreamClientShare: { flag: '--upstream-client-share', min: 1, max: 100, default: 25, help: 'percent of the in-flight questions one client network (/24, /56) may hold, of an engine\'s and of the whole process\'s; and of the queries waiting' },
  upstreamTcpConns: { flag: '--upstream-tcp-conns', min: 1, max: 64, default: 2, help: 'TCP connections per upstream per engine (after TC=1), reused and pipelined' },
  upstreamTcpPipeline: { flag: '--upstream-tcp-pipeline', min: 1, max: 1024, default: 64, help: 'queries in flight on one upstream TCP connection' },
  upstreamPortReuse: { flag: '--upstream-port-reuse', min: 1, max: 1024, default: 64, help: 'queries sent from one random UDP source port (for at most 1 s) before it is replaced; 1 = a fresh socket per query' },
  rrl: { flag: '--rrl', min: 0, max: 1_000_000, default: RRL_DEFAULTS.rate, help: 'responses/s of one answer (or of errors, or NXDOMAIN of one zone) to one client network; 0 turns rate limiting off' },
  rrlSlip: { flag: '--rrl-slip', min: 0, max: 100, default: RRL_DEFAULTS.slip, help: 'every k-th rate-limited response is sent truncated (TC=1) so real clients retry over TCP; 0 never' },
  rrlWindow: { flag: '--rrl-window', min: 1, max: 600, default: RRL_DEFAULTS.window, help: 'seconds a flood stays limited after it stops' },
  rrlAll: { flag: '--rrl-all', min: 0, max: 1_000_000, default: RRL_DEFAULTS.allRate, help: 'responses/s of any kind to one client network; 0 no such ceiling' },
  rrlV4Prefix: { flag: '--rrl-v4-prefix', min: 8, max: 32, default: RRL_DEFAULTS.v4Prefix, help: 'IPv4 prefix length of a client network for rate limiting' },
  rrlV6Prefix: { flag: '--rrl-v6-prefix', min: 16, max: 64, default: RRL_DEFAULTS.v6Prefix, help: 'IPv6 prefix length of a client network for rate limiting' },
  rrlBuckets: { flag: '--rrl-buckets', min: 1024, max: 1 << 24, default: 65536, help: 'rate-limit buckets, a power of two (16 bytes each, shared by XDP and userspace)' },
} as const;

export type IntSetting = keyof typeof SETTINGS;

/** What a user gave: flags, a config file, or both (flags win). Absent means the default. */
export interface ConfigInput {
  iface: string;
  upstream: string;
  port?: number;
  mode?: string;
  /** auto (dispatcher, else direct), dispatcher or direct (docs/XDP.md "Sharing the interface"). */
  xdpAttach?: string;
  queues?: number;
  cacheSize?: number;
  hotSize?: number;
  promoteAfter?: number;
  udpSize?: number;
  tcpMaxConnections?: number;
  tcpMaxPerClient?: number;
  tcpIdleTimeout?: number;
  cacheBytes?: number;
  cacheMinTtl?: number;
  cacheMaxTtl?: number;
  cacheMaxNegativeTtl?: number;
  upstreamInflight?: number;
  upstreamInflightTotal?: number;
  upstreamClientShare?: number;
  upstreamTcpConns?: number;
  upstreamTcpPipeline?: number;
  upstreamPortReuse?: number;
  xdpAnswers?: boolean;
  /** Refresh hot names the XDP program is still serving before they expire (src/hot/prefetch.ts); default on. */
  prefetch?: boolean;
  afXdp?: boolean;
  serveStale?: boolean;
  /** 0x20 toward the upstreams (Unbound's use-caps-for-id); default on. */
  capsForId?: boolean;
  /** DNS cookies toward the upstreams; default on. */
  upstreamCookies?: boolean;
  /** Minimal responses to clients; default on. */
  minimalResponses?: boolean;
  metricsListen?: string;
  force?: boolean;
  /** text or json (src/log.ts). */
  logFormat?: string;
  /** CPUs the service's threads run on, as a list such as "1-3" (src/service/cpus.ts); absent: the scheduler's choice. */
  cpus?: string;
  /** Addresses to serve, comma separated; absent: every address of the interface, followed as it changes. */
  listen?: string;
  /** Prefixes to serve (`default` = DEFAULT_ALLOW, `any` = everyone); absent: DEFAULT_ALLOW. */
  allow?: string;
  deny?: string;
  rrlExempt?: string;
  rrl?: number;
  rrlSlip?: number;
  rrlWindow?: number;
  rrlAll?: number;
  rrlV4Prefix?: number;
  rrlV6Prefix?: number;
  rrlBuckets?: number;
}

/** Who is served, on which addresses, and how fast (src/edge). */
export interface EdgeConfig {
  /** Addresses served (text form); null: every address of the interface, followed. */
  readonly listen: readonly string[] | null;
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
  readonly rrlExempt: readonly Cidr[];
  readonly rrl: Readonly<RrlSettings>;
  readonly rrlBuckets: number;
}

/** What one engine host (a worker's or the main thread's) is built with. */
export interface EngineConfig {
  readonly cacheSize: number;
  /** Hot-map entries of a policy of the engine's own (the service's engines report to the one policy instead). */
  readonly hotCapacity: number;
  readonly promoteAfter: number;
  readonly udpSize: number;
  readonly serveStale: boolean;
  /** Toward the upstreams: 0x20 and cookies; to clients: minimal responses (docs/FORWARDER.md). */
  readonly capsForId: boolean;
  readonly upstreamCookies: boolean;
  readonly minimalResponses: boolean;
  /** Cache bytes (SharedCache maxBytes: the arena every engine shares). */
  readonly cacheBytes: number;
  /** Questions in flight upstream, this engine. */
  readonly upstreamInflight: number;
  /** Of those, the most one client network may hold. */
  readonly upstreamPerClient: number;
  readonly upstreamTcpConns: number;
  readonly upstreamTcpPipeline: number;
  /** Queries per upstream UDP socket (docs/FORWARDER.md, "Source ports: a bounded pool"). */
  readonly upstreamPortReuse: number;
}

export interface HeimdallConfig {
  readonly iface: string;
  readonly upstreams: readonly UpstreamAddr[];
  /** The upstream list as the user wrote it, for messages. */
  readonly upstreamList: string;
  readonly port: number;
  readonly mode: AttachMode;
  readonly xdpAttach: XdpAttach;
  readonly queues: number;
  readonly cacheSize: number;
  /** Arena bytes of the one cache (SharedCache maxBytes). */
  readonly cacheBytes: number;
  /** TTL bounds of what is cached (seconds; the SERVFAIL lifetime stays the default's). */
  readonly cacheTtl: Readonly<{ minTtl: number; maxTtl: number; negativeMaxTtl: number }>;
  readonly hotSize: number;
  readonly promoteAfter: number;
  readonly udpSize: number;
  /** The kernel TCP listener's limits (src/io/tcp.ts TcpListenerOptions). */
  readonly tcp: { readonly maxConnections: number; readonly maxPerClient: number; readonly idleTimeoutMs: number };
  /** Questions in flight upstream in the whole process. */
  readonly upstreamInflightTotal: number;
  /** Of those, the most one client network may hold, every engine together (src/upstream/budget.ts). */
  readonly upstreamPerClientTotal: number;
  readonly xdpAnswers: boolean;
  readonly prefetch: boolean;
  readonly afXdp: boolean;
  readonly serveStale: boolean;
  readonly metricsListen: { readonly host: string; readonly port: number } | null;
  readonly force: boolean;
  readonly logFormat: LogFormat;
  /** CPUs every thread is pinned to, ascending; null: not pinned (src/service/cpus.ts). */
  readonly cpus: readonly number[] | null;
  readonly edge: EdgeConfig;
  /** The main thread's engine (kernel UDP and TCP). */
  readonly mainEngine: EngineConfig;
  /** Each AF_XDP worker's engine. */
  readonly workerEngine: EngineConfig;
}

/**
 * A wrong option: the message names the flag; `field` and `detail` (the message without
 * the flag) let a config file's reader say it at the key and line (src/config-file.ts).
 */
export class ConfigError extends HeimdallError {
  constructor(
    message: string,
    readonly field?: keyof ConfigInput,
    readonly detail?: string,
  ) {
    super('E_BAD_OPTION', message);
  }
}

function badOption(message: string, field?: keyof ConfigInput, detail?: string): HeimdallError {
  return new ConfigError(message, field, detail);
}

function int(name: IntSetting, v: number | undefined, fallback: number): number {
  const s = SETTINGS[name];
  const n = v ?? fallback;
  const detail = `must be an integer from ${s.min} to ${s.max}, got ${String(v)}`;
  if (!Number.isInteger(n) || n < s.min || n > s.max) throw badOption(`${s.flag} ${detail}`, name, detail);
  return n;
}

/** addr:port, [v6]:port or :port (loopback) for the metrics endpoint. */
export function parseListen(text: string, flag = '--metrics-listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  const detail = `must be addr:port (e.g. 127.0.0.1:9153), got '${text}'`;
  if (!m || !(port >= 1 && port <= 65535)) throw badOption(`${flag} ${detail}`, 'metricsListen', detail);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/**
 * Prefixes each access-list trie of the XDP program holds (bpf/heimdall.h HEIMDALL_ACL_MAX,
 * the addon's layout.ACL.max; test/config/edge-config.test.ts checks they agree): the
 * folded set of --allow, --deny and --rrl-exempt, per family.
 */
export const ACL_MAX_PER_FAMILY = 4096;

/**
 * A prefix written with host bits (203.0.113.7/16) would be read as its network
 * (203.0.0.0/16): a wider range than the operator may think. Named instead.
 */
function hostBits(item: string): string | undefined {
  const t = item.trim();
  const slash = t.indexOf('/');
  if (slash < 0 || t === 'default' || t === 'any') return undefined;
  const a = parseAddr(t.slice(0, slash));
  const c = parseCidr(t);
  if (a && a.bytes.some((b, i) => b !== c.bytes[i])) return `'${t}' has bits set past the prefix length: did you mean ${c.text}?`;
  return undefined;
}

function cidrs(flag: string, field: keyof ConfigInput, text: string | undefined, fallback: readonly string[]): Cidr[] {
  let out: Cidr[];
  try {
    out = parseAclList(text ?? fallback.join(','));
    for (const item of (text ?? '').split(',')) {
      const why = hostBits(item);
      if (why) throw new Error(why);
    }
  } catch (e) {
    throw badOption(`${flag}: ${(e as Error).message}`, field, (e as Error).message);
  }
  if (field === 'allow' && out.length === 0) {
    // As the config file says it: an empty list serves nobody, surely not what was meant.
    const detail = "must not be empty (it would serve nobody; 'default' is the private ranges, 'any' everyone)";
    throw badOption(`${flag} ${detail}`, field, detail);
  }
  return out;
}

/** The folded access list (allow, deny and exempt together) must fit the XDP program's tries. */
function checkAclSize(allow: readonly Cidr[], deny: readonly Cidr[], exempt: readonly Cidr[]): void {
  const folded = AccessList.build(allow, deny, exempt).list();
  for (const family of [4, 6] as const) {
    const n = folded.filter((e) => e.cidr.family === family).length;
    if (n > ACL_MAX_PER_FAMILY) {
      const detail = `with --deny and --rrl-exempt makes ${n} distinct IPv${family} prefixes; the XDP program holds at most ${ACL_MAX_PER_FAMILY} per family: merge prefixes into wider ones`;
      throw badOption(`--allow ${detail}`, 'allow', detail);
    }
  }
}

/**
 * Why a --listen address cannot be one the service answers on, or null. The unspecified
 * address would make the kernel listeners bind a wildcard (the upstream-facing side
 * answered too) and put 0.0.0.0 in the XDP program's served list; a multicast or
 * broadcast address is never a unicast query's destination.
 */
function unservable(a: Addr): string | null {
  const b = a.family === 4 ? a.bytes.subarray(0, 4) : a.bytes;
  if (b.every((x) => x === 0)) return 'the unspecified address (a wildcard)';
  if (a.family === 4 && b[0]! >= 224 && b[0]! <= 239) return 'a multicast address';
  if (a.family === 4 && b.every((x) => x === 255)) return 'the broadcast address';
  if (a.family === 6 && b[0] === 0xff) return 'a multicast address';
  return null;
}

/** --listen: addresses, each normalised; a link-local IPv6 one keeps its %zone. */
function listenAddrs(text: string | undefined): string[] | null {
  if (text === undefined) return null;
  const out: string[] = [];
  for (const raw of text.split(',').map((t) => t.trim()).filter((t) => t.length > 0)) {
    const a = parseAddr(raw);
    if (!a || raw.includes('/')) throw badOption(`--listen: '${raw}' is not an IPv4 or IPv6 address`, 'listen', `'${raw}' is not an IPv4 or IPv6 address`);
    const why = unservable(a);
    if (why) {
      const detail = `'${raw}' is ${why}: name this host's own unicast addresses (e.g. 192.0.2.53,2001:db8::53), or leave --listen out to answer on every address of the interface`;
      throw badOption(`--listen: ${detail}`, 'listen', detail);
    }
    const zone = raw.includes('%') ? raw.slice(raw.indexOf('%')) : '';
    out.push(formatAddr(a) + zone);
  }
  if (out.length === 0) throw badOption('--listen needs at least one address', 'listen', 'needs at least one address');
  return out;
}

/** The highest CPU number a list may name (the addon's set holds 4096). */
export const CPU_MAX = 4095;

/**
 * "1", "2-7", "0,2-3": the CPU numbers, ascending, each once. Throws Error with a
 * message that says what is wrong with the text (the caller names the flag).
 */
export function parseCpuList(text: string): number[] {
  const out = new Set<number>();
  const items = text.split(',').map((t) => t.trim());
  if (items.every((t) => t.length === 0)) throw new Error('needs at least one CPU (e.g. 1, 2-3 or 0,2)');
  for (const item of items) {
    if (item.length === 0) continue;
    const m = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(item);
    if (!m) throw new Error(`'${item}' is not a CPU number or a range of them (e.g. 1, 2-3 or 0,2)`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo > CPU_MAX || hi > CPU_MAX) throw new Error(`'${item}': CPU numbers go up to ${CPU_MAX}`);
    if (hi < lo) throw new Error(`'${item}' is a range that runs backwards`);
    for (let c = lo; c <= hi; c++) out.add(c);
  }
  return [...out].sort((a, b) => a - b);
}

/** The same list in its shortest form: [0, 2, 3, 4] is "0,2-4". */
export function formatCpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j]! + 1) j++;
    parts.push(j === i ? `${cpus[i]}` : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** --cpus: the list, or null when absent. Whether its CPUs are online is asked at start (src/service/cpus.ts). */
function cpuList(text: string | undefined): readonly number[] | null {
  if (text === undefined) return null;
  try {
    return Object.freeze(parseCpuList(text));
  } catch (e) {
    throw badOption(`--cpus: ${(e as Error).message}`, 'cpus', (e as Error).message);
  }
}

function edgeConfig(input: ConfigInput): EdgeConfig {
  const rrlBuckets = int('rrlBuckets', input.rrlBuckets, SETTINGS.rrlBuckets.default);
  if ((rrlBuckets & (rrlBuckets - 1)) !== 0) throw badOption(`--rrl-buckets must be a power of two, got ${rrlBuckets}`, 'rrlBuckets', `must be a power of two, got ${rrlBuckets}`);
  const rrl: RrlSettings = Object.freeze({
    rate: int('rrl', input.rrl, SETTINGS.rrl.default),
    slip: int('rrlSlip', input.rrlSlip, SETTINGS.rrlSlip.default),
    window: int('rrlWindow', input.rrlWindow, SETTINGS.rrlWindow.default),
    allRate: int('rrlAll', input.rrlAll, SETTINGS.rrlAll.default),
    v4Prefix: int('rrlV4Prefix', input.rrlV4Prefix, SETTINGS.rrlV4Prefix.default),
    v6Prefix: int('rrlV6Prefix', input.rrlV6Prefix, SETTINGS.rrlV6Prefix.default),
  });
  const allow = cidrs('--allow', 'allow', input.allow, DEFAULT_ALLOW);
  const deny = cidrs('--deny', 'deny', input.deny, []);
  const rrlExempt = cidrs('--rrl-exempt', 'rrlExempt', input.rrlExempt, []);
  checkAclSize(allow, deny, rrlExempt);
  return Object.freeze({
    listen: listenAddrs(input.listen),
    allow: Object.freeze(allow),
    deny: Object.freeze(deny),
    rrlExempt: Object.freeze(rrlExempt),
    rrl,
    rrlBuckets,
  });
}

/**
 * Checks and completes a ConfigInput. `rxQueues` tells how many rx queues the interface
 * has (the default for --queues). Throws HeimdallError E_BAD_OPTION naming the setting.
 */
export function resolveConfig(input: ConfigInput, rxQueues: (iface: string) => number): HeimdallConfig {
  const iface = input.iface;
  if (typeof iface !== 'string' || iface.length < 1 || iface.length > 15 || /[\s/]/.test(iface)) {
    const detail = `interface name must be 1 to 15 characters without spaces or '/', got '${String(iface)}'`;
    throw badOption(detail, 'iface', detail);
  }
  const mode = (input.mode ?? 'auto') as AttachMode;
  if (!ATTACH_MODES.includes(mode)) throw badOption(`--mode must be auto, native or generic, not '${String(input.mode)}'`, 'mode', `must be auto, native or generic, not '${String(input.mode)}'`);
  const xdpAttach = (input.xdpAttach ?? 'auto') as XdpAttach;
  if (!XDP_ATTACH.includes(xdpAttach)) throw badOption(`--xdp-attach must be auto, dispatcher or direct, not '${String(input.xdpAttach)}'`, 'xdpAttach', `must be auto, dispatcher or direct, not '${String(input.xdpAttach)}'`);
  const logFormat = (input.logFormat ?? 'text') as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) throw badOption(`--log-format must be text or json, not '${String(input.logFormat)}'`, 'logFormat', `must be text or json, not '${String(input.logFormat)}'`);
  let upstreams: UpstreamAddr[];
  try {
    upstreams = parseUpstreams(input.upstream);
  } catch (e) {
    throw badOption(`--upstream: ${(e as Error).message}`, 'upstream', (e as Error).message);
  }
  const cacheSize = int('cacheSize', input.cacheSize, SETTINGS.cacheSize.default);
  const hotSize = int('hotSize', input.hotSize, hotSizeFor(cacheSize));
  const queues = int('queues', input.queues, rxQueues(iface));
  const promoteAfter = int('promoteAfter', input.promoteAfter, SETTINGS.promoteAfter.default);
  const udpSize = int('udpSize', input.udpSize, SETTINGS.udpSize.default);
  const serveStale = input.serveStale ?? false;
  const afXdp = input.afXdp ?? true;
  const cacheBytes = int('cacheBytes', input.cacheBytes, Math.max(SETTINGS.cacheBytes.min, cacheSize * 512));
  const cacheTtl = Object.freeze({
    minTtl: int('cacheMinTtl', input.cacheMinTtl, SETTINGS.cacheMinTtl.default),
    maxTtl: int('cacheMaxTtl', input.cacheMaxTtl, SETTINGS.cacheMaxTtl.default),
    negativeMaxTtl: int('cacheMaxNegativeTtl', input.cacheMaxNegativeTtl, SETTINGS.cacheMaxNegativeTtl.default),
  });
  if (cacheTtl.minTtl > cacheTtl.maxTtl) {
    const detail = `must not be above --cache-max-ttl (${cacheTtl.maxTtl}), got ${cacheTtl.minTtl}`;
    throw badOption(`--cache-min-ttl ${detail}`, 'cacheMinTtl', detail);
  }
  const upstreamInflight = int('upstreamInflight', input.upstreamInflight, SETTINGS.upstreamInflight.default);
  const upstreamInflightTotal = int('upstreamInflightTotal', input.upstreamInflightTotal, SETTINGS.upstreamInflightTotal.default);
  const share = int('upstreamClientShare', input.upstreamClientShare, SETTINGS.upstreamClientShare.default);
  const upstreamPerClient = Math.max(1, Math.floor((upstreamInflight * share) / 100));
  // The same share of the process: RSS spreads one network over every engine (budget.ts).
  const upstreamPerClientTotal = Math.max(1, Math.floor((upstreamInflightTotal * share) / 100));
  const upstreamTcpConns = int('upstreamTcpConns', input.upstreamTcpConns, SETTINGS.upstreamTcpConns.default);
  const upstreamTcpPipeline = int('upstreamTcpPipeline', input.upstreamTcpPipeline, SETTINGS.upstreamTcpPipeline.default);
  const upstreamPortReuse = int('upstreamPortReuse', input.upstreamPortReuse, SETTINGS.upstreamPortReuse.default);
  const engine = (hotCapacity: number): EngineConfig =>
    Object.freeze({
      cacheSize, hotCapacity, promoteAfter, udpSize, serveStale, cacheBytes, upstreamInflight, upstreamPerClient, upstreamTcpConns, upstreamTcpPipeline,
      upstreamPortReuse,
      capsForId: input.capsForId ?? true,
      upstreamCookies: input.upstreamCookies ?? true,
      minimalResponses: input.minimalResponses ?? true,
    });
  return Object.freeze({
    iface,
    upstreams: Object.freeze(upstreams),
    upstreamList: input.upstream,
    port: int('port', input.port, SETTINGS.port.default),
    mode,
    xdpAttach,
    queues,
    cacheSize,
    cacheBytes,
    cacheTtl,
    hotSize,
    promoteAfter,
    udpSize,
    tcp: Object.freeze({
      maxConnections: int('tcpMaxConnections', input.tcpMaxConnections, SETTINGS.tcpMaxConnections.default),
      maxPerClient: int('tcpMaxPerClient', input.tcpMaxPerClient, SETTINGS.tcpMaxPerClient.default),
      idleTimeoutMs: int('tcpIdleTimeout', input.tcpIdleTimeout, SETTINGS.tcpIdleTimeout.default),
    }),
    upstreamInflightTotal,
    upstreamPerClientTotal,
    xdpAnswers: input.xdpAnswers ?? true,
    prefetch: input.prefetch ?? true,
    afXdp,
    serveStale,
    metricsListen: input.metricsListen === undefined ? null : Object.freeze(parseListen(input.metricsListen)),
    force: input.force ?? false,
    logFormat,
    cpus: cpuList(input.cpus),
    edge: edgeConfig(input),
    // One promotion policy (the main thread's) holds the whole hot map; an engine uses
    // hotCapacity only when it runs a policy of its own (tests, tools).
    mainEngine: engine(hotSize),
    workerEngine: engine(hotSize),
  });
}
