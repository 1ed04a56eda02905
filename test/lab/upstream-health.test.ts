/**
 * Per-upstream health and latency in the lab, two upstreams (NSD's IPv4 and IPv6
 * addresses): one is made to stop answering by an nftables drop inside the upstream
 * namespace; `upstreams --json`, `upstreams`, `stats` and /metrics must show it down with
 * its timeouts counted while the other stays up and gathers RTT samples, the log must say
 * it once, and everything must show it up again once the drop is removed. Replaced
 * workers carry on their predecessors' counts.
 *
 * With another upstream answering, a dead one is mostly avoided by the SRTT selection
 * (each timeout feeds it the 1 s timeout; health.ts): an engine tries it again only after
 * passing it over some hundreds of times, and holds it down after 3 timeouts in a row.
 * So the outage is driven by short dnsperf bursts of names never asked before (each a miss).
 */
import { expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';
import type { UpstreamLine } from '../../src/engine/upstream-stats.js';

const A = `${ADDR.upstream4}:53`;
const B = `[${ADDR.upstream6}]:53`;
const esc = (s: string): string => s.replace(/[.[\]]/g, '\\$&');
const ZONE = 20_000;
/** The bursts' names start here (the digs ask for h0..h399). */
const FIRST_BURST_NAME = 1000;

describePrivileged('per-upstream health and latency in the lab', { netns: true, tools: ['dig', 'dnsperf', 'nsd', 'curl', 'nft'] }, () => {
  const lab = new Lab('u');
  const dir = mkdtempSync(join(tmpdir(), 'hx-ups-'));
  let svc: Service;
  let n = 0;
  let bursts = 0;
  /** Names the bursts have asked: the next is h(FIRST_BURST_NAME + asked). */
  let asked = 0;
  const nft = (args: string): string => lab.exec('upstream', 'nft', args.split(' '));

  /**
   * dnsperf for `secs` at `qps` with names of the zone never asked before: every query a
   * miss. Names that exist: NSD's response rate limit (200/s from one source) drops a
   * stream of NXDOMAIN or NODATA answers, which share a bucket; positive answers for
   * distinct names do not.
   */
  function burst(secs: number, qps: number): void {
    const f = join(dir, `q${bursts++}`);
    const lines: string[] = [];
    for (let i = 0; i < secs * qps; i++) lines.push(`h${FIRST_BURST_NAME + asked++}.lab.example A\n`);
    if (FIRST_BURST_NAME + asked > ZONE) throw new Error('the zone has no more names never asked');
    writeFileSync(f, lines.join(''));
    lab.exec('client', 'dnsperf', ['-s', ADDR.appliance4, '-d', f, '-n', '1', '-l', String(secs + 3), '-Q', String(qps), '-c', '4', '-t', '5', '-O', 'suppress=timeout'], 60_000);
  }

  suiteService(
    lab,
    { zone: ZONE, args: ['--upstream', `${ADDR.upstream4},[${ADDR.upstream6}]:53`, '--metrics-listen', '127.0.0.1:9153'], cleanup: () => rmSync(dir, { recursive: true, force: true }) },
    (s) => (svc = s),
  );

  async function upstreams(): Promise<Map<string, UpstreamLine>> {
    const r = await lab.cli(['upstreams', lab.applianceIf, '--json']);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout) as { upstreams: UpstreamLine[]; engines: { asked: number; answered: number } };
    return new Map(j.upstreams.map((u) => [u.upstream, u]));
  }

  /** Asks fresh names (each a miss) until `done` holds, at most `tries` rounds of 3. */
  async function askUntil(done: () => Promise<boolean>, tries: number): Promise<void> {
    for (let i = 0; i < tries; i++) {
      for (let k = 0; k < 3; k++) lab.dig(['+time=5', `h${n++ % 400}.lab.example`, 'A']);
      if (await done()) return;
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  it('both upstreams are up and measured', async () => {
    // Never-measured upstreams are tried first (health.ts), so a few misses measure both.
    let u = await upstreams();
    await askUntil(async () => {
      u = await upstreams();
      return [A, B].every((x) => (u.get(x)?.answers ?? 0) > 0);
    }, 10);
    for (const x of [A, B]) {
      expect(u.get(x), x).toMatchObject({ upstream: x, state: 'up', timeouts: 0, errors: 0, consecutiveFailures: 0 });
      expect(u.get(x)!.healthyIn).toBe(u.get(x)!.engines);
      expect(u.get(x)!.answers).toBeGreaterThan(0);
      expect(u.get(x)!.p50Ms).toBeGreaterThan(0);
      expect(u.get(x)!.p99Ms).toBeGreaterThanOrEqual(u.get(x)!.p50Ms!);
    }
    const text = (await lab.cli(['upstreams', lab.applianceIf])).stdout;
    expect(text).toMatch(new RegExp(`^${esc(A)}: up, rtt [\\d.]+ ms, p50 [\\d.]+ ms, p99 [\\d.]+ ms, [1-9]\\d* sent, [1-9]\\d* answers, 0 servfail, 0 timeouts, 0 errors\\n`, 'm'));
    expect(text).toMatch(new RegExp(`^${esc(B)}: up, rtt [\\d.]+ ms, p50 `, 'm'));
    const m = svc.metrics();
    for (const x of [A, B]) {
      expect(m[`heimdall_upstream_server_up{upstream="${x}"}`], x).toBe(1);
      expect(m[`heimdall_upstream_server_rtt_seconds_count{upstream="${x}"}`], x).toBeGreaterThan(0);
      expect(m[`heimdall_upstream_server_answers_total{upstream="${x}"}`], x).toBe(u.get(x)!.answers);
    }
  }, 60_000);

  it('an upstream that stops answering shows down with its timeouts; the other stays up and keeps answering', async () => {
    const before = await upstreams();
    const m0 = svc.metrics();
    nft('add table inet hxup');
    nft('add chain inet hxup in { type filter hook input priority 0 ; }');
    nft(`add rule inet hxup in ip daddr ${ADDR.upstream4} meta l4proto { udp, tcp } th dport 53 drop`);
    expect(lab.exec('upstream', 'nft', ['list', 'table', 'inet', 'hxup'])).toMatch(/drop/);
    let u = before;
    for (let i = 0; i < 8 && u.get(A)!.state === 'up'; i++) {
      burst(2, 800);
      u = await upstreams();
    }
    const a = u.get(A)!;
    const b = u.get(B)!;
    // Each engine keeps its own breaker: the ones that sent to it hold it down.
    expect(['down', 'partial']).toContain(a.state);
    expect(a.healthyIn).toBeLessThan(a.engines);
    expect(a.consecutiveFailures).toBeGreaterThanOrEqual(3);
    expect(a.timeouts - before.get(A)!.timeouts).toBeGreaterThanOrEqual(3);
    expect(a.answers).toBe(before.get(A)!.answers);
    expect(b.state).toBe('up');
    expect(b.timeouts).toBe(0);
    expect(b.answers).toBeGreaterThan(before.get(B)!.answers);
    // Every client got its answer from the other upstream.
    expect(lab.dig(['+time=5', 'www.lab.example', 'A'])).toMatch(/status: NOERROR/);

    // /metrics says the same (the figures are published at each engine's upkeep).
    const m = svc.metricsWhen((x) => x[`heimdall_upstream_server_up{upstream="${A}"}`] === 0);
    expect(m[`heimdall_upstream_server_up{upstream="${A}"}`]).toBe(0);
    expect(m[`heimdall_upstream_server_down_engines{upstream="${A}"}`]).toBeGreaterThanOrEqual(1);
    expect(m[`heimdall_upstream_server_timeouts_total{upstream="${A}"}`]! - (m0[`heimdall_upstream_server_timeouts_total{upstream="${A}"}`] ?? 0)).toBeGreaterThanOrEqual(3);
    expect(m[`heimdall_upstream_server_consecutive_failures{upstream="${A}"}`]).toBeGreaterThanOrEqual(3);
    expect(m[`heimdall_upstream_server_up{upstream="${B}"}`]).toBe(1);
    expect(m[`heimdall_upstream_server_timeouts_total{upstream="${B}"}`]).toBe(0);
    expect(m[`heimdall_upstream_server_rtt_seconds_count{upstream="${B}"}`]).toBeGreaterThan(m0[`heimdall_upstream_server_rtt_seconds_count{upstream="${B}"}`]!);
    expect(m[`heimdall_upstream_server_rtt_seconds_count{upstream="${A}"}`]).toBe(m0[`heimdall_upstream_server_rtt_seconds_count{upstream="${A}"}`]);

    const text = (await lab.cli(['upstreams', lab.applianceIf])).stdout;
    expect(text).toMatch(new RegExp(`^${esc(A)}: (DOWN|up in \\d+ of \\d+ engines) \\(\\d+ failures in a row\\), rtt [\\d.]+ ms, .* [1-9]\\d* timeouts, 0 errors$`, 'm'));
    const stats = (await lab.cli(['stats', lab.applianceIf, '--interval', '200'])).stdout;
    expect(stats).toMatch(new RegExp(`\\nupstreams: ${esc(A)} (DOWN|up in \\d+ of \\d+ engines), rtt [\\d.]+ ms, p99 [\\d.]+ ms, [1-9]\\d* timeouts; ${esc(B)} up, rtt [\\d.]+ ms, p99 [\\d.]+ ms, 0 timeouts\\n`));
    // The log's one line for it, with its label.
    for (let i = 0; i < 20 && !/warn upstream: /.test(svc.stderr); i++) await new Promise((r) => setTimeout(r, 200));
    expect(svc.stderr).toMatch(new RegExp(`heimdall-xdp: warn upstream: ${esc(A)} down \\(in [1-9] of \\d+ engines\\)\\n`));
    expect(svc.stderr).not.toMatch(new RegExp(`upstream: ${esc(B)}`));
  }, 90_000);

  it('comes back up once it answers again', async () => {
    nft('delete table inet hxup');
    // A down upstream gets a probe when its backoff is over and a miss comes (health.ts).
    let u = await upstreams();
    for (let i = 0; i < 20 && u.get(A)!.state !== 'up'; i++) {
      burst(1, 200);
      u = await upstreams();
    }
    expect(u.get(A)).toMatchObject({ state: 'up', consecutiveFailures: 0 });
    expect(u.get(A)!.healthyIn).toBe(u.get(A)!.engines);
    expect(u.get(B)!.state).toBe('up');
    const m = svc.metricsWhen((x) => x[`heimdall_upstream_server_up{upstream="${A}"}`] === 1);
    expect(m[`heimdall_upstream_server_up{upstream="${A}"}`]).toBe(1);
    expect(m[`heimdall_upstream_server_down_engines{upstream="${A}"}`]).toBe(0);
    for (let i = 0; i < 20 && !/info upstream: .* up again/.test(svc.stderr); i++) await new Promise((r) => setTimeout(r, 200));
    expect(svc.stderr).toMatch(new RegExp(`heimdall-xdp: info upstream: ${esc(A)} up again\\n`));
    expect(svc.stderr.match(/warn upstream: /g)).toHaveLength(1);
  }, 90_000);

  it('keeps each upstream\'s counts when the workers are replaced', async () => {
    const before = await upstreams();
    const engines = before.get(B)!.engines;
    expect(engines).toBeGreaterThan(1); // the main thread and the AF_XDP workers
    svc.signal('SIGUSR2'); // crashes the workers; the supervisor replaces them
    let u = before;
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (!/worker for queue \d+ replaced/.test(svc.stderr)) continue;
      u = await upstreams();
      if (u.get(B)!.engines === engines) break;
    }
    expect(svc.stderr).toMatch(/worker for queue \d+ replaced/);
    expect(u.get(B)!.engines).toBe(engines);
    // Nothing was asked meanwhile: the figures are what they were, the new workers' slots
    // being their predecessors' (a worker's counts lost would show here).
    for (const x of [A, B]) expect(u.get(x), x).toMatchObject({ sent: before.get(x)!.sent, answers: before.get(x)!.answers, timeouts: before.get(x)!.timeouts });
    burst(1, 200);
    u = await upstreams();
    for (const x of [A, B]) {
      expect(u.get(x)!.state, x).toBe('up');
      expect(u.get(x)!.timeouts, x).toBe(before.get(x)!.timeouts);
    }
    expect(u.get(A)!.answers + u.get(B)!.answers).toBeGreaterThanOrEqual(before.get(A)!.answers + before.get(B)!.answers + 200);
    const m = svc.metricsWhen((x) => x[`heimdall_upstream_server_engines{upstream="${B}"}`] === engines);
    expect(m[`heimdall_upstream_server_answers_total{upstream="${B}"}`]).toBeGreaterThanOrEqual(before.get(B)!.answers);
  }, 60_000);
});
