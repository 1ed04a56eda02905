/**
 * What an operator sees when something is wrong: one line that says what to do and a
 * non-zero exit, never a stack trace. And what they can do about a program left behind.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, runCli } from '../helpers/lab.js';
import { BPF_PASS_OBJECT_PATH } from '../../src/native/addon.js';

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines.length, stderr).toBe(1);
  expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  return lines[0]!;
}

describePrivileged('heimdall-xdp operator errors', { netns: true, tools: ['nsd', 'setpriv'] }, () => {
  const lab = new Lab('c');
  const up = `--upstream=${ADDR.upstream4}`;

  beforeAll(() => lab.up(20), 60_000);
  afterAll(() => lab.down());

  it('refuses to run without root', async () => {
    const r = await runCli(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', 'src/bin.ts', 'attach', 'lo', up]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/must run as root/);
  });

  it('names a missing interface', async () => {
    const r = await lab.cli(['attach', 'nosuch0', up]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/interface 'nosuch0' not found/);
  });

  it('asks for an upstream, and rejects a malformed one', async () => {
    const none = await lab.cli(['attach', lab.applianceIf]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--upstream/);
    const bad = await lab.cli(['attach', lab.applianceIf, '--upstream', 'resolver.example:53']);
    expect(bad.code).toBe(1);
    expect(oneLine(bad.stderr)).toMatch(/resolver\.example/);
  });

  it('says when no upstream answers, and leaves the interface alone', async () => {
    const r = await lab.cli(['attach', lab.applianceIf, '--upstream', '198.18.1.99']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/no upstream answers/);
    expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).not.toMatch(/xdp/);
  });

  it('names CPUs that are not online, and a CPU list it cannot read, before it attaches', async () => {
    const r = await lab.cli(['attach', lab.applianceIf, up, '--cpus', '4095']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/^heimdall-xdp: --cpus: CPU 4095 is not online here \(online: \d+(-\d+)?\)$/);
    expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).not.toMatch(/xdp/);
    const bad = await lab.cli(['attach', lab.applianceIf, up, '--cpus', '3-1']);
    expect(bad.code).toBe(1);
    expect(oneLine(bad.stderr)).toBe("heimdall-xdp: --cpus: '3-1' is a range that runs backwards");
  });

  it('refuses a foreign XDP program unless --force', async () => {
    lab.exec('appliance', 'ip', ['link', 'set', 'dev', lab.applianceIf, 'xdpgeneric', 'obj', BPF_PASS_OBJECT_PATH, 'sec', 'xdp']);
    try {
      const r = await lab.cli(['attach', lab.applianceIf, up]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toMatch(/already runs XDP program 'heimdall_pass'.*--force/);
      expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).toMatch(/heimdall_pass|xdpgeneric/);
      const svc = lab.startService([up, '--force', '--no-af-xdp']);
      await svc.ready();
      expect(svc.stdout).toMatch(/replaced XDP program 'heimdall_pass'/);
      expect(await svc.stop()).toBe(0);
    } finally {
      lab.exec('appliance', 'ip', ['link', 'set', 'dev', lab.applianceIf, 'xdpgeneric', 'off']);
    }
  }, 60_000);

  it('serves another port in generic mode, from XDP once the name is hot', async () => {
    const svc = lab.startService([up, '--port', '5353', '--mode', 'generic', '--queues', '1', '--metrics-listen', '127.0.0.1:9154']);
    await svc.ready();
    try {
      expect(svc.stdout).toMatch(/port 5353 \(generic XDP, 1 AF_XDP worker/);
      for (let i = 0; i < 5; i++) expect(lab.dig(['-p', '5353', 'www.lab.example', 'A'])).toMatch(/status: NOERROR/);
      expect(svc.metrics(9154)['heimdall_responses_total{path="xdp"}']).toBeGreaterThanOrEqual(2);
      // Port 53 is not ours now: the kernel says so.
      expect(lab.dig(['www.lab.example', 'A'])).toMatch(/connection refused|timed out|no servers/);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  }, 60_000);

  it('says when the port is taken', async () => {
    // A UDP socket on port 53 in the appliance namespace, held by a child process.
    const holder = lab.startService(['--no-af-xdp', up]); // the first instance holds :53
    await holder.ready();
    try {
      const r = await lab.cli(['attach', lab.applianceIf, up, '--force']);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toMatch(/UDP port 53 on 198\.18\.0\.1 is in use/);
    } finally {
      expect(await holder.stop()).toBe(0);
    }
  }, 60_000);

  it('stops cleanly on SIGTERM while starting: nothing stays attached', async () => {
    // The program is on the interface before the workers start and the service says it
    // serves: a SIGTERM in between must undo the attach, not end the process as it is.
    const svc = lab.startService([up, '--queues', '2']);
    const signalled = new Promise<NodeJS.Signals | null>((r) => svc.proc.on('exit', (_c, sig) => r(sig)));
    const deadline = Date.now() + 40_000;
    while (!/ xdp/.test(lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf]))) {
      expect(svc.exitCode, svc.stderr).toBeNull();
      expect(Date.now(), 'the program never showed up on the interface').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(svc.stdout, 'the signal must come before the service serves').not.toMatch(/serving/);
    svc.signal('SIGTERM');
    await svc.stop();
    // Ended as SIGTERM ends a process (143 to a shell), after undoing the start.
    expect(await signalled).toBe('SIGTERM');
    expect(lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf])).not.toMatch(/ xdp|prog\/xdp/);
    expect((await lab.cli(['status', lab.applianceIf])).stdout).toMatch(/no XDP program/);
    expect(svc.stdout).toMatch(/SIGTERM while starting: stopped, nothing left on /);
    expect(svc.stderr).toBe('');
  }, 60_000);

  it('replaces a program left by a killed process; detach removes one and never a foreign one', async () => {
    const svc = lab.startService([up, '--no-af-xdp']);
    await svc.ready();
    svc.signal('SIGKILL');
    await svc.stop();
    const st = await lab.cli(['status', lab.applianceIf]);
    expect(st.stdout).toMatch(/XDP program 'heimdall_xdp'/);
    // DNS still works through the kernel while nothing runs: hot entries expire, the rest passes.
    const again = lab.startService([up, '--no-af-xdp']);
    await again.ready();
    expect(again.stdout).toMatch(/replaced XDP program 'heimdall_xdp'/);
    again.signal('SIGKILL');
    await again.stop();
    const d = await lab.cli(['detach', lab.applianceIf]);
    expect(d.stdout).toMatch(/detached heimdall/);
    expect((await lab.cli(['status', lab.applianceIf])).stdout).toMatch(/no XDP program/);
    lab.exec('appliance', 'ip', ['link', 'set', 'dev', lab.applianceIf, 'xdpgeneric', 'obj', BPF_PASS_OBJECT_PATH, 'sec', 'xdp']);
    try {
      expect((await lab.cli(['detach', lab.applianceIf])).stdout).toMatch(/no heimdall program/);
      expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).toMatch(/xdpgeneric/);
    } finally {
      lab.exec('appliance', 'ip', ['link', 'set', 'dev', lab.applianceIf, 'xdpgeneric', 'off']);
    }
  }, 90_000);
});
