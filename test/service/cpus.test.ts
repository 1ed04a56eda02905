/**
 * --cpus: the list's syntax (flag and file), the online check, and pinning every thread
 * of a process through the addon. The real pinning of a running service, and of the
 * workers it restarts, is in test/lab/reload.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFrom } from '../../src/cli.js';
import { parseConfigText } from '../../src/config-file.js';
import { formatCpuList, parseCpuList } from '../../src/config.js';
import { cpusUnavailable, pinProcess, pinService } from '../../src/service/cpus.js';
import { describePrivileged } from '../helpers/privilege.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('CPU lists', () => {
  it('reads single CPUs, ranges and both, ascending and each once', () => {
    expect(parseCpuList('1')).toEqual([1]);
    expect(parseCpuList('2-4')).toEqual([2, 3, 4]);
    expect(parseCpuList(' 6, 0,2-3,3 ')).toEqual([0, 2, 3, 6]);
    expect(parseCpuList('4095')).toEqual([4095]);
  });

  it('says what is wrong with a list it cannot read', () => {
    expect(errorOf(() => parseCpuList(''))).toBe('needs at least one CPU (e.g. 1, 2-3 or 0,2)');
    expect(errorOf(() => parseCpuList(' , '))).toBe('needs at least one CPU (e.g. 1, 2-3 or 0,2)');
    expect(errorOf(() => parseCpuList('3-1'))).toBe("'3-1' is a range that runs backwards");
    expect(errorOf(() => parseCpuList('4096'))).toBe("'4096': CPU numbers go up to 4095");
    expect(errorOf(() => parseCpuList('1,a'))).toBe("'a' is not a CPU number or a range of them (e.g. 1, 2-3 or 0,2)");
    expect(errorOf(() => parseCpuList('-1'))).toMatch(/^'-1' is not a CPU number/);
    expect(errorOf(() => parseCpuList('1.5'))).toMatch(/^'1\.5' is not a CPU number/);
  });

  it('writes a list in its shortest form', () => {
    expect(formatCpuList([0, 2, 3, 4, 7])).toBe('0,2-4,7');
    expect(formatCpuList([5])).toBe('5');
    expect(formatCpuList(parseCpuList('0-3,8-9'))).toBe('0-3,8-9');
  });

  it('names the CPUs that are not online', () => {
    expect(cpusUnavailable([1], [0, 1])).toBeNull();
    expect(cpusUnavailable([1, 2, 3], [0, 1])).toBe('CPU 2-3 are not online here (online: 0-1)');
    expect(cpusUnavailable([5], [0, 1, 2, 3])).toBe('CPU 5 is not online here (online: 0-3)');
  });
});

describe('--cpus in the config', () => {
  const base = 'interface: eth0\nupstreams: [198.18.1.2]\n';
  const fromFile = (extra: string) => configFrom(parseConfigText(base + extra, 'c.yaml'), {});

  it('is absent by default: the scheduler places the threads', () => {
    expect(fromFile('').cpus).toBeNull();
  });

  it('takes a number or a list from the file, and the flag over the file', () => {
    expect(fromFile('cpus: 1\n').cpus).toEqual([1]);
    expect(fromFile('cpus: 1-3\n').cpus).toEqual([1, 2, 3]);
    expect(fromFile('cpus: "0,2"\n').cpus).toEqual([0, 2]);
    expect(configFrom(parseConfigText(base + 'cpus: 1\n', 'c.yaml'), { cpus: '0' }).cpus).toEqual([0]);
  });

  it('names the key and the line of a list it cannot read', () => {
    expect(errorOf(() => fromFile('cpus: 3-1\n'))).toBe("c.yaml:3: cpus: '3-1' is a range that runs backwards");
    expect(errorOf(() => fromFile('cpus: [1, 2]\n'))).toMatch(/^c\.yaml:3: cpus: must be a CPU list such as 1, 2-3 or 0,2, got/);
    expect(errorOf(() => configFrom(null, { iface: 'eth0', upstream: '198.18.1.2', cpus: 'x' }))).toBe("--cpus: 'x' is not a CPU number or a range of them (e.g. 1, 2-3 or 0,2)");
  });
});

describe('pinning every thread of a process', () => {
  it('sets each task, skips one that ended meanwhile, and passes any other refusal on', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-tasks-'));
    try {
      for (const t of ['100', '101', '102']) mkdirSync(join(dir, t));
      const set: [number, readonly number[]][] = [];
      const gone = Object.assign(new Error('no such thread'), { code: 'ESRCH' });
      const n = pinProcess([1, 2], { setAffinity: (tid, cpus) => { if (tid === 101) throw gone; set.push([tid, cpus]); } }, dir);
      expect(n).toBe(2);
      expect(set.sort((a, b) => a[0] - b[0])).toEqual([[100, [1, 2]], [102, [1, 2]]]);
      const refused = Object.assign(new Error('refused'), { code: 'EINVAL' });
      expect(() => pinProcess([1], { setAffinity: () => { throw refused; } }, dir)).toThrow('refused');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pinning the service: all or nothing', () => {
  /**
   * A fake /proc/self/task of three threads (100 the main one) on every CPU of `cpuset`,
   * CPUs 0-3 online, and a kernel that narrows a set to the cpuset and refuses one with
   * nothing left (EINVAL), as sched_setaffinity does.
   */
  function fakeKernel(cpuset: number[]) {
    const dir = mkdtempSync(join(tmpdir(), 'hx-pin-'));
    const tasks = join(dir, 'task');
    const online = join(dir, 'online');
    writeFileSync(online, '0-3\n');
    const write = (tid: number, cpus: readonly number[]) => writeFileSync(join(tasks, String(tid), 'status'), `Name:\tnode\nCpus_allowed_list:\t${formatCpuList(cpus)}\n`);
    for (const tid of [100, 101, 102]) {
      mkdirSync(join(tasks, String(tid)), { recursive: true });
      write(tid, cpuset);
    }
    const addon = {
      setAffinity(tid: number, cpus: readonly number[]) {
        const left = cpus.filter((c) => cpuset.includes(c));
        if (left.length === 0) throw Object.assign(new Error('Invalid argument'), { code: 'EINVAL' });
        write(tid, left);
      },
    };
    const sets = () => [100, 101, 102].map((tid) => /Cpus_allowed_list:\t(\S+)/.exec(readFileSync(join(tasks, String(tid), 'status'), 'utf8'))![1]);
    const where = { self: 100, taskDir: tasks, onlinePath: online };
    return { addon, sets, where, done: () => rmSync(dir, { recursive: true, force: true }) };
  }

  it('pins every thread when the cpuset allows the whole list', () => {
    const k = fakeKernel([0, 1, 2, 3]);
    try {
      expect(pinService([2, 3], k.addon, k.where)).toBe(3);
      expect(k.sets()).toEqual(['2-3', '2-3', '2-3']);
      pinService(null, k.addon, k.where); // the key removed: every online CPU again
      expect(k.sets()).toEqual(['0-3', '0-3', '0-3']);
    } finally {
      k.done();
    }
  });

  it('refuses a list the cpuset would narrow, and leaves every thread as it was', () => {
    const k = fakeKernel([0, 1, 2]);
    try {
      pinService([1], k.addon, k.where);
      expect(errorOf(() => pinService([2, 3], k.addon, k.where))).toBe("--cpus: this process may only use CPUs 2 (its cpuset: systemd's AllowedCPUs=, a container's limit), not 2-3");
      expect(k.sets()).toEqual(['1', '1', '1']);
      // Unpinning takes what the cpuset gives.
      expect(pinService(null, k.addon, k.where)).toBe(3);
      expect(k.sets()).toEqual(['0-2', '0-2', '0-2']);
    } finally {
      k.done();
    }
  });

  it('says so when the cpuset holds none of the list, and names CPUs that are not online', () => {
    const k = fakeKernel([0, 1]);
    try {
      expect(errorOf(() => pinService([3], k.addon, k.where))).toBe("--cpus: the kernel refused CPUs 3 for this process: its cpuset (systemd's AllowedCPUs=, a container's limit) includes none of them");
      expect(errorOf(() => pinService([5], k.addon, k.where))).toBe('--cpus: CPU 5 is not online here (online: 0-3)');
      expect(k.sets()).toEqual(['0-1', '0-1', '0-1']);
    } finally {
      k.done();
    }
  });
});

