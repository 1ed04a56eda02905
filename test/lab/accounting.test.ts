/**
 * Every query accounted for (docs/AF_XDP.md): after a bounded flood of unique names
 * through the AF_XDP workers, what the XDP program redirected equals what the workers
 * took from their RX rings plus what the kernel dropped on the way (XDP_STATISTICS), and
 * what the workers took equals the queries their engines counted plus the frames they
 * could not parse or handle and those the edge policy stopped before the engine.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';

type M = Record<string, number>;
const v = (m: M, k: string): number => m[k] ?? 0;
const DROP = (r: string) => `heimdall_af_xdp_drops_total{reason="${r}"}`;

/** The two sides of each identity, from one scrape. */
export function accounting(m: M) {
  let toUser = 0;
  for (const [k, x] of Object.entries(m)) if (/^heimdall_xdp_packets_total\{outcome="USER_/.test(k)) toUser += x;
  const redirected = toUser - v(m, 'heimdall_xdp_packets_total{outcome="REDIRECT_FALLBACK"}');
  const received = v(m, 'heimdall_af_xdp_received_total');
  const kernelDrops = v(m, DROP('kernel_rx_dropped')) + v(m, DROP('kernel_rx_ring_full'));
  // Main-thread queries (kernel UDP, TCP) are not part of it; the test sends none.
  const workerQueries = v(m, 'heimdall_userspace_queries_total');
  // Frames that never reached the engine: unparsable, failed, or stopped by the edge policy first.
  let edge = v(m, 'heimdall_edge_replies_total{kind="refused"}');
  for (const r of ['denied', 'bad_source', 'source_port', 'response', 'not_a_query']) edge += v(m, `heimdall_edge_drops_total{reason="${r}"}`);
  const unhandled = v(m, DROP('bad_frame')) + v(m, DROP('handler_error')) + edge;
  return { redirected, received, kernelDrops, workerQueries, unhandled };
}

describePrivileged('every query accounted for (lab)', { netns: true, tools: ['dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('q');
  let svc: Service;

  suiteService(lab, { zone: 100, args: ['--upstream', ADDR.upstream4, '--metrics-listen', '127.0.0.1:9153'] }, (s) => (svc = s));

  it('redirected = received + kernel drops, and received = engine queries + unhandled frames, after a unique-name flood', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-acct-'));
    try {
      const names = Array.from({ length: 40_000 }, (_, i) => `u${i}-${process.pid}.lab.example A`);
      writeFileSync(join(dir, 'q'), names.join('\n') + '\n');
      // Bounded: one pass over 40,000 unique names at up to 10,000 q/s, at most 6 s.
      const out = lab.exec('client', 'dnsperf', ['-s', ADDR.appliance4, '-d', join(dir, 'q'), '-n', '1', '-l', '6', '-Q', '10000', '-q', '20000', '-t', '2', '-c', '8', '-O', 'suppress=timeout'], 60_000);
      const sent = Number(/Queries sent:\s+(\d+)/.exec(out)?.[1]);
      expect(sent, out).toBeGreaterThan(20_000);

      const holds = (m: M) => {
        const a = accounting(m);
        return a.redirected >= sent && a.redirected === a.received + a.kernelDrops && a.received === a.workerQueries + a.unhandled;
      };
      // Workers publish once a second; the identity holds once the last batch is published.
      const m = svc.metricsWhen(holds, 8000);
      const a = accounting(m);
      expect(v(m, 'heimdall_kernel_udp_datagrams_total{direction="received"}')).toBe(0); // nothing went the kernel's way
      expect(a.redirected).toBeGreaterThanOrEqual(sent);
      expect(a.redirected).toBe(a.received + a.kernelDrops);
      expect(a.received).toBe(a.workerQueries + a.unhandled);
      console.log(`accounting after ${sent} queries sent: ${JSON.stringify(a)}; ${/Queries completed:.*$/m.exec(out)?.[0] ?? ''}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
