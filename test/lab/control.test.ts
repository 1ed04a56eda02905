/**
 * The control socket's verbs against a running attach in the lab: stats (text and
 * JSON), cache lookup and flush (a hot entry leaves the XDP map at once: the next ask
 * goes upstream), flush --all, upstreams, and the socket closed to other users.
 */
import { expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, runCli, suiteService, type Service } from '../helpers/lab.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const UP = 'heimdall_responses_total{path="upstream"}';
const XDP = 'heimdall_responses_total{path="xdp"}';

describePrivileged('control socket verbs in the lab', { netns: true, tools: ['dig', 'nsd', 'curl', 'setpriv'] }, () => {
  const lab = new Lab('k');
  let svc: Service;
  const cli = (...args: string[]) => lab.cli(args);

  /** Asks until XDP answers the name (it is hot), at most 20 times. */
  async function makeHot(name: string): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const before = svc.metrics()[XDP] ?? 0;
      expect(lab.dig([name, 'A'])).toMatch(/status: NOERROR/);
      if ((svc.metrics()[XDP] ?? 0) > before) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${name} never became hot`);
  }

  suiteService(lab, { zone: 200, args: ['--upstream', ADDR.upstream4, '--metrics-listen', '127.0.0.1:9153'] }, (s) => (svc = s));

  it('stats: answers by path, hit ratio, hot map, upstream, drops; --json for scripts', async () => {
    await makeHot('www.lab.example');
    const t = await cli('stats', lab.applianceIf, '--interval', '300');
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(new RegExp(`^${lab.applianceIf}: up \\d+ s, \\d+ of \\d+ AF_XDP workers running, 0 restarts\\n`));
    expect(t.stdout).toMatch(/\nqueries\/s: \d+ \(over 300 ms\); answers\/s: xdp \d+, cache \d+, upstream \d+, error \d+\n/);
    expect(t.stdout).toMatch(/\nhit ratio: .* since start \(xdp [1-9][\d.]*%\)\n/);
    expect(t.stdout).toMatch(/\nhot map: [1-9]\d* of \d+ entries/);
    expect(t.stdout).toMatch(/\nupstream: [1-9]\d* sent, [\d.]+ ms mean, 0 timeouts/);
    expect(t.stdout).toMatch(new RegExp(`\nupstreams: ${ADDR.upstream4.replace(/\./g, '\\.')}:53 up, rtt [\\d.]+ ms, p99 [\\d.]+ ms, 0 timeouts\n`));
    expect(t.stdout).toMatch(/\ndrops: /);
    const j = await cli('stats', lab.applianceIf, '--json', '--interval', '200');
    const s = JSON.parse(j.stdout) as { metrics: Record<string, number>; perSecond: Record<string, number>; hotCapacity: number; workers: { live: number } };
    // The same figures /metrics has.
    const m = svc.metrics();
    expect(s.metrics[XDP]).toBeGreaterThanOrEqual(1);
    expect(s.metrics[XDP]).toBeLessThanOrEqual(m[XDP]!);
    expect(Object.keys(s.metrics)).toContain('heimdall_hot_entries');
    expect(s.hotCapacity).toBe(10_000);
    expect(s.workers.live).toBeGreaterThanOrEqual(1);
    expect(typeof s.perSecond).toBe('object');
  }, 60_000);

  it('cache lookup says whether a name is cached, its entries, and whether XDP has it', async () => {
    await makeHot('mail.lab.example');
    const r = await cli('cache', lab.applianceIf, 'lookup', 'mail.lab.example', 'A');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^mail\.lab\.example A: cached \(1 entry\); hot in XDP: A\n  A rcode 0, TTL left \d+ s\n$/);
    const none = await cli('cache', lab.applianceIf, 'lookup', 'never.lab.example', 'A');
    expect(none.stdout).toMatch(/^never\.lab\.example A: not cached; not in the XDP hot map\n$/);
    const bad = await cli('cache', lab.applianceIf, 'lookup', 'x.lab.example', 'BOGUS');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("heimdall-xdp: unknown query type 'BOGUS' (e.g. A, AAAA, MX, or TYPE65)\n");
  }, 60_000);

  it('cache flush takes a hot name out of the cache and the XDP map, counting what it removed: the next ask goes upstream', async () => {
    await makeHot('v4only.lab.example');
    const r = await cli('cache', lab.applianceIf, 'flush', 'v4only.lab.example', 'A');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^flushed 1 cache entry of v4only\.lab\.example A and 1 from the XDP hot map\n$/);
    expect((await cli('cache', lab.applianceIf, 'lookup', 'v4only.lab.example', 'A')).stdout).toMatch(/^v4only\.lab\.example A: not cached; not in the XDP hot map\n$/);
    const before = svc.metricsWhen(() => true);
    expect(lab.dig(['v4only.lab.example', 'A'])).toMatch(/status: NOERROR/);
    const after = svc.metricsWhen((m) => m[UP]! > before[UP]!);
    expect(after[UP]! - before[UP]!).toBe(1);
    expect(after[XDP]).toBe(before[XDP]);
    expect(svc.stderr).toMatch(/info cache: flushed v4only\.lab\.example A: [1-9]\d* cache entries, 1 hot/);
  }, 60_000);

  it('cache flush --all empties the cache and the hot map', async () => {
    await makeHot('h1.lab.example');
    await makeHot('h2.lab.example');
    const r = await cli('cache', lab.applianceIf, 'flush', '--all');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^flushed [1-9]\d* cache entr(y|ies) and [2-9]\d* from the XDP hot map\n$/);
    const before = svc.metricsWhen((m) => m['heimdall_hot_entries'] === 0);
    expect(before['heimdall_hot_entries']).toBe(0);
    for (const n of ['h1.lab.example', 'h2.lab.example', 'www.lab.example']) expect(lab.dig([n, 'A'])).toMatch(/status: NOERROR/);
    const after = svc.metricsWhen((m) => m[UP]! - before[UP]! >= 3);
    expect(after[UP]! - before[UP]!).toBe(3);
    expect(after[XDP]).toBe(before[XDP]);
  }, 60_000);

  it('upstreams: health, round-trip time and counts', async () => {
    const r = await cli('upstreams', lab.applianceIf);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${ADDR.upstream4.replace(/\./g, '\\.')}:53: up, rtt [\\d.]+ ms, p50 [\\d.]+ ms, p99 [\\d.]+ ms, [1-9]\\d* sent, [1-9]\\d* answers, 0 servfail, 0 timeouts, 0 errors\\n$`));
    const j = JSON.parse((await cli('upstreams', lab.applianceIf, '--json')).stdout) as { upstreams: { upstream: string; healthyIn: number; engines: number }[] };
    expect(j.upstreams[0]).toMatchObject({ upstream: `${ADDR.upstream4}:53` });
    expect(j.upstreams[0]!.healthyIn).toBe(j.upstreams[0]!.engines);
  });

  it('has every metric the Grafana dashboard queries, with the label values it names', () => {
    const text = lab.exec('appliance', 'curl', ['-s', '--max-time', '3', 'http://127.0.0.1:9153/metrics']);
    const dash = JSON.parse(readFileSync(join(ROOT, 'dashboards/heimdall-xdp.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(15);
    let checked = 0;
    for (const expr of exprs) {
      for (const m of expr.matchAll(/(heimdall_[a-z0-9_]+)\{([^}]*)\}/g)) {
        const name = m[1]!;
        const base = name.replace(/_(bucket|sum|count)$/, '');
        expect(text, `${name} in ${expr}`).toMatch(new RegExp(`^# TYPE ${base} `, 'm'));
        // Each literal label value the panel selects is one the service exports.
        for (const l of m[2]!.matchAll(/([a-z_]+)=~?"([^"]*)"/g)) {
          if (l[1] === 'instance') continue;
          for (const v of l[2]!.split('|').filter((x) => !/[.*+?]/.test(x))) {
            expect(text, `${name}{${l[1]}="${v}"} in ${expr}`).toMatch(new RegExp(`^${base}(_total)?\\{[^}]*${l[1]}="${v}"`, 'm'));
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(8);
  });

  it('logs an upstream going down and coming back, once each', async () => {
    lab.script('upstream-stop');
    try {
      for (let i = 0; i < 6 && !/warn upstream: /.test(svc.stderr); i++) {
        lab.dig(['+time=6', `h${150 + i}.lab.example`, 'A']);
        await new Promise((r) => setTimeout(r, 1200)); // the engines report at their next upkeep
      }
      expect(svc.stderr).toMatch(new RegExp(`heimdall-xdp: warn upstream: ${ADDR.upstream4.replace(/\./g, '\\.')}:53 down \\(in [1-9] of \\d+ engines\\)\n`));
      const down = (await cli('upstreams', lab.applianceIf)).stdout;
      expect(down).toMatch(/: (DOWN|up in \d+ of \d+ engines) \(\d+ failures in a row\),/);
    } finally {
      lab.script('upstream-start');
    }
    for (let i = 0; i < 20 && !/info upstream: .* up again/.test(svc.stderr); i++) {
      lab.dig([`h${170 + i}.lab.example`, 'A']);
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(svc.stderr).toMatch(new RegExp(`heimdall-xdp: info upstream: ${ADDR.upstream4.replace(/\./g, '\\.')}:53 up again\n`));
    expect(svc.stderr.match(/warn upstream: /g)).toHaveLength(1);
  }, 60_000);

  it('refuses a reload when started without a config file', async () => {
    const r = await cli('reload', lab.applianceIf);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('heimdall-xdp: started without --config: there is no file to read again (flags cannot change while running)\n');
    expect(svc.stderr).toMatch(/error reload: refused, running config kept: started without --config/);
  });

  it('is closed to other users', async () => {
    const r = await runCli(['ip', 'netns', 'exec', lab.ns.appliance, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', 'src/bin.ts', 'stats', lab.applianceIf]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^heimdall-xdp: cannot use \/run\/heimdall-xdp\/.*\.sock: permission denied/);
  });
});
