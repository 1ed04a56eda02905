/**
 * TCP that cannot be exhausted, with real clients in the lab: 1,000 idle connections and
 * 300 slowloris connections (one byte a second), from 26 client networks and reopened
 * as soon as they are closed, against the service with its default limits (1,000
 * connections, 64 per client network). Meanwhile a fresh TCP client (kdig +tcp, from a
 * network of its own) must get every answer within 2 s.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';

const ATTACKER = fileURLToPath(new URL('./tcp-attacker.ts', import.meta.url));
const EV = (e: string) => `heimdall_tcp_connections_total{event="${e}"}`;
/** 26 attacker addresses, one per /24: 198.18.32.2 .. 198.18.57.2, routed via the client. */
const FROM = Array.from({ length: 26 }, (_, i) => `198.18.${32 + i}.2`);

describePrivileged('TCP slots under idle and slowloris floods (lab)', { netns: true, tools: ['kdig', 'nsd', 'curl'] }, () => {
  const lab = new Lab('t');
  let svc: Service;

  const setup = (): void => {
    for (const a of FROM) lab.exec('client', 'ip', ['addr', 'add', `${a}/32`, 'dev', `${lab.prefix}c0`]);
    lab.exec('appliance', 'ip', ['route', 'add', '198.18.32.0/19', 'via', ADDR.client4, 'dev', lab.applianceIf]);
  };
  suiteService(lab, { zone: 100, args: ['--upstream', ADDR.upstream4, '--metrics-listen', '127.0.0.1:9153'], setup }, (s) => (svc = s));

  it('answers a fresh TCP client within 2 s while 1,000 idle and 300 slowloris connections are kept open', async () => {
    const kdig = () => {
      const t0 = performance.now();
      const out = lab.exec('client', 'kdig', [`@${ADDR.appliance4}`, '+tcp', '+timeout=2', '+retry=0', 'www.lab.example', 'A']);
      return { ms: performance.now() - t0, ok: /status: NOERROR/.test(out) && /198\.18\.50\.1/.test(out), out };
    };
    expect(kdig().ok).toBe(true); // warm: the answer is cached from here on

    const plan = { server: ADDR.appliance4, port: 53, from: FROM, idle: 1000, slow: 300, slowByteMs: 1000, durationMs: 16_000 };
    const attacker = spawn('ip', ['netns', 'exec', lab.ns.client, process.execPath, '--import', 'tsx', ATTACKER, JSON.stringify(plan)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let report = '';
    attacker.stdout.on('data', (d) => (report += d));
    attacker.stderr.on('data', (d) => (report += d));
    const done = new Promise<void>((r) => attacker.on('exit', () => r()));
    try {
      // Let the flood build up: the service holds as many connections as it allows.
      const full = svc.metricsWhen((m) => (m.heimdall_tcp_connections_open ?? 0) >= 900, 8000);
      expect(full.heimdall_tcp_connections_open).toBeGreaterThanOrEqual(900);
      const probes: { ms: number; ok: boolean; out: string }[] = [];
      const end = Date.now() + 9000;
      while (Date.now() < end) {
        probes.push(kdig());
        await new Promise((r) => setTimeout(r, 250));
      }
      const bad = probes.filter((p) => !p.ok || p.ms >= 2000);
      expect(probes.length).toBeGreaterThanOrEqual(10);
      expect(bad.map((p) => `${Math.round(p.ms)} ms: ${p.out.split('\n').slice(0, 3).join(' | ')}`)).toEqual([]);
      // The kernel listeners' figures reach /metrics at the main thread's next upkeep: wait for them.
      // A slowloris connection's slot is freed by its message deadline (500 ms under pressure)
      // or, when new connections come faster, by eviction as the least recently active: which
      // comes first depends on the attacker's reconnect rate and on this machine's load (one
      // full run saw no message timeout at all), so either counts here; test/io/tcp.test.ts
      // checks each on a fake clock.
      const freed = (x: Record<string, number>) => (x[EV('evicted')] ?? 0) + (x[EV('message_timeout')] ?? 0);
      const m = svc.metricsWhen((x) => (x[EV('evicted')] ?? 0) + (x[EV('idle_closed')] ?? 0) > 0 && freed(x) > 0, 6000);
      // The flood was real, and the limits are what kept TCP open.
      expect(m.heimdall_tcp_connections_open).toBeLessThanOrEqual(1000);
      expect((m[EV('evicted')] ?? 0) + (m[EV('idle_closed')] ?? 0)).toBeGreaterThan(0);
      expect(freed(m)).toBeGreaterThan(0);
    } finally {
      await done;
    }
    const counts = JSON.parse(report.trim().split('\n').pop()!) as Record<string, number>;
    expect(counts.idleConnects).toBeGreaterThanOrEqual(1000);
    expect(counts.slowConnects).toBeGreaterThanOrEqual(300);
    expect(counts.maxOpen).toBeGreaterThanOrEqual(900);
  }, 60_000);
});
