/**
 * Sharing the interface: heimdall-xdp behind an operator's XDP firewall through libxdp's
 * multi-program dispatcher, and a direct attach where the host cannot run a dispatcher.
 *
 * The firewall is bpf/lab_firewall.bpf.o (it drops UDP from 198.18.0.66 and passes the
 * rest), loaded with xdp-loader before heimdall. libxdp keeps a dispatcher's programs
 * pinned in bpffs; `ip netns exec` hides the host's /sys/fs/bpf, so this test mounts one
 * of its own and names it with LIBXDP_BPFFS for xdp-loader and heimdall alike.
 *
 * Which half runs depends on the kernel: a dispatcher needs extension (freplace)
 * programs, and a kernel that refuses them gets the direct attach, whose behaviour is
 * then what is checked. `dispatcherUnavailable` (the addon's own probe) says which.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, type Service } from '../helpers/lab.js';
import { sh } from '../helpers/netns.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIREWALL = `${ROOT}bpf/lab_firewall.bpf.o`;
const BLOCKED = '198.18.0.66'; // FIREWALL_BLOCKED_V4 in bpf/lab_firewall.bpf.c
const M_XDP = 'heimdall_responses_total{path="xdp"}';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines.length, stderr).toBe(1);
  return lines[0]!;
}

describePrivileged('heimdall-xdp sharing the interface with an XDP firewall', { netns: true, tools: ['nsd', 'xdp-loader', 'bpftool'] }, () => {
  const lab = new Lab('x');
  const bpffs = `/run/hx-bpffs-${process.pid}`;
  const env = { LIBXDP_BPFFS: bpffs };
  const up = `--upstream=${ADDR.upstream4}`;
  /** Why this host cannot run a dispatcher; '' when it can. */
  let unavailable = '';

  const loader = (...args: string[]): string => lab.exec('appliance', 'env', [`LIBXDP_BPFFS=${bpffs}`, 'xdp-loader', ...args]);
  const digFrom = (source: string): string => lab.dig(['-b', source, 'www.lab.example', 'A']);
  /** Frames the firewall has dropped (its fw_dropped counter), found through the program attached. */
  const firewallDropped = (): number => {
    // One program prints an object, several an array, none nothing.
    const text = sh('bpftool', ['-j', 'prog', 'show', 'name', 'lab_firewall'], { allowFail: true }).trim();
    const progs = (text ? [JSON.parse(text) as unknown].flat() : []) as { map_ids?: number[] }[];
    let sum = 0;
    for (const p of progs) {
      for (const id of p.map_ids ?? []) {
        const v = JSON.parse(sh('bpftool', ['-j', 'map', 'lookup', 'id', String(id), 'key', '0', '0', '0', '0'])) as { formatted: { value: number } };
        sum += v.formatted.value;
      }
    }
    return sum;
  };
  const serve = async (args: string[]): Promise<Service> => {
    const svc = lab.startService([up, '--no-af-xdp', '--metrics-listen', '127.0.0.1:9153', ...args], env);
    await svc.ready();
    return svc;
  };
  /** Asks until XDP answers (the name is promoted after a few asks); returns XDP's count. */
  const warm = (svc: Service): number => {
    for (let i = 0; i < 5; i++) expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
    const m = svc.metricsWhen((x) => (x[M_XDP] ?? 0) >= 2);
    expect(m[M_XDP]).toBeGreaterThanOrEqual(2);
    return m[M_XDP]!;
  };

  beforeAll(() => {
    lab.up(20);
    mkdirSync(bpffs, { recursive: true });
    sh('mount', ['-t', 'bpf', 'bpf', bpffs]);
    sh('ip', ['-n', lab.ns.client, 'addr', 'add', `${BLOCKED}/24`, 'dev', `${lab.prefix}c0`]);
    const probe = `import { loadAddon, BPF_PASS_OBJECT_PATH } from '${ROOT}src/native/addon.ts'; process.stdout.write(JSON.stringify(loadAddon().dispatcherUnavailable(BPF_PASS_OBJECT_PATH)));`;
    unavailable = JSON.parse(lab.exec('appliance', 'env', [`LIBXDP_BPFFS=${bpffs}`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', probe])) as string;
  }, 90_000);

  afterAll(() => {
    loader('unload', '-a', lab.applianceIf);
    lab.down();
    sh('umount', [bpffs], { allowFail: true });
    rmSync(bpffs, { recursive: true, force: true });
  });

  it('runs behind the firewall through the dispatcher, or says why it cannot', async () => {
    loader('load', '-m', 'native', lab.applianceIf, FIREWALL);
    try {
      if (unavailable !== '') {
        // xdp-loader fell back to attaching the firewall alone, so nothing can join it:
        // heimdall refuses (as for any foreign program), naming the reason.
        const r = await lab.cli(['attach', lab.applianceIf, up, '--allow', '198.18.0.0/15', '--no-af-xdp'], 30_000, env);
        expect(r.code).toBe(1);
        expect(oneLine(r.stderr)).toMatch(/already runs XDP program 'lab_firewall' .*\(no libxdp dispatcher can share the interface here: .*\); remove it .* or use --force/);
        // The firewall itself works (alone): the blocked source's query is dropped and counted.
        const dropped = firewallDropped();
        expect(digFrom(BLOCKED)).not.toMatch(/status:/);
        expect(firewallDropped()).toBeGreaterThan(dropped);
        return;
      }
      expect(loader('status', lab.applianceIf)).toMatch(/xdp_dispatcher[\s\S]*lab_firewall/);
      const svc = await serve([]);
      try {
        expect(svc.stdout).toMatch(/libxdp dispatcher, position 2 of 2\)/);
        const status = loader('status', lab.applianceIf);
        expect(status).toMatch(/xdp_dispatcher/);
        expect(status.indexOf('lab_firewall')).toBeGreaterThan(-1);
        expect(status.indexOf('heimdall_xdp')).toBeGreaterThan(status.indexOf('lab_firewall')); // the firewall runs first
        const xdp = warm(svc);
        // The firewalled source gets nothing, and heimdall never saw its queries.
        const dropped = firewallDropped();
        for (let i = 0; i < 3; i++) expect(digFrom(BLOCKED)).not.toMatch(/status:/);
        expect(firewallDropped() - dropped).toBeGreaterThanOrEqual(3);
        expect(svc.metrics()[M_XDP]).toBe(xdp);
        // The allowed client still gets XDP's answer.
        expect(digFrom(ADDR.client4)).toMatch(/status: NOERROR/);
        expect(svc.metricsWhen((x) => (x[M_XDP] ?? 0) > xdp)[M_XDP]).toBeGreaterThan(xdp);
      } finally {
        expect(await svc.stop()).toBe(0);
      }
      // Detaching took heimdall out and left the firewall running.
      const after = loader('status', lab.applianceIf);
      expect(after).toMatch(/lab_firewall/);
      expect(after).not.toMatch(/heimdall_xdp/);
      const dropped = firewallDropped();
      expect(digFrom(BLOCKED)).not.toMatch(/status:/);
      expect(firewallDropped()).toBeGreaterThan(dropped);
    } finally {
      loader('unload', '-a', lab.applianceIf);
    }
  }, 90_000);

  it('replaces a heimdall program left in the dispatcher by a killed process; detach removes only it', async () => {
    if (unavailable !== '') return; // the stale rules of a direct attach: test/lab/cli.test.ts
    loader('load', '-m', 'native', lab.applianceIf, FIREWALL);
    try {
      const first = await serve([]);
      first.signal('SIGKILL');
      await first.stop();
      const st = await lab.cli(['status', lab.applianceIf], 30_000, env);
      expect(st.stdout).toMatch(/libxdp dispatcher .* 1\. XDP program 'lab_firewall' .*, 2\. XDP program 'heimdall_xdp'/);
      const again = await serve([]);
      expect(again.stdout).toMatch(/replaced XDP program 'heimdall_xdp'/);
      expect(again.stdout).toMatch(/position 2 of 2/);
      again.signal('SIGKILL');
      await again.stop();
      expect((await lab.cli(['detach', lab.applianceIf], 30_000, env)).stdout).toMatch(/detached heimdall/);
      const status = loader('status', lab.applianceIf);
      expect(status).toMatch(/lab_firewall/);
      expect(status).not.toMatch(/heimdall_xdp/);
    } finally {
      loader('unload', '-a', lab.applianceIf);
    }
  }, 90_000);

  it('--xdp-attach dispatcher attaches through one, or refuses in one line that says why', async () => {
    if (unavailable === '') {
      const svc = await serve(['--xdp-attach', 'dispatcher']);
      try {
        expect(svc.stdout).toMatch(/libxdp dispatcher, position 1 of 1\)/);
        warm(svc);
      } finally {
        expect(await svc.stop()).toBe(0);
      }
      expect(loader('status', lab.applianceIf)).not.toMatch(/heimdall_xdp|xdp_dispatcher/);
      return;
    }
    const r = await lab.cli(['attach', lab.applianceIf, up, '--allow', '198.18.0.0/15', '--no-af-xdp', '--xdp-attach', 'dispatcher'], 30_000, env);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/cannot attach to '\w+' through a libxdp dispatcher \(.+\); attach with --xdp-attach direct or auto/);
    expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).not.toMatch(/xdp/);
  }, 60_000);

  it('serves from the maps it writes when libxdp attaches its second load alone (LIBXDP_SKIP_DISPATCHER=1)', async () => {
    // The load libxdp attaches is not the one whose fds the service writes: with the
    // dispatcher skipped, libxdp attaches it alone on any kernel, and XDP answers (and
    // the counters the service reads) show the two loads share their maps.
    const svc = lab.startService([up, '--no-af-xdp', '--metrics-listen', '127.0.0.1:9153'], { ...env, LIBXDP_SKIP_DISPATCHER: '1' });
    await svc.ready();
    try {
      expect(svc.stdout).toMatch(/direct attach: libxdp was told to attach alone \(LIBXDP_SKIP_DISPATCHER=1\)\)/);
      warm(svc);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).not.toMatch(/xdp/);
  }, 60_000);

  it('auto says in the start line how it attached; direct attaches alone and serves from XDP', async () => {
    const auto = await serve([]);
    try {
      if (unavailable === '') expect(auto.stdout).toMatch(/libxdp dispatcher, position 1 of 1\)/);
      else expect(auto.stdout).toContain(`direct attach: ${unavailable})`);
    } finally {
      expect(await auto.stop()).toBe(0);
    }
    // Without LIBXDP_BPFFS, inside `ip netns exec`: no bpffs, so the reason names it.
    const hidden = lab.startService([up, '--no-af-xdp']);
    await hidden.ready();
    expect(hidden.stdout).toMatch(/direct attach: no bpffs at \/sys\/fs\/bpf/);
    expect(await hidden.stop()).toBe(0);

    const direct = await serve(['--xdp-attach', 'direct']);
    try {
      expect(direct.stdout).toMatch(/rate limit \d+\/s, direct attach\) via/);
      expect((await lab.cli(['status', lab.applianceIf], 30_000, env)).stdout).toMatch(/XDP program 'heimdall_xdp' \(id \d+, native mode/);
      warm(direct);
    } finally {
      expect(await direct.stop()).toBe(0);
    }
    expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).not.toMatch(/xdp/);
  }, 90_000);
});
