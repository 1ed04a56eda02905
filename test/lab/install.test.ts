/**
 * Installed like a package: `npm pack`, then `npm install -g` of the tarball into a
 * temporary prefix (the install script builds the BPF objects and the addon there), then
 * the installed command: --version, check-config of the shipped example, and attach in
 * the lab serving from XDP, and detaching on SIGTERM.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, Service } from '../helpers/lab.js';
import { LAB_ALLOW } from '../helpers/edge.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describePrivileged('npm pack and install -g', { netns: true, tools: ['dig', 'nsd', 'curl', 'clang', 'make', 'g++'] }, () => {
  const lab = new Lab('i');
  const dir = mkdtempSync(join(tmpdir(), 'hx-install-'));
  const prefix = join(dir, 'prefix');
  const bin = join(prefix, 'bin', 'heimdall-xdp');
  const pkg = join(prefix, 'lib', 'node_modules', 'heimdall-xdp');
  // The installed command finds node on PATH (its #!/usr/bin/env node), as a user's shell would.
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };

  beforeAll(() => {
    lab.up(20);
    const npm = (cwd: string, args: string[]) => execFileSync('npm', args, { cwd, env, encoding: 'utf8', timeout: 240_000, stdio: ['ignore', 'pipe', 'pipe'] });
    npm(ROOT, ['pack', '--pack-destination', dir]);
    // From elsewhere than the checkout, so nothing of its .npmrc helps the install.
    npm(dir, ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--allow-scripts=heimdall-xdp', join(dir, `heimdall-xdp-${VERSION}.tgz`)]);
  }, 300_000);

  afterAll(() => {
    lab.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('installs a heimdall-xdp command with the BPF object and the addon built', () => {
    expect(execFileSync(bin, ['--version'], { env, encoding: 'utf8' })).toBe(`${VERSION}\n`);
    for (const f of ['build/Release/heimdall.node', 'bpf/heimdall.bpf.o', 'dist/bin.js', 'dist/service/worker.js', 'systemd/heimdall-xdp@.service', 'config/heimdall-xdp.example.yaml', 'dashboards/heimdall-xdp.json']) {
      expect(existsSync(join(pkg, f)), f).toBe(true);
    }
    // Nothing of the checkout's tests or sources beyond what the install builds from.
    expect(existsSync(join(pkg, 'test'))).toBe(false);
    expect(existsSync(join(pkg, 'src'))).toBe(false);
    const out = execFileSync(bin, ['check-config', join(pkg, 'config/heimdall-xdp.example.yaml'), 'eth0'], { env, encoding: 'utf8' });
    expect(out).toMatch(/heimdall-xdp\.example\.yaml: ok \(interface eth0/);
  });

  it('attaches from the installed copy and serves from XDP', async () => {
    const p = spawn('ip', ['netns', 'exec', lab.ns.appliance, bin, 'attach', lab.applianceIf, '--upstream', ADDR.upstream4, '--allow', LAB_ALLOW, '--metrics-listen', '127.0.0.1:9156'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const svc = new Service(p, lab);
    try {
      await svc.ready();
      for (let i = 0; i < 5; i++) expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
      const m = svc.metricsWhen((x) => (x['heimdall_responses_total{path="xdp"}'] ?? 0) >= 1, 3000, 9156);
      expect(m['heimdall_responses_total{path="xdp"}']).toBeGreaterThanOrEqual(1);
    } finally {
      // ip netns exec execs the command and the shebang execs node: this PID is node.
      expect(await svc.stop()).toBe(0);
    }
    expect(svc.stdout).toMatch(/detached from/);
    expect(lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf])).not.toMatch(/prog\/xdp/);
  }, 60_000);
});
