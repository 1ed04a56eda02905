/**
 * heimdall-xdp end to end in the three-host lab: `heimdall-xdp attach` in the appliance
 * namespace, NSD upstream, dig / kdig / dnsperf in the client namespace. Answers are
 * compared with the upstream's on all three paths (upstream, cache, XDP).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, type Service } from '../helpers/lab.js';

const M_XDP = 'heimdall_responses_total{path="xdp"}';
const M_CACHE = 'heimdall_responses_total{path="cache"}';
const M_UP = 'heimdall_responses_total{path="upstream"}';

/** The answer section of dig output: lines "name ttl IN type data". */
function answers(out: string): { name: string; ttl: number; type: string; data: string }[] {
  const sec = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(out)?.[1] ?? '';
  return sec
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [name, ttl, , type, ...data] = l.split(/\s+/);
      return { name: name!, ttl: Number(ttl), type: type!, data: data.join(' ') };
    });
}

const rrset = (out: string) => answers(out).map((a) => `${a.name.toLowerCase()} ${a.type} ${a.data}`).sort();

describePrivileged('heimdall-xdp end to end in the lab', { netns: true, tools: ['dig', 'kdig', 'dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('p');
  let svc: Service;
  let port = 41000;
  /** dig from one fixed source port: one 5-tuple, so one rx queue and one worker. */
  const dig1 = (args: string[], server = ADDR.appliance4) => lab.dig([`-b`, `${server.includes(':') ? ADDR.client6 : ADDR.client4}#${port}`, ...args], server);
  const upstream = (args: string[]) => lab.exec('appliance', 'dig', [`@${ADDR.upstream4}`, '+tries=1', '+time=2', ...args]);

  beforeAll(async () => {
    lab.up(1000);
    svc = lab.startService(['--upstream', `${ADDR.upstream4},[${ADDR.upstream6}]`, '--metrics-listen', '127.0.0.1:9153']);
    await svc.ready();
  }, 90_000);

  afterAll(async () => {
    try {
      if (svc) {
        const code = await svc.stop();
        expect(code).toBe(0);
        expect(svc.stdout).toMatch(/detached from/);
        // SIGTERM left no program on the interface.
        const link = lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf]);
        expect(link).not.toMatch(/prog\/xdp/);
      }
    } finally {
      lab.down();
    }
  }, 60_000);

  it('answers a name from the upstream, then the cache, then XDP, always with the upstream RRset', () => {
    port = 41001;
    const want = rrset(upstream(['www.lab.example', 'A']));
    expect(want.length).toBe(2);
    const paths: string[] = [];
    for (let i = 0; i < 6; i++) {
      const before = svc.metrics();
      const out = dig1(['www.lab.example', 'A']);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/flags: qr rd ra;/); // never AA: we are a cache
      expect(rrset(out)).toEqual(want);
      // Wait for the path that answered to show in the counters (workers publish theirs
      // once a second).
      const moved = (m: Record<string, number>) => [M_XDP, M_CACHE, M_UP].some((k) => (m[k] ?? 0) > (before[k] ?? 0));
      const after = svc.metricsWhen(moved);
      const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      paths.push(d(M_XDP) ? 'xdp' : d(M_CACHE) ? 'cache' : d(M_UP) ? 'upstream' : '?');
    }
    // One cache for every worker: the second and third asks are hits; the third promotes
    // the name and from then on XDP answers.
    expect(paths).toEqual(['upstream', 'cache', 'cache', 'xdp', 'xdp', 'xdp']);
  });

  it('has one cache for every queue: one upstream query for a name asked through both, promoted on the third ask', () => {
    // Sixteen source ports: sixteen 5-tuples, spread over the two rx queues by the
    // client's transmit hash (all on one queue: 1 chance in 32,768). With a cache per
    // worker the first ask on the second queue went upstream again.
    const UP_SENT = 'heimdall_upstream_queries_total';
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1200); // every engine has published what it sent before
    const start = svc.metrics();
    const paths: string[] = [];
    for (let i = 0; i < 16; i++) {
      const before = svc.metrics();
      const out = lab.dig(['-b', `${ADDR.client4}#${43000 + i}`, 'h321.lab.example', 'A']);
      expect(out).toMatch(/status: NOERROR/);
      const moved = (m: Record<string, number>) => [M_XDP, M_CACHE, M_UP].some((k) => (m[k] ?? 0) > (before[k] ?? 0));
      const after = svc.metricsWhen(moved);
      const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      paths.push(d(M_XDP) ? 'xdp' : d(M_CACHE) ? 'cache' : d(M_UP) ? 'upstream' : '?');
    }
    expect(paths.slice(0, 3)).toEqual(['upstream', 'cache', 'cache']);
    expect(paths.slice(3)).toEqual(Array(13).fill('xdp'));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1200); // every worker has published
    const end = svc.metrics();
    expect(end[UP_SENT]! - start[UP_SENT]!).toBe(1);
  });

  it('echoes ID and question case on every path, and counts TTLs down from the upstream answer', () => {
    port = 41002;
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const out = dig1(['ShOrT.LaB.eXaMpLe', 'A']);
      expect(out).toMatch(/;ShOrT\.LaB\.eXaMpLe\.\s+IN\s+A/);
      seen.push(answers(out)[0]!.ttl);
    }
    expect(seen[0]).toBeLessThanOrEqual(5); // zone TTL 5
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2100);
    const later = answers(dig1(['short.lab.example', 'A']))[0]?.ttl;
    expect(later).toBeLessThan(seen[5]!);
  });

  it('keys DO: DNSSEC clients get an OPT with DO on every path', () => {
    port = 41003;
    for (let i = 0; i < 6; i++) {
      const out = lab.exec('client', 'kdig', [`@${ADDR.appliance4}`, '-b', `${ADDR.client4}#${port}`, '+dnssec', '+timeout=2', '+retry=0', 'mx1.lab.example', 'A']);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/Version: 0; flags: do; UDP size: 1232/);
      expect(out).toMatch(/198\.18\.50\.25/);
    }
  });

  it('truncates a large answer over UDP and serves it whole over TCP', () => {
    port = 41004;
    const udp = dig1(['+noedns', '+ignore', 'big.lab.example', 'TXT']);
    expect(udp).toMatch(/flags: qr tc rd ra;/);
    const tcp = lab.dig(['+tcp', 'big.lab.example', 'TXT']);
    expect(tcp).toMatch(/status: NOERROR/);
    expect(answers(tcp).length).toBe(40);
    expect(rrset(tcp)).toEqual(rrset(upstream(['+tcp', 'big.lab.example', 'TXT'])));
  });

  it('serves NXDOMAIN and NODATA with the SOA, on the userspace and XDP paths', () => {
    port = 41005;
    for (let i = 0; i < 6; i++) {
      const nx = dig1(['nope.lab.example', 'A']);
      expect(nx).toMatch(/status: NXDOMAIN/);
      expect(nx).toMatch(/AUTHORITY SECTION:\nlab\.example\.\s+\d+\s+IN\s+SOA/);
      const nodata = dig1(['v4only.lab.example', 'AAAA']);
      expect(nodata).toMatch(/status: NOERROR/);
      expect(nodata).toMatch(/ANSWER: 0, AUTHORITY: 1/);
    }
    // The SOA minimum is 60: never a higher negative TTL.
    const ttl = Number(/lab\.example\.\s+(\d+)\s+IN\s+SOA/.exec(dig1(['nope.lab.example', 'A']))?.[1]);
    expect(ttl).toBeLessThanOrEqual(60);
  });

  it('follows a CNAME chain like the upstream, over IPv6 too', () => {
    port = 41006;
    const want = rrset(upstream(['alias.lab.example', 'A']));
    expect(want.length).toBe(4);
    for (let i = 0; i < 6; i++) {
      expect(rrset(dig1(['alias.lab.example', 'A']))).toEqual(want);
      expect(rrset(dig1(['alias.lab.example', 'A'], ADDR.appliance6))).toEqual(want);
    }
  });

  it('keeps serving after malformed input, counting it', () => {
    const junk = [
      'Buffer.alloc(3)', // no header
      'Buffer.from("0001010000010000000000000377777700c00c0001","hex")', // "pointer loop": www. type 0xc00c in fact
      'Buffer.from("00020100000100000000000040" + "61".repeat(64) + "000001","hex")', // label of 64
      'Buffer.from("00030100000500000000000003777777036c6162076578616d706c6500000100","hex")', // lying count
      'require("crypto").randomBytes(100)',
    ];
    const script = `const d=require('dgram');const s=d.createSocket('udp4');const m=[${junk.join(',')}];let n=0;` +
      `for(let r=0;r<40;r++)for(const b of m)s.send(b,53,'${ADDR.appliance4}',()=>{if(++n===${junk.length * 40})s.close()});`;
    const before = svc.metrics();
    lab.exec('client', process.execPath, ['-e', script]);
    // Malformed queries are answered FORMERR or dropped by the engine; what is not
    // recognisably a query at all is dropped before it (no error reply to junk), in XDP
    // when it carries QR=1 and in userspace otherwise.
    const bad = (m: Record<string, number>) =>
      (m['heimdall_malformed_total{action="formerr"}'] ?? 0) + (m['heimdall_malformed_total{action="dropped"}'] ?? 0) +
      (m['heimdall_edge_drops_total{reason="not_a_query"}'] ?? 0) + (m['heimdall_edge_drops_total{reason="response"}'] ?? 0) +
      (m['heimdall_xdp_packets_total{outcome="DROP_RESPONSE"}'] ?? 0);
    // Four of the five are malformed; the "pointer loop" is read by both parsers as a
    // well-formed question of type 0xc00c, and answered.
    const after = svc.metricsWhen((m) => bad(m) - bad(before) >= 4 * 40);
    expect(bad(after) - bad(before)).toBeGreaterThanOrEqual(4 * 40);
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
  });

  it('answers a load from dnsperf without losing queries', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-perf-'));
    try {
      const names = Array.from({ length: 300 }, (_, i) => `h${i}.lab.example A`);
      writeFileSync(join(dir, 'q'), names.join('\n') + '\n');
      const out = lab.exec('client', 'dnsperf', ['-s', ADDR.appliance4, '-d', join(dir, 'q'), '-l', '4', '-Q', '3000', '-t', '2', '-c', '4'], 60_000);
      const sent = Number(/Queries sent:\s+(\d+)/.exec(out)?.[1]);
      const done = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1]);
      expect(sent).toBeGreaterThan(5000);
      expect(done / sent).toBeGreaterThan(0.999);
      expect(out, out).toMatch(/NOERROR \d+ \(100\.00%\)/);
      const m = svc.metrics();
      expect(m[M_XDP]).toBeGreaterThan(1000); // the repeated names were promoted
      expect(m['heimdall_hot_entries']).toBeGreaterThan(100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('answers hot names from XDP while every worker is stopped, and nothing else', () => {
    port = 41007;
    for (let i = 0; i < 5; i++) dig1(['mail.lab.example', 'MX']);
    svc.signal('SIGSTOP');
    try {
      expect(dig1(['mail.lab.example', 'MX'])).toMatch(/status: NOERROR/);
      expect(lab.dig(['h999.lab.example', 'A'])).toMatch(/timed out|no servers could be reached/);
    } finally {
      svc.signal('SIGCONT');
    }
  });

  it('replaces workers killed under load and loses no frames', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-perf-'));
    try {
      writeFileSync(join(dir, 'q'), Array.from({ length: 50 }, (_, i) => `h${600 + i}.lab.example A`).join('\n') + '\n');
      const load = new Promise<string>((resolve) => {
        setTimeout(() => resolve(lab.exec('client', 'dnsperf', ['-s', ADDR.appliance4, '-d', join(dir, 'q'), '-l', '3', '-Q', '1000'], 60_000)), 0);
      });
      await new Promise((r) => setTimeout(r, 300));
      svc.signal('SIGUSR2');
      await load;
      const m = svc.metricsWhen((x) => x['heimdall_worker_restarts_total']! >= 2 && x['heimdall_umem_frames_in_use'] === 0);
      await new Promise((r) => setTimeout(r, 100)); // metricsWhen blocks: let the service's stderr be read
      expect(m['heimdall_worker_restarts_total']).toBeGreaterThanOrEqual(2);
      expect(m['heimdall_umem_frames_in_use']).toBe(0);
      expect(svc.stderr).toMatch(/worker for queue 0 replaced/);
      // Both queues are served again.
      for (let p = 42000; p < 42010; p++) expect(lab.dig(['-b', `${ADDR.client4}#${p}`, 'www.lab.example', 'A'])).toMatch(/status: NOERROR/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('counts the queries a killed worker held waiting on the upstream (worker_exit), none lost uncounted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-held-'));
    // The upstream hears the queries but its answers never come back: misses wait.
    lab.exec('upstream', 'ip', ['route', 'add', 'blackhole', '198.18.1.1/32']);
    lab.exec('upstream', 'ip', ['-6', 'route', 'add', 'blackhole', 'fd00:0:0:2::1/128']);
    try {
      const EXIT = 'heimdall_af_xdp_drops_total{reason="worker_exit"}';
      const before = svc.metrics();
      writeFileSync(join(dir, 'q'), Array.from({ length: 80 }, (_, i) => `held${i}-${process.pid}.lab.example A`).join('\n') + '\n');
      const load = new Promise<void>((resolve) => {
        const p = spawn('ip', ['netns', 'exec', lab.ns.client, 'dnsperf', '-s', ADDR.appliance4, '-d', join(dir, 'q'), '-n', '1', '-Q', '400', '-t', '3'], { stdio: 'ignore' });
        p.on('exit', () => resolve());
      });
      // Every name is a miss now waiting on the upstream, in one worker or the other.
      const waiting = svc.metricsWhen((x) => x['heimdall_af_xdp_waiting']! >= 80, 3000)['heimdall_af_xdp_waiting']!;
      expect(waiting).toBeGreaterThanOrEqual(80);
      svc.signal('SIGUSR2');
      const m = svc.metricsWhen((x) => x['heimdall_worker_restarts_total']! >= (before['heimdall_worker_restarts_total'] ?? 0) + 2 && (x[EXIT] ?? 0) > (before[EXIT] ?? 0), 8000);
      expect((m[EXIT] ?? 0) - (before[EXIT] ?? 0)).toBe(waiting);
      expect(m['heimdall_af_xdp_waiting']).toBe(0);
      await load;
    } finally {
      lab.exec('upstream', 'ip', ['route', 'del', 'blackhole', '198.18.1.1/32']);
      lab.exec('upstream', 'ip', ['-6', 'route', 'del', 'blackhole', 'fd00:0:0:2::1/128']);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('answers SERVFAIL within 5 s when the upstream dies, and keeps answering cached names', () => {
    port = 41008;
    for (let i = 0; i < 2; i++) dig1(['h1.lab.example', 'A']);
    lab.script('upstream-stop');
    try {
      const t0 = Date.now();
      const out = lab.dig(['+time=6', 'h998.lab.example', 'A']);
      const took = Date.now() - t0;
      expect(out).toMatch(/status: SERVFAIL/);
      expect(took).toBeLessThan(5000);
      expect(dig1(['h1.lab.example', 'A'])).toMatch(/status: NOERROR/);
      const m = svc.metricsWhen((x) => x['heimdall_upstream_failures_total']! >= 1);
      expect(m['heimdall_upstream_failures_total']).toBeGreaterThanOrEqual(1);
    } finally {
      lab.script('upstream-start');
    }
  });
});
