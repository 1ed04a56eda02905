/**
 * The systemd unit: what systemd-analyze says of it, and that it grants exactly the
 * capabilities attach checks for (test/lab/caps.test.ts runs that set as a non-root uid).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ATTACH_CAPS } from '../../src/caps.js';
import { controlRequest, serveControl } from '../../src/service/control.js';

const UNIT = fileURLToPath(new URL('../../systemd/heimdall-xdp@.service', import.meta.url));
const text = readFileSync(UNIT, 'utf8');
const values = (key: string): string[] => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
const HAVE_ANALYZE = spawnSync('systemd-analyze', ['--version']).status === 0;

describe('systemd unit heimdall-xdp@.service', () => {
  it('runs node itself as a dedicated user with exactly the capabilities attach needs', () => {
    expect(values('User')).toEqual(['heimdall-xdp']);
    expect(values('ExecStart')[0]).toMatch(/^\/usr\/bin\/node \/\S+\/heimdall-xdp\/bin\/heimdall-xdp\.js attach %I --config \/etc\/heimdall-xdp\/%I\.yaml$/);
    expect(values('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(values('Restart')).toEqual(['on-failure']);
    expect(values('KillMode')).toEqual(['mixed']);
    expect(Number(values('TimeoutStopSec')[0])).toBeGreaterThanOrEqual(10);
    expect(values('RuntimeDirectory')).toEqual(['heimdall-xdp']);
    expect(values('RuntimeDirectoryMode')).toEqual(['0750']);
    // One directory for every instance: stopping one must not delete the others' sockets.
    expect(values('RuntimeDirectoryPreserve')).toEqual(['yes']);
    // Interface names with '-' need systemd-escape (systemd reads '-' in %I as '/').
    expect(text).toMatch(/^# .*systemd-escape br-lan/m);
    for (const key of ['AmbientCapabilities', 'CapabilityBoundingSet']) expect(values(key)[0]!.split(' ').sort()).toEqual([...ATTACH_CAPS].sort());
  });

  // Outside CI a machine without systemd-analyze skips this one, and its name says so; under CI=true it runs (and fails without the tool).
  it.runIf(HAVE_ANALYZE || process.env.CI === 'true')(`passes systemd-analyze verify without a remark${HAVE_ANALYZE ? '' : ' [skipped: systemd-analyze not installed]'}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-unit-'));
    copyFileSync(UNIT, join(dir, 'heimdall-xdp@.service'));
    symlinkSync('heimdall-xdp@.service', join(dir, 'heimdall-xdp@eth0.service'));
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'heimdall-xdp@eth0.service')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toBe('');
    // It would say so: a broken directive is reported.
    writeFileSync(join(dir, 'x@.service'), text.replace('KillMode=mixed', 'KillMode=bogus'));
    symlinkSync('x@.service', join(dir, 'x@eth0.service'));
    expect(spawnSync('systemd-analyze', ['verify', join(dir, 'x@eth0.service')], { encoding: 'utf8' }).stderr).toMatch(/kill mode/);
  });

  it('lets the next instance replace a socket a killed one left in the kept directory, and removes its own on stop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-run-'));
    try {
      writeFileSync(join(dir, 'eth9.sock'), ''); // what a SIGKILLed process leaves: a path nobody listens on
      const server = await serveControl('eth9', { ping: async () => ({ pong: true }) }, dir);
      expect(await controlRequest('eth9', { cmd: 'ping' }, dir)).toMatchObject({ pong: true });
      await server.close();
      expect(existsSync(join(dir, 'eth9.sock'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
