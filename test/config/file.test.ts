/**
 * The config file: one key per option of attach, read into the same ConfigInput the
 * flags give, every mistake said at file:line and key, flags over the file, and the
 * JSON Schema in the repo kept equal to the format.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram, configFrom } from '../../src/cli.js';
import { configSchema, FILE_KEYS, parseConfigText } from '../../src/config-file.js';
import { SETTINGS } from '../../src/config.js';
import { formatLine } from '../../src/log.js';
import { applyLive, describeReload, diffConfig, RELOAD_KEYS } from '../../src/service/reload.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXAMPLE = join(ROOT, 'config/heimdall-xdp.example.yaml');

function errorOf(text: string, cli = {}): string {
  try {
    configFrom(parseConfigText(text, '/etc/heimdall-xdp/test.yaml'), { iface: 'eth0', ...cli });
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('config file', () => {
  it('has one key for every option of attach, and no other', () => {
    const attach = buildProgram().commands.find((c) => c.name() === 'attach')!;
    const options = attach.options.map((o) => o.attributeName()).filter((n) => n !== 'config' && n !== 'force');
    const fields = Object.values(FILE_KEYS).map((s) => s.field as string);
    expect(new Set(fields).size).toBe(fields.length);
    expect(fields.filter((f) => f !== 'iface').sort()).toEqual([...new Set(options)].sort());
    // The key is the flag's name without its dashes.
    for (const o of attach.options) {
      const key = Object.entries(FILE_KEYS).find(([, s]) => s.field === o.attributeName())?.[0];
      if (key && key !== 'upstreams') expect(o.long).toMatch(new RegExp(`^--(no-)?${key}$`));
    }
  });

  it('sets every option from the file', () => {
    const text = `
interface: lab0
upstreams:
  - 198.18.1.2
  - "[fd00::2]:5300"
port: 5353
mode: generic
xdp-attach: direct
queues: 2
cache-size: 2000
hot-size: 300
promote-after: 5
udp-size: 1400
tcp-max-connections: 500
tcp-max-per-client: 10
tcp-idle-timeout: 2000
cache-bytes: 4000000
cache-min-ttl: 5
cache-max-ttl: 600
cache-max-negative-ttl: 120
upstream-inflight: 100
upstream-inflight-total: 150
upstream-client-share: 50
upstream-tcp-conns: 3
upstream-tcp-pipeline: 8
upstream-port-reuse: 1
xdp-answers: false
prefetch: false
af-xdp: false
serve-stale: true
caps-for-id: false
upstream-cookies: false
minimal-responses: false
metrics-listen: 127.0.0.1:9999
cpus: 0-1,3
log-format: json
listen: [198.18.0.1, fd00::1]
allow: [198.18.0.0/15, "fd00::/8"]
deny: 198.18.0.128/25
rrl: 50
rrl-slip: 3
rrl-window: 20
rrl-all: 400
rrl-v4-prefix: 28
rrl-v6-prefix: 48
rrl-buckets: 4096
rrl-exempt: [198.18.0.2/32]
`;
    const file = parseConfigText(text, 'all.yaml');
    expect([...file.lines.keys()].sort()).toEqual(Object.keys(FILE_KEYS).sort());
    const c = configFrom(file, {});
    expect(c.iface).toBe('lab0');
    expect(c.upstreams.map((u) => `${u.host}:${u.port}`)).toEqual(['198.18.1.2:53', 'fd00::2:5300']);
    expect([c.port, c.mode, c.queues, c.cacheSize, c.hotSize, c.promoteAfter, c.udpSize]).toEqual([5353, 'generic', 2, 2000, 300, 5, 1400]);
    expect(c.xdpAttach).toBe('direct');
    expect(c.tcp).toEqual({ maxConnections: 500, maxPerClient: 10, idleTimeoutMs: 2000 });
    expect(c.workerEngine.cacheBytes).toBe(4_000_000);
    expect(c.cacheBytes).toBe(4_000_000);
    expect(c.cacheTtl).toEqual({ minTtl: 5, maxTtl: 600, negativeMaxTtl: 120 });
    expect(c.workerEngine.upstreamInflight).toBe(100);
    expect(c.upstreamInflightTotal).toBe(150);
    expect(c.workerEngine.upstreamPerClient).toBe(50);
    expect([c.workerEngine.upstreamTcpConns, c.workerEngine.upstreamTcpPipeline]).toEqual([3, 8]);
    expect(c.workerEngine.upstreamPortReuse).toBe(1);
    expect([c.xdpAnswers, c.afXdp, c.serveStale, c.prefetch]).toEqual([false, false, true, false]);
    expect([c.workerEngine.capsForId, c.workerEngine.upstreamCookies, c.workerEngine.minimalResponses]).toEqual([false, false, false]);
    expect(c.metricsListen).toEqual({ host: '127.0.0.1', port: 9999 });
    expect(c.logFormat).toBe('json');
    expect(c.cpus).toEqual([0, 1, 3]);
    expect(c.edge.listen).toEqual(['198.18.0.1', 'fd00::1']);
    expect(c.edge.allow.map((x) => x.text)).toEqual(['198.18.0.0/15', 'fd00::/8']);
    expect(c.edge.deny.map((x) => x.text)).toEqual(['198.18.0.128/25']);
    expect(c.edge.rrlExempt.map((x) => x.text)).toEqual(['198.18.0.2/32']);
    expect(c.edge.rrl).toEqual({ rate: 50, slip: 3, window: 20, allRate: 400, v4Prefix: 28, v6Prefix: 48 });
    expect(c.edge.rrlBuckets).toBe(4096);
  });

  it('lets a flag given on the command line override the file', () => {
    const file = parseConfigText('upstreams: 198.18.1.2\nport: 5353\nrrl: 10\nrrl-buckets: 3000\n', 'f.yaml');
    const c = configFrom(file, { iface: 'eth0', port: 53, rrlBuckets: 1024 });
    expect(c.port).toBe(53);
    expect(c.edge.rrl.rate).toBe(10);
    expect(c.edge.rrlBuckets).toBe(1024);
    // The same wrong value given as a flag is the flag's error, not the file's.
    expect(errorOf('upstreams: 198.18.1.2\n', { rrlBuckets: 3000 })).toBe('--rrl-buckets must be a power of two, got 3000');
  });

  it.each([
    ['upstreams:\n  - 198.18.1.2\n  - 1.2.3.4:99999\n', /^test\.yaml:3: upstreams\[1\]: .*1\.2\.3\.4:99999.*port 99999/],
    ['upstreams: 198.18.1.2\n\n\ncache-size: 5\n', /^test\.yaml:4: cache-size: must be an integer from 16 to 50000000, got 5$/],
    ['upstreams: 198.18.1.2\ncache-size: "100"\n', /^test\.yaml:2: cache-size: must be an integer .* got "100"$/],
    ['upstreams: 198.18.1.2\ncache-szie: 100\n', /^test\.yaml:2: cache-szie: unknown key \(the keys are: interface, upstreams,/],
    ['upstreams: 198.18.1.2\nserve-stale: yes\n', /^test\.yaml:2: serve-stale: must be true or false, got "yes"$/],
    ['upstreams: 198.18.1.2\nmode: turbo\n', /^test\.yaml:2: mode: must be one of auto, native, generic, got "turbo"$/],
    ['upstreams: 198.18.1.2\nallow:\n  - 198.18.0.0/15\n  - 10.0.0.0/33\n', /^test\.yaml:4: allow\[1\]: .*10\.0\.0\.0\/33.*prefix length/],
    ['upstreams: 198.18.1.2\nlisten: [198.18.0.1, 198.18.0.0/24]\n', /^test\.yaml:2: listen\[1\]: "198\.18\.0\.0\/24": is not an IPv4 or IPv6 address$/],
    ['upstreams: 198.18.1.2\nlisten: [198.18.0.1, "::"]\n', /^test\.yaml:2: listen: '::' is the unspecified address \(a wildcard\): name this host's own unicast addresses/],
    ['upstreams: 198.18.1.2\nrrl-buckets: 3000\n', /^test\.yaml:2: rrl-buckets: must be a power of two, got 3000$/],
    ['upstreams: 198.18.1.2\nmetrics-listen: localhost\n', /^test\.yaml:2: metrics-listen: must be addr:port/],
    ['upstreams: [198.18.1.2, 198.18.1.2:53]\n', /^test\.yaml:1: upstreams: .*listed twice/],
    ['upstreams: 198.18.1.2\nport: 53\nport: 54\n', /^test\.yaml:3: not valid YAML: Map keys must be unique/],
    ['- 198.18.1.2\n', /^test\.yaml:1: must be a mapping of keys to values/],
    ['upstreams: [198.18.1.2\n', /^test\.yaml:\d+: not valid YAML/],
    ['port: 53\n', /no upstream: give --upstream or 'upstreams:' in/],
  ])('refuses %j naming file, line and key', (text, re) => {
    expect(errorOf(text)).toMatch(re);
  });

  it('keeps the JSON Schema in the repo equal to the format', () => {
    const committed = JSON.parse(readFileSync(join(ROOT, 'config/heimdall-xdp.schema.json'), 'utf8'));
    expect(committed).toEqual(configSchema());
    const props = committed.properties as Record<string, { minimum?: number; maximum?: number }>;
    expect(Object.keys(props)).toEqual(Object.keys(FILE_KEYS));
    expect(props['cache-size']).toMatchObject({ minimum: SETTINGS.cacheSize.min, maximum: SETTINGS.cacheSize.max });
  });

  it('has an example with every key that check-config accepts', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    for (const key of Object.keys(FILE_KEYS)) expect(text).toMatch(new RegExp(`^(# )?${key}:`, 'm'));
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/bin.ts', 'check-config', EXAMPLE, 'eth0'], { cwd: ROOT, encoding: 'utf8' });
    expect(out).toMatch(/heimdall-xdp\.example\.yaml: ok \(interface eth0, upstreams 192\.0\.2\.53:53, \[2001:db8::53\]:53, port 53/);
  });

  it('check-config says what is wrong in one line and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hx-config-'));
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, 'upstreams: 198.18.1.2\nrrl: -1\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/bin.ts', 'check-config', path], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('heimdall-xdp: bad.yaml:2: rrl: must be an integer from 0 to 1000000, got -1\n');
    const missing = spawnSync(process.execPath, ['--import', 'tsx', 'src/bin.ts', 'check-config', join(dir, 'none.yaml')], { cwd: ROOT, encoding: 'utf8' });
    expect(missing.stderr).toMatch(/^heimdall-xdp: cannot read config file .*none\.yaml: no such file\n$/);
  });
});

describe('reload', () => {
  const base = 'interface: eth0\nupstreams: [198.18.1.2]\nallow: [198.18.0.0/15]\n';
  const cfg = (extra: string) => configFrom(parseConfigText(base + extra, 'r.yaml'), {});

  it('knows every key of the file, live or not as the file format says', () => {
    expect(Object.keys(RELOAD_KEYS)).toEqual(Object.keys(FILE_KEYS));
    for (const [k, spec] of Object.entries(FILE_KEYS)) expect(RELOAD_KEYS[k]!.live, k).toBe(spec.live);
  });

  it('takes every live key from the new config: a reload that changed one leaves nothing to change', () => {
    const running = cfg('');
    // Every live key set away from its default (prefetch once stayed at the running value,
    // so turning it back on by reload did nothing).
    const next = cfg('promote-after: 5\ncache-size: 5000\ncache-bytes: 3000000\ncache-min-ttl: 10\ncache-max-ttl: 600\ncache-max-negative-ttl: 60\nxdp-answers: false\nprefetch: false\nserve-stale: true\ncpus: 0\nlog-format: json\ndeny: [198.18.0.9/32]\nrrl: 50\nrrl-slip: 3\nrrl-window: 5\nrrl-all: 500\n');
    const after = applyLive(running, next);
    for (const [k, spec] of Object.entries(RELOAD_KEYS)) {
      if (spec.live) expect(spec.get(after), k).toEqual(spec.get(next));
    }
    expect(diffConfig(after, next).live).toEqual([]); // (hot-size follows cache-size: a restart key)
  });

  it('changes the live settings and keeps the running value of the others', () => {
    const running = cfg('port: 53\nrrl: 100\n');
    const next = cfg('port: 5353\nrrl: 200\ndeny: [198.18.0.9/32]\npromote-after: 7\nlog-format: json\n');
    expect(diffConfig(running, next)).toEqual({ live: ['promote-after', 'log-format', 'deny', 'rrl'], restart: ['port'] });
    const after = applyLive(running, next);
    expect(after.port).toBe(53);
    expect(after.edge.rrl.rate).toBe(200);
    expect(after.edge.deny.map((c) => c.text)).toEqual(['198.18.0.9/32']);
    expect([after.promoteAfter, after.workerEngine.promoteAfter, after.mainEngine.promoteAfter]).toEqual([7, 7, 7]);
    expect(after.logFormat).toBe('json');
    expect(diffConfig(after, next)).toEqual({ live: [], restart: ['port'] });
    expect(describeReload(diffConfig(after, next))).toBe('nothing to change; port changed in the file but needs a restart (running values kept)');
    expect(describeReload({ live: ['allow'], restart: [] })).toBe('changed allow');
  });

  it('changes the cache bounds live, and keeps a size the service could not apply', () => {
    const running = cfg('cache-size: 20000\n');
    const next = cfg('cache-size: 10000\ncache-max-ttl: 60\ncache-min-ttl: 10\nserve-stale: true\n');
    const diff = diffConfig(running, next);
    expect(diff).toEqual({ live: ['cache-size', 'cache-bytes', 'cache-min-ttl', 'cache-max-ttl', 'serve-stale'], restart: ['hot-size'] });
    const after = applyLive(running, next, diff);
    expect([after.cacheSize, after.cacheBytes, after.serveStale, after.workerEngine.serveStale]).toEqual([10000, 10000 * 512, true, true]);
    expect(after.cacheTtl).toEqual({ minTtl: 10, maxTtl: 60, negativeMaxTtl: 3600 });
    // The service moves a size beyond its allocation to restart: the running one stays.
    const kept = applyLive(running, next, { live: ['cache-max-ttl'], restart: ['cache-size', 'cache-bytes'] });
    expect([kept.cacheSize, kept.cacheBytes, kept.cacheTtl.maxTtl]).toEqual([20000, 20000 * 512, 60]);
    expect(() => cfg('cache-min-ttl: 100\ncache-max-ttl: 50\n')).toThrow(/cache-min-ttl.*must not be above --cache-max-ttl \(50\), got 100/);
  });

  it('logs one line per event, as text or JSON', () => {
    const now = new Date('2026-12-01T17:00:00.000Z');
    expect(formatLine('info', 'reload', 'changed allow', {}, 'text', now)).toBe('heimdall-xdp: info reload: changed allow\n');
    const j = formatLine('warn', 'upstream', '198.18.1.2:53 down', { upstream: '198.18.1.2:53' }, 'json', now);
    expect(j.endsWith('\n') && !j.slice(0, -1).includes('\n')).toBe(true);
    expect(JSON.parse(j)).toEqual({ time: '2026-12-01T17:00:00.000Z', level: 'warn', event: 'upstream', msg: '198.18.1.2:53 down', upstream: '198.18.1.2:53' });
  });
});
