/**
 * One client network flooding one name whose upstream never answers (the blackholed
 * upstream of test/lab/flood.test.ts, on the kernel path) while a second network asks new
 * names. Each network may hold only a quarter of the waiting rooms (the forwarder's
 * maxWaiting and the engine's fetch-table waits, docs/LIMITS.md): the flood's excess is
 * refused as its own (`limit="client_waiting"`), the waiting room never fills, and the
 * second network's names go upstream (SERVFAIL at the 4 s deadline here, the upstream being
 * dark) instead of SERVFAIL at once for a waiting room the flood filled.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';

/** The second client network: an address on the client's veth, routed back by the appliance. */
const OTHER4 = '198.18.4.2';

interface Perf {
  sent: number;
  completed: number;
  servfail: number;
  avgLatency: number;
  out: string;
}

describePrivileged('a one-name flood from one network leaves the waiting room to the others', { netns: true, tools: ['dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('ws');
  let svc: Service;
  let dir: string;

  const dnsperf = (args: string[], timeoutMs: number): Promise<Perf> =>
    new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', lab.ns.client, 'dnsperf', '-s', ADDR.appliance4, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('exit', () => {
        clearTimeout(t);
        const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
        resolve({
          sent: num(/Queries sent:\s+(\d+)/),
          completed: num(/Queries completed:\s+(\d+)/),
          servfail: num(/SERVFAIL (\d+)/),
          avgLatency: num(/Average Latency \(s\):\s+([0-9.]+)/),
          out,
        });
      });
    });

  suiteService(
    lab,
    {
      zone: 100,
      // --no-af-xdp: one engine, so its waiting rooms are the ones the flood meets.
      // --upstream-inflight 256: rooms of 1,024 each (4 ×), so a flood the kernel path takes
      // without dropping datagrams (on a shared 2-core machine) fills them many times over.
      args: ['--upstream', ADDR.upstream4, '--cache-size', '20000', '--rrl', '0', '--no-af-xdp', '--upstream-inflight', '256', '--metrics-listen', '127.0.0.1:9153'],
      setup: () => {
        dir = mkdtempSync(join(tmpdir(), 'hx-wshare-'));
        lab.exec('client', 'ip', ['addr', 'add', `${OTHER4}/24`, 'dev', `${lab.prefix}c0`]);
        lab.exec('appliance', 'ip', ['route', 'add', '198.18.4.0/24', 'dev', lab.applianceIf]);
      },
      cleanup: () => {
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
    },
    (s) => (svc = s),
  );

  it("1,500 q/s of one stalled name from one network: the other network's new names still go upstream", async () => {
    lab.exec('upstream', 'ip', ['route', 'add', 'blackhole', '198.18.1.1/32']);
    try {
      writeFileSync(join(dir, 'one'), 'slow.lab.example A\n');
      writeFileSync(join(dir, 'fresh'), Array.from({ length: 20 }, (_, i) => `w${i}.lab.example A`).join('\n') + '\n');
      const before = svc.metrics();
      const flood = dnsperf(['-d', join(dir, 'one'), '-l', '8', '-Q', '1500', '-q', '20000', '-c', '8', '-t', '6'], 30_000);
      // The waiting rooms fill within a second or two; then the other network asks, 5 new names a second.
      await new Promise((r) => setTimeout(r, 1500));
      const other = await dnsperf(['-a', OTHER4, '-d', join(dir, 'fresh'), '-n', '1', '-Q', '5', '-q', '100', '-t', '6'], 30_000);
      const f = await flood;
      const m = svc.metrics();
      const d = (k: string): number => (m[k] ?? 0) - (before[k] ?? 0);
      const busy = (limit: string): number => d(`heimdall_upstream_busy_total{limit="${limit}"}`);
      console.log(
        `[waiting share] flood sent ${f.sent}, SERVFAIL ${f.servfail}; busy client_waiting ${busy('client_waiting')}, waiting ${busy('waiting')}; ` +
          `other network ${other.servfail}/${other.sent} SERVFAIL, avg ${other.avgLatency}s`,
      );
      expect(f.sent).toBeGreaterThan(10_000);
      // The flood met its own network's share, never the whole room.
      expect(busy('client_waiting')).toBeGreaterThan(1000);
      expect(busy('waiting')).toBe(0);
      // The other network's names all went upstream and waited out the deadline (the upstream
      // is dark): SERVFAIL at about 4 s, not at once for a full waiting room.
      expect(other.sent).toBe(20);
      expect(other.completed).toBe(20);
      expect(other.servfail).toBe(20);
      expect(other.avgLatency).toBeGreaterThan(3);
    } finally {
      lab.exec('upstream', 'ip', ['route', 'del', 'blackhole', '198.18.1.1/32']);
    }
  }, 60_000);
});
