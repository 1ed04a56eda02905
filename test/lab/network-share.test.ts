/**
 * The share of the process's upstream budget one client network may hold, counted across
 * every engine. Here: two AF_XDP workers and the main thread, each engine allowed 1,024
 * questions in flight and the process 1,024, a network 50% of either. Counted per engine, a
 * network spread by RSS over both queues held 512 on each, the whole process budget, and
 * every other network's new names got SERVFAIL at once (limit="process"). Counted for the
 * process, it holds 512 (limit="client_process"), and another network's new names go
 * upstream (SERVFAIL at the 4 s deadline here, the upstream being dark).
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

describePrivileged("one network's unique-name flood holds its share of the process, not of each engine", { netns: true, tools: ['dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('ns');
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
      args: [
        '--upstream', ADDR.upstream4, '--cache-size', '20000', '--rrl', '0', '--metrics-listen', '127.0.0.1:9153',
        '--upstream-inflight', '1024', '--upstream-inflight-total', '1024', '--upstream-client-share', '50',
      ],
      setup: () => {
        dir = mkdtempSync(join(tmpdir(), 'hx-nshare-'));
        lab.exec('client', 'ip', ['addr', 'add', `${OTHER4}/24`, 'dev', `${lab.prefix}c0`]);
        lab.exec('appliance', 'ip', ['route', 'add', '198.18.4.0/24', 'dev', lab.applianceIf]);
      },
      cleanup: () => {
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
    },
    (s) => (svc = s),
  );

  it("3,000 q/s of unique names from one network over both queues: the other network's new names still go upstream", async () => {
    lab.exec('upstream', 'ip', ['route', 'add', 'blackhole', '198.18.1.1/32']);
    try {
      const lines: string[] = [];
      for (let i = 0; i < 30_000; i++) lines.push(`u${i}x${Math.floor(Math.random() * 1e9).toString(36)}.lab.example A`);
      writeFileSync(join(dir, 'unique'), lines.join('\n') + '\n');
      writeFileSync(join(dir, 'fresh'), Array.from({ length: 20 }, (_, i) => `n${i}.lab.example A`).join('\n') + '\n');
      const before = svc.metrics();
      // Eight sockets (source ports): the client's veth spreads them over both rx queues.
      const flood = dnsperf(['-d', join(dir, 'unique'), '-l', '8', '-Q', '3000', '-q', '20000', '-c', '8', '-t', '6'], 30_000);
      await new Promise((r) => setTimeout(r, 1500));
      const other = await dnsperf(['-a', OTHER4, '-d', join(dir, 'fresh'), '-n', '1', '-Q', '5', '-q', '100', '-t', '6'], 30_000);
      const f = await flood;
      const m = svc.metrics();
      const d = (k: string): number => (m[k] ?? 0) - (before[k] ?? 0);
      const busy = (limit: string): number => d(`heimdall_upstream_busy_total{limit="${limit}"}`);
      console.log(
        `[network share] flood sent ${f.sent}, SERVFAIL ${f.servfail}; busy client_process ${busy('client_process')}, client ${busy('client')}, process ${busy('process')}; ` +
          `other network ${other.servfail}/${other.sent} SERVFAIL, avg ${other.avgLatency}s`,
      );
      expect(f.sent).toBeGreaterThan(20_000);
      // The flood met its network's share of the process, never the process's limit.
      expect(busy('client_process')).toBeGreaterThan(1000);
      expect(busy('process')).toBe(0);
      // The other network's names all went upstream and waited out the deadline.
      expect(other.sent).toBe(20);
      expect(other.completed).toBe(20);
      expect(other.servfail).toBe(20);
      expect(other.avgLatency).toBeGreaterThan(3);
    } finally {
      lab.exec('upstream', 'ip', ['route', 'del', 'blackhole', '198.18.1.1/32']);
    }
  }, 60_000);
});
