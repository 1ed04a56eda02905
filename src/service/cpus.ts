/**
 * --cpus: the CPUs the service's threads run on (docs/OPERATIONS.md, "CPUs").
 *
 * The XDP program runs in the softirq of the CPU that takes the queue's packets, and a
 * redirect to an AF_XDP socket wakes that queue's worker from there. The scheduler tends
 * to place a woken thread on its waker's CPU, so without a set of their own the workers
 * and the main thread end up sharing the fast path's CPU, and every microsecond they
 * take there is one the XDP path loses (docs/BENCHMARKS.md, "CPUs apart"). Pinned to
 * other CPUs, they leave it alone. Unset, the scheduler places them as it likes.
 *
 * Every thread the process has when it is pinned is set (V8's and libuv's included:
 * /proc/self/task); threads made later (the workers, their libuv pools) inherit the set
 * of the thread that makes them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { formatCpuList, parseCpuList } from '../config.js';
import { HeimdallError } from '../errors.js';
import type { NativeAddon } from '../native/addon.js';

/** The CPUs online now (/sys/devices/system/cpu/online). */
export function onlineCpus(path = '/sys/devices/system/cpu/online'): number[] {
  return parseCpuList(readFileSync(path, 'utf8').trim());
}

/**
 * Why `cpus` cannot be pinned to on this machine (a CPU not online), or null. Pinning to
 * an offline CPU alone fails in the kernel, and one among online ones would silently do
 * less than the operator asked.
 */
export function cpusUnavailable(cpus: readonly number[], online: readonly number[]): string | null {
  const have = new Set(online);
  const missing = cpus.filter((c) => !have.has(c));
  if (missing.length === 0) return null;
  return `CPU ${formatCpuList(missing)} ${missing.length === 1 ? 'is' : 'are'} not online here (online: ${formatCpuList(online)})`;
}

/**
 * Sets every thread of this process to `cpus`. A thread that ends meanwhile is skipped.
 * Returns how many were set.
 */
export function pinProcess(cpus: readonly number[], addon: Pick<NativeAddon, 'setAffinity'>, taskDir = '/proc/self/task'): number {
  let n = 0;
  for (const name of readdirSync(taskDir)) {
    const tid = Number(name);
    if (!Number.isInteger(tid) || tid <= 0) continue;
    try {
      addon.setAffinity(tid, cpus);
      n++;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'ESRCH') throw e;
    }
  }
  return n;
}

/** The CPUs thread `tid` may run on, as the kernel lists them (/proc/self/task/<tid>/status). */
export function allowedCpus(tid: number, taskDir = '/proc/self/task'): number[] {
  const m = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`${taskDir}/${tid}/status`, 'utf8'));
  if (!m) throw new Error(`no Cpus_allowed_list for thread ${tid}`);
  return parseCpuList(m[1]!);
}

/**
 * The service's pinning, at start and on reload, from the main thread: every thread to
 * `cpus`, or back to every CPU the process may use when null (a reload that removed the
 * setting). The kernel quietly narrows a set to the process's cpuset (systemd's
 * AllowedCPUs=, a container's limit), so the main thread is pinned first and read back: a
 * set it narrowed, or refused, is refused here, every thread left as it was. What is wrong
 * is a one-line E_BAD_OPTION naming --cpus.
 */
export function pinService(
  cpus: readonly number[] | null,
  addon: Pick<NativeAddon, 'setAffinity'>,
  where: { self?: number; taskDir?: string; onlinePath?: string } = {},
): number {
  const self = where.self ?? process.pid;
  const taskDir = where.taskDir ?? '/proc/self/task';
  const online = onlineCpus(where.onlinePath);
  const want = cpus ?? online;
  const why = cpusUnavailable(want, online);
  if (why) throw new HeimdallError('E_BAD_OPTION', `--cpus: ${why}`);
  const before = allowedCpus(self, taskDir);
  const outside = (got: readonly number[]): HeimdallError =>
    new HeimdallError('E_BAD_OPTION', `--cpus: this process may only use CPUs ${formatCpuList(got)} (its cpuset: systemd's AllowedCPUs=, a container's limit), not ${formatCpuList(want)}`);
  try {
    addon.setAffinity(self, want);
    const got = allowedCpus(self, taskDir);
    // Unpinning asks for every online CPU and takes what the cpuset gives.
    if (cpus !== null && formatCpuList(got) !== formatCpuList(want)) throw outside(got);
    return pinProcess(want, addon, taskDir);
  } catch (e) {
    try {
      pinProcess(before, addon, taskDir);
    } catch {
      // Best effort: the error below is what the operator needs to see.
    }
    if ((e as { code?: unknown }).code === 'EINVAL') {
      throw new HeimdallError('E_BAD_OPTION', `--cpus: the kernel refused CPUs ${formatCpuList(want)} for this process: its cpuset (systemd's AllowedCPUs=, a container's limit) includes none of them`);
    }
    throw e;
  }
}
