/**
 * The capabilities `attach` needs, checked before anything is loaded so that a missing
 * one is named instead of surfacing as an EPERM from deep inside libbpf. Root has them
 * all; a service user gets exactly these as ambient capabilities (the systemd unit in
 * dist/systemd, docs/OPERATIONS.md says why each).
 */
import { readFileSync } from 'node:fs';

export const CAP_BITS = {
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_SYS_ADMIN: 21,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
} as const;
export type CapName = keyof typeof CAP_BITS;

/**
 * What `attach` needs (docs/OPERATIONS.md, "Running without root", says what for). Each
 * was found by leaving it out, on kernel 6.18: CAP_BPF and CAP_PERFMON to load the
 * program (without CAP_PERFMON the verifier refuses it, EACCES), CAP_NET_ADMIN to attach
 * it, CAP_NET_RAW for the AF_XDP sockets, CAP_NET_BIND_SERVICE for port 53, CAP_IPC_LOCK
 * for the UMEM (pinned memory beyond RLIMIT_MEMLOCK; not needed when that is unlimited).
 */
export const ATTACH_CAPS: readonly CapName[] = ['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_NET_BIND_SERVICE', 'CAP_IPC_LOCK'];

/** RLIMIT_MEMLOCK's soft limit in bytes (Infinity: unlimited). */
export function memlockLimit(limits = readFileSync('/proc/self/limits', 'utf8')): number {
  const m = /^Max locked memory\s+(\S+)/m.exec(limits);
  if (!m) return 0;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** The capabilities attach needs here: CAP_IPC_LOCK only when locked memory is limited. */
export function attachCaps(): CapName[] {
  return ATTACH_CAPS.filter((c) => c !== 'CAP_IPC_LOCK' || memlockLimit() !== Infinity);
}

/** This process's effective capability set (from /proc/self/status). */
export function effectiveCaps(status = readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function missingCaps(need: readonly CapName[], have: bigint = effectiveCaps()): CapName[] {
  return need.filter((c) => (have & (1n << BigInt(CAP_BITS[c]))) === 0n);
}
