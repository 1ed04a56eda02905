/**
 * The forwarder against a real authoritative server: NSD (Debian package
 * nsd; scripts/setup.sh installs it) on 127.0.0.1 and ::1 at a free high
 * port, with a zone generated in a temp dir. Skips with the reason when nsd
 * is missing; under CI=true a missing nsd fails instead.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerFromResponse } from '../../src/dns/answer.js';
import { textToWire } from '../../src/dns/name.js';
import { Forwarder } from '../../src/upstream/forwarder.js';
import { parseUpstreams } from '../../src/upstream/upstream.js';

function findNsd(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v nsd || ls /usr/sbin/nsd'], { encoding: 'utf8' }).trim().split('\n')[0] || null;
  } catch {
    return null;
  }
}

const NSD = findNsd();
const why = NSD ? null : 'nsd not installed (Debian package nsd; run scripts/setup.sh)';

const BIG = 100;
function zone(): string {
  const lines = [
    '$ORIGIN example.test.',
    '$TTL 300',
    '@ IN SOA ns1 hostmaster 2026112901 3600 600 86400 60',
    '@ IN NS ns1',
    'ns1 IN A 198.18.0.53',
    'www IN A 198.18.0.10',
    'www IN AAAA fd00::10',
    '@ IN MX 10 mail',
    'mail IN A 198.18.0.25',
  ];
  for (let i = 0; i < BIG; i++) lines.push(`big IN A 198.18.1.${i}`);
  return lines.join('\n') + '\n';
}

/** A port free for UDP and TCP on both loopbacks right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', r));
    const port = u.address().port;
    const free = async (): Promise<boolean> => {
      const checks = [
        new Promise<boolean>((r) => {
          const s = net.createServer().once('error', () => r(false));
          s.listen(port, '127.0.0.1', () => s.close(() => r(true)));
        }),
        new Promise<boolean>((r) => {
          const s = net.createServer().once('error', () => r(false));
          s.listen(port, '::1', () => s.close(() => r(true)));
        }),
        new Promise<boolean>((r) => {
          const s = dgram.createSocket('udp6').once('error', () => r(false));
          s.bind(port, '::1', () => s.close(() => r(true)));
        }),
      ];
      return (await Promise.all(checks)).every(Boolean);
    };
    const ok = await free();
    await new Promise<void>((r) => u.close(() => r()));
    if (ok) return port;
  }
}

function decode(m: Uint8Array): dnsPacket.DecodedPacket {
  return dnsPacket.decode(Buffer.from(m));
}

/** dns-packet decodes the RCODE but its types do not say so. */
function rcodeOf(m: Uint8Array): string {
  return (decode(m) as unknown as { rcode: string }).rcode;
}

const q = (name: string, qtype = 1, dnssecOk = false) => ({ name: textToWire(name), qtype, qclass: 1, dnssecOk });

