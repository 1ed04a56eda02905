/**
 * Every engine's counters reach /metrics: loads with a known outcome, sent through the
 * AF_XDP workers (where nearly all userspace traffic goes) and over TCP (the main
 * thread), each checked against the counters it must move. Also relayed answers (what
 * the cache refuses: REFUSED, class CH) on the AF_XDP path, which is answered in place
 * over the query: they must carry the client's ID and RA.
 */
import { expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';

type M = Record<string, number>;
const v = (m: M, k: string): number => m[k] ?? 0;
const ANSWERS = (source: string) => `heimdall_userspace_answers_total{source="${source}"}`;

describePrivileged('metrics of every engine in the lab', { netns: true, tools: ['dig', 'nsd', 'curl'] }, () => {
  const lab = new Lab('m');
  let svc: Service;
  /** dig from a fixed source port: one 5-tuple, so one rx queue, one worker. */
  const dig1 = (port: number, args: string[]) => lab.dig(['-b', `${ADDR.client4}#${port}`, ...args]);

  suiteService(lab, { zone: 200, args: ['--upstream', ADDR.upstream4, '--metrics-listen', '127.0.0.1:9153'] }, (s) => (svc = s));

  it('counts misses answered by the upstream through the workers: queries, upstream queries, latency', () => {
    const before = svc.metrics();
    const N = 20;
    for (let i = 0; i < N; i++) expect(dig1(43000 + i, [`h${i}.lab.example`, 'A'])).toMatch(/status: NOERROR/);
    // Engine counters are written as queries are answered; the forwarder's (queries sent)
    // are brought in by the upkeep, up to a second later: wait for both.
    const moved = (m: M, k: string) => v(m, k) - v(before, k) >= N;
    const after = svc.metricsWhen((m) => moved(m, 'heimdall_upstream_latency_seconds_count') && moved(m, 'heimdall_upstream_queries_total') && v(m, 'heimdall_cache_entries') >= N, 5000);
    const d = (k: string) => v(after, k) - v(before, k);
    expect(d('heimdall_userspace_queries_total')).toBeGreaterThanOrEqual(N);
    expect(d(ANSWERS('upstream'))).toBeGreaterThanOrEqual(N);
    expect(d('heimdall_upstream_queries_total')).toBeGreaterThanOrEqual(N);
    expect(d('heimdall_upstream_latency_seconds_count')).toBeGreaterThanOrEqual(N);
    expect(d('heimdall_upstream_latency_seconds_bucket{le="+Inf"}')).toBe(d('heimdall_upstream_latency_seconds_count'));
    expect(d('heimdall_upstream_latency_seconds_sum')).toBeGreaterThan(0);
    expect(d('heimdall_userspace_rcode_total{rcode="NOERROR"}')).toBeGreaterThanOrEqual(N);
    // Nothing went through the kernel path: these were the workers' engines.
    expect(d('heimdall_kernel_udp_datagrams_total{direction="received"}')).toBe(0);
    expect(v(after, 'heimdall_cache_entries')).toBeGreaterThanOrEqual(N);
  });

  it('relays REFUSED and class CH answers with the client\'s ID and RA on the AF_XDP path, and counts them', () => {
    const before = svc.metrics();
    const refused = dig1(43100, ['+qid=4242', 'elsewhere.example.org', 'A']);
    expect(refused).toMatch(/status: REFUSED, id: 4242/);
    expect(refused).not.toMatch(/ID mismatch/);
    expect(refused).toMatch(/flags: qr rd ra;/);
    const ch = dig1(43101, ['+qid=777', 'CH', 'TXT', 'version.server']);
    expect(ch).toMatch(/id: 777/);
    expect(ch).not.toMatch(/ID mismatch/);
    expect(ch).toMatch(/flags: qr rd ra;/); // AA never: we are a cache
    const after = svc.metricsWhen((m) => v(m, ANSWERS('relayed')) - v(before, ANSWERS('relayed')) >= 2);
    expect(v(after, ANSWERS('relayed')) - v(before, ANSWERS('relayed'))).toBe(2);
    const refusedSeen = [refused, ch].filter((o) => /status: REFUSED/.test(o)).length; // the lab's NSD may refuse CH too
    expect(v(after, 'heimdall_userspace_rcode_total{rcode="REFUSED"}') - v(before, 'heimdall_userspace_rcode_total{rcode="REFUSED"}')).toBe(refusedSeen);
  });

  it('counts TCP connections and messages on the main thread, and relays over TCP with the client\'s ID and RA', () => {
    const before = svc.metrics();
    expect(lab.dig(['+tcp', 'h1.lab.example', 'A'])).toMatch(/status: NOERROR/);
    const refused = lab.dig(['+tcp', '+qid=999', 'elsewhere.example.org', 'A']);
    expect(refused).toMatch(/status: REFUSED, id: 999/);
    expect(refused).toMatch(/flags: qr rd ra;/);
    const grew = (m: M, k: string) => v(m, k) - v(before, k) >= 2;
    // The main thread's upkeep is woken by the queries, so its counters come within 1 s.
    const after = svc.metricsWhen((m) => grew(m, 'heimdall_tcp_messages_total{outcome="answered"}') && grew(m, 'heimdall_tcp_connections_total{event="accepted"}'), 2500);
    const d = (k: string) => v(after, k) - v(before, k);
    expect(d('heimdall_tcp_connections_total{event="accepted"}')).toBe(2);
    expect(d('heimdall_tcp_messages_total{outcome="answered"}')).toBe(2);
    expect(d(ANSWERS('relayed'))).toBe(1);
  });

  it('counts upstream timeouts and failures from the workers when the upstream is gone', () => {
    lab.script('upstream-stop');
    try {
      const before = svc.metrics();
      const N = 3;
      for (let i = 0; i < N; i++) expect(dig1(43200 + i, ['+time=6', `gone${i}.lab.example`, 'A'])).toMatch(/status: SERVFAIL/);
      const after = svc.metricsWhen((m) => v(m, 'heimdall_upstream_failures_total') - v(before, 'heimdall_upstream_failures_total') >= N, 5000);
      const d = (k: string) => v(after, k) - v(before, k);
      expect(d('heimdall_upstream_failures_total')).toBe(N);
      expect(d('heimdall_upstream_timeouts_total')).toBeGreaterThanOrEqual(N);
      expect(d('heimdall_userspace_errors_total{rcode="SERVFAIL"}')).toBe(N);
      expect(d('heimdall_userspace_rcode_total{rcode="SERVFAIL"}')).toBe(N);
      expect(d('heimdall_responses_total{path="error"}')).toBe(N);
    } finally {
      lab.script('upstream-start');
    }
  }, 60_000);
});
