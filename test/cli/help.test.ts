/** The installed command as an operator first meets it: built, and saying what it does. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/heimdall-xdp.js', import.meta.url));
const BUILT = existsSync(fileURLToPath(new URL('../../dist/bin.js', import.meta.url)));
/** Outside CI an unbuilt checkout skips these, saying so; under CI=true they run (npm test builds first). */
const UNBUILT = BUILT ? '' : ' [skipped: dist/ not built, run npm run build]';

describe('heimdall-xdp command', () => {
  it.runIf(BUILT || process.env.CI === 'true')(`lists its commands and the attach options${UNBUILT}`, () => {
    const top = execFileSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
    expect(top).toMatch(/attach \[options\] \[iface\]/);
    expect(top).toMatch(/check-config <file> \[iface\]/);
    expect(top).toMatch(/reload <iface>/);
    expect(top).toMatch(/stats \[options\] <iface>/);
    expect(top).toMatch(/cache \[options\] <iface> <action> \[name\] \[type\]/);
    expect(top).toMatch(/upstreams \[options\] <iface>/);
    expect(execFileSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' })).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(top).toMatch(/detach <iface>/);
    expect(top).toMatch(/status <iface>/);
    const attach = execFileSync(process.execPath, [BIN, 'attach', '--help'], { encoding: 'utf8' });
    for (const opt of ['--upstream', '--port', '--mode', '--queues', '--cache-size', '--hot-size', '--no-xdp-answers', '--metrics-listen', '--config', '--log-format']) {
      expect(attach).toContain(opt);
    }
  });

  it.runIf(BUILT || process.env.CI === 'true')(`rejects an unknown option in one line${UNBUILT}`, () => {
    let stderr = '';
    try {
      execFileSync(process.execPath, [BIN, 'attach', 'nosuch0', '--upstream', '198.18.1.2', '--mode', 'turbo'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      stderr = (e as { stderr: string }).stderr;
    }
    expect(stderr.trim().split('\n')[0]).toMatch(/^heimdall-xdp: (must run as root|--mode must be auto, native or generic)/);
  });
});
