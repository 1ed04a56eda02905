/**
 * Commander's own mistakes (a flag value its parser refuses, an unknown option, a missing
 * argument) end like every other operator mistake: one line `heimdall-xdp: ...` and exit 1.
 * Run from source (src/bin.ts), as the lab runs it; nothing here needs root.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/bin.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('flag errors', () => {
  it.each([
    [['attach', 'eth9', '-u', '198.18.1.2', '-p', '0'], /^heimdall-xdp: option '-p, --port <n>' argument '0' is invalid\. --port must be a decimal integer from 1 to 65535 \(run with --help for usage\)\n$/],
    [['attach', 'eth9', '--port', '1e3'], /^heimdall-xdp: option .*argument '1e3' is invalid\. --port must be a decimal integer/],
    [['attach', 'eth9', '--port', '0x35'], /^heimdall-xdp: option .*argument '0x35' is invalid\./],
    [['attach', 'eth9', '--port', ' 53'], /^heimdall-xdp: option .*argument ' 53' is invalid\./],
    [['attach', 'eth9', '--cache-size', '1.5e6'], /^heimdall-xdp: option .*argument '1\.5e6' is invalid\. --cache-size must be a decimal integer/],
    [['attach', 'eth9', '--port'], /^heimdall-xdp: option '-p, --port <n>' argument missing \(run with --help for usage\)\n$/],
    [['attach', 'eth9', '--bogus'], /^heimdall-xdp: unknown option '--bogus' \(run with --help for usage\)\n$/],
    [['attach', 'eth9', '--forse'], /^heimdall-xdp: unknown option '--forse' \(Did you mean --force\?\) \(run with --help for usage\)\n$/],
    [['reload'], /^heimdall-xdp: missing required argument 'iface' \(run with --help for usage\)\n$/],
    [['stats'], /^heimdall-xdp: missing required argument 'iface' \(run with --help for usage\)\n$/],
    [['nosuchcommand'], /^heimdall-xdp: unknown command 'nosuchcommand' \(run with --help for usage\)\n$/],
  ])('%j: one line, exit 1', (args, want) => {
    const r = run(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(want);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('--help and --version still print and exit 0', () => {
    const h = run(['attach', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--upstream/);
    const v = run(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('takes a decimal port', () => {
    // Parsed, then refused for the next reason (no upstream): the port itself was fine.
    const r = run(['attach', 'eth9', '--port', '5353']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^heimdall-xdp: no upstream: give --upstream\n$/);
  });
});