(why && process.env.CI !== 'true' ? describe.skip : describe)(`Forwarder against NSD${why ? ` (skipped: ${why})` : ''}`, () => {
  let dir = '';
  let port = 0;
  let nsd: ChildProcess | null = null;
  let fwd: Forwarder;

  beforeAll(async () => {
    if (why) throw new Error(`NSD suite cannot run under CI: ${why}`);
    dir = mkdtempSync(join(tmpdir(), 'heimdall-nsd-'));
    port = await freePort();
    writeFileSync(join(dir, 'example.test.zone'), zone());
    writeFileSync(
      join(dir, 'nsd.conf'),
      [
        'server:',
        `  ip-address: 127.0.0.1@${port}`,
        `  ip-address: ::1@${port}`,
        `  port: ${port}`,
        '  server-count: 1',
        '  username: ""',
        '  chroot: ""',
        `  zonesdir: "${dir}"`,
        '  database: ""',
        `  zonelistfile: "${dir}/zone.list"`,
        `  xfrdfile: "${dir}/xfrd.state"`,
        `  xfrdir: "${dir}"`,
        `  pidfile: "${dir}/nsd.pid"`,
        `  logfile: "${dir}/nsd.log"`,
        '  verbosity: 1',
        'remote-control:',
        '  control-enable: no',
        'zone:',
        '  name: example.test',
        '  zonefile: example.test.zone',
        '',
      ].join('\n'),
    );
    nsd = spawn(NSD!, ['-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
    fwd = new Forwarder({ upstreams: parseUpstreams(`127.0.0.1:${port},[::1]:${port}`), timeoutMs: 200, deadlineMs: 1000 });
    // Ready when it answers for its zone.
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        const m = await fwd.resolve(q('ns1.example.test'));
        if (rcodeOf(m) === 'NOERROR') break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > until || nsd.exitCode !== null) {
        const log = existsSync(join(dir, 'nsd.log')) ? readFileSync(join(dir, 'nsd.log'), 'utf8') : '';
        throw new Error(`nsd did not come up on port ${port}: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 20_000);

  afterAll(async () => {
    await fwd?.close();
    if (nsd && nsd.exitCode === null) {
      const gone = new Promise((r) => nsd!.once('exit', r));
      nsd.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('forwards A, AAAA and MX; the answers are cacheable by the DNS core', async () => {
    const a = await fwd.resolve(q('www.example.test'));
    expect((decode(a).answers ?? []).map((r) => (r as { data: string }).data)).toEqual(['198.18.0.10']);
    const aaaa = await fwd.resolve(q('www.example.test', 28));
    expect((decode(aaaa).answers![0] as { data: string }).data).toBe('fd00::10');
    const mx = await fwd.resolve(q('example.test', 15));
    expect(decode(mx).answers![0]!.type).toBe('MX');
    for (const m of [a, aaaa, mx]) {
      const c = answerFromResponse(m, 0);
      expect(c.rcode).toBe(0);
      expect(c.negative).toBe(false);
    }
  });

  it('NSD echoes the random case of our query names (0x20) byte for byte; the COOKIE option we send does not get in the way', async () => {
    const names: string[] = [];
    for (const t of [1, 28, 15, 16]) names.push(decode(await fwd.resolve(q('www.example.test', t))).questions![0]!.name);
    for (const n of names) expect(n.toLowerCase()).toBe('www.example.test');
    expect(names.some((n) => n !== 'www.example.test')).toBe(true); // sent in a random case, and that case came back
    const s = fwd.stats();
    expect(s.mismatchedBy).toMatchObject({ case: 0, cookie: 0, cookieMissing: 0 });
    expect(s.capsFallbacks).toBe(0);
  });

  it('passes NXDOMAIN with the SOA, cacheable as a negative answer', async () => {
    const m = await fwd.resolve(q('nope.example.test'));
    expect(rcodeOf(m)).toBe('NXDOMAIN');
    const c = answerFromResponse(m, 0);
    expect(c.negative).toBe(true);
    expect(c.expiresNs).toBe(60e9); // SOA minimum
  });

  it('gets a 100-record answer over TCP after NSD truncates it over UDP', async () => {
    const before = fwd.stats().tcpRetries;
    const m = await fwd.resolve(q('big.example.test'));
    const d = decode(m);
    expect(d.flag_tc).toBe(false);
    expect(d.answers).toHaveLength(BIG);
    expect(m.length).toBeGreaterThan(1232);
    expect(fwd.stats().tcpRetries).toBe(before + 1);
    expect(answerFromResponse(m, 0).ancount).toBe(BIG);
  });

  it('passes REFUSED for a zone NSD does not serve when no other upstream is left', async () => {
    const only = new Forwarder({ upstreams: parseUpstreams(`[::1]:${port}`), timeoutMs: 300 });
    try {
      expect(rcodeOf(await only.resolve(q('elsewhere.invalid')))).toBe('REFUSED');
    } finally {
      await only.close();
    }
  });

  it('keeps serving over IPv6 when the IPv4 listener is marked down', async () => {
    const dead = dgram.createSocket('udp4');
    await new Promise<void>((r) => dead.bind(0, '127.0.0.1', r));
    const f = new Forwarder({
      upstreams: [{ host: '127.0.0.1', port: dead.address().port, family: 4 }, ...parseUpstreams(`[::1]:${port}`)],
      timeoutMs: 150,
      health: { failuresToDown: 1 },
    });
    try {
      const first = await f.resolve(q('www.example.test'));
      expect(decode(first).answers).toHaveLength(1);
      expect(f.stats().perUpstream.map((u) => u.healthy)).toEqual([false, true]);
      const t0 = performance.now();
      await f.resolve(q('mail.example.test'));
      expect(performance.now() - t0).toBeLessThan(100);
    } finally {
      await f.close();
      dead.close();
    }
  });
});
