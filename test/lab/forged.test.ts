/**
 * The on-path forgery of issue 13, end to end: an upstream in the lab's upstream
 * namespace (test/lab/forging-upstream.mjs) answers `spoof-hot.lab.example A` with the
 * right A and, riding on it, `bank.example NS ns.evil.example` and addresses for
 * `www.bank.example` and `ns.evil.example`. heimdall-xdp must give clients only the A,
 * count the scrubbed records by section, and promote into the XDP hot map an entry that
 * holds none of the forged bytes. The same upstream also echoes some questions in the
 * wrong case and sends a foreign cookie before the right one: the service's metrics count
 * both by reason, and the answers still come.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, type Service } from '../helpers/lab.js';
import { progMapIds } from '../helpers/bpftool.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const M_XDP = 'heimdall_responses_total{path="xdp"}';
const PORT = 5353;

/** The hot maps' values (both classes) as one hex string per entry (bpftool, like an operator would look). */
function hotValues(lab: Lab): string[] {
  const link = lab.exec('appliance', 'ip', ['-d', 'link', 'show', lab.applianceIf]);
  const progId = /prog\/xdp id (\d+)/.exec(link)?.[1];
  if (progId === undefined) throw new Error(`no XDP program on ${lab.applianceIf}: ${link}`);
  const maps = progMapIds(progId);
  const hot = ['hot_map', 'hot_slots'].flatMap((n) => maps.get(n) ?? []);
  if (hot.length !== 2) throw new Error('no hot_map and hot_slots');
  return hot.flatMap((id) => {
    const dump = JSON.parse(execFileSync('bpftool', ['map', 'dump', 'id', String(id), '--json'], { encoding: 'utf8', maxBuffer: 512 << 20 })) as { value: string[] }[];
    return dump.map((e) => e.value.map((b) => b.replace(/^0x/, '')).join(''));
  });
}

const hexOf = (s: string) => Buffer.from(s, 'latin1').toString('hex');

describePrivileged('forged extras from the upstream never reach clients or the hot map', { netns: true, tools: ['dig', 'curl', 'bpftool'] }, () => {
  const lab = new Lab('f');
  let svc: Service;
  let fake: ChildProcess | null = null;

  beforeAll(async () => {
    lab.up(10);
    fake = spawn('ip', ['netns', 'exec', lab.ns.upstream, process.execPath, `${HERE}/forging-upstream.mjs`, ADDR.upstream4, String(PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    fake.stdout!.on('data', (d) => (out += d));
    for (let i = 0; i < 100 && !/ready/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    if (!/ready/.test(out)) throw new Error('forging upstream did not start');
    svc = lab.startService(['--upstream', `${ADDR.upstream4}:${PORT}`, '--metrics-listen', '127.0.0.1:9153']);
    await svc.ready();
  }, 120_000);

  afterAll(async () => {
    try {
      if (svc) await svc.stop();
      fake?.kill('SIGTERM'); // ip netns exec execs node: this PID is the fake upstream we started
    } finally {
      lab.down();
    }
  }, 60_000);

  it('clients get only the A; the extras are counted as scrubbed; the promoted entry holds none of them', () => {
    const paths: string[] = [];
    for (let i = 0; i < 6; i++) {
      const before = svc.metrics()[M_XDP] ?? 0;
      const out = lab.dig(['-b', `${ADDR.client4}#42013`, '+dnssec', 'spoof-hot.lab.example', 'A']);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1/); // the OPT only
      expect(out).toMatch(/spoof-hot\.lab\.example\.\s+\d+\s+IN\s+A\s+198\.18\.70\.1/);
      expect(out).not.toMatch(/bank\.example|evil\.example|198\.18\.66\./);
      const after = svc.metricsWhen((m) => (m[M_XDP] ?? 0) > before, i >= 3 ? 3000 : 300)[M_XDP] ?? 0;
      paths.push(after > before ? 'xdp' : 'userspace');
    }
    expect(paths.slice(-2)).toEqual(['xdp', 'xdp']);
    const m = svc.metricsWhen((x) => (x['heimdall_upstream_scrubbed_total{section="additional"}'] ?? 0) >= 2);
    expect(m['heimdall_upstream_scrubbed_total{section="authority"}']).toBeGreaterThanOrEqual(1);
    expect(m['heimdall_upstream_scrubbed_total{section="additional"}']).toBeGreaterThanOrEqual(2);
    expect(m['heimdall_upstream_scrubbed_total{section="answer"}'] ?? 0).toBe(0);

    const values = hotValues(lab);
    const ours = values.filter((v) => v.includes(hexOf('\x09spoof-hot\x03lab\x07example')));
    expect(ours.length).toBeGreaterThan(0);
    for (const v of ours) expect(v).toContain('c6124601'); // 198.18.70.1
    for (const v of values) {
      expect(v).not.toContain('c6124206'); // 198.18.66.6
      expect(v).not.toContain('c6124207'); // 198.18.66.7
      expect(v).not.toContain(hexOf('\x04bank'));
      expect(v).not.toContain(hexOf('\x04evil'));
    }
  }, 60_000);

  it('an upstream that does not echo the case gets plain names, counted; a foreign cookie is counted and ignored', () => {
    const before = svc.metrics();
    const out = lab.dig(['-b', `${ADDR.client4}#42014`, '+time=6', 'lower-case.lab.example', 'A']);
    expect(out).toMatch(/status: NOERROR/);
    expect(out).toMatch(/198\.18\.70\.1/);
    const caseKey = 'heimdall_upstream_mismatched_total{reason="case"}';
    const m = svc.metricsWhen((x) => (x['heimdall_upstream_caps_fallbacks_total'] ?? 0) > (before['heimdall_upstream_caps_fallbacks_total'] ?? 0));
    expect((m[caseKey] ?? 0) - (before[caseKey] ?? 0)).toBeGreaterThanOrEqual(2);
    expect((m['heimdall_upstream_caps_fallbacks_total'] ?? 0) - (before['heimdall_upstream_caps_fallbacks_total'] ?? 0)).toBe(1);

    const cookieKey = 'heimdall_upstream_mismatched_total{reason="cookie"}';
    const c0 = svc.metrics()[cookieKey] ?? 0;
    const out2 = lab.dig(['-b', `${ADDR.client4}#42015`, 'badcookie-1.lab.example', 'A']);
    expect(out2).toMatch(/status: NOERROR/);
    expect(out2).toMatch(/198\.18\.70\.1/);
    const m2 = svc.metricsWhen((x) => (x[cookieKey] ?? 0) > c0);
    expect((m2[cookieKey] ?? 0) - c0).toBe(1);
  }, 60_000);
});
