/**
 * Scrubbed, minimal DNSSEC answers still validate: delv in the client namespace, with
 * the signed zone's key as its only trust anchor, asks heimdall-xdp (which forwards to
 * an NSD in the upstream namespace serving secure.example, signed by
 * scripts/lab/signed-zone.sh) for an A RRset, an NXDOMAIN (NSEC proofs), a wildcard
 * expansion and a CNAME chain: first through userspace (upstream, then cache), then,
 * once promoted, through the XDP fast path. A wrong trust anchor must fail, so the
 * passes are delv validating, not delv trusting.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh } from '../helpers/netns.js';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, type Service } from '../helpers/lab.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const M_XDP = 'heimdall_responses_total{path="xdp"}';
const PORT = 5353;

describePrivileged('DNSSEC answers validate after scrubbing (delv)', { netns: true, tools: ['delv', 'dig', 'nsd', 'curl', 'dnssec-signzone', 'dnssec-keygen'] }, () => {
  const lab = new Lab('s');
  let svc: Service;
  let dir = '';

  /** delv's whole output: it says "; fully validated" on stderr, the records on stdout. */
  const delv = (name: string, type: string, anchor = join(dir, 'anchor.conf')): string =>
    lab.exec('client', 'sh', ['-c', `delv @${ADDR.appliance4} -a ${anchor} +root=secure.example ${name} ${type} 2>&1`], 30_000);
  const dig = (args: string[]) => lab.dig(['+dnssec', ...args]);

  beforeAll(async () => {
    lab.up(10);
    // A directory the upstream namespace's NSD can read: under the lab's run directory.
    dir = mkdtempSync(join('/run', `heimdall-lab-${lab.prefix}`, 'signed-'));
    sh('bash', [join(ROOT, 'scripts/lab/signed-zone.sh'), dir]);
    writeFileSync(
      join(dir, 'nsd.conf'),
      [
        'server:',
        `  ip-address: ${ADDR.upstream4}@${PORT}`,
        `  port: ${PORT}`,
        '  username: ""',
        '  chroot: ""',
        `  zonesdir: "${dir}"`,
        `  pidfile: "${dir}/nsd.pid"`,
        '  database: ""',
        `  xfrdfile: "${dir}/xfrd.state"`,
        `  zonelistfile: "${dir}/zone.list"`,
        `  logfile: "${dir}/nsd.log"`,
        '  server-count: 1',
        '  verbosity: 1',
        'remote-control:',
        '  control-enable: no',
        'zone:',
        '  name: secure.example',
        '  zonefile: secure.example.signed',
        '',
      ].join('\n'),
    );
    const out = lab.exec('upstream', 'nsd', ['-c', join(dir, 'nsd.conf')]);
    for (let i = 0; i < 50; i++) {
      if (/status: NOERROR/.test(lab.exec('appliance', 'dig', [`@${ADDR.upstream4}`, '-p', String(PORT), '+tries=1', '+time=1', 'www.secure.example', 'A']))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!existsSync(join(dir, 'nsd.pid'))) throw new Error(`signed-zone NSD did not start: ${out} ${existsSync(join(dir, 'nsd.log')) ? readFileSync(join(dir, 'nsd.log'), 'utf8') : ''}`);
    svc = lab.startService(['--upstream', `${ADDR.upstream4}:${PORT}`, '--metrics-listen', '127.0.0.1:9153']);
    await svc.ready();
  }, 120_000);

  afterAll(async () => {
    try {
      if (svc) await svc.stop();
      if (dir && existsSync(join(dir, 'nsd.pid'))) {
        const pid = Number(readFileSync(join(dir, 'nsd.pid'), 'utf8'));
        if (pid > 1) {
          try {
            process.kill(pid, 'SIGTERM'); // the NSD this test started, by its PID
            for (let i = 0; i < 30; i++) {
              process.kill(pid, 0);
              await new Promise((r) => setTimeout(r, 100));
            }
          } catch {
            /* gone */
          }
        }
      }
    } finally {
      lab.down(); // removes the lab's run directory, the signed zone's with it
    }
  }, 60_000);

  const CASES: [string, string, RegExp][] = [
    ['www.secure.example', 'A', /; fully validated\n[\s\S]*www\.secure\.example\.\s+\d+\s+IN\s+A\s+198\.18\.60\.[12]/],
    ['nope.secure.example', 'A', /; negative response, fully validated/],
    ['anything.wild.secure.example', 'A', /; fully validated\n[\s\S]*anything\.wild\.secure\.example\.\s+\d+\s+IN\s+A\s+198\.18\.60\.9/],
    ['alias.secure.example', 'A', /; fully validated\n[\s\S]*alias\.secure\.example\.\s+\d+\s+IN\s+CNAME\s+alias2[\s\S]*www\.secure\.example\.\s+\d+\s+IN\s+A/],
  ];

  it('a wrong trust anchor fails: delv really validates', () => {
    const bad = join(dir, 'bad-anchor.conf');
    const good = readFileSync(join(dir, 'anchor.conf'), 'utf8');
    // Another valid P-256 key: flip one base64 character of the real one.
    writeFileSync(bad, good.replace(/"([A-Za-z0-9+/])/, (_m, c: string) => `"${c === 'A' ? 'B' : 'A'}`));
    const out = delv('www.secure.example', 'A', bad);
    expect(out).toMatch(/resolution failed|no valid|insecurity proof failed|broken trust chain/);
    expect(out).not.toMatch(/fully validated/);
  });

  it('through userspace (upstream, then cache): A, NXDOMAIN with NSEC, wildcard, CNAME chain', () => {
    for (const [name, type, want] of CASES) {
      for (let i = 0; i < 2; i++) {
        const out = delv(name, type);
        expect(out, `${name} ${type} ask ${i + 1}`).toMatch(want);
      }
    }
    // Minimal responses: no additional records beyond the OPT, no NS in authority.
    const mx = dig(['mail.secure.example', 'MX']);
    expect(mx).toMatch(/status: NOERROR/);
    expect(mx).toMatch(/ADDITIONAL: 1\b/);
    expect(mx).not.toMatch(/AUTHORITY SECTION/);
  }, 120_000);

  it('through the XDP fast path, once promoted', () => {
    // Ask every name (and the zone's DNSKEY, which delv fetches) often enough to be promoted.
    for (const [name, type] of [...CASES.map(([n, t]) => [n, t] as const), ['secure.example', 'DNSKEY'] as const]) {
      for (let i = 0; i < 5; i++) expect(dig([name, type])).toMatch(/status: (NOERROR|NXDOMAIN)/);
    }
    // Promotions reach the hot map within the upkeep's second.
    const ready = Date.now() + 5000;
    while (Date.now() < ready) {
      const before = svc.metrics()[M_XDP] ?? 0;
      dig(['www.secure.example', 'A']);
      if ((svc.metricsWhen((m) => (m[M_XDP] ?? 0) > before, 1500)[M_XDP] ?? 0) > before) break;
    }
    for (const [name, type, want] of CASES) {
      const before = svc.metrics()[M_XDP] ?? 0;
      const out = delv(name, type);
      expect(out, `${name} ${type} via XDP`).toMatch(want);
      const after = svc.metricsWhen((m) => (m[M_XDP] ?? 0) > before, 3000)[M_XDP] ?? 0;
      expect(after - before, `${name} ${type} answered by XDP`).toBeGreaterThan(0);
    }
  }, 120_000);
});
