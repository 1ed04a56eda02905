/**
 * attach without root: a non-root uid with exactly the capabilities of src/caps.ts as
 * ambient ones (what the systemd unit grants) loads, attaches and serves on every path,
 * its control socket answers, and SIGTERM detaches. One capability fewer is named.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, runCli, Service } from '../helpers/lab.js';
import { LAB_ALLOW } from '../helpers/edge.js';
import { ATTACH_CAPS } from '../../src/caps.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NOBODY = 65534;
const setprivCaps = (caps: readonly string[]) => caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');

describePrivileged('attach as a non-root user with ambient capabilities', { netns: true, tools: ['dig', 'nsd', 'setpriv', 'curl'] }, () => {
  const lab = new Lab('n');
  const runDir = mkdtempSync(join(tmpdir(), 'hx-run-'));

  /** attach in the appliance as uid 65534 with `caps`, control sockets in runDir. */
  function startAs(caps: readonly string[], extra: string[] = []): Service {
    const c = setprivCaps(caps);
    const p = spawn(
      'ip',
      ['netns', 'exec', lab.ns.appliance, 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', `--inh-caps=${c}`, `--ambient-caps=${c}`,
        process.execPath, '--import', 'tsx', `${ROOT}/src/bin.ts`, 'attach', lab.applianceIf, '--upstream', ADDR.upstream4, '--allow', LAB_ALLOW, ...extra],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HEIMDALL_XDP_RUN_DIR: runDir } },
    );
    return new Service(p, lab);
  }

  beforeAll(() => {
    lab.up(50);
    chownSync(runDir, NOBODY, NOBODY); // what systemd's RuntimeDirectory= does for the unit's user
  }, 60_000);
  afterAll(() => {
    lab.down();
    rmSync(runDir, { recursive: true, force: true });
  });

  it('serves from upstream, cache and XDP as uid 65534, answers on its control socket, detaches on SIGTERM', async () => {
    const svc = startAs(ATTACH_CAPS, ['--metrics-listen', '127.0.0.1:9155']);
    try {
      await svc.ready();
      expect(svc.stderr).toBe('');
      const status = lab.exec('appliance', 'cat', [`/proc/${svc.proc.pid}/status`]);
      expect(status).toMatch(new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}$`, 'm'));
      expect(status).toMatch(/^CapEff:\s+000000c000007400$/m); // BPF, PERFMON, NET_ADMIN, NET_RAW, NET_BIND_SERVICE, IPC_LOCK: no more
      for (let i = 0; i < 5; i++) expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
      expect(lab.dig(['+tcp', 'www.lab.example', 'A'])).toMatch(/status: NOERROR/);
      const m = svc.metricsWhen((x) => (x['heimdall_responses_total{path="xdp"}'] ?? 0) >= 1, 3000, 9155);
      expect(m['heimdall_responses_total{path="xdp"}']).toBeGreaterThanOrEqual(1);
      expect(m['heimdall_responses_total{path="upstream"}']).toBeGreaterThanOrEqual(1);
      const stats = await runCli(['ip', 'netns', 'exec', lab.ns.appliance, 'env', `HEIMDALL_XDP_RUN_DIR=${runDir}`, process.execPath, '--import', 'tsx', 'src/bin.ts', 'stats', lab.applianceIf, '--interval', '100']);
      expect(stats.stdout).toMatch(/hot map: [1-9]\d* of/);
      expect(lab.exec('appliance', 'stat', ['-c', '%u %a', join(runDir, `${lab.applianceIf}.sock`)])).toBe(`${NOBODY} 660\n`);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    expect(svc.stdout).toMatch(/detached from/);
    expect(lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf])).not.toMatch(/prog\/xdp/);
  }, 60_000);

  it('names a missing capability in one line and touches nothing', async () => {
    const svc = startAs(ATTACH_CAPS.filter((c) => c !== 'CAP_PERFMON'));
    for (let i = 0; i < 200 && svc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
    expect(svc.exitCode).toBe(1);
    expect(svc.stderr).toMatch(/^heimdall-xdp: missing capabilities CAP_PERFMON: run as root, or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE, CAP_IPC_LOCK \(see docs\/OPERATIONS\.md\)\n$/);
    expect(lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf])).not.toMatch(/prog\/xdp/);
  }, 60_000);
});
