/**
 * Floods in the lab (test/lab/flood.test.ts, network-share.test.ts, waiting-share.test.ts):
 * dnsperf from the client namespace, a second client network, and the run where one
 * network floods a dark upstream while the other asks new names.
 */
import { spawn } from 'node:child_process';
import { expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, type Lab, type Service } from './lab.js';

/** The second client network: an address on the client's veth, routed back by the appliance. */
export const OTHER4 = '198.18.4.2';

/** What dnsperf printed, and its figures. */
export interface Perf {
  sent: number;
  completed: number;
  noerror: number;
  nxdomain: number;
  servfail: number;
  avgLatency: number;
  qps: number;
  out: string;
}

export function parsePerf(out: string): Perf {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  return {
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    noerror: num(/NOERROR (\d+)/),
    nxdomain: num(/NXDOMAIN (\d+)/),
    servfail: num(/SERVFAIL (\d+)/),
    avgLatency: num(/Average Latency \(s\):\s+([0-9.]+)/),
    qps: num(/Queries per second:\s+([0-9.]+)/),
    out,
  };
}

/** dnsperf in the client namespace against the appliance, asynchronously (two may run at once). */
export function dnsperf(lab: Lab, args: string[], timeoutMs: number): Promise<Perf> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', lab.ns.client, 'dnsperf', '-s', ADDR.appliance4, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', () => {
      clearTimeout(t);
      resolve(parsePerf(out));
    });
  });
}

/** The second network (OTHER4): an address on the client's veth and a route back from the appliance. */
export function addSecondNetwork(lab: Lab): void {
  lab.exec('client', 'ip', ['addr', 'add', `${OTHER4}/24`, 'dev', `${lab.prefix}c0`]);
  lab.exec('appliance', 'ip', ['route', 'add', '198.18.4.0/24', 'dev', lab.applianceIf]);
}

/** A query file of `n` names nobody asked before (the random-subdomain attack); returns its path. */
export function uniqueNames(dir: string, file: string, n: number, tag: string): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`${tag}${i}x${Math.floor(Math.random() * 1e9).toString(36)}.lab.example A`);
  writeFileSync(join(dir, file), lines.join('\n') + '\n');
  return join(dir, file);
}

/**
 * With the upstream dark (blackholed), the first network floods the queries of `floodFile`
 * at `qps` from eight sockets (spread over the rx queues) for 8 s; 1.5 s in, the second
 * network asks 20 new names (`tag`0..19), 5 a second. Returns what each got and how far
 * each `heimdall_upstream_busy_total` limit moved.
 */
export async function floodWithOtherNetwork(
  lab: Lab,
  svc: Service,
  dir: string,
  o: { floodFile: string; qps: number; tag: string },
): Promise<{ flood: Perf; other: Perf; busy: (limit: string) => number }> {
  lab.exec('upstream', 'ip', ['route', 'add', 'blackhole', '198.18.1.1/32']);
  try {
    writeFileSync(join(dir, 'fresh'), Array.from({ length: 20 }, (_, i) => `${o.tag}${i}.lab.example A`).join('\n') + '\n');
    const before = svc.metrics();
    const flood = dnsperf(lab, ['-d', o.floodFile, '-l', '8', '-Q', String(o.qps), '-q', '20000', '-c', '8', '-t', '6'], 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    const other = await dnsperf(lab, ['-a', OTHER4, '-d', join(dir, 'fresh'), '-n', '1', '-Q', '5', '-q', '100', '-t', '6'], 30_000);
    const f = await flood;
    const m = svc.metrics();
    const busy = (limit: string): number => {
      const k = `heimdall_upstream_busy_total{limit="${limit}"}`;
      return (m[k] ?? 0) - (before[k] ?? 0);
    };
    return { flood: f, other, busy };
  } finally {
    lab.exec('upstream', 'ip', ['route', 'del', 'blackhole', '198.18.1.1/32']);
  }
}

/**
 * What both share tests ask of floodWithOtherNetwork's result: the flood met its own
 * network's share (`own`, a heimdall_upstream_busy_total limit) more than 1,000 times and
 * the whole limit (`whole`) never, and the other network's 20 names all went upstream and
 * waited out the dark upstream's deadline (SERVFAIL at about 4 s, not at once).
 */
export function expectShareHeld(label: string, r: { flood: Perf; other: Perf; busy: (limit: string) => number }, own: string, whole: string): void {
  const { flood: f, other, busy } = r;
  console.log(
    `[${label}] flood sent ${f.sent}, SERVFAIL ${f.servfail}; busy ${own} ${busy(own)}, ${whole} ${busy(whole)}; ` +
      `other network ${other.servfail}/${other.sent} SERVFAIL, avg ${other.avgLatency}s`,
  );
  expect(busy(own)).toBeGreaterThan(1000);
  expect(busy(whole)).toBe(0);
  expect(other.sent).toBe(20);
  expect(other.completed).toBe(20);
  expect(other.servfail).toBe(20);
  expect(other.avgLatency).toBeGreaterThan(3);
}
