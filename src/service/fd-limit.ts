/**
 * File descriptors: the process must never come near RLIMIT_NOFILE, where accept() and
 * socket() start failing for everyone. At start the soft limit is raised to the hard one
 * (Node does this itself at startup; this makes sure, with util-linux prlimit, because
 * Node has no setrlimit), then the most descriptors the configured limits can hold at
 * once is computed and must stay under half of it. docs/LIMITS.md gives the arithmetic.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { HeimdallConfig } from '../config.js';
import { HeimdallError } from '../errors.js';

export interface NofileLimit {
  soft: number;
  hard: number;
}

/**
 * Descriptors that do not scale with load: stdio, the libuv loop and its threadpool,
 * the BPF program and maps, each worker's AF_XDP socket and epoll, the listeners, the
 * metrics server. Measured about 60 with two workers; 256 leaves room.
 */
export const FIXED_FDS = 256;

/** Kernel TCP clients counted when the config carries no limit of its own. */
export const DEFAULT_TCP_CLIENTS = 1024;

/** Share of the soft limit the computed worst case may use. */
export const FD_MARGIN = 0.5;

/** RLIMIT_NOFILE of this process, from /proc (Infinity for "unlimited"). */
export function readNofile(text = readFileSync('/proc/self/limits', 'utf8')): NofileLimit {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) throw new Error('no "Max open files" line in /proc/self/limits');
  const n = (s: string): number => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m[1]!), hard: n(m[2]!) };
}

/** Raises the soft limit to the hard one when it is lower; returns the limit now in force. */
export function raiseNofile(read: () => NofileLimit = readNofile, exec: (cmd: string, args: string[]) => void = (c, a) => void execFileSync(c, a, { stdio: 'ignore' })): NofileLimit {
  const l = read();
  if (l.soft >= l.hard) return l;
  const hard = l.hard === Infinity ? 'unlimited' : String(l.hard);
  try {
    exec('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`]);
  } catch {
    // No prlimit (util-linux) or not allowed: the check below works with what there is.
  }
  return read();
}

/**
 * The most descriptors the configured limits let the process hold at once:
 *   upstream UDP   2 per question in flight (the attempt and the one before it), the
 *                  process-wide in-flight limit, plus one health probe per upstream per engine
 *   upstream TCP   connections per upstream per engine
 *   kernel TCP     client connections of the listener
 *   fixed          FIXED_FDS
 */
export function fdWorstCase(cfg: HeimdallConfig, tcpClients = DEFAULT_TCP_CLIENTS): { total: number; parts: Record<string, number> } {
  const engines = 1 + (cfg.afXdp ? cfg.queues : 0);
  const ups = cfg.upstreams.length;
  const inflight = Math.min(cfg.upstreamInflightTotal, engines * cfg.workerEngine.upstreamInflight);
  const parts = {
    upstreamUdp: 2 * inflight + engines * ups,
    upstreamTcp: engines * ups * cfg.workerEngine.upstreamTcpConns,
    kernelTcp: tcpClients,
    fixed: FIXED_FDS,
  };
  return { total: parts.upstreamUdp + parts.upstreamTcp + parts.kernelTcp + parts.fixed, parts };
}

/**
 * Raises the soft limit and checks the configured limits fit in FD_MARGIN of it;
 * throws E_BAD_OPTION with what to change when they do not.
 */
export function checkFdLimit(cfg: HeimdallConfig, tcpClients = DEFAULT_TCP_CLIENTS, limit: NofileLimit = raiseNofile()): { need: number; limit: number } {
  const need = fdWorstCase(cfg, tcpClients).total;
  const allowed = Math.floor(limit.soft * FD_MARGIN);
  if (need > allowed) {
    throw new HeimdallError(
      'E_BAD_OPTION',
      `the configured limits may hold ${need} file descriptors, more than half the limit of ${limit.soft}: lower --upstream-inflight-total or raise the hard RLIMIT_NOFILE (ulimit -Hn, LimitNOFILE=)`,
    );
  }
  return { need, limit: limit.soft };
}