describePrivileged('pinning through the addon', {}, () => {
  it('pins every thread of a fresh process, and the threads it starts afterwards inherit the set', () => {
    // A child process, so this test's own threads keep theirs: it pins itself, starts a
    // worker thread, and prints every thread's allowed CPUs as the kernel lists them.
    const script = `
      const { loadAddon } = await import('./src/native/addon.ts');
      const { onlineCpus, pinService } = await import('./src/service/cpus.ts');
      const { Worker } = await import('node:worker_threads');
      const { readdirSync, readFileSync } = await import('node:fs');
      const cpu = onlineCpus().at(-1);
      const n = pinService([cpu], loadAddon());
      const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
      await new Promise((r) => w.once('online', r));
      const sets = readdirSync('/proc/self/task').map((t) => /^Cpus_allowed_list:\\s*(\\S+)$/m.exec(readFileSync('/proc/self/task/' + t + '/status', 'utf8'))[1]);
      console.log(JSON.stringify({ cpu, n, sets }));
      await w.terminate();`;
    const out = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' })) as { cpu: number; n: number; sets: string[] };
    expect(out.n).toBeGreaterThan(1); // the main thread and V8's
    expect(out.sets.length).toBeGreaterThan(out.n); // the worker (and its helpers) came after
    expect(new Set(out.sets)).toEqual(new Set([String(out.cpu)]));
  });
});
