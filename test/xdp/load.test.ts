/**
 * Loading the program. It loads in a process that receives signals all the time. The verifier gives
 * up with EAGAIN on a pending signal; node --cpu-prof sends SIGPROF every millisecond,
 * and before the addon held signals back during the load, `heimdall-xdp attach` under
 * the profiler failed with "cannot load the XDP program: EAGAIN".
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { FastPath } from '../../src/xdp/fastpath.js';

describePrivileged('loading the XDP program', {}, () => {
  it('loads the XDP program five times in a row under node --cpu-prof (SIGPROF every 100 us)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-prof-'));
    try {
      const code = `
        const { FastPath } = await import(${JSON.stringify(join(process.cwd(), 'dist/xdp/fastpath.js'))});
        for (let i = 0; i < 5; i++) FastPath.open({ hotEntries: 1024 }).close();
        console.log('loaded');`;
      const out = execFileSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', dir, '--input-type=module', '-e', code], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(out.trim()).toBe('loaded');
      expect(readdirSync(dir).some((f) => f.endsWith('.cpuprofile'))).toBe(true); // the profiler really ran
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a hot map too large for its per-CPU hit counters, naming the option to lower', () => {
    expect(() => FastPath.open({ hotEntries: 2 ** 31 })).toThrow(/too large for per-CPU hit counters on \d+ CPUs \(at most \d+\); lower --hot-size/);
  });
});
