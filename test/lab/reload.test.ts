/**
 * The config file and live reload in the lab: `attach --config`, then the file changed
 * and read again (SIGHUP and `heimdall-xdp reload`) while dnsperf keeps asking — no
 * query lost; the new upstreams and access lists take effect at once; a file with a
 * mistake is refused and the running config kept; a setting that cannot change live
 * is reported as needing a restart.
 */
import { expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';
import { formatCpuList } from '../../src/config.js';
import { onlineCpus } from '../../src/service/cpus.js';

describePrivileged('config file and live reload in the lab', { netns: true, tools: ['dig', 'dnsperf', 'nsd', 'curl'] }, () => {
  const lab = new Lab('r');
  const dir = mkdtempSync(join(tmpdir(), 'hx-reload-'));
  const file = join(dir, 'heimdall.yaml');
  let svc: Service;

  /** The config file with these keys on top of the base. */
  function write(extra: Record<string, string> = {}): void {
    const keys: Record<string, string> = {
      interface: lab.applianceIf,
      upstreams: `[${ADDR.upstream4}]`,
      allow: '[198.18.0.0/15, "fd00::/8"]',
      'metrics-listen': '127.0.0.1:9153',
      queues: '2',
      ...extra,
    };
    writeFileSync(file, Object.entries(keys).map(([k, v]) => `${k}: ${v}\n`).join(''));
  }
  const reload = () => lab.cli(['reload', lab.applianceIf]);

  /** dnsperf from the client, without blocking this process (the reloads happen meanwhile). */
  function dnsperf(args: string[]): Promise<string> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', lab.ns.client, 'dnsperf', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('exit', () => resolve(out));
    });
  }

  suiteService(lab, { zone: 1000, args: ['--config', file], setup: write, cleanup: () => rmSync(dir, { recursive: true, force: true }) }, (s) => (svc = s));

  it('serves what the file says', () => {
    expect(svc.stdout).toMatch(new RegExp(`on ${lab.applianceIf} port 53 \\(.*2 AF_XDP worker.*via ${ADDR.upstream4}.*SIGHUP reloads`));
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
    expect(lab.dig(['www.lab.example', 'A'], ADDR.appliance6)).toMatch(/status: NOERROR/);
    // The control socket: root and the group only.
    expect(lab.exec('appliance', 'stat', ['-c', '%a %F', '/run/heimdall-xdp', `/run/heimdall-xdp/${lab.applianceIf}.sock`])).toBe('750 directory\n660 socket\n');
  });

  it('reloads under a query stream without losing a query', async () => {
    const q = join(dir, 'q');
    writeFileSync(q, Array.from({ length: 400 }, (_, i) => `h${i}.lab.example A`).join('\n') + '\n');
    const load = dnsperf(['-s', ADDR.appliance4, '-d', q, '-l', '6', '-Q', '1500', '-t', '2', '-c', '4']);
    await new Promise((r) => setTimeout(r, 1000));
    // Upstreams over IPv6 now, other rate limits, another promotion threshold: by the CLI...
    write({ upstreams: `["[${ADDR.upstream6}]:53"]`, rrl: '2000', 'promote-after': '4' });
    const r1 = await reload();
    expect(r1.stderr).toBe('');
    expect(r1.stdout).toMatch(/^reloaded .*: changed upstreams, promote-after, rrl\n$/);
    await new Promise((r) => setTimeout(r, 1000));
    // ...and by SIGHUP.
    write({ upstreams: `["[${ADDR.upstream6}]:53"]`, rrl: '2000', 'promote-after': '2' });
    svc.signal('SIGHUP');
    await new Promise((r) => setTimeout(r, 1000));
    write({ upstreams: `[${ADDR.upstream4}, "[${ADDR.upstream6}]"]` });
    expect((await reload()).code).toBe(0);
    const out = await load;
    const sent = Number(/Queries sent:\s+(\d+)/.exec(out)?.[1]);
    const done = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1]);
    expect(sent, out).toBeGreaterThan(6000);
    expect(done, out).toBe(sent);
    expect(out, out).toMatch(/NOERROR \d+ \(100\.00%\)/);
    expect(svc.stderr).toMatch(/info reload: .*heimdall\.yaml: changed upstreams, promote-after, rrl\n/);
    expect(svc.stderr).toMatch(/info reload: .*heimdall\.yaml: changed promote-after\n/);
    expect(svc.stderr).toMatch(/info reload: .*heimdall\.yaml: changed upstreams, promote-after, rrl\n/);
  }, 60_000);

  it('refuses new upstreams none of which answers, as start does, and keeps the running ones', async () => {
    write({ upstreams: '[198.18.1.99]', 'cache-max-ttl': '60' }); // nobody answers there
    const r = await reload();
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("heimdall-xdp: no upstream answers (198.18.1.99): check 'upstreams' in the file and that this host can reach it\n");
    expect(svc.stderr).toMatch(/error reload: refused, running config kept: no upstream answers \(198\.18\.1\.99\)/);
    // The running upstream still answers the next miss, and nothing of the file applied.
    const out = lab.dig(['h900.lab.example', 'A']);
    expect(out).toMatch(/status: NOERROR/);
    expect(Number(/^h900\.lab\.example\.\s+(\d+)\s+IN\s+A/m.exec(out)![1])).toBeGreaterThan(60);
  }, 60_000);

  it('sends the next misses to the new upstreams at once', async () => {
    write({ upstreams: `["[${ADDR.upstream6}]:53"]` });
    expect((await reload()).stdout).toMatch(/changed upstreams/);
    expect(lab.dig(['h901.lab.example', 'A'])).toMatch(/status: NOERROR/);
    const up = JSON.parse((await lab.cli(['upstreams', lab.applianceIf, '--json'])).stdout) as unknown;
    expect(JSON.stringify(up)).toContain(ADDR.upstream6);
    expect(JSON.stringify(up)).not.toContain(ADDR.upstream4);
    write();
    expect((await reload()).code).toBe(0);
    expect(lab.dig(['h902.lab.example', 'A'])).toMatch(/status: NOERROR/);
  }, 60_000);

  it('refuses an access list larger than the XDP program holds before anything changes', async () => {
    // 4097 distinct IPv4 prefixes (one /32 more than the trie's 4096), with a TTL ceiling that must not apply.
    const many = Array.from({ length: 4096 }, (_, i) => `"198.19.${i >> 8}.${i & 255}/32"`);
    write({ allow: `[198.18.0.0/15, "fd00::/8", ${many.join(', ')}]`, 'cache-max-ttl': '60' });
    const r = await reload();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^heimdall-xdp: heimdall\.yaml:\d+: allow: with --deny and --rrl-exempt makes 4097 distinct IPv4 prefixes; the XDP program holds at most 4096 per family: merge prefixes into wider ones\n$/);
    const out = lab.dig(['h903.lab.example', 'A']);
    expect(out).toMatch(/status: NOERROR/);
    expect(Number(/^h903\.lab\.example\.\s+(\d+)\s+IN\s+A/m.exec(out)![1])).toBeGreaterThan(60);
    write();
  }, 60_000);

  it('applies a new access list on every path at once', async () => {
    for (let i = 0; i < 4; i++) lab.dig(['www.lab.example', 'A']); // hot: XDP answers it
    write({ deny: `[${ADDR.client4}/32]` });
    const r = await reload();
    expect(r.stdout).toMatch(/changed deny/);
    // Dropped, whether XDP or a worker would have answered (hot name, cold name), UDP or TCP.
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/timed out|no servers could be reached/);
    expect(lab.dig(['h950.lab.example', 'A'])).toMatch(/timed out|no servers could be reached/);
    expect(lab.dig(['+tcp', 'h951.lab.example', 'A'])).toMatch(/timed out|no servers could be reached|connection reset|end of file/);
    expect(lab.dig(['www.lab.example', 'A'], ADDR.appliance6)).toMatch(/status: NOERROR/);
    // Allowed no more (neither allowed nor denied): REFUSED.
    write({ allow: '["fd00::/8"]' });
    expect((await reload()).stdout).toMatch(/changed allow/);
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: REFUSED/);
    write();
    expect((await reload()).stdout).toMatch(/changed allow/);
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
  }, 60_000);

  it('refuses a file with a mistake and keeps the running config', async () => {
    writeFileSync(file, `interface: ${lab.applianceIf}\nupstreams: [${ADDR.upstream4}]\nallow: [198.18.0.0/15]\nrrl: fast\n`);
    const r = await reload();
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('heimdall-xdp: heimdall.yaml:4: rrl: must be an integer from 0 to 1000000, got "fast"\n');
    expect(svc.stderr).toMatch(/error reload: refused, running config kept: heimdall\.yaml:4: rrl/);
    expect(lab.dig(['www.lab.example', 'A'], ADDR.appliance6)).toMatch(/status: NOERROR/); // fd00::/8 still allowed
  });

  it('says which changes need a restart, and keeps their running values', async () => {
    // A larger cache than the memory allocated at start needs a restart.
    write({ port: '5353', 'cache-size': '500000' });
    const r = await reload();
    expect(r.code).toBe(0);
    // hot-size and cache-bytes follow cache-size when not given.
    expect(r.stdout).toMatch(/: nothing to change; port, cache-size, hot-size, cache-bytes changed in the file but need a restart \(running values kept\)\n$/);
    expect(lab.dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
  });

  it('changes the cache bounds live: a smaller cache and a TTL ceiling apply to the next answers', async () => {
    write({ 'cache-size': '5000', 'cache-max-ttl': '60', 'serve-stale': 'true' });
    try {
      const r = await reload();
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/changed cache-size, cache-bytes, cache-max-ttl, serve-stale; hot-size changed in the file but needs a restart/);
      // The zone's TTL is 300: a name first fetched now is cached for 60 s at most.
      const ttl = (out: string) => Number(/^h777\.lab\.example\.\s+(\d+)\s+IN\s+A/m.exec(out)![1]);
      expect(ttl(lab.dig(['h777.lab.example', 'A']))).toBeLessThanOrEqual(60);
      expect(ttl(lab.dig(['h777.lab.example', 'A']))).toBeLessThanOrEqual(60); // and from the cache
    } finally {
      write();
      expect((await reload()).stdout).toMatch(/changed cache-size, cache-bytes, cache-max-ttl, serve-stale/);
    }
  });

  it('promotes nothing while XDP answers are off, and promotes again once they are back on', async () => {
    const PROMOTE = 'heimdall_hot_changes_total{change="promote"}';
    const XDP = 'heimdall_responses_total{path="xdp"}';
    write({ 'xdp-answers': 'false' });
    try {
      expect((await reload()).stdout).toMatch(/changed xdp-answers/);
      const before = svc.metrics();
      // Asked six times (the threshold is 3): cached, answered by a worker, never promoted.
      for (let i = 0; i < 6; i++) expect(lab.dig(['h950.lab.example', 'A'])).toMatch(/status: NOERROR/);
      const off = svc.metricsWhen((m) => (m['heimdall_responses_total{path="cache"}'] ?? 0) >= (before['heimdall_responses_total{path="cache"}'] ?? 0) + 5);
      expect(off[PROMOTE]).toBe(before[PROMOTE]);
      expect(off[XDP]).toBe(before[XDP]);
      expect((await lab.cli(['cache', lab.applianceIf, 'lookup', 'h950.lab.example', 'A'])).stdout).toMatch(/: cached \(1 entry\); not in the XDP hot map\n/);
    } finally {
      write();
      expect((await reload()).stdout).toMatch(/changed xdp-answers/);
    }
    // Back on: the name, past the threshold already, is promoted at its next ask and XDP answers it.
    let served = false;
    for (let i = 0; i < 10 && !served; i++) {
      const was = svc.metrics()[XDP] ?? 0;
      expect(lab.dig(['h950.lab.example', 'A'])).toMatch(/status: NOERROR/);
      served = (svc.metrics()[XDP] ?? 0) > was;
      if (!served) await new Promise((r) => setTimeout(r, 100));
    }
    expect(served, 'XDP answers the name once answers are back on').toBe(true);
  }, 60_000);

  it('pins every thread to the CPUs the file names, restarted workers too, and lets go when the key goes', async () => {
    const pid = svc.proc.pid!;
    /** Each thread's allowed CPUs, as the kernel lists them (a thread that ends meanwhile is left out). */
    const sets = (): string[] =>
      readdirSync(`/proc/${pid}/task`).flatMap((t) => {
        try {
          return [/^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'))![1]!];
        } catch {
          return [];
        }
      });
    const online = onlineCpus();
    const all = formatCpuList(online);
    const one = String(online.at(-1));
    expect(new Set(sets())).toEqual(new Set([all])); // not pinned: the scheduler's choice
    write({ cpus: one });
    try {
      const r = await reload();
      expect(r.stdout).toMatch(/changed cpus\n$/);
      const pinned = sets();
      expect(pinned.length).toBeGreaterThan(4); // the main thread, two workers, V8's and libuv's
      expect(new Set(pinned)).toEqual(new Set([one]));
      // Workers started after the reload inherit the set from the thread that starts them.
      const restarts = svc.metrics()['heimdall_worker_restarts_total'] ?? 0;
      svc.signal('SIGUSR2');
      svc.metricsWhen((m) => (m['heimdall_worker_restarts_total'] ?? 0) >= restarts + 2);
      for (let p = 42100; p < 42108; p++) expect(lab.dig(['-b', `${ADDR.client4}#${p}`, `h${p - 42100 + 800}.lab.example`, 'A'])).toMatch(/status: NOERROR/);
      expect(new Set(sets())).toEqual(new Set([one]));
    } finally {
      write();
      expect((await reload()).stdout).toMatch(/changed cpus\n$/);
    }
    expect(new Set(sets())).toEqual(new Set([all]));
  }, 60_000);

  it('switches its log to JSON lines on reload', async () => {
    write({ 'log-format': 'json' });
    expect((await reload()).stdout).toMatch(/changed log-format/);
    const lines = svc.stderr.split('\n').filter((l) => l.startsWith('{'));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    const last = JSON.parse(lines.at(-1)!) as Record<string, string>;
    expect(last).toMatchObject({ level: 'info', event: 'reload' });
    expect(last.msg).toMatch(/changed log-format/);
    expect(Date.parse(last.time!)).toBeGreaterThan(Date.now() - 60_000);
    write();
    expect((await reload()).code).toBe(0);
    expect(svc.stderr).toMatch(/\nheimdall-xdp: info reload: .*changed log-format/);
  });

  it('says when nobody serves an interface', async () => {
    const r = await lab.cli(['reload', 'nosuch0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^heimdall-xdp: no heimdall-xdp serves 'nosuch0' \(no control socket \/run\/heimdall-xdp\/nosuch0\.sock\)\n$/);
  });
});
